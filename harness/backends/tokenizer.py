"""Token counts with a model's tokenizer, for tools that measure text (`harness lint-data --tokenizer`).

transformers is imported only when a counter is built: it lives in the backends room with the other
heavy libraries, so the lint room stays light.
"""

from __future__ import annotations

from collections.abc import Callable


def token_counter(model: str) -> Callable[[list[str]], list[int]]:
    """A function giving each text's token count (no special tokens) with `model`'s tokenizer: the built-in
    alias, a local directory, or a hub id already in the local cache (nothing is downloaded)."""
    from harness.backends.identity import resolve_model_path

    path = resolve_model_path(model)  # the built-in alias converts once (~30 s), then is cached
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)

    def count(texts: list[str]) -> list[int]:
        out: list[int] = []
        for start in range(0, len(texts), 2048):
            ids = tokenizer(texts[start: start + 2048], add_special_tokens=False)["input_ids"]
            out += [len(x) for x in ids]
        return out

    return count
