"""Cases: loading chat JSONL and field-mapped JSONL/CSV, the holdout split and the few-shot pool."""

from __future__ import annotations

import csv
import hashlib
import json
import random
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


def _case_id(explicit: Any, messages: tuple[Message, ...], seen: dict[str, int]) -> str:
    if explicit is not None and str(explicit) != "":
        base = str(explicit)
    else:
        text = json.dumps(messages, sort_keys=True, ensure_ascii=False)
        base = hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]
    seen[base] = seen.get(base, 0) + 1
    return base if seen[base] == 1 else f"{base}-{seen[base]}"


def _read_rows(path: Path) -> list[tuple[int, Any]]:
    if not path.exists():
        raise DataError(
            "data file not found.", file=path, hint="Check the suite's data.path (relative to the suite file)."
        )
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            return [(i + 2, dict(row)) for i, row in enumerate(csv.DictReader(handle))]
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
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
    return rows


def _chat_case(path: Path, number: int, row: Any, seen: dict[str, int]) -> Case:
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
        id=_case_id(meta.get("id"), turns, seen),
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


def _mapped_case(path: Path, number: int, row: Any, fields: FieldMap, seen: dict[str, int], render) -> Case:
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
        user = render(fields.template, row)
    else:
        user = get("input", required=True)
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
        id=_case_id(get("id"), turns, seen),
        messages=turns,
        reference=None if reference is None else str(reference),
        choices=choices,
        answer=answer,
        context=None if context is None else str(context),
        cluster=None if cluster is None else str(cluster),
        meta=dict(row),
    )


def _renderer():
    from jinja2 import StrictUndefined, TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False)
    compiled: dict[str, Any] = {}

    def render(template: str, row: dict[str, Any]) -> str:
        try:
            if template not in compiled:
                compiled[template] = env.from_string(template)
            return compiled[template].render(**row)
        except TemplateError as exc:
            raise DataError(f"data.fields.template failed: {exc}.") from None

    return render


def load_cases(path: Path, fields: FieldMap | None = None) -> list[Case]:
    """Read every case in a data file (chat JSONL unless a field map is given)."""
    rows = _read_rows(path)
    if not rows:
        raise DataError("data file has no rows.", file=path)
    seen: dict[str, int] = {}
    if fields is None:
        return [_chat_case(path, number, row, seen) for number, row in rows]
    render = _renderer() if fields.template else None
    return [_mapped_case(path, number, row, fields, seen, render) for number, row in rows]


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
