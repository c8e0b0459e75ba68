"""CI smoke run of the demo: `pytest suites/` with a small --harness-limit on the real default
model and the committed adapters. Gate verdicts need the full suites, so the smoke selects each
suite's `::run` item: every suite must load, generate, score and evaluate its gates."""

import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.model


def test_demo_suites_run_under_pytest_smoke_limited(tmp_path):
    report = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "suites/", "--harness-limit", "6", "-k", "run", "-q",
         "-p", "no:cacheprovider", "--harness-report", str(report), "-W", "ignore::DeprecationWarning"],
        cwd=REPO, capture_output=True, text=True, timeout=1800,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    suites = sorted(p.stem for p in (REPO / "suites").glob("*.yaml"))
    assert f"{len(suites)} passed" in out, out[-2000:]
    manifests = list(report.rglob("manifest.json"))
    assert len(manifests) == len(suites)
