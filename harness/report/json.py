"""report.json: the report model as it is, for machines (schema `harness.report/1`)."""

from __future__ import annotations

import json
from typing import Any


def render_json(model: dict[str, Any]) -> str:
    return json.dumps(model, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
