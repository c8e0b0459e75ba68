"""Leakage: evaluation examples whose user turns match (exactly or nearly) a training example, a suite's
train split, its data.train file, or the few-shot examples a variant puts in every prompt.

`holdout_overlap` is what `harness run` calls before a run; this module imports no engine, suite-loading
or lm-eval code, so the runner can import it without a cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from harness.lint.examples import DataFile, Examples
from harness.lint.findings import STORED_LINES, Finding, LintThresholds, snippet
from harness.sources.native import holdout_split, select_fewshot

if TYPE_CHECKING:
    from harness.config.suite import Suite

__all__ = ["SuiteSets", "add_suite", "check_leakage", "holdout_overlap", "suite_leakage"]


def check_leakage(examples: Examples, train: Sequence[int], train_label: str, held: Sequence[int],
                  held_label: str, held_file: DataFile, *, code: str = "leakage") -> list[Finding]:
    """Holdout examples whose user turns match (exactly or nearly) a training example's."""
    level = examples.thresholds.leakage
    if level == "off" or not train or not held:
        return []
    train_first: dict[str, int] = {}
    for i in train:
        if examples.n_user[i]:
            train_first.setdefault(examples.n_user[i], i)
    exact = [(h, train_first[examples.n_user[h]]) for h in held if examples.n_user[h] in train_first]
    exact_set = {h for h, _ in exact}
    # near: one unit per distinct normalised user text; role bits 1 = train, 2 = holdout
    unit_of: dict[str, int] = {}
    reps: list[int] = []
    role: list[int] = []
    held_members: list[list[int]] = []
    for bit, members in ((1, train), (2, held)):
        for i in members:
            text = examples.n_user[i]
            if not text:
                continue
            u = unit_of.get(text)
            if u is None:
                u = unit_of[text] = len(reps)
                reps.append(i)
                role.append(0)
                held_members.append([])
            role[u] |= bit
            if bit == 2:
                held_members[u].append(i)
    roles = np.asarray(role, dtype=np.int64)

    def crossing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ra, rb = roles[a], roles[b]
        return ((ra & 1) & (rb >> 1)) | ((ra >> 1) & (rb & 1)) > 0

    near: dict[int, tuple[int, float]] = {}
    for a, b, sim in examples.near_pairs(reps, ("user",), crossing):
        for h_unit, t_unit in ((a, b), (b, a)):
            if role[h_unit] & 2 and role[t_unit] & 1:
                for h in held_members[h_unit]:
                    if h not in exact_set and (h not in near or near[h][1] < sim):
                        near[h] = (reps[t_unit], sim)
    out = []
    n = len(held)
    if exact:
        out.append(Finding(
            level, code,
            f"{len(exact)} of {n} {held_label} examples ({len(exact) / n:.1%}) have user turns identical "
            f"(after normalising) to one in {train_label}.",
            held_file.name, lines=[examples.line[h] for h, _ in exact[:STORED_LINES]], count=len(exact), total=n,
            examples=[f"{examples.where(h, held_file)} = {examples.where(t, held_file)}: {snippet(examples.user[h], 50)}"
                      for h, t in exact[:STORED_LINES]],
            details={"train": train_label, "holdout": held_label, "kind": "exact",
                     "pairs": [[examples.where(h), examples.where(t)] for h, t in exact[:100]]},
        ))
    if near:
        ordered = sorted(near.items())
        out.append(Finding(
            level, "near-" + code if code == "leakage" else code,
            f"{len(near)} of {n} {held_label} examples ({len(near) / n:.1%}) have user turns near-identical "
            f"(Jaccard ≥ {examples.thresholds.near_duplicate:g}) to one in {train_label}.",
            held_file.name, lines=[examples.line[h] for h, _ in ordered[:STORED_LINES]], count=len(near), total=n,
            examples=[f"{examples.where(h, held_file)} ≈ {examples.where(t, held_file)} (similarity {sim:.2f}): "
                      f"{snippet(examples.user[h], 50)}"
                      for h, (t, sim) in ordered[:STORED_LINES]],
            details={"train": train_label, "holdout": held_label, "kind": "near",
                     "pairs": [[examples.where(h), examples.where(t), round(sim, 4)] for h, (t, sim) in ordered[:100]]},
        ))
    examples.findings += out
    return out


@dataclass
class SuiteSets:
    """A suite's examples as its run splits them: data file, train split (holdout), evaluation cases, data.train file."""

    data: DataFile
    train_split: list[int] | None
    eval: list[int]
    train_file: DataFile | None

    @property
    def pool(self) -> list[int]:
        if self.train_file is not None:
            return self.train_file.examples
        return self.train_split or []


def add_suite(examples: Examples, suite: Suite) -> SuiteSets:
    """The suite's data split as `suite.splits` splits it (same case ids, same hash split), with line numbers."""
    data = examples.add_file(suite.data_path, "suite data", fields=suite.fields, ids=True)
    train_split = None
    evaluation = list(data.examples)
    if suite.holdout is not None:
        by_id = {examples.cases[i].id: i for i in data.examples}
        pool, held = holdout_split([examples.cases[i] for i in data.examples], suite.holdout, suite.seed)
        train_split = [by_id[c.id] for c in pool]
        evaluation = [by_id[c.id] for c in held]
    if suite.limit is not None:
        evaluation = evaluation[: suite.limit]
    train_file = None
    if suite.train_path is not None:
        train_file = examples.add_file(suite.train_path, "suite train", fields=suite.fields, ids=True)
    return SuiteSets(data=data, train_split=train_split, eval=evaluation, train_file=train_file)


def suite_leakage(examples: Examples, suite: Suite, sets: SuiteSets, fewshot: Iterable[int]) -> list[Finding]:
    out: list[Finding] = []
    held_label = "holdout split" if sets.train_split is not None else "evaluation"
    if sets.train_split is not None:
        out += check_leakage(examples, sets.train_split, "the train split", sets.eval, held_label, sets.data)
    if sets.train_file is not None:
        out += check_leakage(examples, sets.train_file.examples, f"the data.train file {sets.train_file.name}", sets.eval,
                                    held_label, sets.data)
    pool = sets.pool
    for k in sorted({int(k) for k in fewshot if int(k) > 0}):
        if len(pool) < k:
            continue
        by_id = {examples.cases[i].id: i for i in pool}
        chosen = [by_id[c.id] for c in select_fewshot([examples.cases[i] for i in pool], k, suite.seed)]
        out += check_leakage(examples, chosen, f"the {k} few-shot examples a fewshot={k} variant puts in every prompt", sets.eval, held_label, sets.data,
                                    code="fewshot-leakage")
    return out


def holdout_overlap(suite: Suite, *, fewshot: Iterable[int] = (), thresholds: LintThresholds | None = None) -> list[str]:
    """Warnings for `harness run`: the suite's evaluation cases overlapping its train split, its
    data.train file or (for each k in `fewshot`) the k few-shot examples, exactly or nearly (user turns).

    Returns one line per finding (empty when clean). Rows the suite cannot load are ignored here.
    """
    t = thresholds or LintThresholds()
    if t.leakage == "off":
        t = LintThresholds(**{**asdict(t), "leakage": "warning"})
    examples = Examples(t)
    sets = add_suite(examples, suite)
    examples.prepare()
    out = []
    for finding in suite_leakage(examples, suite, sets, fewshot):
        first = "; ".join(finding.examples[:3])
        out.append(f"suite '{suite.name}': {finding.message} First: {first}" if first else
                   f"suite '{suite.name}': {finding.message}")
    return out
