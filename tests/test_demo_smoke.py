"""The repo's demo (docs/demo.md).

- Its precision does not depend on the CPU: every demo variant pins float32 in models.toml, so the
  engine's cache identity is the same on a CPU with native bfloat16 and one without.
- Its suites through `pytest suites/` (the model-CI path; this repo opts in with `harness_suites`)
  on the real default model and the committed adapters, smoke-sized with --harness-limit: every
  suite runs, every gate gets a verdict computed from real outputs, and the run records land in
  the report directory.
- Its default size (the suites' `data.limit`) is below the full data, which `harness run --full`
  (`make demo-full`) runs."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from harness.backends.transformers import backend as transformers_backend
from harness.config.suite import load_suite
from harness.config.variants import load_models
from harness.engine.runner import engine_fingerprint, engine_spec
from tests.helpers import REPO

LIMIT = 6


def _demo_suites():
    known = set(load_models(REPO / "models.toml").variants)
    return [load_suite(p, known_variants=known) for p in sorted((REPO / "suites").glob("*.yaml"))]


def test_demo_variants_pin_float32_whatever_the_cpu(monkeypatch):
    models = load_models(REPO / "models.toml")
    demo_variants = sorted({v for suite in _demo_suites() for v in suite.variants})
    assert demo_variants and all(models.get(v).engine.get("dtype") == "float32" for v in demo_variants)
    fingerprints = {}
    for native_bf16 in (True, False):   # a CPU with AVX512-BF16 / AMX, and one with AVX2 only
        monkeypatch.setattr(transformers_backend, "cpu_has_native_bf16", lambda native=native_bf16: native)
        assert transformers_backend.default_dtype("cpu") == ("bfloat16" if native_bf16 else "float32")
        fingerprints[native_bf16] = {v: engine_fingerprint(engine_spec(models.get(v))) for v in demo_variants}
    assert fingerprints[True] == fingerprints[False]


def test_demo_default_size_is_a_prefix_of_the_full_run():
    for suite in _demo_suites():
        full = suite.without_limit().cases
        assert [c.id for c in suite.cases] == [c.id for c in full[: len(suite.cases)]], suite.name
        if suite.limit is not None:
            assert len(suite.cases) == suite.limit < len(full), suite.name


@pytest.mark.model
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
        assert {v["engine"].get("dtype") for v in manifest["variants"].values()} == {"float32"}, manifest["variants"]
        for suite in manifest["suites"].values():
            assert suite["n_cases"] <= LIMIT
        records = [json.loads(line) for line in (manifest_path.parent / "records.jsonl").read_text().splitlines()]
        assert records and all(r["scores"] for r in records)
