"""What `harness lint-data` reports: thresholds, findings, per-file summaries and the report itself."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from harness.errors import ConfigError

LEVELS = ("error", "warning", "info")
SWITCHES = ("error", "warning", "info", "off")
LEVEL_RANK = {"error": 0, "warning": 1, "info": 2}
"""Order of levels in a report (errors first)."""
STORED_LINES = 20
"""Line numbers kept per finding (the count says how many there are in all)."""


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
            raise ConfigError(f"lint threshold '{key}' {message}", hint="See harness.lint.LintThresholds.")

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

        ordered = sorted(self.findings, key=lambda f: LEVEL_RANK[f.level])
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


def snippet(text: str | None, width: int = 60) -> str:
    """`text` on one line, quoted, cut to `width` characters (∅ for None): how findings quote examples."""
    if text is None:
        return "∅"
    text = " ".join(text.split())
    return repr(text if len(text) <= width else text[: width - 1] + "…")
