"""Fixtures for the scorer tests."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest


@pytest.fixture
def suite_with(tmp_path):
    """write a tiny chat-JSONL suite whose `scorers:` block is the given YAML; returns its path."""

    def write(scorers_yaml: str, name: str = "tiny.yaml") -> Path:
        data = tmp_path / "data.jsonl"
        data.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"},
                                                 {"role": "assistant", "content": "Hello"}]}) + "\n")
        body = textwrap.indent(textwrap.dedent(scorers_yaml).strip("\n"), "  ")
        path = tmp_path / name
        path.write_text(f"suite: tiny\ndata: {{path: data.jsonl}}\nvariants: [base]\nscorers:\n{body}\n")
        return path

    return write
