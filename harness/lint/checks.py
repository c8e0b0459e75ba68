"""The per-file checks of `harness lint-data` (duplicates, contradictions, format, lengths, training-set
size) and `lint_files`, which loads the files and runs every check, leakage included (leakage.py).
The finding codes are listed in the package's docstring (harness/lint/__init__.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.errors import ConfigError
from harness.lint.examples import DataFile, Examples
from harness.lint.findings import LEVEL_RANK, STORED_LINES, FileSummary, Finding, LintReport, LintThresholds, snippet
from harness.lint.leakage import (
    SuiteSets,
    add_suite,
    check_leakage,
    holdout_overlap,  # noqa: F401  (engine/runner.py imports it from here until it imports harness.lint.leakage)
    suite_leakage,
)
from harness.lint.minhash import UnionFind

if TYPE_CHECKING:
    from harness.config.suite import Suite

__all__ = ["lint_files"]


class _Linter(Examples):
    """The examples with the per-file checks (duplicates, contradictions, format, lengths, size)."""

    # -- per-file checks -----------------------------------------------------------------
    def check_duplicates(self, f: DataFile) -> None:
        idx = f.examples
        n = len(idx)
        groups: dict[tuple, list[int]] = {}
        for i in idx:
            groups.setdefault((self.n_system[i], self.n_user[i], self.n_prev[i], self.n_answer[i]), []).append(i)
        repeated = [g for g in groups.values() if len(g) > 1]
        extra = sum(len(g) - 1 for g in repeated)
        if extra:
            level = "error" if extra / n > self.thresholds.max_duplicate_rate else "warning"
            self.findings.append(Finding(
                level, "exact-duplicate",
                f"{extra} of {n} examples ({extra / n:.1%}) repeat an earlier one after normalising case, whitespace "
                f"and punctuation ({len(repeated)} group(s); error above {self.thresholds.max_duplicate_rate:.0%}).",
                f.name, lines=[self.line[i] for g in repeated for i in g[1:]][:STORED_LINES], count=extra, total=n,
                examples=[f"lines {', '.join(str(self.line[i]) for i in g[:6])}{' …' if len(g) > 6 else ''}: "
                          f"{snippet(self.user[g[0]])}" for g in repeated[:STORED_LINES]],
                details={"groups": [[self.line[i] for i in g] for g in repeated[:100]]},
            ))
        reps = [g[0] for g in groups.values()]
        uf = UnionFind()
        pairs = self.near_pairs(reps, ("user", "prev", "answer"), linked=uf)
        if not pairs:
            return
        best: dict[int, tuple[int, float]] = {}
        for a, b, sim in pairs:
            best.setdefault(b, (a, sim))
        clusters = uf.groups()
        count = sum(len(c) - 1 for c in clusters)
        level = "error" if count / n > self.thresholds.max_near_duplicate_rate else "warning"
        later = sorted((reps[b], reps[a], sim) for b, (a, sim) in best.items())
        self.findings.append(Finding(
            level, "near-duplicate",
            f"{count} of {n} examples ({count / n:.1%}) are near-duplicates of another (word-shingle Jaccard ≥ "
            f"{self.thresholds.near_duplicate:g}; {len(clusters)} cluster(s); error above {self.thresholds.max_near_duplicate_rate:.0%}).",
            f.name, lines=[self.line[i] for i, _, _ in later[:STORED_LINES]], count=count, total=n,
            examples=[f"line {self.line[i]} ≈ line {self.line[j]} (similarity {sim:.2f}): {snippet(self.user[i])}"
                      for i, j, sim in later[:STORED_LINES]],
            details={"pairs": [[self.line[i], self.line[j], round(sim, 4)] for i, j, sim in later[:100]],
                     "clusters": [[self.line[reps[x]] for x in c] for c in clusters[:100]]},
        ))

    def check_contradictions(self, f: DataFile) -> None:
        idx = [i for i in f.examples if self.n_answer[i] is not None]
        groups: dict[tuple, list[int]] = {}
        for i in idx:
            groups.setdefault((self.n_system[i], self.n_user[i], self.n_prev[i]), []).append(i)
        level = self.thresholds.contradictions
        conflicts = []
        for members in groups.values():
            answers = {}
            for i in members:
                answers.setdefault(self.n_answer[i], i)
            if len(answers) > 1:
                conflicts.append(list(answers.values()))
        if conflicts and level != "off":
            count = sum(len(g) for g in conflicts)
            self.findings.append(Finding(
                level, "contradiction",
                f"{len(conflicts)} input(s) appear with different answers ({count} examples): same normalised "
                "system and user turns, different assistant turn.",
                f.name, lines=[self.line[i] for g in conflicts for i in g][:STORED_LINES], count=len(conflicts),
                total=len(groups),
                examples=[f"lines {', '.join(str(self.line[i]) for i in g[:4])}: {snippet(self.user[g[0]], 40)} → "
                          + " vs ".join(snippet(self.answer[i], 30) for i in g[:3]) for g in conflicts[:STORED_LINES]],
                details={"groups": [[self.line[i] for i in g] for g in conflicts[:100]]},
            ))
        level = self.thresholds.near_contradictions
        if level == "off":
            return
        reps = [g[0] for g in groups.values()]
        ids: dict[str | None, int] = {}
        systems = np.array([ids.setdefault(self.n_system[i], len(ids)) for i in reps], dtype=np.int64)
        answers = np.array([ids.setdefault(self.n_answer[i], len(ids)) for i in reps], dtype=np.int64)
        # only pairs that could contradict: same system prompt, different answers
        pairs = self.near_pairs(reps, ("user", "prev"),
                                lambda a, b: (systems[a] == systems[b]) & (answers[a] != answers[b]))
        found = []
        for a, b, sim in pairs:
            i, j = reps[a], reps[b]
            if self.n_answer[i] == self.n_answer[j] or self.jaccard(i, j, ("answer",)) >= self.thresholds.near_duplicate:
                continue
            in_diff = set((self.n_user[i] + " " + self.n_prev[i]).split()) ^ set((self.n_user[j] + " " + self.n_prev[j]).split())
            out_diff = set(self.n_answer[i].split()) ^ set(self.n_answer[j].split())
            if out_diff <= in_diff:  # the answers differ only in words the inputs differ in (a changed name, amount...)
                continue
            found.append((i, j, sim))
        if found:
            self.findings.append(Finding(
                level, "near-contradiction",
                f"{len(found)} pair(s) of near-identical inputs (Jaccard ≥ {self.thresholds.near_duplicate:g}, same system "
                "prompt) have answers that differ beyond what the inputs' difference explains.",
                f.name, lines=[self.line[i] for i, _, _ in found[:STORED_LINES]], count=len(found),
                examples=[f"line {self.line[i]} ≈ line {self.line[j]} (input similarity {sim:.2f}): "
                          f"{snippet(self.answer[i], 30)} vs {snippet(self.answer[j], 30)}" for i, j, sim in found[:STORED_LINES]],
                details={"pairs": [[self.line[i], self.line[j], round(sim, 4)] for i, j, sim in found[:100]]},
            ))

    def check_format(self, f: DataFile, checks: list) -> None:
        idx = [i for i in f.examples if self.answer[i] is not None]
        if not idx:
            return
        if not checks:
            self._json_consistency(f, idx)
            return
        from harness.scorers.base import Output

        for spec in checks:
            failed = []
            for i in idx:
                try:
                    score = spec.fn(self.case(i), Output(text=self.answer[i]))
                    ok, reason = score.value >= 1.0, score.reason
                except Exception as exc:  # a scorer crashing on odd data is itself a finding
                    ok, reason = False, f"check raised {type(exc).__name__}: {exc}"
                if not ok:
                    failed.append((i, reason or "fails"))
            if not failed:
                continue
            rate = len(failed) / len(idx)
            self.findings.append(Finding(
                "error" if rate > self.thresholds.max_format_failure_rate else "warning", "format-failures",
                f"{len(failed)} of {len(idx)} answers ({rate:.1%}) fail the suite's format check '{spec.name}' "
                f"(error above {self.thresholds.max_format_failure_rate:.0%}).",
                f.name, lines=[self.line[i] for i, _ in failed[:STORED_LINES]], count=len(failed), total=len(idx),
                examples=[f"line {self.line[i]}: {reason}" for i, reason in failed[:STORED_LINES]],
                details={"check": spec.name, "axis": spec.axis},
            ))

    def _json_consistency(self, f: DataFile, idx: list[int]) -> None:
        bad = []
        for i in idx:
            text = self.answer[i].strip()
            ok = False
            if text[:1] in "{[" and text:
                try:
                    json.loads(text)
                    ok = True
                except (json.JSONDecodeError, RecursionError):
                    pass
            if not ok:
                bad.append(i)
        good = len(idx) - len(bad)
        if bad and good / len(idx) >= 0.8:
            self.findings.append(Finding(
                "warning", "format-inconsistent",
                f"{good} of {len(idx)} answers are JSON but {len(bad)} ({len(bad) / len(idx):.1%}) are not.",
                f.name, lines=[self.line[i] for i in bad[:STORED_LINES]], count=len(bad), total=len(idx),
                examples=[f"line {self.line[i]}: {snippet(self.answer[i])}" for i in bad[:STORED_LINES]],
            ))

    def check_lengths(self, f: DataFile, counter: Callable[[list[str]], list[int]], unit: str,
                      max_tokens: int | None) -> None:
        idx = f.examples
        if not idx:
            return
        prompts = ["\n".join(t for t in (self.system[i], self.user[i], self.prev[i]) if t) for i in idx]
        with_answer = [i for i in idx if self.answer[i] is not None]
        stats: dict[str, Any] = {"unit": unit}
        for label, members, texts in (("prompt", idx, prompts), ("answer", with_answer,
                                                                   [self.answer[i] for i in with_answer])):
            if not members:
                continue
            lengths = np.asarray(counter(texts))
            top = int(np.argmax(lengths))
            stats[label] = {"min": int(lengths.min()), "median": round(float(np.median(lengths)), 2),
                            "p95": round(float(np.percentile(lengths, 95)), 2), "max": int(lengths.max()),
                            "max_line": self.line[members[top]], "total": int(lengths.sum())}
            if label == "answer" and max_tokens:
                over = [(members[k], int(v)) for k, v in enumerate(lengths) if v > max_tokens]
                if over:
                    self.findings.append(Finding(
                        "warning", "answer-too-long",
                        f"{len(over)} of {len(members)} answers are longer than the suite's generation.max_tokens "
                        f"({max_tokens}) in {unit}: the model cannot reproduce them in full.",
                        f.name, lines=[self.line[i] for i, _ in over[:STORED_LINES]], count=len(over),
                        total=len(members),
                        examples=[f"line {self.line[i]}: {n} {unit}" for i, n in over[:STORED_LINES]],
                    ))
        f.lengths = stats

    def check_size(self, label: str, f: DataFile, idx: Sequence[int]) -> None:
        if self.thresholds.min_examples and len(idx) < self.thresholds.min_examples:
            self.findings.append(Finding(
                "warning", "too-few-examples",
                f"{label} has {len(idx)} examples; fine-tuning usually needs at least {self.thresholds.min_examples} "
                "(threshold min_examples).", f.name, count=len(idx), total=self.thresholds.min_examples,
            ))


def _word_counter(texts: list[str]) -> list[int]:
    return [len(t.split()) for t in texts]


def _length_counter(linter: _Linter, tokenizer: str | None) -> tuple[Callable[[list[str]], list[int]], str]:
    """(counter, unit): whitespace words unless a tokenizer is named and loads (else an info finding says so)."""
    if tokenizer:
        try:
            from harness.backends.tokenizer import token_counter  # loads transformers: only when asked

            return token_counter(tokenizer), "tokens"
        except Exception as exc:  # missing transformers, unknown model, not cached: fall back, say so
            linter.findings.append(Finding("info", "tokenizer-unavailable",
                                           f"token counts unavailable ({type(exc).__name__}: {exc}); "
                                           "lengths are in whitespace words."))
    return _word_counter, "words"


def _check_training_sizes(linter: _Linter, files: list[DataFile], sets: SuiteSets | None) -> None:
    """`too-few-examples` for every data or training file, a suite's train split and its data.train file."""
    sized: set[int] = set()
    for f in files:
        if id(f) not in sized and ("data" in f.roles or "train" in f.roles) and f.format != "unreadable":
            sized.add(id(f))
            linter.check_size(f"{f.name}", f, f.examples)
    if sets is not None:
        if sets.train_split is not None:
            linter.check_size(f"the train split of {sets.data.name}", sets.data, sets.train_split)
        if sets.train_file is not None and id(sets.train_file) not in sized:
            linter.check_size(f"data.train {sets.train_file.name}", sets.train_file, sets.train_file.examples)


def _check_file_leakage(linter: _Linter, train_files: list[DataFile], held_files: list[DataFile],
                        sets: SuiteSets | None) -> None:
    """Every training file against every holdout file and, with a suite, against its evaluation cases."""
    for tf in train_files:
        for hf in held_files:
            if tf is not hf:
                check_leakage(linter, tf.examples, f"the training file {tf.name}", hf.examples, "holdout", hf)
        if sets is not None and tf is not sets.data and tf is not sets.train_file:
            check_leakage(linter, tf.examples, f"the training file {tf.name}", sets.eval, "suite evaluation", sets.data)


def lint_files(
    files: Sequence[Path | str] = (),
    *,
    suite: Suite | None = None,
    train: Sequence[Path | str] = (),
    holdout: Sequence[Path | str] = (),
    thresholds: LintThresholds | None = None,
    tokenizer: str | None = None,
    fewshot: Iterable[int] = (),
) -> LintReport:
    """Lint fine-tuning / evaluation data.

    - `files`: data to lint (chat `messages` JSONL; with a suite, rows without `messages` and CSV are
      read with the suite's `data.fields`).
    - `train` / `holdout`: leakage is checked from every training file (`train`, or `files` when no
      `train` is given) to every holdout file, and, with a suite, to the suite's evaluation cases.
    - `suite`: also lints the suite's data (and `data.train`), checks its train split, data.train
      file and few-shot pool against its holdout split, and checks answers with its format-axis scorers.
    - `fewshot`: k values of the suite's few-shot variants: the exact k examples put in every prompt
      are checked against the evaluation cases (`fewshot-leakage`).
    - `tokenizer`: a model (built-in alias, local directory, or hub id in the local cache) whose
      tokenizer measures lengths; None (the default, fast) counts whitespace words.
    """
    started = time.perf_counter()
    if suite is not None and getattr(suite, "lm_eval", None) is not None:
        raise ConfigError("this suite runs lm-eval tasks; lint the task's data files directly "
                          "(harness lint-data FILE...).", file=suite.path, key="lm_eval")
    t = thresholds or LintThresholds()
    linter = _Linter(t)
    fallback = suite.fields if suite is not None else None
    sets = add_suite(linter, suite) if suite is not None else None
    train_paths = list(train) or (list(files) if (holdout or sets is not None) else [])
    data_files = [linter.add_file(Path(p), "data", fallback=fallback) for p in files]
    train_files = [linter.add_file(Path(p), "train", fallback=fallback) for p in train_paths]
    held_files = [linter.add_file(Path(p), "holdout", fallback=fallback) for p in holdout]
    linter.prepare()

    counter, unit = _length_counter(linter, tokenizer)
    max_tokens = suite.generation.get("max_tokens") if suite is not None else None
    checks = [s for s in suite.scorers if s.axis == "format" and "text" in s.info.needs] if suite is not None else []

    for f in linter.files:
        if not f.examples:
            continue
        linter.check_duplicates(f)
        linter.check_contradictions(f)
        linter.check_format(f, checks)
        linter.check_lengths(f, counter, unit, max_tokens)

    _check_training_sizes(linter, data_files + train_files, sets)
    _check_file_leakage(linter, train_files, held_files, sets)
    if sets is not None:
        suite_leakage(linter, suite, sets, fewshot)

    order = {f.name: k for k, f in enumerate(linter.files)}
    findings = sorted(linter.findings, key=lambda x: (order.get(x.file, -1), LEVEL_RANK[x.level], x.code))
    summaries = [FileSummary(f.name, f.format, f.rows, len(f.examples), list(f.roles), f.lengths) for f in linter.files]
    label = "words" if unit == "words" else f"tokens ({tokenizer})"
    return LintReport(summaries, findings, t, label, time.perf_counter() - started)
