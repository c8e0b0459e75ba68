"""Helpers of the bad-input catalogue (imported as `bad_input_helpers`; pytest puts this folder on
sys.path): a small valid project on the fake backend, and how each case breaks it. The CLI runs
in-process; every bad input must give exit 2, name the file and the line or key, print no
traceback and write nothing."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

MODELS = """\
[defaults]
backend = "fake"
model = "fake-model"

[variants.base]
fake = {default = "{\\"a\\": 1}"}

[variants.rec]
outputs = "outputs.jsonl"
"""

SUITE = """\
suite: s
data: {path: data/cases.jsonl}
variants: [base, rec]
generation: {max_tokens: 16}
scorers:
  format: {json_schema: schemas/s.json}
  accuracy: exact_match
gates:
  - base.format >= 0.5
"""

ROWS = [{"id": f"q{i}", "messages": [{"role": "user", "content": f"What is {i} + {i}?"},
                                     {"role": "assistant", "content": str(2 * i)}]} for i in range(4)]


def make_project(root: Path) -> Path:
    (root / "suites" / "data").mkdir(parents=True)
    (root / "suites" / "schemas").mkdir()
    (root / "models.toml").write_text(MODELS, encoding="utf-8")
    (root / "suites" / "s.yaml").write_text(SUITE, encoding="utf-8")
    (root / "suites" / "data" / "cases.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    (root / "suites" / "schemas" / "s.json").write_text('{"type": "object"}', encoding="utf-8")
    (root / "outputs.jsonl").write_text("".join(json.dumps({"case_id": r["id"], "output": r["messages"][1]["content"]})
                                                + "\n" for r in ROWS), encoding="utf-8")
    return root


def put(root: Path, rel: str, text: str | bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def edit(root: Path, rel: str, old: str, new: str) -> None:
    path = root / rel
    text = path.read_text(encoding="utf-8")
    assert old in text, (rel, old)
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@dataclass
class Bad:
    """One bad input: how to break the project, the command, and what the message must name."""

    id: str
    area: str
    mutate: Callable[[Path], None]
    names: list[str]
    """Substrings the error must contain: the file (by name) and the line ('file:N') or key."""
    command: str = "run"
    extra_args: list[str] = field(default_factory=list)


def cli_args(root: Path, bad: Bad) -> list[str]:
    models = ["--models", str(root / "models.toml")]
    if bad.command == "models":
        return ["models", *models]
    return ["run", str(root / "suites"), *models, "--out", str(root / "reports" / "runs"),
            "--cache", str(root / "cache" / "gen.sqlite"), "--no-baselines", "--no-progress", *bad.extra_args]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
