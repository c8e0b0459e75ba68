"""The repo's demo suites through `pytest suites/` (the model-CI path) on the real default model and
the committed adapters, smoke-sized with --harness-limit: every suite runs, every gate gets a
verdict computed from real outputs, and the run records land in the report directory."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.model

LIMIT = 6


def test_pytest_suites_runs_the_demo_on_the_real_model(tmp_path):
    xml_path = tmp_path / "junit.xml"
    report_dir = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "suites/", f"--harness-limit={LIMIT}", f"--harness-report={report_dir}",
         f"--junitxml={xml_path}", "-p", "no:cacheprovider", "-q", "-rA"],
        cwd=REPO, capture_output=True, text=True, timeout=1800,
    )
    output = proc.stdout[-6000:] + proc.stderr[-3000:]
    # 0: every gate passed; 1: some gate failed or was INCONCLUSIVE at this size. Anything else is
    # a collection error, an internal error or a usage error.
    assert proc.returncode in (0, 1), output
    cases = ET.parse(xml_path).getroot().iter("testcase")
    runs, gates = {}, {}
    for case in cases:
        file, item = case.get("classname", ""), case.get("name", "")
        failed = case.find("failure") is not None or case.find("error") is not None
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        if item == "run":
            runs[file] = failed
        else:
            gates[f"{file}::{item}"] = props.get("harness.verdict")
    suites = sorted(p.stem for p in (REPO / "suites").glob("*.yaml"))
    assert len(runs) == len(suites), (runs, output)
    assert not any(runs.values()), f"a suite could not run: {runs}\n{output}"
    assert gates and all(v in ("PASS", "FAIL", "INCONCLUSIVE") for v in gates.values()), (gates, output)

    run_dirs = sorted(p for p in report_dir.rglob("manifest.json"))
    assert len(run_dirs) == len(suites), run_dirs
    for manifest_path in run_dirs:
        manifest = json.loads(manifest_path.read_text())
        assert manifest["status"] == "complete" and not manifest["errors"], manifest
        for suite in manifest["suites"].values():
            assert suite["n_cases"] <= LIMIT
        records = [json.loads(line) for line in (manifest_path.parent / "records.jsonl").read_text().splitlines()]
        assert records and all(r["scores"] for r in records)
