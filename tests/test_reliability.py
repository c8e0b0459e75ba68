"""Fail closed (issue 19): writes stay under reports/ (or the folder the user named), no green without
evidence, unfinished runs are not taken as finished, interrupted runs lose little and resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import ConfigError, HarnessError
from harness.suite import load_suite
from tests.conftest import write
from tests.test_runner import run_project

HARNESS = [sys.executable, "-m", "harness.cli"]


def cli(cwd: Path, *args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    repo = str(Path(__file__).resolve().parents[1])
    environment = {**os.environ, "PYTHONPATH": repo, "HARNESS_CACHE_DIR": str(cwd / "cache"), **(env or {})}
    return subprocess.run([*HARNESS, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=environment)


# --------------------------------------------------------------------------- finding 2: all writes contained


@pytest.mark.parametrize("name", ["/some/dir", "../../x", "a/b", "..", ".hidden", "a\\b", "x" * 101])
def test_suite_name_that_is_a_path_is_refused_at_load_naming_the_key(tmp_path, name):
    suite = write(tmp_path / "s.yaml", f"suite: {json.dumps(name)}\ndata: {{path: d.jsonl}}\nvariants: [base]\n")
    with pytest.raises(ConfigError) as info:
        load_suite(suite)
    assert info.value.key == "suite" and info.value.line == 1 and info.value.file == str(suite)
    assert "plain name" in str(info.value)


def test_a_file_stem_that_is_not_a_plain_name_needs_a_suite_key(tmp_path):
    suite = write(tmp_path / "my suite.yaml", "data: {path: d.jsonl}\nvariants: [base]\n")
    with pytest.raises(ConfigError) as info:
        load_suite(suite)
    assert info.value.key == "suite" and "suite: ticket-extraction" in str(info.value)


def _tamper_suite_name(run_dir: Path, name: str) -> None:
    """A run directory whose suite name is a path (written before names were checked, or edited)."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    (info,) = manifest["suites"].values()
    manifest["suites"] = {name: info}
    manifest["runs"] = {f"{name}/{key.split('/', 1)[1]}": v for key, v in manifest["runs"].items()}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    records = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    (run_dir / "records.jsonl").write_text("".join(json.dumps({**r, "suite": name}) + "\n" for r in records))


@pytest.mark.parametrize("name", ["../../victim", "/ABSOLUTE/victim"])
def test_bless_never_deletes_or_writes_outside_the_baselines_folder(project, name):
    from harness.baselines import bless

    victim = project / "victim" / "base"
    write(victim / "precious.txt", "do not delete")
    name = name.replace("/ABSOLUTE", str(project))
    result = run_project(project)
    _tamper_suite_name(result.run_dir, name)
    baselines = project / "reports" / "baselines"
    with pytest.raises(HarnessError, match="not a plain name"):
        bless(result.run_dir, ["base"], baselines)
    assert (victim / "precious.txt").read_text() == "do not delete"
    # Through the CLI too: exit 2, the victim untouched.
    done = cli(project, "bless", str(result.run_dir), "--variants", "base", "--baselines", str(baselines))
    assert done.returncode == 2 and "not a plain name" in done.stderr and "Traceback" not in done.stderr
    assert (victim / "precious.txt").read_text() == "do not delete"


def test_bless_replaces_only_what_bless_wrote(project):
    from harness.baselines import bless

    result = run_project(project)
    baselines = project / "reports" / "baselines"
    (target,) = bless(result.run_dir, ["base"], baselines)
    (again,) = bless(result.run_dir, ["base"], baselines)  # its own previous output: replaced
    assert again == target and (target / "records.jsonl").is_file()
    (target / "notes.txt").write_text("mine")  # the user put something there: not the harness's to delete
    with pytest.raises(HarnessError, match="not written by `harness bless`"):
        bless(result.run_dir, ["base"], baselines)
    assert (target / "notes.txt").read_text() == "mine"
    # A symlink planted where the baseline goes, pointing outside: refused, its target untouched.
    outside = project / "outside"
    write(outside / "keep.txt", "keep")
    (target / "notes.txt").unlink()
    for child in target.iterdir():
        child.unlink()
    target.rmdir()
    target.symlink_to(outside, target_is_directory=True)
    with pytest.raises(HarnessError):
        bless(result.run_dir, ["base"], baselines)
    assert (outside / "keep.txt").read_text() == "keep"


def test_forgetting_alert_with_a_path_like_suite_name_is_written_inside_the_alerts_folder(tmp_path):
    from harness.alerts import raise_alerts
    from harness.gates import evaluate_run
    from tests.test_alerts import forgetting_run

    run = forgetting_run()
    gates = evaluate_run(run.records, run.manifest)
    for gate in gates:
        gate.suite = "../../escape/x"
    (outcome,) = raise_alerts(gates, run.records, run.manifest, alerts_dir=tmp_path / "alerts")
    assert outcome.path.parent == (tmp_path / "alerts").resolve() and outcome.path.is_file()
    assert not (tmp_path / "escape").exists()
    assert json.loads(outcome.path.read_text())["suite"] == "../../escape/x"
