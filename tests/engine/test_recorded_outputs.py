"""Recorded outputs with integrity (issue 19, finding 6): the exact cases of the issue, through the CLI."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from harness.analysis.gates import evaluate_run
from harness.cli import app
from harness.config.suite import load_suite
from harness.engine.records import load_run
from tests.helpers import write_jsonl


def _recorded_project(project, rows, extra_toml=""):
    write_jsonl(project / "recorded.jsonl", rows)
    with (project / "models.toml").open("a") as handle:
        handle.write(f'\n[variants.human]\noutputs = "recorded.jsonl"\n{extra_toml}')
    (project / "suites" / "arith.yaml").write_text(
        "suite: arith\ndata: {path: data/arith.jsonl, holdout: 0.5, seed: 3}\nvariants: [human]\n"
        "scorers:\n  accuracy: exact_match\ngates:\n  - human.accuracy >= 0.9\n")


def _run(project):
    return CliRunner().invoke(app, ["run", str(project / "suites"), "--models", str(project / "models.toml"),
                                    "--out", str(project / "runs"), "--cache", str(project / "c.sqlite"),
                                    "--no-baselines", "--no-progress"])


def test_missing_output_fails_and_the_threshold_gate_counts_every_case(project):
    """A missing output used to be dropped: the gate was computed on fewer cases and run said nothing."""
    cases = load_suite(project / "suites" / "arith.yaml").cases
    _recorded_project(project, [{"case_id": c.id, "output": c.reference} for c in cases[2:]])
    result = _run(project)
    assert f"2 of {len(cases)} without recorded output (failed on every axis)" in result.output
    run = load_run(result.output.strip().splitlines()[-1])
    info = run.manifest["runs"]["arith/human"]["recorded"]
    assert info["missing"] == [c.id for c in cases[:2]] and info["missing_policy"] == "fail"
    gate = evaluate_run(run.records, run.manifest)[0]
    assert gate.n == len(cases)  # every case, the two without output as failures
    scores = {r["case_id"]: r["scores"]["accuracy"] for r in run.records}
    assert [scores[c.id] for c in cases[:2]] == [0.0, 0.0]


def test_missing_drop_is_an_explicit_choice(project):
    cases = load_suite(project / "suites" / "arith.yaml").cases
    _recorded_project(project, [{"case_id": c.id, "output": c.reference} for c in cases[2:]], 'missing = "drop"\n')
    result = _run(project)
    assert "2 of" in result.output and "(left out)" in result.output
    run = load_run(result.output.strip().splitlines()[-1])
    assert evaluate_run(run.records, run.manifest)[0].n == len(cases) - 2


def test_unknown_ids_are_an_error_unless_allowed(project):
    cases = load_suite(project / "suites" / "arith.yaml").cases
    rows = [{"case_id": c.id, "output": c.reference} for c in cases] + [{"case_id": "nope-1", "output": "x"}]
    _recorded_project(project, rows)
    refused = _run(project)
    assert refused.exit_code == 2 and "'nope-1'" in refused.output and f"recorded.jsonl:{len(rows)}" in refused.output
    assert not (project / "runs").exists() and not (project / "c.sqlite").exists()

    with (project / "models.toml").open("a") as handle:
        handle.write("allow_extra = true\n")
    allowed = _run(project)
    assert allowed.exit_code in (0, 1), allowed.output  # a verdict, not a bad-input error
    assert "1 recorded output(s) matching no case ignored" in allowed.output
    from pathlib import Path

    manifest = json.loads((Path(allowed.output.strip().splitlines()[-1]) / "manifest.json").read_text())
    assert manifest["runs"]["arith/human"]["recorded"]["extra_ids"] == ["nope-1"]


def test_outputs_for_the_fewshot_split_are_not_unknown(project):
    """Ids of the suite's other split (or cut by --limit) match a case of the data: not an error."""
    suite = load_suite(project / "suites" / "arith.yaml")
    everything = suite.cases + suite.fewshot_pool
    _recorded_project(project, [{"case_id": c.id, "output": c.reference} for c in everything])
    result = CliRunner().invoke(app, ["run", str(project / "suites"), "--models", str(project / "models.toml"),
                                      "--out", str(project / "runs"), "--cache", str(project / "c.sqlite"),
                                      "--no-baselines", "--no-progress", "--limit", "3"])
    assert result.exit_code in (0, 1), result.output  # a verdict, not a bad-input error
    assert "0 of 3 without recorded output" in result.output


def test_case_set_mismatch_is_a_suite_warning_in_the_report(project):
    from harness.report import write_report

    cases = load_suite(project / "suites" / "arith.yaml").cases
    _recorded_project(project, [{"case_id": c.id, "output": c.reference} for c in cases[1:]])
    result = _run(project)
    run_dir = result.output.strip().splitlines()[-1]
    warnings = load_run(run_dir).manifest["suites"]["arith"]["warnings"]
    assert any(f"1 of {len(cases)} without recorded output (failed on every axis)" in w for w in warnings)
    html = write_report(run_dir)["html"].read_text(encoding="utf-8")
    assert f"1 of {len(cases)} without recorded output" in html
