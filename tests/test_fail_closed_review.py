"""Fail-open cases a new user's review found: each must block, refuse or stay silent as documented."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from harness.analysis.alerts import is_forgetting
from harness.analysis.gates import FAIL, GateResult
from harness.cli import app


def _run(project: Path, *extra: str):
    return CliRunner().invoke(app, ["run", str(project / "suites"), "--models", str(project / "models.toml"),
                                    "--out", str(project / "reports" / "runs"), "--cache",
                                    str(project / "cache.sqlite"), "--no-progress", *extra])


def test_a_failed_variant_is_no_go_in_run_and_compare(project):
    """The baseline variant fails (a bad fake option) and the only gate is on another variant: the run
    printed GO and exited 1, compare said GO and exited 0. Missing evidence is NO-GO everywhere."""
    text = (project / "models.toml").read_text().replace('fake = {default = "no idea"}', 'fake = {defualt = "no idea"}', 1)
    (project / "models.toml").write_text(text)
    result = _run(project)
    assert result.exit_code == 1, result.output
    assert "overall: NO-GO" in result.output and "base failed" in result.output, result.output
    run_dir = result.output.strip().splitlines()[-1]
    compared = CliRunner().invoke(app, ["compare", run_dir])
    assert compared.exit_code == 1 and "NO-GO" in compared.output, compared.output


def test_a_cut_records_file_is_refused(project):
    result = _run(project)
    run_dir = Path(result.output.strip().splitlines()[-1])
    lines = (run_dir / "records.jsonl").read_text().splitlines(keepends=True)
    (run_dir / "records.jsonl").write_text("".join(lines[: len(lines) // 2]))
    compared = CliRunner().invoke(app, ["compare", str(run_dir)])
    assert compared.exit_code == 2 and "manifest says it wrote" in compared.output, compared.output


def test_a_retention_gain_never_raises_a_forgetting_alert():
    """`A.retention <= B.retention + m` on a higher-is-better axis FAILs when A improved: not forgetting."""
    common = dict(suite="s", kind="non-inferiority", verdict=FAIL, reason="", axis="retention", variant="A",
                  baseline="B", margin=0.005, diff=0.06)
    assert not is_forgetting(GateResult(gate="A.retention <= B.retention + 0.005", op="<=", **common))
    assert is_forgetting(GateResult(gate="A.retention >= B.retention - 0.005", op=">=", **{**common, "diff": -0.06}))
