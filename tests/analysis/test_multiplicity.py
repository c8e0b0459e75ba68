"""One multiplicity policy per run, named everywhere: the same comparison shows the same adjusted p in
the gate reason, `harness compare --json`, the report model and the pytest failure message (issue 18)."""

import json
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from harness.analysis import stats
from harness.analysis.compare import compare_run
from harness.analysis.gates import evaluate_run, parse_gate
from harness.cli import app
from harness.engine.records import RunWriter, load_run
from harness.pytest_plugin import _Evidence, _SuiteOutcome
from harness.report.data import build_report


def _run_dir(tmp_path):
    n = 120
    base = [float(i % 2 == 0) for i in range(n)]
    ft = [1.0 if (i % 5 == 0 or b) else 0.0 for i, b in enumerate(base)]  # gains on 12 cases
    ft2 = [0.0 if i % 13 == 0 else b for i, b in enumerate(base)]  # loses a few
    scores = {"base": base, "ft": ft, "ft2": ft2}
    records = [{"suite": "s", "variant": v, "case_id": f"c{i:03d}", "scores": {"accuracy": x}, "prompt": [],
                "output": "x", "reference": "x"}
               for v, values in scores.items() for i, x in enumerate(values)]
    gates = ["ft.accuracy > base.accuracy", "ft2.accuracy >= base.accuracy - 0.05", "ft.accuracy > ft2.accuracy",
             "ft.accuracy ~= base.accuracy +- 0.15"]
    manifest = {"run_id": "r1", "status": "complete",
                "suites": {"s": {"variants": list(scores), "baseline": "base", "gates": gates,
                                 "axes": {"accuracy": {"direction": "higher", "binary": True}}, "alpha": 0.05,
                                 "gate_mode": "strict", "inconclusive": "fail", "holm": True, "n_cases": n}}}
    run_dir = tmp_path / "run"
    writer = RunWriter(run_dir)
    writer.write_records(records)
    writer.write_manifest(manifest)
    writer.close()
    return run_dir, scores


def test_the_same_adjusted_p_everywhere_a_gate_is_shown(tmp_path):
    run_dir, scores = _run_dir(tmp_path)
    run = load_run(run_dir)
    results = {r.gate: r for r in evaluate_run(run.records, run.manifest)}
    paired = [r for r in results.values() if r.kind != "threshold"]
    assert len(paired) == 4
    holm = stats.holm([r.p_value for r in paired])
    for r, p in zip(paired, holm, strict=True):
        assert r.p_adjusted == pytest.approx(p)
        assert r.extra["p_adjustment"] == "holm" and r.extra["holm_family"] == 4
        assert f"p_adj={r.p_adjusted:.3g} (Holm over 4 paired gate(s) of suite s)" in r.reason

    cli = CliRunner().invoke(app, ["compare", str(run_dir), "--json"])
    assert cli.exit_code in (0, 1), cli.output
    payload = json.loads(cli.stdout)
    by_gate = {g["gate"]: g for g in payload["gates"]}
    report = build_report(run)
    report_gates = {g["gate"]: g for g in report["gates"]}
    assert report["multiplicity"]["gates"].startswith("holm")
    outcome = _SuiteOutcome(suite=SimpleNamespace(alpha=0.05), path=run_dir, variants=list(scores),
                            records=run.records, manifest=run.manifest, results=results)
    for text, r in results.items():
        for shown in (by_gate[text], report_gates[text]):
            assert shown["p_adjusted"] == pytest.approx(r.p_adjusted, rel=1e-12)
            assert shown["p_value"] == pytest.approx(r.p_value, rel=1e-12)
            assert shown["reason"] == r.reason and shown["verdict"] == r.verdict
            assert shown["diff_ci"] == pytest.approx(list(r.diff_ci))
        message = _Evidence(outcome, parse_gate(text), r, verbose=False).numbers_text()
        assert r.reason in message
        p_line = next(line for line in message.splitlines() if "p-value:" in line)
        assert "Holm-adjusted over 4 paired gate(s)" in p_line and f"{r.p_adjusted:.3g}" in p_line

    # The comparison table is exploratory: its adjusted column says it is Benjamini-Hochberg.
    rows, _ = compare_run(run)
    assert all(row["p_adjustment"] == f"benjamini-hochberg over {len(rows)} rows" for row in rows)
    bh = stats.benjamini_hochberg([row["p_value"] for row in rows])
    assert [row["p_adjusted"] for row in rows] == pytest.approx(bh)
    assert payload["comparisons"] == json.loads(json.dumps(rows))
    assert [c["p_adjusted"] for c in report["comparisons"]] == pytest.approx(bh)


def test_compare_rows_are_decided_by_the_interval_they_print(tmp_path):
    run_dir, _ = _run_dir(tmp_path)
    rows, _ = compare_run(load_run(run_dir))
    for row in rows:
        excludes_zero = row["ci_low"] > 0 or row["ci_high"] < 0
        assert (row["p_value"] < 0.05) == excludes_zero
        if row["verdict"] in ("better", "worse"):
            assert excludes_zero
