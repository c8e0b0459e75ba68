"""Task accuracy: does the output carry the reference answer?"""

from __future__ import annotations

import json
import math
import re
import string
import unicodedata
from collections import Counter
from decimal import Decimal, InvalidOperation
from typing import Any

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
            values = [lp / max(1, len(c.encode("utf-8"))) for lp, c in zip(logprobs, case.choices, strict=True)]
        else:
            values = list(logprobs)
        best = max(range(len(values)), key=lambda i: (values[i], -i))
        hit = best == case.answer
        details = {"picked": best, "answer": case.answer,
                   "logprobs": [round(v, 6) if math.isfinite(v) else None for v in logprobs]}
        return Score(1.0 if hit else 0.0, None if hit else f"picked choice {best}", details)

    return score


# --------------------------------------------------------------------------- token_f1

_F1_PUNCT = re.compile(r"[^\w\s]|_")


def _f1_tokens(text: str) -> list[str]:
    """SQuAD's normalisation (lower case, no punctuation, no articles, single spaces), Unicode-aware."""
    text = unicodedata.normalize("NFC", text).casefold()
    text = _F1_PUNCT.sub(" ", text)
    text = _ARTICLES.sub(" ", text)
    return text.split()


def token_f1_score(prediction: str, reference: str) -> tuple[float, dict]:
    pred, gold = _f1_tokens(prediction), _f1_tokens(reference)
    if not pred or not gold:
        value = float(pred == gold)
        return value, {"precision": value, "recall": value}
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0, {"precision": 0.0, "recall": 0.0}
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall), {"precision": round(precision, 6), "recall": round(recall, 6)}


@scorer("token_f1", binary=False)
def token_f1(options, ctx):
    """SQuAD-style token F1 between output and reference (continuous, 0..1).

    Both sides: lower-cased, punctuation and English articles removed, split on whitespace; F1 of
    the bags of tokens. Both empty counts as 1.0, one empty as 0.0 (as in SQuAD).
    """
    check_keys(options, set())

    def score(case, output):
        if case.reference is None:
            return Score(0.0, "case has no reference")
        value, details = token_f1_score(output.text or "", case.reference)
        return Score(value, None if value == 1.0 else f"token F1 {value:.3f}", details)

    return score


# --------------------------------------------------------------------------- numeric

# A number as people write it: optional sign (ASCII or Unicode minus) and $, thousands commas
# (only in groups of three), decimals, an optional fraction "3/4". Not inside a word or another
# number: "A5", "16-3" (the 3 is positive), "v1.2.3" yield nothing odd.
NUMBER_RE = re.compile(
    r"(?<![\w.])"
    r"(?P<sign>[-−+])?(?P<cur>[$€£])?\s?(?P<sign2>[-−])?"
    r"(?P<int>\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\d)|\d+(?:\.\d+)?|\.\d+)"
    r"(?:\s?/\s?(?P<den>\d+(?!\.\d)))?"
)
_NUMBER_FULL = re.compile(r"\s*" + NUMBER_RE.pattern + r"\s*%?\s*")


def number_value(match: re.Match[str], fractions: bool = True) -> Decimal | None:
    """The value of a `NUMBER_RE` match (thousands separators dropped, sign applied, `a/b` divided when
    `fractions`), or None when the digits do not parse. Shared with the hallucination scorers, which must
    read numbers exactly as the accuracy scorers do."""
    digits = match.group("int").replace(",", "")
    try:
        value = Decimal(digits)
    except InvalidOperation:
        return None
    den = match.group("den")
    if den is not None and fractions:
        denominator = Decimal(den)
        if denominator != 0:
            value = value / denominator
    if match.group("sign") in ("-", "−") or match.group("sign2") in ("-", "−"):
        value = -value
    return value


def find_numbers(text: str, *, fractions: bool = True) -> list[tuple[str, Decimal]]:
    """Every number in `text` as (as written, value), in order."""
    found = []
    for match in NUMBER_RE.finditer(text):
        value = number_value(match, fractions)
        if value is not None:
            found.append((match.group(0).strip(), value))
    return found


def parse_number(text: str) -> Decimal | None:
    """The value of a string that is exactly one number ("$1,299.00", "-3", "12.50", "50%"), else None."""
    match = _NUMBER_FULL.fullmatch(text)
    if match is None:
        return None
    return number_value(match)


def reference_number_text(reference: str) -> str:
    """The part of a reference that holds its answer: after GSM8K's final '####' if present."""
    if "####" in reference:
        return reference.rsplit("####", 1)[1]
    return reference


def _decimal_text(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if len(text) <= 60 else format(value, ".12e")


@scorer("numeric")
def numeric(options, ctx):
    """The output's final number equals the reference's number, within a tolerance.

    The reference's number is the one after GSM8K's final `#### ` when present, else its last
    number. The output's number is the first number after its last `####` when it has one (GSM8K
    style), else its last number. Understands 1,000 / $5 / -$5 / -3 / 0.5 / .5 / 3/4 (as 0.75,
    unless `fractions: false`). Options: `tolerance` (absolute, default 1e-6),
    `relative_tolerance` (default 0: off); a match within either counts.
    """
    options = check_keys(options, {"tolerance", "relative_tolerance", "fractions"})
    tolerance = option(options, "tolerance", float, 1e-6)
    relative = option(options, "relative_tolerance", float, 0.0)
    fractions = option(options, "fractions", bool, True)
    for key, value in (("tolerance", tolerance), ("relative_tolerance", relative)):
        if not math.isfinite(value) or value < 0:
            raise OptionError(f"must be a finite number >= 0, got {value!r}.", key)
    abs_tol = Decimal(repr(tolerance))
    rel_tol = Decimal(repr(relative))

    def score(case, output):
        if case.reference is None:
            return Score(0.0, "case has no reference")
        expected = find_numbers(reference_number_text(case.reference), fractions=fractions)
        if not expected:
            return Score(0.0, "reference has no number")
        expected_text, expected_value = expected[-1] if "####" not in case.reference else expected[0]
        text = output.text or ""
        if "####" in text:
            tail = find_numbers(text.rsplit("####", 1)[1], fractions=fractions)
            got = tail[0] if tail else None
        else:
            got = None
        if got is None:
            numbers = find_numbers(text, fractions=fractions)
            got = numbers[-1] if numbers else None
        details = {"expected": expected_text, "expected_value": _decimal_text(expected_value)}
        if got is None:
            return Score(0.0, "no number in output", details)
        got_text, got_value = got
        details.update({"predicted": got_text, "predicted_value": _decimal_text(got_value)})
        diff = abs(got_value - expected_value)
        hit = diff <= abs_tol or diff <= rel_tol * max(abs(got_value), abs(expected_value))
        return Score(1.0 if hit else 0.0, None if hit else f"{got_text} != {expected_text}", details)

    return score


# --------------------------------------------------------------------------- json_fields

_NULLISH = {"", "null", "none", "n/a", "na", "unknown", "not provided", "not specified", "not mentioned"}


def _norm_string(text: str, ignore_case: bool) -> str:
    text = " ".join(unicodedata.normalize("NFC", text).split())
    return text.casefold() if ignore_case else text


def _as_number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if isinstance(value, str) and len(value) < 100:
        return parse_number(value)
    return None


def values_equal(expected: Any, got: Any, *, ignore_case: bool = True, ignore_order: bool = False) -> bool:
    """Equality after normalisation: strings by case/whitespace, numbers numerically ("12.50" == 12.5)."""
    if expected is None or got is None:
        return expected is None and got is None
    if isinstance(expected, bool) or isinstance(got, bool):
        return isinstance(expected, bool) and isinstance(got, bool) and expected == got
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return False
        for key in set(expected) | set(got):
            if key not in got and expected.get(key) is None:
                continue
            if key not in expected:
                if got[key] is None:
                    continue
                return False
            if key not in got or not values_equal(expected[key], got[key], ignore_case=ignore_case,
                                                  ignore_order=ignore_order):
                return False
        return True
    if isinstance(expected, list):
        if not isinstance(got, list) or len(expected) != len(got):
            return False
        if not ignore_order:
            return all(values_equal(a, b, ignore_case=ignore_case, ignore_order=ignore_order)
                       for a, b in zip(expected, got, strict=True))
        remaining = list(got)
        for item in expected:
            for i, candidate in enumerate(remaining):
                if values_equal(item, candidate, ignore_case=ignore_case, ignore_order=ignore_order):
                    del remaining[i]
                    break
            else:
                return False
        return True
    if isinstance(expected, str) and isinstance(got, str):
        if _norm_string(expected, ignore_case) == _norm_string(got, ignore_case):
            return True
    number_a, number_b = _as_number(expected), _as_number(got)
    if number_a is not None and number_b is not None:
        return number_a == number_b
    return False


def _lookup(value: Any, field_name: str) -> tuple[bool, Any]:
    """(present, value) for a key, or a dotted path when no key has that exact name."""
    if isinstance(value, dict) and field_name in value:
        return True, value[field_name]
    if "." not in field_name:
        return False, None
    for part in field_name.split("."):
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _preview(value: Any, limit: int = 200) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    text = json.dumps(value, ensure_ascii=False)
    return value if len(text) <= limit else text[: limit - 1] + "…"


def _json_fields_factory(options: Any, fixed_mode: str, json_strict: bool = False):
    from harness.scorers.format import locate_json

    if isinstance(options, list):
        options = {"fields": options}
    options = check_keys(options, {"fields", "mode", "ignore_case", "ignore_order", "strict", "from_fence"})
    mode = option(options, "mode", str, fixed_mode)
    if mode not in ("all", "fraction"):
        raise OptionError(f"must be 'all' or 'fraction', got {mode!r}.", "mode")
    if mode != fixed_mode:
        other = "json_fields_fraction" if mode == "fraction" else "json_fields"
        raise OptionError(f"mode '{mode}' is the separate scorer '{other}' (binary and continuous scores "
                          "are different scorers); use that name instead.", "mode")
    fields = option(options, "fields", list, None)
    if fields is not None and (not fields or not all(isinstance(f, str) and f for f in fields)):
        raise OptionError("must be a non-empty list of field names.", "fields")
    ignore_case = option(options, "ignore_case", bool, True)
    ignore_order = option(options, "ignore_order", bool, False)
    strict = option(options, "strict", bool, json_strict)
    from_fence = option(options, "from_fence", bool, True)

    def score(case, output):
        if case.reference is None:
            return Score(0.0, "case has no reference")
        try:
            reference = json.loads(case.reference)
        except (json.JSONDecodeError, RecursionError):
            reference = None
        if not isinstance(reference, dict):
            return Score(0.0, "reference is not a JSON object")
        names = fields if fields is not None else list(reference)
        got, error, where = locate_json(output.text or "", from_fence=from_fence, strict=strict)
        if error or not isinstance(got, dict):
            why = error or "output JSON is not an object"
            per = {n: {"equal": False} for n in names}
            return Score(0.0, why, {"fields": per, "parsed": not error})
        per_field: dict[str, dict[str, Any]] = {}
        for name in names:
            has_ref, expected = _lookup(reference, name)
            has_out, value = _lookup(got, name)
            if not has_ref:
                expected = None  # a listed field the reference lacks: expected absent / null
            if expected is None:
                equal = not has_out or value is None
            else:
                equal = has_out and values_equal(expected, value, ignore_case=ignore_case,
                                                 ignore_order=ignore_order)
            entry: dict[str, Any] = {"equal": equal}
            if not equal:
                entry["expected"] = _preview(expected)
                entry["got"] = _preview(value) if has_out else "<missing>"
            per_field[name] = entry
        wrong = [n for n, e in per_field.items() if not e["equal"]]
        details = {"fields": per_field, "parsed": True, "json_from": where}
        reason = ("fields differ: " + ", ".join(wrong)) if wrong else None
        if fixed_mode == "fraction":
            value = 1.0 if not names else (len(names) - len(wrong)) / len(names)
            return Score(value, reason, details)
        return Score(0.0 if wrong else 1.0, reason, details)

    return score


@scorer("json_fields")
def json_fields(options, ctx):
    """The output's JSON has the reference JSON's values in every listed field (binary).

    The reference is a JSON object (string). `fields`: names or dotted paths (default: all keys of
    the reference; shorthand `json_fields: [name, email]`). Strings compare after case/whitespace
    normalisation (`ignore_case`, default true), numbers numerically ("12.50" == 12.5 == "$12.50"),
    lists in order unless `ignore_order`. A field whose reference value is null passes when the
    output has null or lacks the key; a missing key never matches a non-null reference value.
    `strict` / `from_fence` as for the `json` scorer (`strict` defaults to the suite's
    `json_strict`; not strict, JSON wrapped in prose is credited). Per-field verdicts in details.
    """
    return _json_fields_factory(options, "all", ctx.json_strict)


@scorer("json_fields_fraction", binary=False)
def json_fields_fraction(options, ctx):
    """Fraction of the listed fields whose values match the reference JSON (continuous, 0..1).

    Same options and comparison rules as `json_fields`.
    """
    return _json_fields_factory(options, "fraction", ctx.json_strict)


# --------------------------------------------------------------------------- choice_letter

_ANSWER_LETTER = re.compile(
    r"\banswer\s*(?:is|:|=|would be|should be)?\s*(?:option\s*|choice\s*)?[:\-]?\s*"
    r"(?:[\(\[]\s*(?P<enclosed>[A-Za-z])\s*[\)\]]|(?P<upper>(?-i:[A-Z]))(?![\w'’-])|(?P<lower>(?-i:[a-z]))(?=[\).:]|\s*$))",
    re.IGNORECASE,
)
_LEADING_LETTER = re.compile(r"^\s*(?:\*\*)?[\(\[]?([A-Za-z])(?:[\)\]\.:,]|\*\*|\s*$|\s+[-–—]\s)")
_NOT_A_LETTER_ANSWER = re.compile(r"^\s*(?:e\.g|i\.e)\b", re.IGNORECASE)
_PAREN_LETTER = re.compile(r"[\(\[]([A-Z])[\)\]]")
_OPTION_LETTER = re.compile(r"\b(?:option|choice)\s+\(?([A-Z])\b\)?")
_BARE_LETTER = re.compile(r"(?<![\w'’-])([A-Z])(?![\w'’-])")
_WORD_AFTER = re.compile(r"\s+[a-z]")


def _is_word_use(text: str, letter: str, end: int) -> bool:
    """The capital "A" / "I" followed by a lower-case word is the article / pronoun, not an option."""
    return letter in "AI" and _WORD_AFTER.match(text, end) is not None


def parse_choice_letter(text: str, n_choices: int) -> str | None:
    """The option letter an answer picks ("The answer is (B)", "B.", "b) ...", "Option C"), or None.

    Tried in order: an explicit "answer is X" (the last one wins), a letter opening the output,
    "option X", a single distinct "(X)", a single distinct stand-alone capital letter (not the
    words "A" and "I" in a sentence). Several different candidates at one step mean no answer.
    """
    valid = {chr(65 + i) for i in range(max(0, min(n_choices, 26)))}

    def pick(letters: list[str]) -> str | None:
        letters = [x.upper() for x in letters if x.upper() in valid]
        return letters[0] if len(set(letters)) == 1 else None

    explicit = []
    for m in _ANSWER_LETTER.finditer(text):
        letter = m.group("enclosed") or m.group("upper") or m.group("lower")
        if m.group("upper") and _is_word_use(text, letter, m.end()):
            continue
        if letter.upper() in valid:
            explicit.append(letter.upper())
    if explicit:
        return explicit[-1]
    match = _LEADING_LETTER.match(text)
    if match and match.group(1).upper() in valid and not _NOT_A_LETTER_ANSWER.match(text):
        return match.group(1).upper()
    for pattern in (_OPTION_LETTER, _PAREN_LETTER):
        found = pick(pattern.findall(text))
        if found:
            return found
    bare = [m.group(1) for m in _BARE_LETTER.finditer(text) if not _is_word_use(text, m.group(1), m.end())]
    return pick(bare)


@scorer("choice_letter")
def choice_letter(options, ctx):
    """Multiple choice from generated text: the option letter the output picks equals the answer.

    Letters A, B, C... index the case's choices; the expected letter is `case.answer` (or, for a
    case without choices, a reference that is just a letter such as "B" or "(b)"). `num_choices`
    bounds the valid letters when cases carry no choices (default 26).
    """
    options = check_keys(options, {"num_choices"})
    num_choices = option(options, "num_choices", int, 26)
    if not 2 <= num_choices <= 26:
        raise OptionError(f"must be between 2 and 26, got {num_choices}.", "num_choices")

    def score(case, output):
        n = len(case.choices) if case.choices else num_choices
        if case.answer is not None:
            answer = chr(65 + case.answer)
        else:
            ref = (case.reference or "").strip().strip("().[]: ").upper()
            if len(ref) != 1 or not "A" <= ref <= "Z":
                return Score(0.0, "case has no answer")
            answer = ref
        picked = parse_choice_letter(output.text or "", n)
        details = {"answer": answer, "picked": picked}
        if picked is None:
            return Score(0.0, "no option letter found", details)
        hit = picked == answer
        return Score(1.0 if hit else 0.0, None if hit else f"picked {picked}, answer {answer}", details)

    return score
