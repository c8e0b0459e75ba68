"""Shared fixtures: small projects on disk with a scripted fake backend.

Fixtures only: the helpers tests import (REPO, write, write_jsonl, chat_rows, ...) live in tests/helpers.py.
"""

from __future__ import annotations

import os

import pytest

from tests.helpers import chat_rows, register_fake_responders, write, write_jsonl


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


register_fake_responders()
