"""The one exception family the harness raises on purpose.

Every error a user can cause names the file, the key or line, and what to do about it.
Anything else escaping the harness is a bug.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class HarnessError(Exception):
    """Base class: a problem the user can fix. The CLI prints it without a traceback."""

    exit_code = 2


class ConfigError(HarnessError):
    """`models.toml` or a suite YAML is invalid (unknown key, bad value, missing file)."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        key: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.file = str(file) if file is not None else None
        self.key = key
        self.line = line
        self.hint = hint
        self.message = message
        where = []
        if self.file:
            where.append(self.file + (f":{line}" if line else ""))
        if key:
            where.append(f"key '{key}'")
        text = (", ".join(where) + ": " if where else "") + message
        if hint:
            text += f" {hint}"
        super().__init__(text)


class DataError(ConfigError):
    """A data file cannot be read as cases (bad JSON line, missing field, empty split)."""


class BackendError(HarnessError):
    """A model backend could not load or run (missing package, bad model path, server error)."""


class AdapterError(BackendError):
    """An adapter is missing, mismatched with its base model, or had no effect on outputs."""


class GateError(ConfigError):
    """A gate expression is malformed or names a variant or axis the suite does not have."""


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """A ' Did you mean X?' suffix naming the closest valid option, or a list of valid ones."""
    options = sorted(options)
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f"Did you mean '{close[0]}'?"
    if options:
        return "Valid keys: " + ", ".join(options) + "."
    return ""
