"""Helpers shared by the tests of every room: paths, small files on disk, chat rows, the fake responders.

Fixtures live in tests/conftest.py; anything a test imports lives here (a test never imports conftest).
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXTERNAL_DATA = REPO / "suites" / "data" / "external"  # public benchmark slices, with their licences (SOURCES.md)


def write(path: Path, text: str) -> Path:
    """Write dedented `text` to `path` (parents created); returns the path."""
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
    """One JSON object per line (parents created); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def arith_responder(request) -> str:
    """The fake backend's `arith` responder: answers 'What is a + b?' correctly."""
    user = request.chat_messages[-1]["content"]
    match = re.search(r"What is (\d+) \+ (\d+)\?", user)
    return str(int(match.group(1)) + int(match.group(2))) if match else "?"


def register_fake_responders() -> None:
    """Register the test responders with the fake backend (conftest does it for every test session;
    a CLI run in a subprocess calls it through a sitecustomize shim)."""
    from harness.backends.fake import register_responder

    register_responder("arith", arith_responder)
