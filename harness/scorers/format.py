"""Format compliance: per-case pass/fail checks on the output's shape.

Every scorer here is binary (1.0 pass / 0.0 fail). Several checks on one axis are combined by the
runner (all must pass); each check's own score, reason and details are recorded too.

Shorthands: a scorer whose options are a plain value instead of a mapping reads it as its main
option, e.g. `json_schema: schemas/ticket.json`, `max_words: 50`, `starts_with: "Dear"`,
`required_phrases: [refund, order number]`.
"""

from __future__ import annotations

import itertools
import json
import re
import unicodedata
from pathlib import Path
from typing import Any

from harness.scorers.base import OptionError, Score, check_keys, option, scorer

_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)
_MAX_SPANS = 64
"""How many top-level balanced spans extract_json tries in prose before giving up (keeps it linear)."""
_CLOSER = {"{": "}", "[": "]"}


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _decode_whole(text: str):
    """(value, None) when `text` (stripped) is exactly one JSON value, else (None, error)."""
    stripped = text.strip()
    try:
        return _DECODER.decode(stripped), None
    except json.JSONDecodeError as exc:
        return None, f"not JSON: {exc.msg} at char {exc.pos}"
    except ValueError as exc:
        return None, f"not JSON: {exc}"
    except RecursionError:
        return None, "not JSON: nested too deeply"


def top_level_spans(text: str):
    """Yield (start, end) of each top-level balanced {...} / [...] span of prose, in order.

    Outside brackets the text is prose (quotes there mean nothing); inside, JSON strings (with
    escapes) are skipped so a bracket in a string does not count. A span that never closes, or
    closes with the wrong bracket, ends the scan: nothing after or inside a broken span is yielded,
    so a fragment nested in a truncated object is never taken for the answer.
    """
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char not in _CLOSER:
            i += 1
            continue
        start, stack, in_string, j = i, [_CLOSER[char]], False, i + 1
        while j < n and stack:
            c = text[j]
            if in_string:
                if c == "\\":
                    j += 1
                elif c == '"':
                    in_string = False
            elif c == '"':
                in_string = True
            elif c in _CLOSER:
                stack.append(_CLOSER[c])
            elif c in "}]":
                if c != stack.pop():
                    return  # mismatched bracket: the span is broken
            j += 1
        if stack:
            return  # never closes (e.g. a truncated object)
        yield start, j
        i = j


def locate_json(text: str, *, from_fence: bool = True, strict: bool = False):
    """Parse JSON from an output; returns (value, error, where). The one extraction rule of the harness.

    `where` says which rule found it: "whole", "fence" or "prose" (None when nothing was found).

    strict: the whole output, stripped of surrounding whitespace, must be one JSON value.
    Not strict, the first of these that holds:
      1. the whole output is one JSON value (any JSON type);
      2. `from_fence`: a fenced block (```json ... ``` or ``` ... ```) whose whole content is one
         JSON value, first such block in order (any JSON type: a fence is an explicit answer);
      3. the first complete top-level JSON *object* in the prose: a balanced {...} span that is
         not inside any other bracket and parses as a whole. A span that never closes (a
         truncated answer) or closes with the wrong bracket ends the search: a fragment nested
         in a broken object is never taken. Arrays in prose (`I cannot help [1].`) are never
         taken: an array counts only as the whole output or a fenced block.
    NaN / Infinity (accepted by Python's json, not by the JSON standard) are not JSON.
    With `from_fence: false` fenced blocks get no special treatment (their text is prose).
    """
    value, error = _decode_whole(text)
    if error is None or strict or error == "not JSON: nested too deeply":
        return value, error, ("whole" if error is None else None)
    if from_fence and "```" in text:
        for match in _FENCE.finditer(text):
            value, fence_error = _decode_whole(match.group(1))
            if fence_error is None:
                return value, None, "fence"
    for k, (start, end) in enumerate(top_level_spans(text)):
        if k >= _MAX_SPANS:
            break
        if text[start] != "{":
            continue
        value, span_error = _decode_whole(text[start:end])
        if span_error is None:
            return value, None, "prose"
    return None, error, None


def extract_json(text: str, *, from_fence: bool = True, strict: bool = False):
    """Parse JSON from an output; returns (value, error). See `locate_json` for the rule."""
    value, error, _ = locate_json(text, from_fence=from_fence, strict=strict)
    return value, error


def _shorthand(options: Any, key: str, kinds: tuple[type, ...]) -> tuple[Any, bool]:
    """A plain value of one of `kinds` stands for {key: value}; returns (options, was_shorthand)."""
    if isinstance(options, kinds) and not (isinstance(options, bool) and bool not in kinds):
        return {key: options}, True
    return options, False


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _snippet(text: str, start: int, end: int, width: int = 40) -> str:
    left = max(0, start - width)
    right = min(len(text), end + width)
    return ("…" if left else "") + text[left:right] + ("…" if right < len(text) else "")


@scorer("json")
def json_format(options, ctx):
    """Output parses as JSON (`strict`: nothing around it; else the rule of `extract_json`).

    `strict` defaults to the suite's `json_strict` (false unless set). Not strict, a fenced block or
    the first complete top-level object in prose is taken; a truncated object never is.
    """
    options = check_keys(options, {"strict", "from_fence"})
    strict = option(options, "strict", bool, ctx.json_strict)
    from_fence = option(options, "from_fence", bool, True)

    def score(case, output):
        _, error, where = locate_json(output.text or "", from_fence=from_fence, strict=strict)
        return Score(0.0, error) if error else Score(1.0, None, {"json_from": where})

    return score


# --------------------------------------------------------------------------- json_schema


def _load_schema(path: Path, key: str | None):
    """Read and check a JSON Schema file; returns a ready validator. Problems raise OptionError."""
    from jsonschema import Draft202012Validator, FormatChecker
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for
    from referencing import Registry, Resource
    from referencing.exceptions import NoSuchResource, Unresolvable
    from referencing.jsonschema import DRAFT202012

    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise OptionError(f"cannot read schema file {path}: {exc}.", key) from None
    except json.JSONDecodeError as exc:
        raise OptionError(
            f"schema file {path} is not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno}).", key
        ) from None
    if not isinstance(schema, (dict, bool)):
        raise OptionError(f"schema file {path} must hold a JSON object (a JSON Schema).", key)
    cls = validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        where = exc.json_path if hasattr(exc, "json_path") else "$"
        raise OptionError(f"schema file {path} is not a valid JSON Schema: {exc.message} (at {where}).", key) from None

    base_dir = path.parent

    def retrieve(uri: str):
        # Offline only: a $ref to another schema file resolves relative to this schema's folder.
        from urllib.parse import unquote, urlparse

        parsed = urlparse(uri)
        if parsed.scheme not in ("", "file"):
            raise NoSuchResource(ref=uri)
        target = Path(unquote(parsed.path))
        target = target if target.is_absolute() else base_dir / target
        try:
            contents = json.loads(target.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise NoSuchResource(ref=uri) from None
        return Resource.from_contents(contents, default_specification=DRAFT202012)

    validator = cls(schema, registry=Registry(retrieve=retrieve), format_checker=FormatChecker())
    plain = cls(schema, registry=Registry(retrieve=retrieve))
    # Resolve every $ref now, so a dangling or remote reference fails at load time, not mid-run.
    refs = [v for k, v in _walk_items(schema) if k == "$ref" and isinstance(v, str)]
    resolver = getattr(plain, "_resolver", None)  # jsonschema offers no public root resolver
    nested_ids = sum(1 for k, v in _walk_items(schema) if k == "$id" and isinstance(v, str))
    nested_ids -= 1 if isinstance(schema, dict) and isinstance(schema.get("$id"), str) else 0
    if refs and not nested_ids and resolver is not None:  # nested $id scopes: a root lookup could fail wrongly
        for ref in refs:
            try:
                resolver.lookup(ref)
            except Unresolvable as exc:
                raise OptionError(
                    f"schema file {path}: $ref '{ref}' cannot be resolved offline ({type(exc).__name__}).", key
                ) from None
    return plain, validator


def _walk_items(value: Any):
    if isinstance(value, dict):
        for k, v in value.items():
            yield k, v
            yield from _walk_items(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk_items(v)


def _error_message(error, limit: int = 300) -> str:
    message = error.message
    return message if len(message) <= limit else message[: limit - 1] + "…"


@scorer("json_schema")
def json_schema(options, ctx):
    """Output's JSON validates against a JSON Schema file (`schema`, or `json_schema: path`).

    Options: `schema` (path, relative to the suite file), `strict` / `from_fence` (as for `json`;
    `strict` defaults to the suite's `json_strict`),
    `check_formats` (default false: `format` keywords such as "email" are checked only when asked,
    and only for formats whose checkers are installed). The schema's `$schema` picks the draft
    (default 2020-12); a missing, unreadable or invalid schema, or a `$ref` that cannot be resolved
    offline, fails when the suite loads. On failure the reason is the most relevant validation
    error's message and JSON path; details list the first errors.
    """
    options, short = _shorthand(options, "schema", (str,))
    options = check_keys(options, {"schema", "strict", "from_fence", "check_formats"})
    key = None if short else "schema"
    if "schema" not in options:
        raise OptionError("is required: the path of a JSON Schema file.", "schema")
    path = ctx.path(options["schema"], key)
    strict = option(options, "strict", bool, ctx.json_strict)
    from_fence = option(options, "from_fence", bool, True)
    check_formats = option(options, "check_formats", bool, False)
    plain, with_formats = _load_schema(path, key)
    validator = with_formats if check_formats else plain

    from jsonschema.exceptions import best_match
    from referencing.exceptions import Unresolvable

    def score(case, output):
        value, error, where = locate_json(output.text or "", from_fence=from_fence, strict=strict)
        if error:
            return Score(0.0, error, {"parsed": False})
        try:
            errors = list(itertools.islice(validator.iter_errors(value), 20))
        except Unresolvable as exc:  # only reachable for $refs inside nested $id scopes
            return Score(0.0, f"schema error: a $ref cannot be resolved offline ({exc})",
                         {"parsed": True, "schema_error": True})
        if not errors:
            return Score(1.0, None, {"parsed": True, "json_from": where})
        best = best_match(errors)
        listed = [{"path": e.json_path, "message": _error_message(e)} for e in errors[:5]]
        return Score(0.0, f"{_error_message(best)} (at {best.json_path})",
                     {"parsed": True, "json_from": where, "errors": listed, "n_errors": len(errors) if len(errors) < 20 else "20+"})

    return score


# --------------------------------------------------------------------------- regex

_FLAG_BITS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}


def _pattern_list(options: dict, key: str) -> list[str]:
    value = options.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise OptionError(f"must be a pattern or a list of patterns, got {value!r}.", key)
    return value


@scorer("regex")
def regex(options, ctx):
    """Output matches every `must_match` pattern and none of `must_not_match` (Python `re`, search).

    `flags`: any of "i" (ignore case), "m" (multiline), "s" (dot matches newline), "x" (verbose).
    A pattern that does not compile fails at load time, naming its key.
    """
    options = check_keys(options, {"must_match", "must_not_match", "flags"})
    flags_text = option(options, "flags", str, "")
    flags = 0
    for char in flags_text:
        if char not in _FLAG_BITS:
            raise OptionError(f"unknown flag {char!r}; use a combination of i, m, s, x.", "flags")
        flags |= _FLAG_BITS[char]
    compiled: dict[str, list[re.Pattern[str]]] = {}
    for key in ("must_match", "must_not_match"):
        compiled[key] = []
        for i, pattern in enumerate(_pattern_list(options, key)):
            try:
                compiled[key].append(re.compile(pattern, flags))
            except re.error as exc:
                raise OptionError(f"pattern {i} {pattern!r} does not compile: {exc}.", key) from None
    if not compiled["must_match"] and not compiled["must_not_match"]:
        raise OptionError("needs at least one pattern in must_match or must_not_match.", "must_match")

    def score(case, output):
        text = output.text or ""
        failed = []
        for pattern in compiled["must_match"]:
            if not pattern.search(text):
                failed.append({"pattern": pattern.pattern, "rule": "must_match"})
        for pattern in compiled["must_not_match"]:
            match = pattern.search(text)
            if match:
                failed.append({"pattern": pattern.pattern, "rule": "must_not_match",
                               "at": match.start(), "snippet": _snippet(text, match.start(), match.end())})
        if not failed:
            return Score(1.0)
        first = failed[0]
        reason = (f"does not match /{first['pattern']}/" if first["rule"] == "must_match"
                  else f"matches forbidden /{first['pattern']}/ at char {first['at']}")
        return Score(0.0, reason, {"failed": failed})

    return score


# --------------------------------------------------------------------------- phrases


def _phrase_options(options: Any) -> tuple[list[str], bool, bool]:
    options, _ = _shorthand(options, "phrases", (list, str))
    options = check_keys(options, {"phrases", "ignore_case", "ignore_whitespace"})
    phrases = option(options, "phrases", (list, str))
    if isinstance(phrases, str):
        phrases = [phrases]
    if not phrases or not all(isinstance(p, str) and p.strip() for p in phrases):
        raise OptionError("must be a non-empty list of non-empty strings.", "phrases")
    return phrases, option(options, "ignore_case", bool, True), option(options, "ignore_whitespace", bool, True)


def _phrase_normalizer(ignore_case: bool, ignore_whitespace: bool):
    def norm(text: str) -> str:
        text = _nfc(text)
        if ignore_case:
            text = text.casefold()
        if ignore_whitespace:
            text = " ".join(text.split())
        return text

    return norm


@scorer("required_phrases")
def required_phrases(options, ctx):
    """Every phrase occurs in the output (`phrases`; `ignore_case` and `ignore_whitespace` default true)."""
    phrases, ignore_case, ignore_ws = _phrase_options(options)
    norm = _phrase_normalizer(ignore_case, ignore_ws)
    wanted = [(p, norm(p)) for p in phrases]

    def score(case, output):
        text = norm(output.text or "")
        missing = [p for p, n in wanted if n not in text]
        if not missing:
            return Score(1.0)
        return Score(0.0, "missing phrase " + ", ".join(repr(p) for p in missing), {"missing": missing})

    return score


@scorer("forbidden_phrases")
def forbidden_phrases(options, ctx):
    """No phrase occurs in the output (`phrases`; `ignore_case` and `ignore_whitespace` default true)."""
    phrases, ignore_case, ignore_ws = _phrase_options(options)
    norm = _phrase_normalizer(ignore_case, ignore_ws)
    banned = [(p, norm(p)) for p in phrases]

    def score(case, output):
        text = norm(output.text or "")
        found = [p for p, n in banned if n in text]
        if not found:
            return Score(1.0)
        return Score(0.0, "contains forbidden phrase " + ", ".join(repr(p) for p in found), {"found": found})

    return score


# --------------------------------------------------------------------------- length


def _limit(options: Any) -> int:
    options, _ = _shorthand(options, "limit", (int,))
    options = check_keys(options, {"limit"})
    limit = option(options, "limit", int)
    if limit < 0:
        raise OptionError(f"must be 0 or more, got {limit}.", "limit")
    return limit


@scorer("max_words")
def max_words(options, ctx):
    """At most `limit` whitespace-separated words (`max_words: 50` or `{limit: 50}`)."""
    limit = _limit(options)

    def score(case, output):
        n = len((output.text or "").split())
        ok = n <= limit
        return Score(1.0 if ok else 0.0, None if ok else f"{n} words > {limit}", {"words": n})

    return score


@scorer("max_chars")
def max_chars(options, ctx):
    """At most `limit` characters (Unicode code points, leading/trailing whitespace not counted)."""
    limit = _limit(options)

    def score(case, output):
        n = len((output.text or "").strip())
        ok = n <= limit
        return Score(1.0 if ok else 0.0, None if ok else f"{n} characters > {limit}", {"chars": n})

    return score


# --------------------------------------------------------------------------- start / end


def _affix_options(options: Any) -> tuple[str, bool, bool]:
    options, _ = _shorthand(options, "text", (str,))
    options = check_keys(options, {"text", "ignore_case", "strip"})
    text = option(options, "text", str)
    if not text:
        raise OptionError("must be a non-empty string.", "text")
    return text, option(options, "ignore_case", bool, False), option(options, "strip", bool, True)


def _affix_scorer(options: Any, at_start: bool):
    affix, ignore_case, strip = _affix_options(options)
    wanted = _nfc(affix.casefold() if ignore_case else affix)

    def score(case, output):
        text = _nfc(output.text or "")
        if strip:
            text = text.strip()
        probe = text.casefold() if ignore_case else text
        ok = probe.startswith(wanted) if at_start else probe.endswith(wanted)
        if ok:
            return Score(1.0)
        seen = text[: len(affix) + 20] if at_start else text[-(len(affix) + 20):]
        where = "start with" if at_start else "end with"
        return Score(0.0, f"does not {where} {affix!r}", {"seen": seen})

    return score


@scorer("starts_with")
def starts_with(options, ctx):
    """Output starts with `text` (`starts_with: "Dear"` or `{text, ignore_case: false, strip: true}`)."""
    return _affix_scorer(options, at_start=True)


@scorer("ends_with")
def ends_with(options, ctx):
    """Output ends with `text` (`ends_with: "Thanks."` or `{text, ignore_case: false, strip: true}`)."""
    return _affix_scorer(options, at_start=False)


# --------------------------------------------------------------------------- IFEval instructions


@scorer("instructions")
def instructions(options, ctx):
    """IFEval-style verifiable instructions read from each case (`mode`: strict | loose).

    The case carries `instruction_id_list` and `kwargs` (field names set by `ids_field` and
    `kwargs_field`) as in IFEval's data; the checks are harness.scorers.ifeval's offline
    re-implementation of IFEval's reference checker, strict or loose as in IFEval.

    Per instruction, details record `{"id", "pass": true|false|null}`; null means the instruction
    cannot be checked offline (e.g. `language:response_language`) or its arguments are malformed,
    and carries a `reason`. Nothing is guessed.

    Case score: 1.0 when every checkable instruction passes and at least one was checkable, else
    0.0. Unchecked instructions are counted in details (`unchecked`). A case with *no* checkable
    instruction scores 0.0 with reason "no instruction checkable offline" and
    `details.uncheckable = true`: a pass needs positive evidence, and a missing check must never
    read as compliance. Every variant gets the same 0.0 on such cases, so paired comparisons
    (McNemar) are unaffected; only an absolute rate is biased downwards, and the flag lets a report
    exclude those cases.
    """
    from harness.scorers import ifeval

    options = check_keys(options, {"mode", "ids_field", "kwargs_field"})
    mode = option(options, "mode", str, "strict")
    if mode not in ("strict", "loose"):
        raise OptionError(f"must be 'strict' or 'loose', got {mode!r}.", "mode")
    ids_field = option(options, "ids_field", str, "instruction_id_list")
    kwargs_field = option(options, "kwargs_field", str, "kwargs")
    loose = mode == "loose"

    def score(case, output):
        ids = case.meta.get(ids_field)
        if isinstance(ids, str):
            ids = [ids]
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            return Score(0.0, f"case has no instruction list ({ids_field})", {"uncheckable": True, "instructions": []})
        kwargs_list = case.meta.get(kwargs_field)
        if kwargs_list is None:
            kwargs_list = [{} for _ in ids]
        text = output.text or ""
        verdicts: list[dict[str, Any]] = []
        if not isinstance(kwargs_list, list) or len(kwargs_list) != len(ids):
            reason = f"{kwargs_field} does not list one argument mapping per instruction"
            verdicts = [{"id": iid, "pass": None, "reason": reason} for iid in ids]
        else:
            for iid, kwargs in zip(ids, kwargs_list, strict=True):
                entry: dict[str, Any] = {"id": iid}
                try:
                    entry["pass"] = ifeval.check_instruction(iid, kwargs, case.last_user, text, loose=loose)
                except (ValueError, TypeError) as exc:
                    entry["pass"] = None
                    entry["reason"] = f"malformed arguments: {exc}"
                else:
                    if entry["pass"] is None:
                        entry["reason"] = ifeval.UNSUPPORTED_REASON.get(iid, "unknown instruction id")
                verdicts.append(entry)
        checked = [v for v in verdicts if v["pass"] is not None]
        unchecked = len(verdicts) - len(checked)
        details = {"mode": mode, "instructions": verdicts, "unchecked": unchecked}
        if not checked:
            return Score(0.0, "no instruction checkable offline", {**details, "uncheckable": True})
        failed = [v["id"] for v in checked if not v["pass"]]
        if failed:
            return Score(0.0, "not followed: " + ", ".join(failed), details)
        return Score(1.0, None, details)

    return score
