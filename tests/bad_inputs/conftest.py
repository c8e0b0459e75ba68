"""Fixtures of the bad-input catalogue (tests/bad_inputs): a fresh valid project per case."""

from __future__ import annotations

import pytest
from bad_input_helpers import make_project


@pytest.fixture
def bad_project(tmp_path):
    return make_project(tmp_path / "project")
