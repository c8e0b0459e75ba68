"""Task accuracy: does the output carry the reference answer?"""

from __future__ import annotations

import math
import re
import string

from harness.scorers.base import NEEDS_CHOICES, OptionError, Score, check_keys, option, scorer

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.IGNORECASE)
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize(text: str, *, case: bool = True, whitespace: bool = True, punctuation: bool = False,
              articles: bool = False) -> str:
    """Normalise text for comparison; each flag `True` means "ignore differences in it"."""
    if case:
        text = text.lower()
    if punctuation:
        text = text.translate(_PUNCT)
    if articles:
        text = _ARTICLES.sub(" ", text)
    if whitespace:
        text = " ".join(text.split())
    return text


_NORMALIZE_KEYS = {"ignore_case", "ignore_whitespace", "ignore_punctuation", "ignore_articles"}


def _normalizer(options):
    flags = {
        "case": option(options, "ignore_case", bool, True),
        "whitespace": option(options, "ignore_whitespace", bool, True),
        "punctuation": option(options, "ignore_punctuation", bool, False),
        "articles": option(options, "ignore_articles", bool, False),
    }
    return lambda text: normalize(text, **flags)


@scorer("exact_match")
def exact_match(options, ctx):
    """Output equals the reference after normalisation."""
    options = check_keys(options, _NORMALIZE_KEYS)
    norm = _normalizer(options)

    def score(case, output):
        if case.reference is None:
            return Score(0.0, "case has no reference")
        hit = norm(output.text or "") == norm(case.reference)
        return Score(1.0 if hit else 0.0, None if hit else "differs from reference")

    return score


@scorer("contains")
def contains(options, ctx):
    """The normalised reference occurs inside the normalised output."""
    options = check_keys(options, _NORMALIZE_KEYS)
    norm = _normalizer(options)

    def score(case, output):
        if case.reference is None:
            return Score(0.0, "case has no reference")
        hit = norm(case.reference) in norm(output.text or "")
        return Score(1.0 if hit else 0.0, None if hit else "reference not in output")

    return score


@scorer("choice", needs=(NEEDS_CHOICES,))
def choice(options, ctx):
    """Multiple choice by log-likelihood: the most likely choice is the correct one.

    `normalize`: "none" (sum of log-probs, lm-eval's acc) or "bytes" (divided by the choice's
    UTF-8 length, lm-eval's acc_norm).
    """
    options = check_keys(options, {"normalize"})
    mode = option(options, "normalize", str, "none")
    if mode not in ("none", "bytes"):
        raise OptionError("must be 'none' or 'bytes'.", "normalize")

    def score(case, output):
        if not case.choices or case.answer is None:
            return Score(0.0, "case has no choices/answer")
        logprobs = output.choice_logprobs
        if logprobs is None or len(logprobs) != len(case.choices):
            return Score(0.0, "no choice log-likelihoods")
        if mode == "bytes":
            values = [lp / max(1, len(c.encode("utf-8"))) for lp, c in zip(logprobs, case.choices)]
        else:
            values = list(logprobs)
        best = max(range(len(values)), key=lambda i: (values[i], -i))
        hit = best == case.answer
        details = {"picked": best, "answer": case.answer,
                   "logprobs": [round(v, 6) if math.isfinite(v) else None for v in logprobs]}
        return Score(1.0 if hit else 0.0, None if hit else f"picked choice {best}", details)

    return score
