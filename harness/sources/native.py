"""Cases: loading chat JSONL and field-mapped JSONL/CSV, the holdout split and the few-shot pool."""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import DataError

Message = dict[str, str]
ROLES = {"system", "user", "assistant"}


@dataclass(frozen=True)
class Case:
    """One input with its reference, as scorers and prompts see it."""

    id: str
    messages: tuple[Message, ...]
    """Input turns (system / user / earlier assistant turns); the reference is not among them."""
    reference: str | None = None
    """Expected answer text (the last assistant turn of a chat example)."""
    choices: tuple[str, ...] | None = None
    """Answer options for multiple-choice cases, scored by log-likelihood."""
    answer: int | None = None
    """Index of the correct choice."""
    context: str | None = None
    """Source text an answer must be grounded in (defaults to the user turns)."""
    cluster: str | None = None
    """Cases sharing a cluster key are not independent (clustered standard errors)."""
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    """Every other field of the source row (e.g. IFEval's instruction_id_list)."""

    @property
    def source_text(self) -> str:
        if self.context is not None:
            return self.context
        return "\n".join(m["content"] for m in self.messages if m["role"] in ("user", "system"))

    @property
    def last_user(self) -> str:
        for message in reversed(self.messages):
            if message["role"] == "user":
                return message["content"]
        return ""


@dataclass(frozen=True)
class FieldMap:
    """How to read cases from plain JSONL/CSV rows; values are dotted field paths."""

    input: str | None = None
    reference: str | None = None
    id: str | None = None
    choices: str | list[str] | None = None
    """A field holding a list (or a ';'-separated string), or several such fields concatenated."""
    choice_labels: str | None = None
    answer: str | None = None
    system: str | None = None
    context: str | None = None
    cluster: str | None = None
    template: str | None = None
    """Sandboxed Jinja template over the row's fields, used as the user turn instead of `input`."""


FIELD_KEYS = tuple(FieldMap.__dataclass_fields__)


def get_path(row: Any, path: str) -> Any:
    """Read a dotted path; a list met on the way is mapped over (`question.choices.text`)."""
    value = row
    for part in path.split("."):
        if isinstance(value, list):
            value = [item.get(part) if isinstance(item, dict) else None for item in value]
        elif isinstance(value, dict):
            if part not in value:
                raise KeyError(path)
            value = value[part]
        else:
            raise KeyError(path)
    return value


def _case_id(explicit: Any, messages: tuple[Message, ...], seen: dict[str, int], *,
             path: Path | None = None, line: int | None = None, id_lines: dict[str, int] | None = None) -> str:
    """The case id: the row's own id (two rows with one id are an error), else a content hash.

    Rows without an id that have identical input turns get the same hash; the second and later get
    `-2`, `-3`, ... (documented in docs/data-integrity.md; `harness lint` reports such duplicates).
    """
    if explicit is not None and str(explicit) != "":
        base = str(explicit)
        if id_lines is not None:
            if base in id_lines:
                raise DataError(f"id '{base}' is used by two rows (lines {id_lines[base]} and {line}).",
                                file=path, line=line, hint="Case ids must be unique: rename or remove one row.")
            id_lines[base] = line or 0
    else:
        text = json.dumps(messages, sort_keys=True, ensure_ascii=False)
        base = hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]
    seen[base] = seen.get(base, 0) + 1
    return base if seen[base] == 1 else f"{base}-{seen[base]}"


def _read_csv(path: Path, text: str) -> list[tuple[int, Any]]:
    """CSV rows as dicts with their starting line; a row with too few or too many fields is an error."""
    import io

    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            return []
        if len(set(header)) != len(header):
            dupes = sorted({h for h in header if header.count(h) > 1})
            raise DataError(f"the header names a column twice: {', '.join(dupes)}.", file=path, line=1)
        rows = []
        start = reader.line_num + 1
        for values in reader:
            line = start
            start = reader.line_num + 1
            if not values or all(not v.strip() for v in values) and len(values) <= 1:
                continue
            if len(values) < len(header):
                missing = header[len(values):]
                raise DataError(f"row has {len(values)} of {len(header)} fields; missing: {', '.join(missing)}.",
                                file=path, line=line, key=missing[0],
                                hint="Give every row a value for every column (an empty value is ,,).")
            if len(values) > len(header):
                raise DataError(f"row has {len(values)} fields but the header has {len(header)}.", file=path,
                                line=line, hint="Quote values that contain commas.")
            rows.append((line, dict(zip(header, values, strict=True))))
        return rows
    except csv.Error as exc:
        raise DataError(f"not valid CSV: {exc}.", file=path, line=reader.line_num) from None


def _read_rows(path: Path) -> list[tuple[int, Any]]:
    from harness.config.files import read_text_utf8

    if not path.exists():
        raise DataError(
            "data file not found.", file=path, hint="Check the suite's data.path (relative to the suite file)."
        )
    text = read_text_utf8(path, DataError, bom=True)
    if path.suffix.lower() == ".csv":
        return _read_csv(path, text)
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise DataError(
                f"line is not valid JSON ({exc.msg}, column {exc.colno}).",
                file=path,
                line=number,
                hint="Each line must be one JSON object.",
            ) from None
        except RecursionError:
            raise DataError("line is nested too deeply to read.", file=path, line=number) from None
    return rows


def chat_case(path: Path, number: int, row: Any, seen: dict[str, int], id_lines: dict[str, int] | None = None) -> Case:
    """One chat row (line `number` of `path`) as a Case; `seen` gives repeated ids their suffixes (as
    `load_cases` does). Public for `harness lint-data`, which reads rows one by one to report each problem."""
    if not isinstance(row, dict) or "messages" not in row:
        raise DataError(
            "line has no 'messages' list.",
            file=path,
            line=number,
            hint='Chat data lines look like {"messages": [{"role": "user", "content": "..."}, '
            '{"role": "assistant", "content": "..."}]}; for other layouts declare data.fields.',
        )
    messages = row["messages"]
    if not isinstance(messages, list) or not messages:
        raise DataError("'messages' must be a non-empty list.", file=path, line=number)
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES or not isinstance(
            message.get("content"), str
        ):
            raise DataError(
                f"message {i} needs a 'role' (system, user or assistant) and a string 'content'.",
                file=path,
                line=number,
            )
    turns = tuple({"role": m["role"], "content": m["content"]} for m in messages)
    reference = None
    if turns[-1]["role"] == "assistant":
        reference = turns[-1]["content"]
        turns = turns[:-1]
    if not any(m["role"] == "user" for m in turns):
        raise DataError("the example has no user turn before its answer.", file=path, line=number)
    meta = {k: v for k, v in row.items() if k != "messages"}
    return Case(
        id=_case_id(meta.get("id"), turns, seen, path=path, line=number, id_lines=id_lines),
        messages=turns,
        reference=reference,
        cluster=None if meta.get("cluster") is None else str(meta["cluster"]),
        context=meta.get("context"),
        meta=meta,
    )


def _answer_index(value: Any, choices: tuple[str, ...], labels: list[Any] | None) -> int:
    if labels is not None and value in labels:
        return labels.index(value)
    if isinstance(value, bool):
        raise ValueError(f"answer {value!r} is not a choice index or label")
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        index = int(value)
        if 0 <= index < len(choices):
            return index
    if isinstance(value, str):
        if value.strip() in choices:
            return choices.index(value.strip())
        letter = value.strip().upper()
        if len(letter) == 1 and "A" <= letter <= "Z" and ord(letter) - 65 < len(choices):
            return ord(letter) - 65
    raise ValueError(f"answer {value!r} matches no choice")


def mapped_case(path: Path, number: int, row: Any, fields: FieldMap, seen: dict[str, int],
                render: Callable[..., str] | None, id_lines: dict[str, int] | None = None) -> Case:
    """One field-mapped row as a Case (`render`: a `template_renderer()` when `fields.template` is set).
    Public for `harness lint-data`, like `chat_case`."""
    where = {"file": path, "line": number}
    if not isinstance(row, dict):
        raise DataError("row is not an object.", **where)

    def get(name: str, required: bool = False) -> Any:
        field_path = getattr(fields, name)
        if field_path is None:
            return None
        if isinstance(field_path, list):
            parts = []
            for one in field_path:
                value = get_one(name, one, required)
                if isinstance(value, str):
                    value = [c.strip() for c in value.split(";") if c.strip()]
                parts += value if isinstance(value, list) else [value]
            return list(dict.fromkeys(parts))
        return get_one(name, field_path, required)

    def get_one(name: str, field_path: str, required: bool) -> Any:
        try:
            return get_path(row, field_path)
        except KeyError:
            if required:
                raise DataError(
                    f"row has no field '{field_path}' (data.fields.{name}).",
                    **where,
                    hint="Fix the field map or the data; present fields: " + ", ".join(sorted(row)) + ".",
                ) from None
            return None

    if fields.template is not None:
        user = render(fields.template, row, path, number)
    else:
        user = get("input", required=True)
        if user is None:
            raise DataError(f"field '{fields.input}' (data.fields.input) is null.", **where,
                            hint="Every case needs an input text.")
        if not isinstance(user, str):
            user = json.dumps(user, ensure_ascii=False)
    messages: list[Message] = []
    system = get("system")
    if system:
        messages.append({"role": "system", "content": str(system)})
    messages.append({"role": "user", "content": user})
    turns = tuple(messages)
    reference = get("reference", required=True)
    choices = get("choices", required=True)
    answer = None
    if choices is not None:
        if isinstance(choices, str):
            choices = [c.strip() for c in choices.split(";") if c.strip()]
        if not isinstance(choices, list) or not choices:
            raise DataError(f"choices field '{fields.choices}' is not a non-empty list.", **where)
        choices = tuple(str(c) for c in choices)
        raw_answer = get("answer", required=True)
        if raw_answer is not None:
            labels = get("choice_labels", required=True)
            try:
                answer = _answer_index(raw_answer, choices, labels)
            except ValueError as exc:
                raise DataError(str(exc) + ".", **where) from None
            if reference is None:
                reference = choices[answer]
    cluster = get("cluster")
    context = get("context")
    return Case(
        id=_case_id(get("id"), turns, seen, path=path, line=number, id_lines=id_lines),
        messages=turns,
        reference=None if reference is None else str(reference),
        choices=choices,
        answer=answer,
        context=None if context is None else str(context),
        cluster=None if cluster is None else str(cluster),
        meta=dict(row),
    )


MAX_TEMPLATE_OUTPUT = 1_000_000
"""Characters a data template may produce for one row."""
MAX_TEMPLATE_RANGE = 10_000
"""Items `range()` may yield in one row's rendering (all calls together)."""
MAX_TEMPLATE_NUMBER = 10**12
"""Largest operand or result of `**` and of `*` on a string or list in a template."""


class _Budget(Exception):
    pass


def template_environment():
    """The sandbox data templates render in: immutable, strict undefined, with bounded work.

    Jinja's sandbox blocks attribute access to internals but not resource abuse: `range`, `**` and
    `*` are bounded here, and output beyond MAX_TEMPLATE_OUTPUT characters stops the rendering.
    """
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Bounded(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**"})
        range_left = MAX_TEMPLATE_RANGE

        def call_binop(self, context, operator, left, right):
            if operator == "**":
                if not all(isinstance(v, (int, float)) for v in (left, right)) or abs(right) > 64 or (
                        abs(left) > MAX_TEMPLATE_NUMBER):
                    raise _Budget(f"{left!r} ** {right!r} is too large for a template")
            elif operator == "*":
                sized = next((v for v in (left, right) if isinstance(v, (str, list, tuple))), None)
                count = right if sized is left else left
                if sized is not None and isinstance(count, int) and len(sized) * count > MAX_TEMPLATE_OUTPUT:
                    raise _Budget(f"a sequence repeated {count} times is too large for a template")
            return super().call_binop(context, operator, left, right)

    env = Bounded(undefined=StrictUndefined, keep_trailing_newline=False)

    def bounded_range(*args):
        items = range(*args)
        if len(items) > env.range_left:
            raise _Budget(f"range() of {len(items)} items exceeds the template budget of {MAX_TEMPLATE_RANGE}")
        env.range_left -= len(items)
        return items

    env.globals["range"] = bounded_range
    return env


def _template_line(exc: BaseException) -> int | None:
    """The template line an error was raised at (Jinja rewrites frames to '<template>')."""
    line = getattr(exc, "lineno", None)
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def template_renderer(origin: str = "data.fields.template") -> Callable[..., str]:
    """A function rendering `data.fields.template` for a row, sandboxed and bounded; errors name `origin`."""
    env = template_environment()
    compiled: dict[str, Any] = {}

    def render(template: str, row: dict[str, Any], path: Path | None = None, number: int | None = None) -> str:
        env.range_left = MAX_TEMPLATE_RANGE
        try:
            if template not in compiled:
                compiled[template] = env.from_string(template)
            parts, size = [], 0
            for chunk in compiled[template].generate(**row):
                size += len(chunk)
                if size > MAX_TEMPLATE_OUTPUT:
                    raise _Budget(f"output exceeds {MAX_TEMPLATE_OUTPUT} characters")
                parts.append(chunk)
            return "".join(parts)
        except (Exception, RecursionError) as exc:  # noqa: BLE001 - anything a template does is the user's error
            at = _template_line(exc)
            where = f"{origin}" + (f", template line {at}" if at else "")
            kind = "" if isinstance(exc, _Budget) else f"{type(exc).__name__}: "
            raise DataError(f"{where} failed on this row: {kind}{exc}.", file=path, line=number,
                            key="data.fields.template",
                            hint="Fix the template (or the row); templates run sandboxed with bounded work.") from None

    return render


def load_cases(path: Path, fields: FieldMap | None = None, *, template_origin: str = "data.fields.template") -> list[Case]:
    """Read every case in a data file (chat JSONL unless a field map is given)."""
    rows = _read_rows(path)
    if not rows:
        raise DataError("data file has no rows.", file=path)
    seen: dict[str, int] = {}
    id_lines: dict[str, int] = {}
    if fields is None:
        return [chat_case(path, number, row, seen, id_lines) for number, row in rows]
    render = template_renderer(template_origin) if fields.template else None
    return [mapped_case(path, number, row, fields, seen, render, id_lines) for number, row in rows]


def holdout_split(cases: list[Case], fraction: float, seed: int) -> tuple[list[Case], list[Case]]:
    """Deterministic split by hashing (seed, case id): stable when rows are added or reordered.

    Returns (train, holdout), each in file order.
    """
    def bucket(case: Case) -> float:
        digest = hashlib.sha256(f"{seed}:{case.id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    held = {case.id for case in cases if bucket(case) < fraction}
    return [c for c in cases if c.id not in held], [c for c in cases if c.id in held]


def select_fewshot(pool: list[Case], k: int, seed: int) -> list[Case]:
    """The k few-shot examples: one fixed seeded sample, shared by every case (cheap prefix caching)."""
    if k <= 0:
        return []
    ordered = sorted(pool, key=lambda c: c.id)
    return random.Random(seed).sample(ordered, k)
