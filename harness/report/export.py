"""The per-case table of a run (one row per record) as Parquet or CSV, for pandas / notebooks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.engine.records import Run, load_run
from harness.errors import HarnessError

FORMATS = ("parquet", "csv")
SCORE_PREFIX = "score_"
"""Axis scores become columns `score_<axis>` (so a custom axis never collides with a record field)."""


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


def case_rows(run: Run) -> list[dict[str, Any]]:
    """One flat dict per record: identifiers, text, every axis score, cache/provenance flags."""
    from harness.report.data import as_text, case_input

    axes = list(dict.fromkeys(axis for info in run.manifest.get("suites", {}).values() for axis in info.get("axes", {})))
    axes += [a for a in dict.fromkeys(a for r in run.records for a in r.get("scores", {})) if a not in axes]
    rows = []
    for r in run.records:
        row: dict[str, Any] = {
            "suite": r.get("suite"),
            "variant": r.get("variant"),
            "case_id": r.get("case_id"),
            "task": r.get("task"),
            "cluster": as_text(r.get("cluster")),
            "input": case_input(r),
            "output": as_text(r.get("output")),
            "reference": as_text(r.get("reference")),
        }
        scores = r.get("scores") or {}
        for axis in axes:
            value = scores.get(axis)
            row[SCORE_PREFIX + axis] = None if value is None else float(value)
        row.update({
            "cached": bool(r.get("cached", False)),
            "blessed": bool(r.get("blessed", False)),
            "missing": bool(r.get("missing", False)),
            "finish_reason": r.get("finish_reason"),
            "answer": as_text(r.get("answer")),
            "choices": _json(r.get("choices")),
            "choice_logprobs": _json(r.get("choice_logprobs")),
            "checks": _json(r.get("checks")),
            "prompt": _json(r.get("prompt")),
        })
        rows.append(row)
    return rows


def export_cases(run_dir: Path | str, format: str = "parquet", out: Path | str | None = None) -> Path:
    """Write the per-case table; default `RUN_DIR/cases.<format>`. Returns the path written."""
    if format not in FORMATS:
        raise HarnessError(f"unknown export format '{format}'; use one of: {', '.join(FORMATS)}.")
    run = load_run(run_dir)
    import pandas as pd

    rows = case_rows(run)
    frame = pd.DataFrame(rows)
    if not rows:
        frame = pd.DataFrame(columns=["suite", "variant", "case_id", "input", "output", "reference", "cached"])
    path = Path(out) if out is not None else run.path / f"cases.{format}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if format == "csv":
        frame.to_csv(path, index=False)
    else:
        try:
            frame.to_parquet(path, index=False)
        except ImportError as exc:
            raise HarnessError(f"writing Parquet needs pyarrow ({exc}); install it with `pip install pyarrow`, "
                               "or export CSV: harness export RUN_DIR --format csv.") from None
    return path
