"""`harness lint-data`: catch bad fine-tuning data and leaky holdouts before any model runs.

    report = lint_files([Path("train.jsonl")], holdout=[Path("eval.jsonl")])
    print(report.render_text()); sys.exit(report.exit_code)

Every finding has a level (error / warning / info), a code, a message, the file and the first
offending line numbers. Codes:

- structure (error): `bad-json`, `missing-messages`, `bad-message`, `missing-user`,
  `missing-answer` (last turn is not the assistant's), `empty-assistant`, `empty-user`,
  `assistant-first`, `system-not-first`, `repeated-role` (two user or two assistant turns in a
  row), `bad-row` (a field-mapped row the suite's `data.fields` cannot read), `empty-file`,
  `unsupported-format` (CSV without a field map).
- `exact-duplicate`, `near-duplicate`: whole examples identical after normalising case,
  whitespace and punctuation / near-identical (MinHash over word shingles, verified Jaccard).
  Warning; error above `max_duplicate_rate` / `max_near_duplicate_rate`.
- `leakage`, `near-leakage`: a holdout (evaluation) example whose user turns are identical /
  near-identical to a training example's; `fewshot-leakage`: the same for the few-shot examples
  a variant puts in every prompt. Level `leakage` (error).
- `contradiction`: the same normalised input with different answers (level `contradictions`);
  `near-contradiction`: near-identical inputs (same system prompt) whose answers differ in a way
  the input's difference does not explain (level `near_contradictions`).
- `format-failures`: share of answers failing the suite's own format-axis checks (warning;
  error above `max_format_failure_rate`); `format-inconsistent`: without a suite, most answers
  are JSON but some are not (warning).
- `too-few-examples` (warning): a training set smaller than `min_examples`.
- `answer-too-long` (warning): answers longer than the suite's `generation.max_tokens`;
  `tokenizer-unavailable` (info). Length statistics (not findings) are in each file's summary:
  prompt and answer lengths in whitespace words, or in tokens of a model's tokenizer when one is
  named (`tokenizer=`; off by default because loading a tokenizer costs seconds).

What is compared. Text is normalised (NFKC, case-folded, punctuation and extra whitespace
dropped). Duplicates compare whole examples; leakage compares the user turns (a multiple-choice
case's options count as part of its input); contradictions compare the input turns (system, user,
earlier assistant turns). Similarity ignores system prompts (a shared one would make everything
alike) and shingles that more than `boilerplate` of the distinct texts share (templates, long
shared instructions): it measures what varies between examples.

How. Near-duplicate search is MinHash (128 hash functions over `shingle_words`-word shingles,
texts padded at both ends) with LSH banding tuned to `near_duplicate`; a large LSH bucket is
compared within a sliding window, so the work grows with the number of examples, not its square.
Each candidate pair is then checked with its exact Jaccard similarity, so a reported
near-duplicate is never a hashing accident (a true pair is missed with probability < 0.5 % at the
threshold, far less above it). 100,000 examples take about 10 s of CPU
(`benchmarks/bench_lint.py`).
"""

from __future__ import annotations

import csv
import itertools
import json
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.errors import ConfigError, DataError
from harness.sources.native import (
    ROLES,
    Case,
    FieldMap,
    _chat_case,
    _mapped_case,
    _renderer,
    holdout_split,
    select_fewshot,
)

if TYPE_CHECKING:
    from harness.config.suite import Suite

__all__ = ["Finding", "FileSummary", "LintReport", "LintThresholds", "holdout_overlap", "lint_files", "normalize"]

LEVELS = ("error", "warning", "info")
SWITCHES = ("error", "warning", "info", "off")
_RANK = {"error": 0, "warning": 1, "info": 2}
_STORED_LINES = 20
"""Line numbers kept per finding (the count says how many there are in all)."""


# --------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class LintThresholds:
    """What counts as an error. Every field can be set from the CLI as `--set key=value`."""

    min_examples: int = 200
    """A training set with fewer examples gets a `too-few-examples` warning (0 turns it off)."""
    max_duplicate_rate: float = 0.02
    """Share of examples repeating an earlier one (after normalising) above which duplicates are an error."""
    max_near_duplicate_rate: float = 0.05
    """Share of near-duplicate examples above which near-duplicates are an error."""
    near_duplicate: float = 0.8
    """Jaccard similarity of word shingles from which two texts count as near-identical."""
    shingle_words: int = 3
    """Words per shingle for the similarity (each text is padded at both ends, so every word is in this many)."""
    boilerplate: float = 0.05
    """Shingles found in more than this share of the distinct texts (and in at least 50) are template
    boilerplate and left out of the similarity (1 keeps everything)."""
    leakage: str = "error"
    """Level of `leakage`, `near-leakage` and `fewshot-leakage` findings (error|warning|info|off)."""
    contradictions: str = "error"
    """Level of `contradiction` findings: same input, different answers."""
    near_contradictions: str = "warning"
    """Level of `near-contradiction` findings: near-identical inputs, unexplained different answers."""
    max_format_failure_rate: float = 0.02
    """Share of answers failing the suite's format checks above which it is an error (any failure warns)."""
    show: int = 5
    """Offending examples quoted per finding in the text summary."""

    def __post_init__(self) -> None:
        def fail(key: str, message: str) -> None:
            raise ConfigError(f"lint threshold '{key}' {message}", hint="See harness.lint.checks.LintThresholds.")

        for key in ("leakage", "contradictions", "near_contradictions"):
            if getattr(self, key) not in SWITCHES:
                fail(key, f"must be one of {', '.join(SWITCHES)}, got {getattr(self, key)!r}.")
        for key in ("max_duplicate_rate", "max_near_duplicate_rate", "max_format_failure_rate"):
            if not 0 <= getattr(self, key) <= 1:
                fail(key, f"must be a share between 0 and 1, got {getattr(self, key)!r}.")
        if not 0 < self.near_duplicate <= 1:
            fail("near_duplicate", f"must be a Jaccard similarity in (0, 1], got {self.near_duplicate!r}.")
        if not 0 < self.boilerplate <= 1:
            fail("boilerplate", f"must be a share in (0, 1], got {self.boilerplate!r}.")
        if not 1 <= self.shingle_words <= 10:
            fail("shingle_words", f"must be between 1 and 10, got {self.shingle_words!r}.")
        if self.min_examples < 0 or self.show < 0:
            fail("min_examples" if self.min_examples < 0 else "show", "must be 0 or more.")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> LintThresholds:
        """Thresholds from a mapping; values may be strings ('0.05', 'warning') as typed on a command line."""
        known = {f.name: f for f in fields(cls)}
        parsed: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known:
                from harness.errors import did_you_mean

                raise ConfigError(f"unknown lint threshold '{key}'.", hint=did_you_mean(key, known))
            default = getattr(cls, key)
            try:
                parsed[key] = type(default)(value) if not isinstance(default, str) else str(value)
            except (TypeError, ValueError):
                raise ConfigError(f"lint threshold '{key}' must be a {type(default).__name__}, got {value!r}.") from None
        return cls(**parsed)

    @classmethod
    def parse(cls, items: Iterable[str]) -> LintThresholds:
        """Thresholds from `key=value` strings (the CLI's repeated `--set`)."""
        values = {}
        for item in items:
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"'{item}' is not key=value.", hint="e.g. --set max_duplicate_rate=0.05")
            values[key.strip().replace("-", "_")] = value.strip()
        return cls.from_mapping(values)


@dataclass
class Finding:
    """One problem (or statistic) found in the data."""

    level: str
    """error | warning | info."""
    code: str
    """Stable machine-readable name, e.g. `near-duplicate`."""
    message: str
    """One sentence with the counts."""
    file: str | None = None
    """The file the offending lines are in (None: about the whole run)."""
    lines: list[int] = field(default_factory=list)
    """Line numbers of the first offending rows in `file` (at most 20; `count` says how many)."""
    count: int = 0
    """How many examples (or lines) are affected."""
    total: int | None = None
    """Out of how many (for rates)."""
    examples: list[str] = field(default_factory=list)
    """The first instances, human-readable (e.g. 'line 4 ≈ line 17 (similarity 0.91)')."""
    details: dict[str, Any] = field(default_factory=dict)
    """Machine-readable specifics (pairs, groups, rates, statistics)."""

    @property
    def rate(self) -> float | None:
        return self.count / self.total if self.total else None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rate"] = None if self.rate is None else round(self.rate, 6)
        return data


@dataclass
class FileSummary:
    path: str
    format: str
    """chat | fields | unreadable."""
    rows: int
    """Non-blank rows read."""
    examples: int
    """Rows that load as cases."""
    roles: list[str] = field(default_factory=list)
    """data | train | holdout | suite data | suite train."""
    lengths: dict[str, Any] = field(default_factory=dict)
    """Prompt and answer length statistics: {"unit", "prompt": {min, median, p95, max, max_line, total}, "answer": ...}."""


@dataclass
class LintReport:
    files: list[FileSummary]
    findings: list[Finding]
    thresholds: LintThresholds
    length_unit: str
    """'words' or 'tokens (<tokenizer>)'."""
    seconds: float = 0.0

    @property
    def counts(self) -> dict[str, int]:
        return {level: sum(f.level == level for f in self.findings) for level in LEVELS}

    @property
    def exit_code(self) -> int:
        """1 when any error-level finding exists, else 0."""
        return 1 if any(f.level == "error" for f in self.findings) else 0

    def by_code(self, code: str) -> list[Finding]:
        return [f for f in self.findings if f.code == code]

    def to_dict(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "counts": self.counts,
            "length_unit": self.length_unit,
            "seconds": round(self.seconds, 3),
            "thresholds": asdict(self.thresholds),
            "files": [asdict(f) for f in self.files],
            "findings": [f.as_dict() for f in self.findings],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def render_text(self) -> str:
        """A readable summary: per file, each finding with its counts and first offending lines."""
        show = self.thresholds.show
        n_examples = sum(f.examples for f in self.files)
        c = self.counts
        out = [f"lint-data: {len(self.files)} file(s), {n_examples:,} examples, {self.seconds:.1f} s — "
               f"{c['error']} error(s), {c['warning']} warning(s), {c['info']} info"]

        def emit(finding: Finding) -> None:
            out.append(f"  {finding.level.upper():<8}{finding.code:<20}{finding.message}")
            quoted = finding.examples[:show]
            for example in quoted:
                out.append(f"{'':30}{example}")
            if not quoted and finding.lines:
                out.append(f"{'':30}lines " + ", ".join(map(str, finding.lines[: max(show, 1) * 2])))

        ordered = sorted(self.findings, key=lambda f: _RANK[f.level])
        general = [f for f in ordered if f.file is None]
        if general:
            out.append("(all files)")
            for finding in general:
                emit(finding)
        for summary in self.files:
            mine = [f for f in ordered if f.file == summary.path]
            out.append(f"{summary.path}  [{', '.join(summary.roles)}; {summary.format}, {summary.rows:,} rows, "
                       f"{summary.examples:,} examples]" + ("" if mine else "  ok"))
            for label in ("prompt", "answer"):
                s = summary.lengths.get(label)
                if s:
                    out.append(f"  {'length':<28}{label} {summary.lengths['unit']}: median {s['median']:g}, "
                               f"p95 {s['p95']:g}, max {s['max']} (line {s['max_line']})")
            for finding in mine:
                emit(finding)
        verdict = "FAIL: error-level findings (exit 1)" if self.exit_code else "OK (exit 0)"
        out.append(verdict)
        return "\n".join(out)


# --------------------------------------------------------------------------- normalisation

_APOSTROPHES = "'’‘`´"
_DROP_APOSTROPHES = str.maketrans("", "", _APOSTROPHES)
_ASCII_PUNCTUATION = str.maketrans({c: " " for c in map(chr, range(128))
                                    if not c.isalnum() and not c.isspace() and c not in _APOSTROPHES}
                                   | {c: None for c in _APOSTROPHES})
_NON_WORD = re.compile(r"[\W_]+")


def normalize(text: str) -> str:
    """Text as compared for duplicates: NFKC, case-folded, punctuation dropped, whitespace collapsed.

    Apostrophes vanish ("don't" = "dont"); other punctuation separates words ("a,b" = "a b").
    """
    if text.isascii():  # fast path, same result as the regex below
        return " ".join(text.lower().translate(_ASCII_PUNCTUATION).split())
    text = unicodedata.normalize("NFKC", text).casefold().translate(_DROP_APOSTROPHES)
    return " ".join(_NON_WORD.sub(" ", text).split())


def _snip(text: str | None, width: int = 60) -> str:
    if text is None:
        return "∅"
    text = " ".join(text.split())
    return repr(text if len(text) <= width else text[: width - 1] + "…")


# --------------------------------------------------------------------------- MinHash + LSH

_M64 = np.uint64
_MIX1, _MIX2 = _M64(0xBF58476D1CE4E5B9), _M64(0x94D049BB133111EB)
_NUM_PERM = 128
_WINDOW = 16
"""In an LSH bucket, each member is compared with at most this many neighbours (all pairs in small buckets)."""
_START, _END = "\x02", "\x03"
_BOILERPLATE_MIN_TEXTS = 50
_VERIFY_PER_ITEM = 16
"""A text already verified near-identical to this many others is not verified against more (bounds the work)."""


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, vectorised (uint64 arithmetic wraps)."""
    x = x ^ (x >> _M64(30))
    x = x * _MIX1
    x = x ^ (x >> _M64(27))
    x = x * _MIX2
    return x ^ (x >> _M64(31))


_RNG = np.random.default_rng(20240601)
_PERM_A = _RNG.integers(1, 2**63, size=_NUM_PERM, dtype=np.uint64) * _M64(2) + _M64(1)  # odd multipliers
_PERM_B = _RNG.integers(0, 2**63, size=_NUM_PERM, dtype=np.uint64)
_SHINGLE_MULT = _RNG.integers(1, 2**63, size=10, dtype=np.uint64) * _M64(2) + _M64(1)


def _bands_for(threshold: float) -> tuple[int, int]:
    """(rows per band, bands): the most selective banding that still finds ≥ 99.5% of pairs at `threshold`."""
    best = (1, _NUM_PERM)
    for rows in range(1, 17):
        bands = _NUM_PERM // rows
        if 1 - (1 - threshold**rows) ** bands >= 0.995:
            best = (rows, bands)
    return best


class _Segment:
    """Word-shingle hashes of one text per example, flat, and their MinHash signatures (perm × example)."""

    def __init__(self, texts: Sequence[str], k: int, vocab: dict[str, int], counter: Iterator[int],
                 boilerplate: float) -> None:
        n = len(texts)
        lengths = np.zeros(n, dtype=np.int64)
        words: list[str] = []
        edge_start, edge_end = [_START] * (k - 1), [_END] * (k - 1)
        for i, text in enumerate(texts):
            if text:
                # Edge markers put every word, first and last too, in exactly k shingles: one changed
                # word weighs the same wherever it is, and a text shorter than k still has shingles.
                ws = edge_start + text.split() + edge_end if k > 1 else text.split()
                lengths[i] = len(ws)
                words += ws
        # Word ids: a new word takes the counter's next value (ids are unique, deterministic, not dense).
        ids = np.fromiter(map(vocab.setdefault, words, counter), dtype=np.uint64, count=len(words))
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1])) if n else np.zeros(0, dtype=np.int64)
        per_doc = np.maximum(lengths - k + 1, 0)
        total = len(ids)
        if total >= k:
            mixed = _mix(ids + _M64(0x9E3779B97F4A7C15))
            span = total - k + 1
            combined = mixed[:span] * _SHINGLE_MULT[0]
            for j in range(1, k):
                combined = combined + mixed[j: span + j] * _SHINGLE_MULT[j]
            combined = _mix(combined)
            first = np.repeat(starts, per_doc)
            within = np.arange(int(per_doc.sum())) - np.repeat(np.cumsum(per_doc) - per_doc, per_doc)
            self.hashes = combined[first + within]
        else:
            self.hashes = np.zeros(0, dtype=np.uint64)
        self.offsets = np.concatenate(([0], np.cumsum(per_doc))).astype(np.int64)
        self.boilerplate = self._drop_boilerplate(texts, boilerplate)
        self.present = self.offsets[1:] > self.offsets[:-1]
        self.empty = not len(self.hashes)
        self.sig = self._signatures(n)

    def _drop_boilerplate(self, texts: Sequence[str], share: float) -> int:
        """Drop shingles found in more than `share` of the distinct texts (and in at least 50).

        A long shared template or instruction would otherwise make every pair of examples look
        near-identical (and every pair a candidate): similarity is measured on what varies.
        Returns how many distinct shingles were dropped.
        """
        first: dict[str, int] = {}
        for i, text in enumerate(texts):
            if text:
                first.setdefault(text, i)
        limit = max(_BOILERPLATE_MIN_TEXTS, share * len(first))
        if len(first) <= limit or not len(self.hashes):
            return 0
        distinct = np.zeros(len(texts), dtype=bool)
        distinct[list(first.values())] = True
        counts_per_doc = self.offsets[1:] - self.offsets[:-1]
        values, counts = np.unique(self.hashes[np.repeat(distinct, counts_per_doc)], return_counts=True)
        common = values[counts > limit]
        if not len(common):
            return 0
        keep = ~np.isin(self.hashes, common)
        kept = np.concatenate(([0], np.cumsum(keep)))
        self.offsets = kept[self.offsets]
        self.hashes = self.hashes[keep]
        return len(common)

    def _signatures(self, n: int) -> np.ndarray | None:
        if self.empty:
            return None
        sig = np.full((_NUM_PERM, n), np.iinfo(np.uint32).max, dtype=np.uint32)
        present = self.present
        starts = self.offsets[:-1][present]
        for p in range(_NUM_PERM):
            permuted = ((self.hashes * _PERM_A[p] + _PERM_B[p]) >> _M64(32)).astype(np.uint32)
            sig[p, present] = np.minimum.reduceat(permuted, starts)
        return sig

    def shingles(self, i: int) -> np.ndarray:
        return self.hashes[self.offsets[i]: self.offsets[i + 1]]


def _band_keys(sig: np.ndarray, rows: int, bands: int) -> list[np.ndarray]:
    keys = []
    for band in range(bands):
        key = np.zeros(sig.shape[1], dtype=np.uint64)
        for row in sig[band * rows: (band + 1) * rows]:
            key = _mix(key * _M64(0x100000001B3) + row.astype(np.uint64))
        keys.append(key)
    return keys


def _candidate_pairs(sig: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column pairs (i < j) sharing at least one LSH band whose estimated Jaccard is near `threshold` or above.

    Returns (i, j, estimate), best estimates first.
    """
    m = sig.shape[1]
    nothing = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    if m < 2:
        return nothing
    rows, bands = _bands_for(threshold)
    keys = _band_keys(sig, rows, bands)
    left, right = [], []
    for band, key in enumerate(keys):
        # Members of a bucket sharing a second band sit next to each other, so a big bucket
        # (templated data) is compared within a window, never all pairs.
        order = np.lexsort((keys[(band + 1) % bands], key))
        sorted_keys = key[order]
        for d in range(1, min(_WINDOW, m - 1) + 1):
            same = np.flatnonzero(sorted_keys[d:] == sorted_keys[:-d])
            if not len(same):
                break
            left.append(order[same])
            right.append(order[same + d])
    if not left:
        return nothing
    a, b = np.concatenate(left), np.concatenate(right)
    codes = np.unique(np.minimum(a, b).astype(np.int64) * m + np.maximum(a, b))
    lo, hi = codes // m, codes % m
    estimates = []
    for start in range(0, len(lo), 50_000):
        i, j = lo[start: start + 50_000], hi[start: start + 50_000]
        estimates.append((sig[:, i] == sig[:, j]).mean(axis=0))
    estimate = np.concatenate(estimates)
    margin = 0.15  # ~4 standard errors of a 128-permutation estimate
    keep = np.flatnonzero(estimate >= threshold - margin)
    keep = keep[np.argsort(-estimate[keep], kind="stable")]
    return lo[keep], hi[keep], estimate[keep]


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        parent = self.parent
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self) -> list[list[int]]:
        out: dict[int, list[int]] = {}
        for x in self.parent:
            out.setdefault(self.find(x), []).append(x)
        return [sorted(g) for g in out.values() if len(g) > 1]


# --------------------------------------------------------------------------- the linter


@dataclass
class _File:
    path: Path
    name: str
    format: str = "chat"
    rows: int = 0
    examples: list[int] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    lengths: dict[str, Any] = field(default_factory=dict)
    ids: bool = False


class _StructureLog:
    """Structural problems of one file, one finding per code."""

    TEXT = {
        "bad-json": "line(s) are not valid JSON",
        "missing-messages": "line(s) have no non-empty 'messages' list",
        "bad-message": "line(s) have a message without a valid role (system, user, assistant) and string content",
        "missing-user": "example(s) have no user turn before the answer",
        "missing-answer": "example(s) do not end with an assistant turn (nothing to learn or score against)",
        "empty-assistant": "example(s) have an empty assistant turn (answer)",
        "empty-user": "example(s) have an empty user turn",
        "assistant-first": "example(s) start with an assistant turn (after any system turn)",
        "system-not-first": "example(s) have a system turn that is not the first turn",
        "repeated-role": "example(s) have two user or two assistant turns in a row",
        "bad-row": "row(s) cannot be read with the suite's data.fields",
    }

    def __init__(self) -> None:
        self.hits: dict[str, list[tuple[int, str]]] = {}

    def add(self, code: str, line: int, detail: str) -> None:
        self.hits.setdefault(code, []).append((line, detail))

    def findings(self, name: str) -> list[Finding]:
        out = []
        for code, hits in self.hits.items():
            out.append(Finding(
                "error", code, f"{len(hits)} {self.TEXT[code]}.", name,
                lines=[line for line, _ in hits[:_STORED_LINES]], count=len(hits),
                examples=[f"line {line}: {detail}" for line, detail in hits[:_STORED_LINES]],
            ))
        return out


class _Linter:
    def __init__(self, thresholds: LintThresholds) -> None:
        self.t = thresholds
        self.findings: list[Finding] = []
        self.files: list[_File] = []
        self._by_path: dict[Path, _File] = {}
        # one entry per loaded example, all files together
        self.file_of: list[int] = []
        self.line: list[int] = []
        self.cases: list[Case] = []
        self.system: list[str] = []
        self.user: list[str] = []
        self.prev: list[str] = []
        self.answer: list[str | None] = []
        self.choices: dict[int, str] = {}
        """Multiple-choice options per example: part of the input when inputs are compared."""
        self._prepared = False

    # -- loading -----------------------------------------------------------------------
    def add_file(self, path: Path, role: str, *, fields: FieldMap | None = None, fallback: FieldMap | None = None,
                 ids: bool = False) -> _File:
        """Load a file once (chat JSONL; `fields`: field-mapped; `fallback`: used when rows have no 'messages').

        `ids`: build every Case now, with the ids `load_cases` gives (needed to split a suite's data);
        otherwise chat cases are built only when a check needs one.
        """
        path = Path(path)
        key = path.resolve()
        if key in self._by_path:
            known = self._by_path[key]
            if role not in known.roles:
                known.roles.append(role)
            if ids and not known.ids:
                raise DataError("a suite's data file must be linted before it is passed as a plain file.", file=path)
            return known
        if not path.is_file():
            raise DataError("data file not found.", file=path, hint="Check the path.")
        f = _File(path=path, name=str(path), roles=[role], ids=ids)
        self._by_path[key] = f
        self.files.append(f)
        index = len(self.files) - 1
        log = _StructureLog()
        try:
            rows = self._read(path, log)
        except (OSError, csv.Error) as exc:
            raise DataError(f"cannot read the file: {exc}.", file=path) from None
        if fields is None and fallback is not None and path.suffix.lower() != ".csv":
            first = next((row for _, row in rows if isinstance(row, dict)), None)
            if first is not None and "messages" not in first:
                fields = fallback
        if path.suffix.lower() == ".csv":
            fields = fields or fallback
            if fields is None:
                f.format = "unreadable"
                self.findings.append(Finding("error", "unsupported-format",
                                             "CSV needs a field map: lint it with a suite that declares data.fields.",
                                             f.name))
                return f
        f.format = "fields" if fields is not None else "chat"
        f.rows = len(rows) + sum(len(h) for c, h in log.hits.items() if c == "bad-json")
        seen: dict[str, int] = {}
        render = _renderer() if fields is not None and fields.template else None
        for number, row in rows:
            if fields is None:
                example = self._chat_example(path, number, row, seen if ids else None, log)
            else:
                example = self._mapped_example(path, number, row, fields, seen, render, log)
            if example is not None:
                self._append(index, number, *example)
        if not f.rows:
            self.findings.append(Finding("error", "empty-file", "the file has no rows.", f.name))
        self.findings += log.findings(f.name)
        return f

    def _read(self, path: Path, log: _StructureLog) -> list[tuple[int, Any]]:
        if path.suffix.lower() == ".csv":
            with path.open(newline="", encoding="utf-8", errors="replace") as handle:
                reader = csv.DictReader(handle)
                rows, start = [], 2
                for row in reader:
                    rows.append((start, dict(row)))
                    start = reader.line_num + 1
                return rows
        rows = []
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    log.add("bad-json", number, f"not UTF-8 ({exc.reason} at byte {exc.start})")
                    continue
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                try:
                    rows.append((number, json.loads(line)))
                except json.JSONDecodeError as exc:
                    log.add("bad-json", number, f"{exc.msg} (column {exc.colno})")
        return rows

    def _chat_example(self, path, number, row, seen, log):
        if not isinstance(row, dict) or not isinstance(row.get("messages"), list) or not row["messages"]:
            log.add("missing-messages", number, "no 'messages' list" if not isinstance(row, dict) or "messages" not in row
                    else "'messages' must be a non-empty list")
            return None
        messages = row["messages"]
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                role = m.get("role") if isinstance(m, dict) else None
                log.add("bad-message", number, f"message {i} (role {role!r})")
                return None
        roles = [m["role"] for m in messages]
        if "user" not in roles:
            log.add("missing-user", number, "roles " + " → ".join(roles))
            return None
        if any(r == "system" for r in roles[1:]):
            log.add("system-not-first", number, "roles " + " → ".join(roles))
        first = next((r for r in roles if r != "system"), None)
        if first == "assistant":
            log.add("assistant-first", number, "roles " + " → ".join(roles))
        for i in range(1, len(roles)):
            if roles[i] == roles[i - 1] and roles[i] in ("user", "assistant"):
                log.add("repeated-role", number, f"turns {i - 1} and {i} are both {roles[i]}")
                break
        if roles[-1] != "assistant":
            log.add("missing-answer", number, f"last turn is {roles[-1]}")
        for role, code in (("assistant", "empty-assistant"), ("user", "empty-user")):
            empty = [i for i, m in enumerate(messages) if m["role"] == role and not m["content"].strip()]
            if empty:
                log.add(code, number, f"message {empty[0]}")
        reference = messages[-1]["content"] if roles[-1] == "assistant" else None
        turns = messages[:-1] if reference is not None else messages
        case: Case | tuple = (path, number, row)  # built on demand (see _Linter.case)
        if seen is not None:
            try:
                case = _chat_case(path, number, row, seen)
            except DataError as exc:  # anything data.py rejects that the checks above did not name
                log.add("bad-row", number, exc.message)
                return None
        return (case, [m["content"] for m in turns if m["role"] == "system"],
                [m["content"] for m in turns if m["role"] == "user"],
                [m["content"] for m in turns if m["role"] == "assistant"], reference)

    def _mapped_example(self, path, number, row, fields, seen, render, log):
        try:
            case = _mapped_case(path, number, row, fields, seen, render)
        except DataError as exc:
            log.add("bad-row", number, exc.message + (f" {exc.hint}" if exc.hint else ""))
            return None
        user = [m["content"] for m in case.messages if m["role"] == "user"]
        if not any(u.strip() for u in user):
            log.add("empty-user", number, f"input field '{fields.input or 'template'}' is empty")
        if case.reference is not None and not case.reference.strip():
            log.add("empty-assistant", number, f"reference field '{fields.reference}' is empty")
        return case, [m["content"] for m in case.messages if m["role"] == "system"], user, [], case.reference

    def case(self, i: int) -> Case:
        case = self.cases[i]
        if isinstance(case, tuple):
            case = self.cases[i] = _chat_case(*case, {})
        return case

    def _append(self, file_index, line, case, system, user, prev, answer) -> None:
        self.file_of.append(file_index)
        self.line.append(line)
        self.cases.append(case)
        self.system.append("\n".join(system))
        self.user.append("\n".join(user))
        self.prev.append("\n".join(prev))
        self.answer.append(answer)
        if not isinstance(case, tuple) and case.choices:
            self.choices[len(self.answer) - 1] = "\n".join(case.choices)
        self.files[file_index].examples.append(len(self.cases) - 1)

    # -- normalised texts and signatures -----------------------------------------------------
    def prepare(self) -> None:
        if self._prepared:
            return
        self._prepared = True
        self.n_system = [normalize(s) if s else "" for s in self.system]
        # A multiple-choice question is its stem *and* its options: same stem, other options is another question.
        self.n_user = [normalize(u if i not in self.choices else u + "\n" + self.choices[i])
                       for i, u in enumerate(self.user)]
        self.n_prev = [normalize(p) if p else "" for p in self.prev]
        self.n_answer = [None if a is None else normalize(a) for a in self.answer]
        vocab: dict[str, int] = {}
        counter = itertools.count()
        k, share = self.t.shingle_words, self.t.boilerplate
        self.seg = {
            "user": _Segment(self.n_user, k, vocab, counter, share),
            "prev": _Segment(self.n_prev, k, vocab, counter, share),
            "answer": _Segment([a or "" for a in self.n_answer], k, vocab, counter, share),
        }
        self._sets: dict[tuple[int, tuple[str, ...]], frozenset] = {}

    def _signature(self, cols: np.ndarray, segments: tuple[str, ...]) -> np.ndarray:
        sig = None
        for name in segments:
            part = self.seg[name].sig
            if part is None:
                continue
            sig = part[:, cols] if sig is None else np.minimum(sig, part[:, cols])
        if sig is None:
            sig = np.full((_NUM_PERM, len(cols)), np.iinfo(np.uint32).max, dtype=np.uint32)
        return sig

    def _shingle_set(self, i: int, segments: tuple[str, ...]) -> frozenset:
        key = (i, segments)
        got = self._sets.get(key)
        if got is None:
            got = frozenset().union(*(self.seg[s].shingles(i).tolist() for s in segments))
            self._sets[key] = got
        return got

    def jaccard(self, i: int, j: int, segments: tuple[str, ...]) -> float:
        a, b = self._shingle_set(i, segments), self._shingle_set(j, segments)
        if not a and not b:
            return 1.0
        common = len(a & b)
        return common / (len(a) + len(b) - common)

    def near_pairs(self, reps: Sequence[int], segments: tuple[str, ...],
                   allowed: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                   linked: _UnionFind | None = None) -> list[tuple[int, int, float]]:
        """Pairs (a, b, jaccard), a < b, of positions in `reps` whose texts are near-identical (verified).

        Texts with no shingles left (empty, or nothing but boilerplate) take no part. `allowed`
        filters candidate pairs (vectorised); with `linked`, pairs already in one cluster are not
        verified again, and verified pairs are joined.
        """
        present = np.zeros(len(reps), dtype=bool)
        cols = np.asarray(reps, dtype=np.int64)
        for name in segments:
            present |= self.seg[name].present[cols]
        where = np.flatnonzero(present)
        if len(where) < 2:
            return []
        lo, hi, _ = _candidate_pairs(self._signature(cols[where], segments), self.t.near_duplicate)
        lo, hi = where[lo], where[hi]
        if allowed is not None and len(lo):
            mask = allowed(lo, hi)
            lo, hi = lo[mask], hi[mask]
        out = []
        verified: dict[int, int] = {}
        for a, b in zip(lo.tolist(), hi.tolist(), strict=True):
            if linked is not None and linked.find(a) == linked.find(b):
                continue
            if verified.get(a, 0) >= _VERIFY_PER_ITEM and verified.get(b, 0) >= _VERIFY_PER_ITEM:
                continue
            sim = self.jaccard(reps[a], reps[b], segments)
            if sim >= self.t.near_duplicate:
                out.append((a, b, sim))
                verified[a] = verified.get(a, 0) + 1
                verified[b] = verified.get(b, 0) + 1
                if linked is not None:
                    linked.union(a, b)
        out.sort()
        return out

    def where(self, i: int, relative_to: _File | None = None) -> str:
        f = self.files[self.file_of[i]]
        return f"line {self.line[i]}" if f is relative_to else f"{f.name}:{self.line[i]}"

    # -- per-file checks -----------------------------------------------------------------
    def check_duplicates(self, f: _File) -> None:
        idx = f.examples
        n = len(idx)
        groups: dict[tuple, list[int]] = {}
        for i in idx:
            groups.setdefault((self.n_system[i], self.n_user[i], self.n_prev[i], self.n_answer[i]), []).append(i)
        repeated = [g for g in groups.values() if len(g) > 1]
        extra = sum(len(g) - 1 for g in repeated)
        if extra:
            level = "error" if extra / n > self.t.max_duplicate_rate else "warning"
            self.findings.append(Finding(
                level, "exact-duplicate",
                f"{extra} of {n} examples ({extra / n:.1%}) repeat an earlier one after normalising case, whitespace "
                f"and punctuation ({len(repeated)} group(s); error above {self.t.max_duplicate_rate:.0%}).",
                f.name, lines=[self.line[i] for g in repeated for i in g[1:]][:_STORED_LINES], count=extra, total=n,
                examples=[f"lines {', '.join(str(self.line[i]) for i in g[:6])}{' …' if len(g) > 6 else ''}: "
                          f"{_snip(self.user[g[0]])}" for g in repeated[:_STORED_LINES]],
                details={"groups": [[self.line[i] for i in g] for g in repeated[:100]]},
            ))
        reps = [g[0] for g in groups.values()]
        uf = _UnionFind()
        pairs = self.near_pairs(reps, ("user", "prev", "answer"), linked=uf)
        if not pairs:
            return
        best: dict[int, tuple[int, float]] = {}
        for a, b, sim in pairs:
            best.setdefault(b, (a, sim))
        clusters = uf.groups()
        count = sum(len(c) - 1 for c in clusters)
        level = "error" if count / n > self.t.max_near_duplicate_rate else "warning"
        later = sorted((reps[b], reps[a], sim) for b, (a, sim) in best.items())
        self.findings.append(Finding(
            level, "near-duplicate",
            f"{count} of {n} examples ({count / n:.1%}) are near-duplicates of another (word-shingle Jaccard ≥ "
            f"{self.t.near_duplicate:g}; {len(clusters)} cluster(s); error above {self.t.max_near_duplicate_rate:.0%}).",
            f.name, lines=[self.line[i] for i, _, _ in later[:_STORED_LINES]], count=count, total=n,
            examples=[f"line {self.line[i]} ≈ line {self.line[j]} (similarity {sim:.2f}): {_snip(self.user[i])}"
                      for i, j, sim in later[:_STORED_LINES]],
            details={"pairs": [[self.line[i], self.line[j], round(sim, 4)] for i, j, sim in later[:100]],
                     "clusters": [[self.line[reps[x]] for x in c] for c in clusters[:100]]},
        ))

    def check_contradictions(self, f: _File) -> None:
        idx = [i for i in f.examples if self.n_answer[i] is not None]
        groups: dict[tuple, list[int]] = {}
        for i in idx:
            groups.setdefault((self.n_system[i], self.n_user[i], self.n_prev[i]), []).append(i)
        level = self.t.contradictions
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
                f.name, lines=[self.line[i] for g in conflicts for i in g][:_STORED_LINES], count=len(conflicts),
                total=len(groups),
                examples=[f"lines {', '.join(str(self.line[i]) for i in g[:4])}: {_snip(self.user[g[0]], 40)} → "
                          + " vs ".join(_snip(self.answer[i], 30) for i in g[:3]) for g in conflicts[:_STORED_LINES]],
                details={"groups": [[self.line[i] for i in g] for g in conflicts[:100]]},
            ))
        level = self.t.near_contradictions
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
            if self.n_answer[i] == self.n_answer[j] or self.jaccard(i, j, ("answer",)) >= self.t.near_duplicate:
                continue
            in_diff = set((self.n_user[i] + " " + self.n_prev[i]).split()) ^ set((self.n_user[j] + " " + self.n_prev[j]).split())
            out_diff = set(self.n_answer[i].split()) ^ set(self.n_answer[j].split())
            if out_diff <= in_diff:  # the answers differ only in words the inputs differ in (a changed name, amount...)
                continue
            found.append((i, j, sim))
        if found:
            self.findings.append(Finding(
                level, "near-contradiction",
                f"{len(found)} pair(s) of near-identical inputs (Jaccard ≥ {self.t.near_duplicate:g}, same system "
                "prompt) have answers that differ beyond what the inputs' difference explains.",
                f.name, lines=[self.line[i] for i, _, _ in found[:_STORED_LINES]], count=len(found),
                examples=[f"line {self.line[i]} ≈ line {self.line[j]} (input similarity {sim:.2f}): "
                          f"{_snip(self.answer[i], 30)} vs {_snip(self.answer[j], 30)}" for i, j, sim in found[:_STORED_LINES]],
                details={"pairs": [[self.line[i], self.line[j], round(sim, 4)] for i, j, sim in found[:100]]},
            ))

    def check_format(self, f: _File, checks: list) -> None:
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
                "error" if rate > self.t.max_format_failure_rate else "warning", "format-failures",
                f"{len(failed)} of {len(idx)} answers ({rate:.1%}) fail the suite's format check '{spec.name}' "
                f"(error above {self.t.max_format_failure_rate:.0%}).",
                f.name, lines=[self.line[i] for i, _ in failed[:_STORED_LINES]], count=len(failed), total=len(idx),
                examples=[f"line {self.line[i]}: {reason}" for i, reason in failed[:_STORED_LINES]],
                details={"check": spec.name, "axis": spec.axis},
            ))

    def _json_consistency(self, f: _File, idx: list[int]) -> None:
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
                f.name, lines=[self.line[i] for i in bad[:_STORED_LINES]], count=len(bad), total=len(idx),
                examples=[f"line {self.line[i]}: {_snip(self.answer[i])}" for i in bad[:_STORED_LINES]],
            ))

    def check_lengths(self, f: _File, counter: Callable[[list[str]], list[int]], unit: str,
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
                        f.name, lines=[self.line[i] for i, _ in over[:_STORED_LINES]], count=len(over),
                        total=len(members),
                        examples=[f"line {self.line[i]}: {n} {unit}" for i, n in over[:_STORED_LINES]],
                    ))
        f.lengths = stats

    def check_size(self, label: str, f: _File, idx: Sequence[int]) -> None:
        if self.t.min_examples and len(idx) < self.t.min_examples:
            self.findings.append(Finding(
                "warning", "too-few-examples",
                f"{label} has {len(idx)} examples; fine-tuning usually needs at least {self.t.min_examples} "
                "(threshold min_examples).", f.name, count=len(idx), total=self.t.min_examples,
            ))

    # -- leakage -------------------------------------------------------------------------
    def check_leakage(self, train: Sequence[int], train_label: str, held: Sequence[int], held_label: str,
                      held_file: _File, *, code: str = "leakage") -> list[Finding]:
        """Holdout examples whose user turns match (exactly or nearly) a training example's."""
        level = self.t.leakage
        if level == "off" or not train or not held:
            return []
        train_first: dict[str, int] = {}
        for i in train:
            if self.n_user[i]:
                train_first.setdefault(self.n_user[i], i)
        exact = [(h, train_first[self.n_user[h]]) for h in held if self.n_user[h] in train_first]
        exact_set = {h for h, _ in exact}
        # near: one unit per distinct normalised user text; role bits 1 = train, 2 = holdout
        unit_of: dict[str, int] = {}
        reps: list[int] = []
        role: list[int] = []
        held_members: list[list[int]] = []
        for bit, members in ((1, train), (2, held)):
            for i in members:
                text = self.n_user[i]
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
        for a, b, sim in self.near_pairs(reps, ("user",), crossing):
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
                held_file.name, lines=[self.line[h] for h, _ in exact[:_STORED_LINES]], count=len(exact), total=n,
                examples=[f"{self.where(h, held_file)} = {self.where(t, held_file)}: {_snip(self.user[h], 50)}"
                          for h, t in exact[:_STORED_LINES]],
                details={"train": train_label, "holdout": held_label, "kind": "exact",
                         "pairs": [[self.where(h), self.where(t)] for h, t in exact[:100]]},
            ))
        if near:
            ordered = sorted(near.items())
            out.append(Finding(
                level, "near-" + code if code == "leakage" else code,
                f"{len(near)} of {n} {held_label} examples ({len(near) / n:.1%}) have user turns near-identical "
                f"(Jaccard ≥ {self.t.near_duplicate:g}) to one in {train_label}.",
                held_file.name, lines=[self.line[h] for h, _ in ordered[:_STORED_LINES]], count=len(near), total=n,
                examples=[f"{self.where(h, held_file)} ≈ {self.where(t, held_file)} (similarity {sim:.2f}): "
                          f"{_snip(self.user[h], 50)}"
                          for h, (t, sim) in ordered[:_STORED_LINES]],
                details={"train": train_label, "holdout": held_label, "kind": "near",
                         "pairs": [[self.where(h), self.where(t), round(sim, 4)] for h, (t, sim) in ordered[:100]]},
            ))
        self.findings += out
        return out


# --------------------------------------------------------------------------- suites


@dataclass
class _SuiteSets:
    data: _File
    train_split: list[int] | None
    eval: list[int]
    train_file: _File | None

    @property
    def pool(self) -> list[int]:
        if self.train_file is not None:
            return self.train_file.examples
        return self.train_split or []


def _add_suite(linter: _Linter, suite: Suite) -> _SuiteSets:
    """The suite's data split as `suite.splits` splits it (same case ids, same hash split), with line numbers."""
    data = linter.add_file(suite.data_path, "suite data", fields=suite.fields, ids=True)
    train_split = None
    evaluation = list(data.examples)
    if suite.holdout is not None:
        by_id = {linter.cases[i].id: i for i in data.examples}
        pool, held = holdout_split([linter.cases[i] for i in data.examples], suite.holdout, suite.seed)
        train_split = [by_id[c.id] for c in pool]
        evaluation = [by_id[c.id] for c in held]
    if suite.limit is not None:
        evaluation = evaluation[: suite.limit]
    train_file = None
    if suite.train_path is not None:
        train_file = linter.add_file(suite.train_path, "suite train", fields=suite.fields, ids=True)
    return _SuiteSets(data=data, train_split=train_split, eval=evaluation, train_file=train_file)


def _suite_leakage(linter: _Linter, suite: Suite, sets: _SuiteSets, fewshot: Iterable[int]) -> list[Finding]:
    out: list[Finding] = []
    held_label = "holdout split" if sets.train_split is not None else "evaluation"
    if sets.train_split is not None:
        out += linter.check_leakage(sets.train_split, "the train split", sets.eval, held_label, sets.data)
    if sets.train_file is not None:
        out += linter.check_leakage(sets.train_file.examples, f"the data.train file {sets.train_file.name}", sets.eval,
                                    held_label, sets.data)
    pool = sets.pool
    for k in sorted({int(k) for k in fewshot if int(k) > 0}):
        if len(pool) < k:
            continue
        by_id = {linter.cases[i].id: i for i in pool}
        chosen = [by_id[c.id] for c in select_fewshot([linter.cases[i] for i in pool], k, suite.seed)]
        out += linter.check_leakage(chosen, f"the {k} few-shot examples a fewshot={k} variant puts in every prompt", sets.eval, held_label, sets.data,
                                    code="fewshot-leakage")
    return out


# --------------------------------------------------------------------------- entry points


def _word_counter(texts: list[str]) -> list[int]:
    return [len(t.split()) for t in texts]


def _token_counter(name: str) -> Callable[[list[str]], list[int]]:
    """Token counts with a model's tokenizer (alias, local dir, or a hub id already in the local cache)."""
    from harness.backends.identity import resolve_model_path

    path = resolve_model_path(name)  # the built-in alias converts once (~30 s), then is cached
    from transformers import AutoTokenizer  # heavy: only when token statistics are asked for

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)

    def count(texts: list[str]) -> list[int]:
        out: list[int] = []
        for start in range(0, len(texts), 2048):
            ids = tokenizer(texts[start: start + 2048], add_special_tokens=False)["input_ids"]
            out += [len(x) for x in ids]
        return out

    return count


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
    sets = _add_suite(linter, suite) if suite is not None else None
    train_paths = list(train) or (list(files) if (holdout or sets is not None) else [])
    data_files = [linter.add_file(Path(p), "data", fallback=fallback) for p in files]
    train_files = [linter.add_file(Path(p), "train", fallback=fallback) for p in train_paths]
    held_files = [linter.add_file(Path(p), "holdout", fallback=fallback) for p in holdout]
    linter.prepare()

    # lengths: words unless a tokenizer is named and loads
    unit, counter = "words", _word_counter
    if tokenizer:
        try:
            counter, unit = _token_counter(tokenizer), "tokens"
        except Exception as exc:  # missing transformers, unknown model, not cached: fall back, say so
            linter.findings.append(Finding("info", "tokenizer-unavailable",
                                           f"token counts unavailable ({type(exc).__name__}: {exc}); "
                                           "lengths are in whitespace words."))
    max_tokens = suite.generation.get("max_tokens") if suite is not None else None
    checks = [s for s in suite.scorers if s.axis == "format" and "text" in s.info.needs] if suite is not None else []

    for f in linter.files:
        if not f.examples:
            continue
        linter.check_duplicates(f)
        linter.check_contradictions(f)
        linter.check_format(f, checks)
        linter.check_lengths(f, counter, unit, max_tokens)

    # training-set size
    sized: set[int] = set()
    for f in data_files + train_files:
        if id(f) not in sized and ("data" in f.roles or "train" in f.roles) and f.format != "unreadable":
            sized.add(id(f))
            linter.check_size(f"{f.name}", f, f.examples)
    if sets is not None:
        if sets.train_split is not None:
            linter.check_size(f"the train split of {sets.data.name}", sets.data, sets.train_split)
        if sets.train_file is not None and id(sets.train_file) not in sized:
            linter.check_size(f"data.train {sets.train_file.name}", sets.train_file, sets.train_file.examples)

    # leakage
    for tf in train_files:
        for hf in held_files:
            if tf is not hf:
                linter.check_leakage(tf.examples, f"the training file {tf.name}", hf.examples, "holdout", hf)
        if sets is not None and tf is not sets.data and tf is not sets.train_file:
            linter.check_leakage(tf.examples, f"the training file {tf.name}", sets.eval, "suite evaluation", sets.data)
    if sets is not None:
        _suite_leakage(linter, suite, sets, fewshot)

    order = {f.name: k for k, f in enumerate(linter.files)}
    findings = sorted(linter.findings, key=lambda x: (order.get(x.file, -1), _RANK[x.level], x.code))
    summaries = [FileSummary(f.name, f.format, f.rows, len(f.examples), list(f.roles), f.lengths) for f in linter.files]
    label = "words" if unit == "words" else f"tokens ({tokenizer})"
    return LintReport(summaries, findings, t, label, time.perf_counter() - started)


def holdout_overlap(suite: Suite, *, fewshot: Iterable[int] = (), thresholds: LintThresholds | None = None) -> list[str]:
    """Warnings for `harness run`: the suite's evaluation cases overlapping its train split, its
    data.train file or (for each k in `fewshot`) the k few-shot examples, exactly or nearly (user turns).

    Returns one line per finding (empty when clean). Rows the suite cannot load are ignored here.
    """
    t = thresholds or LintThresholds()
    if t.leakage == "off":
        t = LintThresholds(**{**asdict(t), "leakage": "warning"})
    linter = _Linter(t)
    sets = _add_suite(linter, suite)
    linter.prepare()
    out = []
    for finding in _suite_leakage(linter, suite, sets, fewshot):
        first = "; ".join(finding.examples[:3])
        out.append(f"suite '{suite.name}': {finding.message} First: {first}" if first else
                   f"suite '{suite.name}': {finding.message}")
    return out
