"""Shared fixtures: small projects on disk with a scripted fake backend, and the real default model."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXTERNAL_DATA = REPO / "suites" / "data" / "external"  # public benchmark slices, with their licences (SOURCES.md)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def chat_rows(n: int, *, prefix: str = "q") -> list[dict]:
    """n chat examples: 'What is {i} + {i}?' -> '{2i}'."""
    return [
        {"id": f"{prefix}{i}", "messages": [{"role": "user", "content": f"What is {i} + {i}?"},
                                            {"role": "assistant", "content": str(2 * i)}]}
        for i in range(n)
    ]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _isolated_cache_dir(tmp_path_factory, monkeypatch):
    """Tests never write to the user's cache; the converted default model is shared between tests."""
    shared = os.environ.get("HARNESS_TEST_MODEL_CACHE") or str(tmp_path_factory.getbasetemp().parent / "harness-model-cache")
    monkeypatch.setenv("HARNESS_CACHE_DIR", shared)


@pytest.fixture
def project(tmp_path):
    """A project folder with models.toml (fake backend), a suite and chat data with a holdout."""
    write_jsonl(tmp_path / "suites" / "data" / "arith.jsonl", chat_rows(40))
    write(tmp_path / "models.toml", """
        [defaults]
        backend = "fake"
        model = "fake-model"

        [variants.base]
        fake = {default = "no idea"}

        [variants.good]
        fake = {echo = false, responder = "arith"}

        [variants.fewshot]
        fewshot = 3
        fake = {default = "no idea"}
    """)
    write(tmp_path / "suites" / "arith.yaml", """
        suite: arith
        data: {path: data/arith.jsonl, holdout: 0.5, seed: 3}
        variants: [base, good]
        generation: {max_tokens: 16}
        scorers:
          accuracy: exact_match
        gates:
          - good.accuracy >= 0.5
    """)
    return tmp_path


def _arith(request) -> str:
    import re

    user = request.chat_messages[-1]["content"]
    match = re.search(r"What is (\d+) \+ (\d+)\?", user)
    return str(int(match.group(1)) + int(match.group(2))) if match else "?"


def _register_fakes():
    from harness.backends.fake import register_responder

    register_responder("arith", _arith)


_register_fakes()
