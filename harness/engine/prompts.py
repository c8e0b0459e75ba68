"""Prompt assembly: few-shot turns from the train pool and the variant's system prompt.
Chat templates are applied by the backend that owns the tokenizer."""

from __future__ import annotations

from harness.sources.native import Case, Message


def fewshot_turns(examples: list[Case]) -> list[Message]:
    """Each example as its user turn(s) followed by its reference answer."""
    turns: list[Message] = []
    for example in examples:
        turns += [dict(m) for m in example.messages if m["role"] != "system"]
        turns.append({"role": "assistant", "content": example.reference or ""})
    return turns


def build_messages(case: Case, *, examples: list[Case] = (), system_prompt: str | None = None) -> list[Message]:
    """The chat a variant sees for one case: [system] + few-shot turns + the case's own turns."""
    system = [dict(m) for m in case.messages if m["role"] == "system"]
    if system_prompt is not None:
        system = [{"role": "system", "content": system_prompt}]
    body = [dict(m) for m in case.messages if m["role"] != "system"]
    return system[:1] + fewshot_turns(list(examples)) + body
