"""Helpers for the scorer tests (imported as `scorer_helpers`; pytest puts this folder on sys.path)."""

from __future__ import annotations

from pathlib import Path

from harness.scorers import REGISTRY, Output, ScorerContext
from harness.sources.native import Case

EXTERNAL = Path(__file__).resolve().parents[2] / "suites" / "data" / "external"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def build(name: str, options=None, base_dir: Path | None = None):
    """The per-case scoring function of a registered scorer, as a suite would configure it."""
    return REGISTRY[name].factory(options, ScorerContext(base_dir=base_dir or FIXTURES))


def make_case(user: str = "question", reference: str | None = None, **kwargs) -> Case:
    messages = kwargs.pop("messages", None) or ({"role": "user", "content": user},)
    return Case(id=kwargs.pop("id", "c1"), messages=tuple(messages), reference=reference, **kwargs)


def out(text: str | None = None, logprobs=None) -> Output:
    return Output(text=text, choice_logprobs=None if logprobs is None else tuple(logprobs))


def run(name: str, text: str | None, options=None, **case_kwargs):
    """Score one output with one scorer."""
    return build(name, options)(make_case(**case_kwargs), out(text))
