"""Go/no-go reports from a run directory: one report model (`data.build_report`), three renderers
(report.html, report.md, report.json), and the per-case export. plotly and pandas load only when
a page is rendered or a table exported."""

from __future__ import annotations

from pathlib import Path

from harness.report.data import MAX_FLIPS, build_report
from harness.report.export import export_cases

__all__ = ["build_report", "export_cases", "write_report", "MAX_FLIPS"]


def write_report(run_dir: Path | str, baseline: str | None = None, *, max_flips: int = MAX_FLIPS,
                 partial: bool = False) -> dict[str, Path]:
    """Write RUN_DIR/report.html, report.md and report.json from the run's records alone.

    Returns {"html": path, "markdown": path, "json": path}. `baseline` compares every variant with
    that one instead of each suite's own baseline (as `harness compare --baseline`)."""
    from harness.engine.records import _atomic_write, load_run
    from harness.report.html import render_html
    from harness.report.json import render_json
    from harness.report.markdown import render_markdown

    run = load_run(run_dir)
    model = build_report(run, baseline, max_flips=max_flips, partial=partial)
    paths = {"html": run.path / "report.html", "markdown": run.path / "report.md", "json": run.path / "report.json"}
    _atomic_write(paths["json"], render_json(model))
    _atomic_write(paths["markdown"], render_markdown(model))
    _atomic_write(paths["html"], render_html(model))
    return paths
