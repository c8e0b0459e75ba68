import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from harness.config.suite import load_suite
from harness.config.variants import load_models
from harness.engine.cache import GenerationCache
from harness.engine.records import load_run
from harness.engine.runner import BackendPool, RunOptions, run_suites
from tests.helpers import REPO, chat_rows, write, write_jsonl


def set_suite(project, variants, gates=(), data="data: {path: data/arith.jsonl, holdout: 0.5, seed: 3}"):
    gate_lines = "".join(f"\n  - {g}" for g in gates)
    (project / "suites" / "arith.yaml").write_text(
        f"suite: arith\n{data}\nvariants: [{', '.join(variants)}]\ngeneration: {{max_tokens: 16}}\n"
        f"scorers:\n  accuracy: exact_match\ngates:{gate_lines or ' []'}\n")


def run_project(project, *, cache=None, pool=None, **options):
    models = load_models(project / "models.toml")
    suite = load_suite(project / "suites" / "arith.yaml", known_variants=set(models.variants))
    cache = cache or GenerationCache(project / "cache.sqlite")
    return run_suites([suite], models, RunOptions(out_root=project / "runs", progress=False, **options),
                      cache=cache, pool=pool, log=lambda s: None)


def test_run_writes_records_and_manifest(project):
    result = run_project(project)
    run = load_run(result.run_dir)
    assert run.manifest["status"] == "complete"
    by_variant = {}
    for r in run.records:
        by_variant.setdefault(r["variant"], []).append(r)
        assert set(r) >= {"suite", "variant", "case_id", "prompt", "output", "reference", "scores", "cached"}
    n = run.manifest["suites"]["arith"]["n_cases"]
    assert len(by_variant["base"]) == len(by_variant["good"]) == n > 0
    assert all(r["scores"]["accuracy"] == 1.0 for r in by_variant["good"])
    assert all(r["scores"]["accuracy"] == 0.0 for r in by_variant["base"])
    assert run.manifest["suites"]["arith"]["data"]["sha256"]
    assert run.manifest["models_toml"]["sha256"]
    assert run.manifest["runs"]["arith/good"]["generation"]["max_tokens"] == 16
    assert all(info["seconds"] >= 0 for info in run.manifest["runs"].values())


def test_rerun_is_fully_cached_and_loads_no_engine(project):
    first = run_project(project)
    assert first.manifest["counts"]["generated"] > 0
    pool = BackendPool()
    second = run_project(project, pool=pool)
    assert second.manifest["counts"]["generated"] == 0
    assert second.manifest["counts"]["engine_loads"] == 0 and pool.loads == 0
    assert all(r["cached"] for r in second.records)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "cached"} for r in rs]  # noqa: E731
    assert strip(second.records) == strip(first.records)


def test_limit_and_variant_filter(project):
    result = run_project(project, limit=3, variants=["good"])
    assert {r["variant"] for r in result.records} == {"good"} and len(result.records) == 3


def test_base_and_adapters_share_one_engine(project):
    adapter = project / "adapters" / "a"
    write(adapter / "adapter_config.json", '{"base_model_name_or_path": "fake-model"}')
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    with (project / "models.toml").open("a") as handle:
        handle.write('\n[variants.tuned]\nadapter = "adapters/a"\nfake = {default = "no idea"}\n')
    set_suite(project, ["base", "tuned"])
    pool = BackendPool()
    result = run_project(project, pool=pool)
    assert pool.loads == 1
    info = result.manifest["runs"]["arith/tuned"]
    assert len(info["adapter_sha256"]) == 64 and info["adapter_guard"]["probe_max_abs_delta"] > 0


def test_fewshot_without_pool_is_a_clear_error(project):
    set_suite(project, ["fewshot"], data="data: {path: data/arith.jsonl}")
    from harness.errors import DataError

    with pytest.raises(DataError) as err:
        run_project(project)
    assert "wants 3 few-shot examples but the suite's train split has 0" in str(err.value)
    assert "data.holdout" in str(err.value)


def test_recorded_outputs_variant_reports_missing_cases(project):
    suite = load_suite(project / "suites" / "arith.yaml")
    cases = suite.cases
    rows = [{"case_id": c.id, "output": c.reference} for c in cases[1:]]
    write_jsonl(project / "recorded.jsonl", rows)
    with (project / "models.toml").open("a") as handle:
        handle.write('\n[variants.human]\noutputs = "recorded.jsonl"\n')
    set_suite(project, ["human"])
    result = run_project(project)
    missing = [r for r in result.records if r.get("missing")]
    assert [r["case_id"] for r in missing] == [cases[0].id]
    assert missing[0]["scores"] == {"accuracy": 0.0}  # missing = "fail" (default): a failed case on every axis
    assert all(r["scores"]["accuracy"] == 1.0 for r in result.records if not r.get("missing"))
    assert result.manifest["runs"]["arith/human"]["missing_outputs"] == [cases[0].id]
    recorded = result.manifest["runs"]["arith/human"]["recorded"]
    assert recorded["missing"] == [cases[0].id] and recorded["missing_policy"] == "fail"
    assert recorded["cases"] == len(cases) and recorded["extra_ids"] == []


def test_recorded_outputs_missing_drop_leaves_the_case_out(project):
    suite = load_suite(project / "suites" / "arith.yaml")
    cases = suite.cases
    write_jsonl(project / "recorded.jsonl", [{"case_id": c.id, "output": c.reference} for c in cases[1:]])
    with (project / "models.toml").open("a") as handle:
        handle.write('\n[variants.human]\noutputs = "recorded.jsonl"\nmissing = "drop"\n')
    set_suite(project, ["human"])
    result = run_project(project)
    missing = [r for r in result.records if r.get("missing")]
    assert [r["case_id"] for r in missing] == [cases[0].id] and missing[0]["scores"] == {}
    assert result.manifest["runs"]["arith/human"]["recorded"]["missing_policy"] == "drop"


def _cli(project, *args, env=None):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=project, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def _conftest_env(project):
    # The CLI runs in a subprocess: register the test responder through a sitecustomize shim.
    shim = project / "shim"
    write(shim / "sitecustomize.py", f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from tests.helpers import register_fake_responders; register_fake_responders()
    """)
    return {"PYTHONPATH": f"{shim}{os.pathsep}{REPO}"}


def test_cli_exit_codes_and_last_line_is_run_dir(project):
    env = _conftest_env(project)
    ok = _cli(project, "run", "--no-progress", env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    run_dir = ok.stdout.strip().splitlines()[-1]
    assert (project / run_dir / "records.jsonl").is_file()
    assert "PASS" in ok.stdout and "overall: GO" in ok.stdout
    set_suite(project, ["base", "good"], ["base.accuracy >= 0.5"])
    failing = _cli(project, "run", "--no-progress", env=env)
    assert failing.returncode == 1 and "NO-GO" in failing.stdout
    (project / "models.toml").write_text("[variants.base]\nbakend = 'fake'\n")
    bad = _cli(project, "run", env=env)
    assert bad.returncode == 2 and "Did you mean 'backend'?" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_full_drops_the_suites_data_limit(project):
    """`harness run` honours a suite's `data.limit`; `--full` runs all of its cases (`make demo-full`),
    and `--limit` still caps a `--full` run."""
    set_suite(project, ["base", "good"], data="data: {path: data/arith.jsonl, holdout: 0.5, seed: 3, limit: 4}")
    env = _conftest_env(project)
    n_all = len(load_suite(project / "suites" / "arith.yaml").without_limit().cases)
    assert n_all > 7  # the holdout half of 40 rows

    def cases_run(*args):
        done = _cli(project, "run", "--no-progress", *args, env=env)
        assert done.returncode in (0, 1), done.stdout + done.stderr
        run = load_run(project / done.stdout.strip().splitlines()[-1])
        return run.manifest["suites"]["arith"]["n_cases"], len({r["case_id"] for r in run.records})

    assert cases_run() == (4, 4)
    assert cases_run("--full") == (n_all, n_all)
    assert cases_run("--full", "--limit", "7") == (7, 7)
    limited = load_suite(project / "suites" / "arith.yaml")
    assert [c.id for c in limited.cases] == [c.id for c in limited.without_limit().cases[:4]]  # the same first 4


def test_kill_minus_nine_then_resume_generates_nothing_twice(project):
    write_jsonl(project / "suites" / "data" / "arith.jsonl", chat_rows(120))
    log1, _log2 = project / "gen1.log", project / "gen2.log"
    models = (project / "models.toml").read_text()
    cache = project / "cache.sqlite"

    def configure(log):
        (project / "models.toml").write_text(models + '\n[variants.slow]\nfake = {responder = "arith", delay = 0.05}\n')
        set_suite(project, ["slow"], ["slow.accuracy >= 0.9"])
        return log

    configure(log1)
    env = _conftest_env(project)
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", "--no-progress", "--cache", str(cache)],
                            cwd=project, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    committed = 0
    while time.time() < deadline:
        time.sleep(0.2)
        if cache.exists():
            try:
                committed = sqlite3.connect(cache).execute("SELECT COUNT(*) FROM generations").fetchone()[0]
            except sqlite3.OperationalError:
                continue
            if committed >= 20:
                break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    committed = sqlite3.connect(cache).execute("SELECT COUNT(*) FROM generations").fetchone()[0]
    total = load_suite(project / "suites" / "arith.yaml").cases
    assert 0 < committed < len(total) + 3, "the kill must land mid-run"
    resumed = _cli(project, "run", "--no-progress", "--cache", str(cache), env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    run = load_run(project / resumed.stdout.strip().splitlines()[-1])
    counts = run.manifest["counts"]
    # Everything committed before the kill came from the cache; only the rest was generated.
    assert counts["cached"] == committed
    assert counts["generated"] == len(total) - counts["cached"]
    assert len(run.records) == len(total) and all(r["scores"]["accuracy"] == 1.0 for r in run.records)


def test_blessed_baseline_is_reused_and_refused_when_settings_change(project):
    from harness.analysis.baselines import bless
    from harness.errors import HarnessError

    first = run_project(project)
    stored = bless(first.run_dir, ["base"], project / "baselines")
    assert stored == [project / "baselines" / "arith" / "base"]
    pool = BackendPool()
    cache = GenerationCache(project / "empty-cache.sqlite")  # nothing cached: only the baseline can answer
    second = run_project(project, cache=cache, pool=pool, baselines=project / "baselines", variants=["base"])
    assert pool.loads == 0 and all(r.get("blessed") for r in second.records)
    assert [r["output"] for r in second.records] == [r["output"] for r in first.records if r["variant"] == "base"]
    # Change the generation settings: the baseline no longer applies and the run says why.
    (project / "suites" / "arith.yaml").write_text(
        (project / "suites" / "arith.yaml").read_text().replace("max_tokens: 16", "max_tokens: 32"))
    third = run_project(project, cache=cache, baselines=project / "baselines", variants=["base"])
    (error,) = third.errors
    assert "the generation settings changed" in error["error"] and "harness bless" in error["error"]
    with pytest.raises(HarnessError, match="did not complete|not run|none of"):
        bless(first.run_dir, ["nobody"], project / "baselines")


def test_engine_fingerprint_carries_the_dtype_a_model_will_load_in(monkeypatch):
    """Results computed in bfloat16 are never served for float32: the resolved default dtype is part of
    the cache identity, equal to naming that dtype explicitly."""
    import harness.backends.transformers.backend as tb
    from harness.backends import EngineSpec, freeze
    from harness.engine.runner import engine_fingerprint

    monkeypatch.setattr(tb, "default_dtype", lambda device=None: "bfloat16")
    monkeypatch.setattr("harness.engine.runner.model_fingerprint", lambda model: f"weights:{model}")

    def fingerprint(**engine):
        return engine_fingerprint(EngineSpec(model="m", backend="transformers", engine=freeze(engine)))

    assert fingerprint() == fingerprint(dtype="bfloat16")
    assert fingerprint() != fingerprint(dtype="float32")
    assert fingerprint(batch_size=4) == fingerprint()  # batch size does not change outputs
    assert fingerprint(merge_adapters=True) == fingerprint() != fingerprint(merge_adapters=False)  # rounding


def test_merge_adapters_setting_and_scoring_batch_budget():
    from types import SimpleNamespace

    from harness.backends.transformers.backend import TransformersBackend, merges_adapters
    from harness.errors import BackendError

    assert merges_adapters({}, None) and not merges_adapters({"merge_adapters": False}, None)
    assert not merges_adapters({}, "nf4")  # never on a quantized base
    with pytest.raises(BackendError, match="merge_adapters must be true or false"):
        merges_adapters({"merge_adapters": "yes"}, None)
    owner = SimpleNamespace(batch_size=16)  # 2048 x 16 = 32,768 tokens per batch
    assert TransformersBackend._rows_within_budget(owner, 100, 64) == 64  # short rows: the row cap
    assert TransformersBackend._rows_within_budget(owner, 2048, 64) == 16  # long rows: the token budget
    assert TransformersBackend._rows_within_budget(owner, 10**6, 64) == 1  # never fewer than one


def test_a_shared_prefix_the_attention_did_not_read_is_an_error():
    from types import SimpleNamespace

    from harness.backends.transformers.backend import _check_prefix_reads
    from harness.errors import BackendError

    read, unread = SimpleNamespace(shared=SimpleNamespace(reads=2)), SimpleNamespace(shared=SimpleNamespace(reads=0))
    _check_prefix_reads(SimpleNamespace(layers=[read, SimpleNamespace()]))  # read, or not a shared-prefix layer
    with pytest.raises(BackendError, match="did not read the shared prompt prefix"):
        _check_prefix_reads(SimpleNamespace(layers=[read, unread]))


def test_native_bf16_detection_and_shared_prefix():
    from harness.backends.transformers.backend import _native_bf16_flags, _shared_prefix

    assert _native_bf16_flags({"avx2", "avx512f", "avx512_bf16"})
    assert _native_bf16_flags({"amx_bf16"}) and _native_bf16_flags({"fp", "asimd", "bf16"})  # x86 AMX, Arm
    assert not _native_bf16_flags({"avx2", "avx512f", "avx512bw"})  # bf16 would be emulated there
    from harness.backends.transformers.backend import _isa_cap_allows_bf16

    # ONEDNN_MAX_CPU_ISA=AVX2 emulates an AVX2-only machine: bf16 is emulated there, so float32 is the default.
    assert _isa_cap_allows_bf16("") and _isa_cap_allows_bf16("ALL") and _isa_cap_allows_bf16("avx512_core_bf16")
    assert _isa_cap_allows_bf16("AVX512_CORE_AMX") and _isa_cap_allows_bf16("AVX10_1_512_AMX_FP16")
    assert not _isa_cap_allows_bf16("AVX2") and not _isa_cap_allows_bf16("AVX512_CORE_VNNI")
    assert _shared_prefix([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9]]) == [1, 2]
    assert _shared_prefix([[1, 2, 3], [1, 2, 3, 4]]) == [1, 2]  # every row keeps a token of its own
    assert _shared_prefix([[1, 2, 3]]) == [] and _shared_prefix([[7], [8]]) == []


def test_generation_batches_pack_rows_within_a_token_budget():
    """Up to 8 x batch_size prompts per batch, while rows x (longest prompt + max_tokens) fits 2048 x batch_size;
    tokens shared by all rows (kept once) do not count."""
    from types import SimpleNamespace

    from harness.backends.transformers.backend import TransformersBackend

    owner = SimpleNamespace(batch_size=2)  # at most 16 rows and 4096 tokens
    short = {i: [0] * 10 for i in range(40)}
    batches = TransformersBackend._generation_batches(owner, list(short), short, max_tokens=90)
    assert [len(b) for b in batches] == [16, 16, 8] and sum(batches, []) == list(short)
    long = {i: [0] * (1900 - 100 * i) for i in range(5)}  # longest first, as generate() orders them
    batches = TransformersBackend._generation_batches(owner, list(long), long, max_tokens=100)
    assert batches == [[0, 1], [2, 3], [4]]  # 2 x 2000 fits 4096; 3 rows would not
    batches = TransformersBackend._generation_batches(owner, list(long), long, max_tokens=100, shared=1400)
    assert batches == [[0, 1, 2, 3, 4]]  # 5 x (1900 - 1400 + 100) fits 4096


def test_the_runner_hands_over_the_backends_chunk_size_per_kind(project, monkeypatch):
    from harness.backends.fake import FakeBackend

    sizes = {"generate": [], "loglikelihood": []}
    for kind in sizes:
        original = getattr(FakeBackend, kind)
        monkeypatch.setattr(FakeBackend, kind, lambda self, requests, kind=kind, original=original:
                            sizes[kind].append(len(requests)) or original(self, requests))
    monkeypatch.setattr(FakeBackend, "chunk_size", lambda self, kind: 3 if kind == "generate" else 5)
    write_jsonl(project / "suites" / "data" / "mc.jsonl",
                [{"question": f"q{i}", "options": ["a", "b", "c", "d"], "gold": "a"} for i in range(6)])
    set_suite(project, ["base"], data="data: {path: data/mc.jsonl, fields: {input: question, choices: options, "
                                      "answer: gold}}")
    (project / "suites" / "arith.yaml").write_text((project / "suites" / "arith.yaml").read_text().replace(
        "accuracy: exact_match", "accuracy: choice"))
    run_project(project)
    assert max(sizes["loglikelihood"]) == 5 and sum(sizes["loglikelihood"]) == 24 and not sizes["generate"]
    set_suite(project, ["base"])
    run_project(project)
    assert sizes["generate"] and max(sizes["generate"]) == 3
