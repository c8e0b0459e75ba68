"""The examples `harness lint-data` reads: rows loaded from chat or field-mapped files with every
structural problem logged, texts normalised for comparison, and near-identical pairs found (MinHash
candidates verified with the exact Jaccard similarity)."""

from __future__ import annotations

import csv
import itertools
import json
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import DataError
from harness.lint.findings import STORED_LINES, Finding, LintThresholds
from harness.lint.minhash import NUM_PERM, ShingleSignatures, UnionFind, candidate_pairs
from harness.sources.native import ROLES, Case, FieldMap, chat_case, mapped_case, template_renderer

_VERIFY_PER_ITEM = 16
"""A text already verified near-identical to this many others is not verified against more (bounds the work)."""

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


@dataclass
class DataFile:
    """One file being linted and the positions of its examples in `Examples`."""

    path: Path
    name: str
    format: str = "chat"
    rows: int = 0
    examples: list[int] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    lengths: dict[str, Any] = field(default_factory=dict)
    ids: bool = False


class StructureLog:
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
                lines=[line for line, _ in hits[:STORED_LINES]], count=len(hits),
                examples=[f"line {line}: {detail}" for line, detail in hits[:STORED_LINES]],
            ))
        return out


class Examples:
    """Every example loaded for linting, all files together: where it came from, its text by role
    (system, user, earlier assistant turns, answer), normalised, and the MinHash signatures to find
    near-identical ones. The checks (checks.py, leakage.py) read it and append to `findings`."""

    def __init__(self, thresholds: LintThresholds) -> None:
        self.thresholds = thresholds
        self.findings: list[Finding] = []
        self.files: list[DataFile] = []
        self._by_path: dict[Path, DataFile] = {}
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
                 ids: bool = False) -> DataFile:
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
        f = DataFile(path=path, name=str(path), roles=[role], ids=ids)
        self._by_path[key] = f
        self.files.append(f)
        index = len(self.files) - 1
        log = StructureLog()
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
        render = template_renderer() if fields is not None and fields.template else None
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

    def _read(self, path: Path, log: StructureLog) -> list[tuple[int, Any]]:
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
        case: Case | tuple = (path, number, row)  # built on demand (see Examples.case)
        if seen is not None:
            try:
                case = chat_case(path, number, row, seen)
            except DataError as exc:  # anything sources/native.py rejects that the checks above did not name
                log.add("bad-row", number, exc.message)
                return None
        return (case, [m["content"] for m in turns if m["role"] == "system"],
                [m["content"] for m in turns if m["role"] == "user"],
                [m["content"] for m in turns if m["role"] == "assistant"], reference)

    def _mapped_example(self, path, number, row, fields, seen, render, log):
        try:
            case = mapped_case(path, number, row, fields, seen, render)
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
            case = self.cases[i] = chat_case(*case, {})
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
        k, share = self.thresholds.shingle_words, self.thresholds.boilerplate
        self.seg = {
            "user": ShingleSignatures(self.n_user, k, vocab, counter, share),
            "prev": ShingleSignatures(self.n_prev, k, vocab, counter, share),
            "answer": ShingleSignatures([a or "" for a in self.n_answer], k, vocab, counter, share),
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
            sig = np.full((NUM_PERM, len(cols)), np.iinfo(np.uint32).max, dtype=np.uint32)
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
                   linked: UnionFind | None = None) -> list[tuple[int, int, float]]:
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
        lo, hi, _ = candidate_pairs(self._signature(cols[where], segments), self.thresholds.near_duplicate)
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
            if sim >= self.thresholds.near_duplicate:
                out.append((a, b, sim))
                verified[a] = verified.get(a, 0) + 1
                verified[b] = verified.get(b, 0) + 1
                if linked is not None:
                    linked.union(a, b)
        out.sort()
        return out

    def where(self, i: int, relative_to: DataFile | None = None) -> str:
        f = self.files[self.file_of[i]]
        return f"line {self.line[i]}" if f is relative_to else f"{f.name}:{self.line[i]}"
