"""Format compliance: per-case pass/fail checks on the output's shape."""

from __future__ import annotations

import json
import re

from harness.scorers.base import Score, check_keys, option, scorer

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


def extract_json(text: str, *, from_fence: bool = True, strict: bool = False):
    """Parse JSON from an output; returns (value, error). `strict`: nothing may surround it."""
    stripped = text.strip()
    try:
        return json.loads(stripped), None
    except json.JSONDecodeError as exc:
        error = f"not JSON: {exc.msg} at char {exc.pos}"
    if strict:
        return None, error
    candidates = []
    if from_fence:
        candidates += [m.group(1).strip() for m in _FENCE.finditer(text)]
    decoder = json.JSONDecoder()
    for start, char in enumerate(text):
        if char in "{[":
            candidates.append(text[start:])
            break
    for candidate in candidates:
        try:
            value, _ = decoder.raw_decode(candidate)
            return value, None
        except json.JSONDecodeError:
            continue
    return None, error


@scorer("json")
def json_format(options, ctx):
    """Output parses as JSON (optionally from a fenced block; `strict`: nothing around it)."""
    options = check_keys(options, {"strict", "from_fence"})
    strict = option(options, "strict", bool, False)
    from_fence = option(options, "from_fence", bool, True)

    def score(case, output):
        _, error = extract_json(output.text or "", from_fence=from_fence, strict=strict)
        return Score(0.0, error) if error else Score(1.0)

    return score
