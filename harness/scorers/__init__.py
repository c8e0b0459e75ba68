"""Scorers for the four axes (format, accuracy, hallucination, retention) and custom ones."""

from harness.scorers import accuracy, format, hallucination, judge  # noqa: F401  (registers the built-in scorers)
from harness.scorers.base import (
    NEEDS_CHOICES,
    NEEDS_TEXT,
    REGISTRY,
    OptionError,
    Output,
    Score,
    ScorerContext,
    ScorerInfo,
    scorer,
)

__all__ = [
    "NEEDS_CHOICES",
    "NEEDS_TEXT",
    "REGISTRY",
    "OptionError",
    "Output",
    "Score",
    "ScorerContext",
    "ScorerInfo",
    "scorer",
]
