"""Fail closed (issue 19): writes stay under reports/ (or the folder the user named), no green without
evidence, unfinished runs are not taken as finished, interrupted runs lose little and resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.config.suite import load_suite
from harness.errors import ConfigError, HarnessError
from tests.engine.test_runner import run_project
from tests.helpers import write

HARNESS = [sys.executable, "-m", "harness.cli"]


def cli(cwd: Path, *args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    repo = str(Path(__file__).resolve().parents[2])
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
    from harness.analysis.baselines import bless

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
    from harness.analysis.baselines import bless

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
    from harness.analysis.alerts import raise_alerts
    from harness.analysis.gates import evaluate_run
    from tests.analysis.test_alerts import forgetting_run

    run = forgetting_run()
    gates = evaluate_run(run.records, run.manifest)
    for gate in gates:
        gate.suite = "../../escape/x"
    (outcome,) = raise_alerts(gates, run.records, run.manifest, alerts_dir=tmp_path / "alerts")
    assert outcome.path.parent == (tmp_path / "alerts").resolve() and outcome.path.is_file()
    assert not (tmp_path / "escape").exists()
    assert json.loads(outcome.path.read_text())["suite"] == "../../escape/x"


# --------------------------------------------------------------------------- finding 3: no evidence, no GO


def test_an_empty_suites_folder_is_exit_2_not_go(project):
    from tests.engine.test_runner import _cli, _conftest_env

    (project / "empty").mkdir()
    done = _cli(project, "run", "empty", "--no-progress", env=_conftest_env(project))
    assert done.returncode == 2 and "no suite files" in done.stderr and "GO" not in done.stdout
    assert not (project / "reports").exists()


def test_variants_matching_nothing_is_exit_2_not_go(project):
    from tests.engine.test_runner import _cli, _conftest_env

    done = _cli(project, "run", "--variants", "fewshot", "--no-progress", env=_conftest_env(project))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "matches no variant of the suites (base, good)" in done.stderr and "overall: GO" not in done.stdout
    assert not (project / "reports").exists()


def test_a_gate_whose_variants_did_not_run_is_not_evaluated_and_blocks(project):
    from tests.engine.test_runner import _cli, _conftest_env, set_suite

    set_suite(project, ["base", "good"], ["good.accuracy >= 0.5", "good.accuracy > base.accuracy"])
    done = _cli(project, "run", "--variants", "good", "--no-progress", env=_conftest_env(project))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "NOT EVALUATED arith: good.accuracy > base.accuracy" in done.stdout
    assert "base did not run" in done.stdout and "overall: NO-GO" in done.stdout
    run_dir = project / done.stdout.strip().splitlines()[-1]
    compared = _cli(project, "compare", str(run_dir), "--json")
    verdicts = {g["gate"]: g["verdict"] for g in json.loads(compared.stdout)["gates"]}
    assert compared.returncode == 1 and verdicts["good.accuracy > base.accuracy"] == "NOT EVALUATED"


def test_no_suites_no_variants_or_no_cases_is_never_go():
    from harness.analysis.evidence import run_verdict

    complete = {"status": "complete"}
    assert run_verdict([], [], {**complete, "suites": {}}) == ("NO-GO", ["the run has no suites: nothing was tested"])
    verdict, problems = run_verdict([], [], {**complete, "suites": {"s": {"variants": []}}})
    assert verdict == "NO-GO" and "ran no variant" in problems[0]
    verdict, problems = run_verdict([], [], {**complete, "suites": {"s": {"variants": ["base"]}}})
    assert verdict == "NO-GO" and "scored no case" in problems[0]
    record = {"suite": "s", "variant": "base", "case_id": "1", "scores": {}}
    assert run_verdict([], [record], {**complete, "suites": {"s": {"variants": ["base"]}}}) == ("GO", [])
    verdict, problems = run_verdict([], [record], {"status": "running", "suites": {"s": {"variants": ["base"]}}})
    assert verdict == "NO-GO" and "did not finish" in problems[0]


def _killed_run(project) -> Path:
    """A real CLI run killed with SIGKILL mid-generation: its manifest still says `running`."""
    import signal
    import sqlite3
    import time

    from tests.engine.test_runner import _conftest_env, set_suite
    from tests.helpers import chat_rows, write_jsonl

    write_jsonl(project / "suites" / "data" / "arith.jsonl", chat_rows(80))
    with (project / "models.toml").open("a") as handle:
        handle.write('\n[variants.slow]\nfake = {responder = "arith", delay = 0.05}\n')
    set_suite(project, ["good", "slow"], ["slow.accuracy >= 0.5"])
    cache = project / "cache.sqlite"
    proc = subprocess.Popen([*HARNESS, "run", "--no-progress", "--cache", str(cache)], cwd=project,
                            env={**os.environ, **_conftest_env(project)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline:
        time.sleep(0.1)
        try:
            if cache.exists() and sqlite3.connect(cache).execute("SELECT COUNT(*) FROM generations").fetchone()[0] > 45:
                break
        except sqlite3.OperationalError:
            continue
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (run_dir,) = (project / "reports" / "runs").iterdir()
    return run_dir


def test_compare_report_and_bless_refuse_a_killed_run_unless_partial(project):
    from tests.engine.test_runner import _cli

    run_dir = _killed_run(project)
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "running"
    for command in (["compare", str(run_dir)], ["report", str(run_dir)], ["bless", str(run_dir)]):
        done = _cli(project, *command)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert "this run did not finish" in done.stderr and "status 'running'" in done.stderr, done.stderr
        assert "harness run" in done.stderr and "Traceback" not in done.stderr
    assert not (run_dir / "report.html").exists() and not (project / "reports" / "baselines").exists()
    # --partial: every output says PARTIAL and the verdict is NO-GO, never GO.
    text = _cli(project, "compare", str(run_dir), "--partial")
    assert text.returncode == 1 and "PARTIAL RUN: status 'running'" in text.stdout
    assert "overall: PARTIAL RUN (running) · NO-GO" in text.stdout
    as_json = json.loads(_cli(project, "compare", str(run_dir), "--partial", "--json").stdout)
    assert as_json["partial"] is True and as_json["status"] == "running" and as_json["verdict"] == "NO-GO"
    report = _cli(project, "report", str(run_dir), "--partial")
    assert report.returncode == 1, report.stderr
    assert "PARTIAL RUN (running)" in (run_dir / "report.html").read_text()
    assert "PARTIAL RUN (running)" in (run_dir / "report.md").read_text()
    model = json.loads((run_dir / "report.json").read_text())
    assert model["partial"] is True and model["verdict"] == "NO-GO" and "did not finish" in model["evidence_problems"][0]


def test_a_run_stopped_by_a_bad_data_file_is_never_compared_as_finished(project):
    from tests.engine.test_runner import _cli, _conftest_env

    data = project / "suites" / "data" / "arith.jsonl"
    data.write_text(data.read_text() + "{not json\n")
    done = _cli(project, "run", "--no-progress", env=_conftest_env(project))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    runs = list((project / "reports" / "runs").glob("*")) if (project / "reports" / "runs").exists() else []
    for run_dir in runs:  # if one is left behind, it is marked and compare says it did not finish
        compared = _cli(project, "compare", str(run_dir))
        assert compared.returncode == 2 and "this run did not finish" in compared.stderr
        assert "stopped by DataError" in compared.stderr, compared.stderr
    print(f"run directories left by the bad data file: {len(runs)}")


# --------------------------------------------------------------------------- finding 4: bounded loss on interruption


def _slow_project(project, n: int, delay: float) -> tuple[Path, Path, int]:
    """`slow` answers correctly after `delay` s per request and logs every request it starts."""
    from tests.engine.test_runner import set_suite
    from tests.helpers import chat_rows, write_jsonl

    write_jsonl(project / "suites" / "data" / "arith.jsonl", chat_rows(2 * n))  # holdout 0.5: n cases
    log = project / "generated.log"
    with (project / "models.toml").open("a") as handle:
        handle.write(f'\n[variants.slow]\nfake = {{responder = "arith", delay = {delay}, log = "{log}"}}\n')
    set_suite(project, ["slow"], ["slow.accuracy >= 0.9"])
    return project / "cache.sqlite", log, len(load_suite(project / "suites" / "arith.yaml").cases)


def _rows(cache: Path) -> int:
    import sqlite3

    if not cache.exists():
        return 0
    try:
        with sqlite3.connect(cache, timeout=30) as conn:
            return conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _integrity(cache: Path) -> str:
    import sqlite3

    with sqlite3.connect(cache, timeout=30) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def _start(project, *args: str) -> subprocess.Popen:
    from tests.engine.test_runner import _conftest_env

    return subprocess.Popen([*HARNESS, "run", "--no-progress", "--cache", str(project / "cache.sqlite"), *args],
                            cwd=project, env={**os.environ, **_conftest_env(project)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_kill_minus_nine_at_random_points_loses_at_most_the_batch_in_flight(project):
    """Bounded loss, no duplicates, an intact cache: kill -9 at random moments, then resume."""
    import random
    import signal
    import time

    cache, log, n = _slow_project(project, 60, delay=0.04)
    rng = random.Random(19)
    losses = []
    for _ in range(4):
        before_log, before_rows = len(_lines(log)), _rows(cache)
        proc = _start(project)
        time.sleep(rng.uniform(1.5, 2.5))  # interpreter start + some generation
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        started, committed = len(_lines(log)) - before_log, _rows(cache) - before_rows
        losses.append(started - committed)
        assert _integrity(cache) == "ok"
        if _rows(cache) >= n:
            break
    assert max(losses) <= 1, losses  # the fake's batch is one request: at most the one in flight is lost
    done = _start(project)
    out, err = done.communicate(timeout=300)
    assert done.returncode == 0, out + err
    assert _rows(cache) == n and _integrity(cache) == "ok"
    generated = _lines(log)
    # Every prompt generated once, plus once more for each one lost in flight: nothing else repeated.
    assert len(generated) == n + sum(losses), (len(generated), losses)
    assert len(set(generated)) == n
    print(f"kill -9 x{len(losses)}: requests lost per kill {losses} (max {max(losses)})")


@pytest.mark.parametrize("sig, code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_sigterm_and_sigint_mark_the_run_interrupted_and_print_the_resume_command(project, sig, code):
    import signal
    import time

    cache, log, n = _slow_project(project, 40, delay=0.05)
    proc = _start(project)
    deadline = time.time() + 60
    while _rows(cache) < 5 and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(getattr(signal, sig))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, out + err
    assert "Traceback" not in err
    (run_dir,) = (project / "reports" / "runs").iterdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    kept = _rows(cache)
    assert f"{kept} model requests generated by this run are kept" in err, err
    resume = next(line for line in err.splitlines() if line.startswith("resume with: "))
    command = resume.removeprefix("resume with: ")
    assert command == f"harness run --no-progress --cache {project / 'cache.sqlite'}"
    assert manifest["resume_command"] == command
    assert len(_lines(log)) - kept <= 1  # at most the request in flight was lost
    # compare names the status and the command that resumes.
    from tests.engine.test_runner import _cli

    compared = _cli(project, "compare", str(run_dir))
    assert compared.returncode == 2 and "status 'interrupted'" in compared.stderr and command in compared.stderr
    # Running that command resumes: only the rest is generated.
    resumed = _start(project)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out + err
    run = json.loads((project / out.strip().splitlines()[-1] / "manifest.json").read_text())
    assert run["counts"]["cached"] == kept and run["counts"]["generated"] == n - kept
    assert len(set(_lines(log))) == n


def test_two_concurrent_cli_runs_generate_each_request_once(project):
    cache, log, n = _slow_project(project, 30, delay=0.03)
    first, second = _start(project), _start(project)
    outputs = [p.communicate(timeout=300) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    generated = _lines(log)
    assert len(generated) == n == len(set(generated)), len(generated)  # no request generated twice
    counts = sorted((json.loads((project / out.strip().splitlines()[-1] / "manifest.json").read_text())["counts"]
                     for out, _ in outputs), key=lambda c: c["generated"])
    assert counts[0]["generated"] == 0 and counts[0]["cached"] == n  # the later one waited and reused
    assert counts[1]["generated"] == n
    assert any("waiting to reuse its results" in out + err for out, err in outputs)
    assert _integrity(cache) == "ok"


@pytest.mark.model
def test_transformers_hands_over_rows_as_they_end_with_the_same_generations():
    """The real default model: rows that end early are handed to the runner before the batch ends, each
    position once, and equal what the call returns (so what a kill can lose is the rows still running)."""
    from harness.backends import EngineSpec, GenerateRequest, create_backend, freeze

    backend = create_backend(EngineSpec(model="smollm2-135m-instruct", backend="transformers",
                                        engine=freeze({"dtype": "float32"})))
    questions = ["Say yes.", "2+2=? Answer with a number.", "Count from one to twenty in words.",
                 "Write a short poem about the sea.", "What is the capital of France? One word.", "Name a colour."]
    requests = [GenerateRequest.chat([{"role": "user", "content": q}], max_tokens=24) for q in questions]
    calls: list[tuple[list[int], list]] = []
    try:
        with backend.streaming(lambda positions, results: calls.append((positions, results))):
            returned = backend.generate(requests)
        plain = backend.generate(requests)
    finally:
        backend.close()
    positions = [p for ps, _ in calls for p in ps]
    assert sorted(positions) == list(range(len(requests)))  # every row once
    assert len(calls) >= 2  # the short answers came before the batch ended
    streamed = {p: g for ps, gs in calls for p, g in zip(ps, gs, strict=True)}
    assert [streamed[i] for i in range(len(requests))] == returned == plain
