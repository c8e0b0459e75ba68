"""`judge`: an LLM judge, any variant from models.toml, asked a fixed rubric with the reference.

    scorers:
      hallucination:
        judge: {model: judge-variant}                        # rubric: hallucination (default)
      accuracy:
        judge: {model: judge-variant, rubric: correctness}

The runner sends every (case, output) through the judge variant (same cache, same engine pool,
greedy decoding) and hands the judge's reply to the scoring function, which parses it strictly:
the reply must contain exactly one `VERDICT: <label>` line with one of the rubric's two labels.
Anything else is an unparseable verdict, never a guess: it scores as the bad outcome (or stops
the variant with `unparseable: error`). The judge's prompt, raw reply and parsed verdict are kept
in each record's check details.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from harness.scorers.base import OptionError, Output, Score, check_keys, option, scorer
from harness.sources.native import Case


@dataclass(frozen=True)
class Rubric:
    question: str
    good: str
    """The label for the good outcome."""
    bad: str
    value_of_good: float
    """The per-case score when the verdict is `good` (1 - this when `bad`)."""


RUBRICS: dict[str, Rubric] = {
    # Lower is better: 1.0 means the response asserted something the reference does not support.
    "hallucination": Rubric(
        question=("Does the response state anything that contradicts the reference answer or that the "
                  "reference answer does not support? Missing details are fine; invented or wrong ones are not."),
        good="SUPPORTED", bad="UNSUPPORTED", value_of_good=0.0),
    # Higher is better: 1.0 means the response gives the reference's answer.
    "correctness": Rubric(
        question="Does the response give the same answer as the reference answer (wording may differ)?",
        good="CORRECT", bad="INCORRECT", value_of_good=1.0),
}

PROMPT = """You are grading a response to a question against a reference answer.

[Question]
{question}

[Reference answer]
{reference}

[Response]
{response}

{rubric} Reply with one line: "VERDICT: {good}" or "VERDICT: {bad}"."""

_VERDICT = re.compile(r"^\W*verdict\W*:\s*\**\s*([A-Za-z_]+)\b", re.IGNORECASE | re.MULTILINE)


def parse_verdict(reply: str, rubric: Rubric) -> str | None:
    """The rubric label of the reply's one `VERDICT:` line; None when missing, unknown or contradictory."""
    labels = {m.group(1).upper() for m in _VERDICT.finditer(reply or "")}
    if len(labels) != 1:
        return None
    (label,) = labels
    return label if label in (rubric.good, rubric.bad) else None


def _reference_text(reference: Any) -> str:
    if reference is None:
        return "(none given)"
    if isinstance(reference, (list, tuple)):
        return "\n".join(f"- {r}" for r in reference)
    if isinstance(reference, dict):
        return json.dumps(reference, ensure_ascii=False, sort_keys=True)
    return str(reference)


class JudgeScorer:
    """The score function of a `judge` check; the runner reads `variant`, `max_tokens` and `messages`."""

    def __init__(self, variant: str, rubric_name: str, max_tokens: int, unparseable: str) -> None:
        self.variant = variant
        self.rubric_name = rubric_name
        self.rubric = RUBRICS[rubric_name]
        self.max_tokens = max_tokens
        self.unparseable = unparseable

    def messages(self, case: Case, text: str) -> list[dict[str, str]]:
        """The judge's prompt for one output: fixed template, the case's question and reference."""
        prompt = PROMPT.format(question=case.last_user, reference=_reference_text(case.reference), response=text,
                               rubric=self.rubric.question, good=self.rubric.good, bad=self.rubric.bad)
        return [{"role": "user", "content": prompt}]

    def __call__(self, case: Case, output: Output) -> Score:
        if output.judge_reply is None:
            raise RuntimeError("the judge scorer runs inside the harness runner, which asks the judge variant first.")
        verdict = parse_verdict(output.judge_reply, self.rubric)
        details = {"judge": self.variant, "rubric": self.rubric_name,
                   "prompt": self.messages(case, output.text or ""), "raw": output.judge_reply, "verdict": verdict}
        if verdict is None:
            bad = 1.0 - self.rubric.value_of_good
            return Score(bad, f"judge verdict unparseable (expected one 'VERDICT: {self.rubric.good}' or "
                              f"'VERDICT: {self.rubric.bad}' line)", details)
        value = self.rubric.value_of_good if verdict == self.rubric.good else 1.0 - self.rubric.value_of_good
        return Score(value, None if verdict == self.rubric.good else f"judge: {verdict}", details)


@scorer("judge")
def judge(options: Any, ctx) -> JudgeScorer:
    """LLM judge (a models.toml variant) with a fixed rubric: hallucination (default) or correctness."""
    options = check_keys(options, {"model", "rubric", "max_tokens", "unparseable"})
    variant = option(options, "model", str)
    if not variant.strip():
        raise OptionError("must name a variant from models.toml.", "model")
    rubric = option(options, "rubric", str, "hallucination")
    if rubric not in RUBRICS:
        raise OptionError(f"unknown rubric '{rubric}'; one of: {', '.join(RUBRICS)}.", "rubric")
    max_tokens = option(options, "max_tokens", int, 256)
    if max_tokens < 4:
        raise OptionError("must be at least 4 (room for 'VERDICT: ...').", "max_tokens")
    unparseable = option(options, "unparseable", str, "fail")
    if unparseable not in ("fail", "error"):
        raise OptionError("must be 'fail' (score as the bad outcome) or 'error' (stop the variant).", "unparseable")
    return JudgeScorer(variant, rubric, max_tokens, unparseable)
