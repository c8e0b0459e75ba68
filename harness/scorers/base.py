"""The scorer contract: (case, output) -> Score on one axis, built from suite options by name.

A scorer is a registered factory. The factory validates its options when the suite loads (so a
bad option fails before any model runs) and returns the per-case scoring function:

    @scorer("contains")
    def contains(options, ctx):
        needle_case = option(options, "case_sensitive", bool, False)
        def score(case, output):
            ...
            return Score(1.0 if found else 0.0)
        return score
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.sources.native import Case

NEEDS_TEXT = "text"
NEEDS_CHOICES = "choices"


@dataclass(frozen=True)
class Output:
    """What a variant produced for one case."""

    text: str | None = None
    """Generated text (None when no scorer of the suite needs generation)."""
    choice_logprobs: tuple[float, ...] | None = None
    """Sum of log P(choice | prompt) for each of the case's choices, in order."""
    choice_greedy: tuple[bool, ...] | None = None
    """Whether each choice is the model's greedy continuation."""
    judge_reply: str | None = None
    """A `judge` check's judge-variant reply to this output (set by the runner per judge check)."""


@dataclass(frozen=True)
class Score:
    """One per-case score: a number (1/0 for rate axes) and why."""

    value: float
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


ScoreFn = Callable[[Case, Output], Score]


class OptionError(ValueError):
    """A scorer option is invalid; `key` names the option (the loader adds file and line)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class ScorerContext:
    """What a scorer factory may use besides its options."""

    base_dir: Path
    """Directory of the suite file: relative paths in options resolve against it."""
    json_strict: bool = False
    """The suite's `json_strict` default for the `strict` option of json, json_schema, json_fields*."""

    def path(self, value: Any, key: str) -> Path:
        if not isinstance(value, str) or not value:
            raise OptionError("must be a file path.", key)
        path = Path(value)
        path = path if path.is_absolute() else self.base_dir / path
        if not path.exists():
            raise OptionError(f"file not found: {path}.", key)
        return path


@dataclass(frozen=True)
class ScorerInfo:
    name: str
    factory: Callable[[Any, ScorerContext], ScoreFn]
    needs: frozenset[str]
    binary: bool
    doc: str


REGISTRY: dict[str, ScorerInfo] = {}


def scorer(name: str, *, needs: tuple[str, ...] = (NEEDS_TEXT,), binary: bool = True):
    """Register a scorer factory under `name` (the key a suite uses)."""

    def register(factory: Callable[[Any, ScorerContext], ScoreFn]):
        REGISTRY[name] = ScorerInfo(
            name=name,
            factory=factory,
            needs=frozenset(needs),
            binary=binary,
            doc=(factory.__doc__ or "").strip().splitlines()[0] if factory.__doc__ else "",
        )
        return factory

    return register


_MISSING = object()


def option(options: Any, key: str, kind: type | tuple[type, ...], default: Any = _MISSING) -> Any:
    """Read one option from a scorer's options mapping, type-checked."""
    if not isinstance(options, dict):
        options = {}
    if key not in options:
        if default is _MISSING:
            raise OptionError("is required.", key)
        return default
    value = options[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise OptionError(f"must be {names}, got {value!r}.", key)
    return value


def check_keys(options: Any, allowed: set[str]) -> dict[str, Any]:
    """Options as a dict; unknown keys rejected with the closest valid one suggested."""
    from harness.errors import did_you_mean

    if options is None or options is True:
        return {}
    if not isinstance(options, dict):
        raise OptionError(f"options must be a mapping, got {options!r}.")
    for key in options:
        if key not in allowed:
            raise OptionError(f"unknown option. {did_you_mean(str(key), allowed)}", str(key))
    return options
