"""lm-eval tasks as suites: parsing, safety, offline data, records paired per item, alerts, and parity
with lm-eval's own `hf` model on the real default model (tests marked `model`)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

# Offline, and `datasets` writes its Arrow cache under the temp dir, not the user's home. Read by
# `datasets` when it is first imported, so set before any test imports it.
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_DATASETS_CACHE", str(Path(tempfile.gettempdir()) / "harness-test-hf-datasets"))

from harness.config.suite import load_suite  # noqa: E402
from harness.config.variants import load_models  # noqa: E402
from harness.engine.cache import GenerationCache  # noqa: E402
from harness.engine.runner import BackendPool, RunOptions, run_suites  # noqa: E402
from harness.errors import ConfigError  # noqa: E402
from tests.helpers import EXTERNAL_DATA, REPO, write, write_jsonl  # noqa: E402

TASKS = REPO / "suites" / "lm_eval"
OBQA = TASKS / "data" / "openbookqa_test.jsonl"
PARITY_N = 100


def obqa_rows(n: int) -> list[dict]:
    return [json.loads(line) for line in OBQA.read_text(encoding="utf-8").splitlines()[:n]]


def rel(target: Path, suite_dir: Path) -> str:
    """A task path as a suite writes it: relative to the suite file."""
    return os.path.relpath(target, suite_dir)


def run(tmp_path: Path, suite_files: list[Path], models: Path, *, pool: BackendPool | None = None, cache=None,
        variants=None):
    suites = [load_suite(p) for p in suite_files]
    return run_suites(suites, load_models(models),
                      RunOptions(out_root=tmp_path / "runs", progress=False, variants=variants),
                      cache=cache or GenerationCache(tmp_path / "cache.sqlite"), pool=pool, log=lambda m: None)


# --------------------------------------------------------------------------- suite YAML (cheap, no lm_eval)


def test_suite_with_lm_eval_source_loads_with_its_axis_and_gates(tmp_path):
    suite = write(tmp_path / "suites" / "general.yaml", f"""
        suite: general
        lm_eval:
          tasks: [{rel(TASKS / 'openbookqa.yaml', tmp_path / 'suites')}, arc_easy]
          num_fewshot: 0
          limit: 50
          metric: {{openbookqa_local: acc_norm}}
        variants: [base, lora]
        gates:
          - lora.retention >= base.retention - 0.02
    """)
    loaded = load_suite(suite)
    assert loaded.lm_eval is not None and loaded.data_path is None
    assert loaded.axis_names == ["retention"] and loaded.gates[0].text.startswith("lora.retention")
    assert loaded.lm_eval.paths[0] == (TASKS / "openbookqa.yaml").resolve() and loaded.lm_eval.paths[1] is None
    assert loaded.lm_eval.metric_for("openbookqa_local") == "acc_norm" and loaded.lm_eval.limit == 50


@pytest.mark.parametrize("body, key, message", [
    ("data: {path: x.jsonl}\nlm_eval: {tasks: [arc_easy]}", "lm_eval", "either data: or lm_eval:"),
    ("lm_eval: {tasks: [arc_easy]}\nscorers: {retention: choice}", "scorers", "lm-eval's own metrics"),
    ("lm_eval: {tasks: [arc_easy], limt: 5}", "lm_eval.limt", "Did you mean 'limit'"),
    ("lm_eval: {tasks: []}", "lm_eval.tasks", "needs tasks"),
    ("lm_eval: {tasks: [lm_eval/missing.yaml]}", "lm_eval.tasks.0", "not found"),
    ("lm_eval: {tasks: [arc_easy], limit: 0}", "lm_eval.limit", ">= 1"),
    ("lm_eval: {tasks: [arc_easy], metric: 3}", "lm_eval.metric", "metric name"),
    ("lm_eval: {tasks: [arc_easy], hub: maybe}", "lm_eval.hub", "true or false"),
    ("lm_eval: {tasks: [arc_easy], axis: 'not an axis'}", "lm_eval.axis", "axis name"),
])
def test_bad_lm_eval_source_names_file_line_and_key(tmp_path, body, key, message):
    suite = write(tmp_path / "s.yaml", "suite: s\nvariants: [base]\n" + body + "\n")
    with pytest.raises(ConfigError) as info:
        load_suite(suite)
    assert info.value.key == key and message in str(info.value) and str(suite) in str(info.value)
    assert info.value.line is not None


def test_gate_on_an_axis_lm_eval_does_not_produce_is_refused(tmp_path):
    suite = write(tmp_path / "s.yaml", """
        suite: s
        lm_eval: {tasks: [arc_easy], axis: general}
        variants: [base]
        gates: [base.retention >= 0.3]
    """)
    with pytest.raises(ConfigError, match="axes: general"):
        load_suite(suite)


def test_loading_an_lm_eval_suite_imports_no_heavy_library(tmp_path):
    suite = write(tmp_path / "s.yaml", f"""
        suite: s
        lm_eval: {{tasks: [{TASKS / 'openbookqa.yaml'}]}}
        variants: [base]
    """)
    code = ("import sys; from harness.config.suite import load_suite; load_suite(sys.argv[1]); "
            "heavy = [m for m in ('lm_eval', 'torch', 'datasets', 'transformers') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code, str(suite)], check=True, cwd=REPO)


# --------------------------------------------------------------------------- offline data and safety (fake backend)

FAKE_MODELS = """
    [defaults]
    backend = "fake"
    model = "fake-model"

    [variants.base]
    fake = {default = "no idea"}
"""


def test_hub_only_task_offline_is_a_clear_config_error(tmp_path):
    models = write(tmp_path / "models.toml", FAKE_MODELS)
    suite = write(tmp_path / "hs.yaml", "suite: hs\nlm_eval: {tasks: [hellaswag]}\nvariants: [base]\n")
    with pytest.raises(ConfigError) as info:
        run(tmp_path, [suite], models)
    text = str(info.value)
    assert info.value.key == "lm_eval.tasks.0" and info.value.line == 2
    assert "Rowan/hellaswag" in text and "dataset_path: json" in text and "data_files" in text
    assert "hub: true" in text
    # Opting in to the hub on an offline machine: still a ConfigError naming the fix, not a datasets traceback.
    write(suite, "suite: hs\nlm_eval: {tasks: [hellaswag], hub: true}\nvariants: [base]\n")
    with pytest.raises(ConfigError) as info:
        run(tmp_path, [suite], models)
    assert "Couldn't reach" in str(info.value) and "dataset_path: json" in str(info.value)


def test_harness_cli_exits_2_with_the_hint_for_a_hub_only_task(tmp_path):
    write(tmp_path / "models.toml", FAKE_MODELS)
    write(tmp_path / "suites" / "hs.yaml", "suite: hs\nlm_eval: {tasks: [hellaswag]}\nvariants: [base]\n")
    harness = Path(sys.executable).with_name("harness")
    done = subprocess.run([str(harness), "run", "suites/hs.yaml", "--no-progress"], cwd=tmp_path,
                          capture_output=True, text=True, env={**os.environ, "HARNESS_CACHE_DIR": str(tmp_path)})
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "dataset_path: json" in done.stderr + done.stdout


def test_project_groups_run_as_member_tasks_and_hub_members_are_refused(tmp_path):
    models = write(tmp_path / "models.toml", FAKE_MODELS)
    write_jsonl(tmp_path / "tasks" / "data.jsonl", [{"q": "2 + 2?", "a": "4"}])
    write(tmp_path / "tasks" / "here.yaml", """
        task: here
        dataset_path: json
        dataset_kwargs: {data_files: {test: data.jsonl}}
        test_split: test
        output_type: multiple_choice
        doc_to_text: "{{q}}"
        doc_to_target: 0
        doc_to_choice: "{{[a, 'x']}}"
    """)
    write(tmp_path / "tasks" / "there.yaml", "task: there\ndataset_path: someone/remote-data\n")
    write(tmp_path / "tasks" / "both.yaml", "group: both\ntask: [here, there]\n")
    suite = write(tmp_path / "s.yaml", "suite: s\nlm_eval: {tasks: [tasks/both.yaml]}\nvariants: [base]\n")
    with pytest.raises(ConfigError, match=r"task 'there' reads its data from the Hugging Face Hub"):
        run(tmp_path, [suite], models)
    # A project group of local tasks runs as its member tasks, each with its data resolved next to its YAML.
    write(tmp_path / "tasks" / "more" / "again.yaml",
          (tmp_path / "tasks" / "here.yaml").read_text().replace("task: here", "task: again")
          .replace("data.jsonl", "../data.jsonl"))
    write(tmp_path / "tasks" / "both.yaml", "group: both\ntask: [here, {task: again, num_fewshot: 0}]\n")
    result = run(tmp_path, [suite], models)
    assert sorted(r["case_id"] for r in result.records) == ["again/0", "here/0"]


def test_task_yaml_may_not_import_project_code(tmp_path):
    models = write(tmp_path / "models.toml", FAKE_MODELS)
    write_jsonl(tmp_path / "tasks" / "data.jsonl", [{"q": "2 + 2?", "a": "4"}])
    marker = tmp_path / "imported"
    write(tmp_path / "tasks" / "utils.py", f"open({str(marker)!r}, 'w').close()\ndef score(doc, results):\n"
                                           "    return {{'acc': 1.0}}\n")
    write(tmp_path / "tasks" / "sneaky.yaml", """
        task: sneaky
        dataset_path: json
        dataset_kwargs: {data_files: {test: data.jsonl}}
        test_split: test
        output_type: multiple_choice
        doc_to_text: "{{q}}"
        doc_to_target: 0
        doc_to_choice: "{{[a, 'x']}}"
        process_results: !function utils.score
        metric_list: [{metric: acc}]
    """)
    suite = write(tmp_path / "s.yaml", "suite: s\nlm_eval: {tasks: [tasks/sneaky.yaml]}\nvariants: [base]\n")
    with pytest.raises(ConfigError, match="would run code from the project"):
        run(tmp_path, [suite], models)
    assert not marker.exists()
    # A template reaching into Python internals is refused too.
    write(tmp_path / "tasks" / "sneaky.yaml",
          (tmp_path / "tasks" / "sneaky.yaml").read_text().replace("process_results: !function utils.score\n", "")
          .replace('doc_to_text: "{{q}}"', "doc_to_text: \"{{ q.__class__.__mro__ }}\""))
    with pytest.raises(ConfigError, match="Python internals"):
        run(tmp_path, [suite], models)
    # ... and one that hides its underscores from that check meets Jinja's sandbox when lm-eval renders it.
    text = (tmp_path / "tasks" / "sneaky.yaml").read_text()
    write(tmp_path / "tasks" / "sneaky.yaml", text.replace(
        'doc_to_text: "{{ q.__class__.__mro__ }}"', """doc_to_text: '{{ q|attr("\\x5f\\x5fclass\\x5f\\x5f") }}'"""))
    assert "x5f" in (tmp_path / "tasks" / "sneaky.yaml").read_text()
    with pytest.raises(ConfigError, match="unsafe|Security"):
        run(tmp_path, [suite], models)


def test_relative_data_files_resolve_against_the_task_yaml_and_missing_ones_are_named(tmp_path):
    models = write(tmp_path / "models.toml", FAKE_MODELS)
    write(tmp_path / "tasks" / "gone.yaml", """
        task: gone
        dataset_path: json
        dataset_kwargs: {data_files: {test: data/nothing.jsonl}}
        test_split: test
        output_type: multiple_choice
        doc_to_text: "{{q}}"
        doc_to_target: 0
        doc_to_choice: "{{[a, 'x']}}"
    """)
    suite = write(tmp_path / "s.yaml", "suite: s\nlm_eval: {tasks: [tasks/gone.yaml]}\nvariants: [base]\n")
    with pytest.raises(ConfigError, match=r"data file not found: data/nothing.jsonl"):
        run(tmp_path, [suite], models)


# --------------------------------------------------------------------------- records, cache, gates, alerts (fake backend)


@pytest.fixture
def forgetting_project(tmp_path):
    """base prefers the right OpenBookQA answers, forgetful the wrong ones; one native suite beside."""
    rows = obqa_rows(30)
    right = [next(c["text"] for c in r["question"]["choices"] if c["label"] == r["answerKey"]) for r in rows]
    wrong = [next(c["text"] for c in r["question"]["choices"] if c["label"] != r["answerKey"]) for r in rows]
    write(tmp_path / "models.toml", f"""
        [defaults]
        backend = "fake"
        model = "fake-model"

        [variants.base]
        fake = {{prefer = {json.dumps(right)}}}

        [variants.forgetful]
        fake = {{prefer = {json.dumps(wrong)}}}
    """)
    suites = tmp_path / "suites"
    general = write(suites / "general.yaml", f"""
        suite: general
        lm_eval:
          tasks: [{rel(TASKS / 'openbookqa.yaml', suites)}]
          limit: 30
        variants: [base, forgetful]
        gates:
          - base.retention >= 0.5
          - forgetful.retention >= base.retention - 0.02
    """)
    truthful = write(suites / "truthful.yaml", f"""
        suite: truthful
        lm_eval:
          tasks: [{rel(TASKS / 'truthfulqa_mc1.yaml', suites)}, {rel(TASKS / 'truthfulqa_mc2.yaml', suites)}]
          limit: 6
          axis: truthfulness
        variants: [base]
    """)
    native = write(suites / "native.yaml", f"""
        suite: native
        data:
          path: {rel(OBQA, suites)}
          fields: {{id: id, input: question.stem, choices: question.choices.text,
                    choice_labels: question.choices.label, answer: answerKey}}
          limit: 10
        variants: [base]
        scorers:
          retention:
            choice: {{normalize: bytes}}
    """)
    return tmp_path, [general, truthful, native]


def test_lm_eval_records_are_paired_per_item_cached_and_raise_forgetting_alerts(forgetting_project):
    from harness.analysis.alerts import raise_alerts
    from harness.analysis.gates import evaluate_run

    root, suites = forgetting_project
    pool = BackendPool()
    result = run(root, suites, root / "models.toml", pool=pool)
    assert not result.errors
    assert pool.loads == 2  # one fake engine per distinct engine spec (base, forgetful), shared by all suites
    general = [r for r in result.records if r["suite"] == "general"]
    base = {r["case_id"]: r for r in general if r["variant"] == "base"}
    forgetful = {r["case_id"]: r for r in general if r["variant"] == "forgetful"}
    assert sorted(base) == sorted(forgetful) == sorted(f"openbookqa_local/{i}" for i in range(30))
    first = base["openbookqa_local/0"]
    assert first["task"] == "openbookqa_local" and first["prompt"][0]["content"] == obqa_rows(1)[0]["question"]["stem"]
    assert set(first["checks"]["retention"]) == {"acc", "acc_norm"}
    assert first["scores"]["retention"] == first["checks"]["retention"]["acc_norm"]["score"]
    assert len(first["choices"]) == len(first["choice_logprobs"]) == 4 and first["answer"] == 1
    assert first["reference"] == "quit eating lunch out"
    assert sum(r["scores"]["retention"] for r in base.values()) >= 27
    assert sum(r["scores"]["retention"] for r in forgetful.values()) <= 3

    truthful = [r for r in result.records if r["suite"] == "truthful"]
    assert {r["task"] for r in truthful} == {"truthfulqa_mc1_local", "truthfulqa_mc2_local"}
    mc2 = [r["scores"]["truthfulness"] for r in truthful if r["task"] == "truthfulqa_mc2_local"]
    assert len(mc2) == 6 and all(0 < v < 1 for v in mc2)  # lm-eval's process_results_mc2: probability mass
    info = result.manifest["suites"]["truthful"]
    assert info["axes"]["truthfulness"]["binary"] is False
    assert info["lm_eval"]["metrics"] == {"truthfulqa_mc1_local": "acc", "truthfulqa_mc2_local": "acc"}
    assert result.manifest["suites"]["general"]["n_cases"] == 30
    assert result.manifest["runs"]["general/base"]["lm_eval"]["tasks"]["openbookqa_local"]["metric"] == "acc_norm"
    assert {r["suite"] for r in result.records} == {"general", "truthful", "native"}

    gates = {g.gate: g for g in evaluate_run(result.records, result.manifest)}
    assert gates["base.retention >= 0.5"].verdict == "PASS"
    assert gates["forgetful.retention >= base.retention - 0.02"].verdict == "FAIL"
    (alert,) = raise_alerts(list(gates.values()), result.records, result.manifest, alerts_dir=root / "alerts")
    assert alert.alert["tasks"][0]["task"] == "openbookqa_local" and alert.alert["tasks"][0]["cases_lost"] >= 24

    # Everything went through the cache: a second run makes no model call and loads no engine.
    again_pool = BackendPool()
    again = run(root, suites, root / "models.toml", pool=again_pool)
    assert again_pool.loads == 0 and again.manifest["counts"]["generated"] == 0
    assert all(r["cached"] for r in again.records)
    assert [r["scores"] for r in again.records] == [r["scores"] for r in result.records]


def test_metric_choice_per_task_and_unknown_metric(tmp_path):
    models = write(tmp_path / "models.toml", FAKE_MODELS)
    suite = write(tmp_path / "s.yaml", f"""
        suite: s
        lm_eval: {{tasks: [{TASKS / 'openbookqa.yaml'}], limit: 5, metric: {{openbookqa_local: acc}}}}
        variants: [base]
    """)
    result = run(tmp_path, [suite], models)
    assert all(r["scores"]["retention"] == r["checks"]["retention"]["acc"]["score"] for r in result.records)
    write(suite, suite.read_text().replace("openbookqa_local: acc}", "openbookqa_local: f1_macro}"))
    with pytest.raises(ConfigError, match=r"no metric 'f1_macro' \(it has: acc, acc_norm\)"):
        run(tmp_path, [suite], models)


def test_generate_until_task_through_lm_eval_filters_and_metrics(tmp_path):
    models = write(tmp_path / "models.toml", """
        [defaults]
        backend = "fake"
        model = "fake-model"

        [variants.base]
        fake = {responses = [{match = "2 + 2", output = "4"}, {match = "3 + 3", output = "7"}], default = "?"}
    """)
    write_jsonl(tmp_path / "tasks" / "data" / "sums.jsonl",
                [{"q": "What is 2 + 2?", "a": "4"}, {"q": "What is 3 + 3?", "a": "6"}])
    write(tmp_path / "tasks" / "sums.yaml", """
        task: sums
        dataset_path: json
        dataset_kwargs: {data_files: {test: data/sums.jsonl}}
        test_split: test
        output_type: generate_until
        doc_to_text: "{{q}}"
        doc_to_target: "{{a}}"
        generation_kwargs: {until: ["\\n"], max_gen_toks: 8}
        metric_list: [{metric: exact_match, aggregation: mean, higher_is_better: true}]
    """)
    suite = write(tmp_path / "s.yaml", "suite: s\nlm_eval: {tasks: [tasks], axis: accuracy}\nvariants: [base]\n")
    result = run(tmp_path, [suite], models)
    by_id = {r["case_id"]: r for r in result.records}
    assert by_id["sums/0"]["output"] == "4" and by_id["sums/0"]["scores"] == {"accuracy": 1.0}
    assert by_id["sums/1"]["output"] == "7" and by_id["sums/1"]["scores"] == {"accuracy": 0.0}
    assert by_id["sums/1"]["reference"] == "6" and by_id["sums/1"]["prompt"] == [{"role": "user",
                                                                                   "content": "What is 3 + 3?"}]


def test_harness_lm_is_an_lm_eval_model_over_a_backend_and_the_cache(tmp_path):
    from lm_eval.evaluator import simple_evaluate
    from lm_eval.tasks import TaskManager

    from harness.backends import EngineSpec, create_backend
    from harness.sources.lmeval import HarnessLM

    spec = EngineSpec(model="fake-model", backend="fake")
    backend = create_backend(spec)
    cache = GenerationCache(tmp_path / "c.sqlite")
    lm = HarnessLM(backend, None, cache, "fingerprint-1")
    with contextlib.chdir(TASKS):  # lm-eval resolves relative data_files against the working directory
        manager = TaskManager(include_path=str(TASKS), include_defaults=False)
        first = simple_evaluate(model=lm, tasks=["openbookqa_local"], task_manager=manager, limit=8,
                                bootstrap_iters=0)
        calls = backend.stats.loglikelihood_calls
        again = simple_evaluate(model=HarnessLM(backend, None, cache, "fingerprint-1"), tasks=["openbookqa_local"],
                                task_manager=manager, limit=8, bootstrap_iters=0)
    assert calls >= 1 and backend.stats.loglikelihood_calls == calls  # the second run came from the cache
    assert first["results"]["openbookqa_local"]["acc_norm,none"] == again["results"]["openbookqa_local"]["acc_norm,none"]


def test_truthfulqa_mc_file_is_the_committed_conversion_of_the_csv(tmp_path):
    csv = EXTERNAL_DATA / "truthfulqa.csv"
    if not csv.is_file():
        csv = REPO / "suites" / "data" / "external" / "truthfulqa.csv"
    out = tmp_path / "mc.jsonl"
    subprocess.run([sys.executable, str(TASKS / "build_truthfulqa_mc.py"), str(csv), str(out)], check=True,
                   capture_output=True)
    assert out.read_text(encoding="utf-8") == (TASKS / "data" / "truthfulqa_mc.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 817
    for row in rows:
        assert row["mc1_targets"]["labels"][0] == 1 and sum(row["mc1_targets"]["labels"]) == 1
        labels = row["mc2_targets"]["labels"]
        assert labels == sorted(labels, reverse=True) and 0 < sum(labels) < len(labels)
        assert row["mc1_targets"]["choices"][0] in row["mc2_targets"]["choices"]


def test_openbookqa_copy_is_the_external_data_file():
    assert OBQA.read_bytes() == (EXTERNAL_DATA / "openbookqa_test.jsonl").read_bytes()


# --------------------------------------------------------------------------- parity with lm-eval's hf model (real model)


@pytest.fixture(scope="module")
def model_cache_env(tmp_path_factory):
    """The conftest's shared converted-model cache, for module-scoped fixtures (its own fixture is per test)."""
    shared = os.environ.get("HARNESS_TEST_MODEL_CACHE") or str(tmp_path_factory.getbasetemp().parent /
                                                                "harness-model-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_CACHE_DIR", shared)
        yield shared


@pytest.fixture(scope="module")
def hf_reference(model_cache_env):
    """lm-eval's own run: its `hf` model on the default model (fp32, CPU), the same task YAML and file."""
    from lm_eval.evaluator import simple_evaluate
    from lm_eval.tasks import TaskManager

    from harness.backends.identity import builtin_model_dir

    with contextlib.chdir(TASKS):
        results = simple_evaluate(
            model="hf", model_args=f"pretrained={builtin_model_dir()},dtype=float32", device="cpu", batch_size=16,
            tasks=["openbookqa_local"], task_manager=TaskManager(include_path=str(TASKS), include_defaults=False),
            limit=PARITY_N, log_samples=True, bootstrap_iters=0,
        )
    samples = {s["doc_id"]: s for s in results["samples"]["openbookqa_local"]}
    return results["results"]["openbookqa_local"], samples


@pytest.fixture(scope="module")
def harness_run(model_cache_env, tmp_path_factory):
    """One `harness run` of two suites on the default model (transformers backend): the lm-eval task and a
    native suite with a native scorer; then the same run again from the cache."""
    root = tmp_path_factory.mktemp("lmeval-parity")
    write(root / "models.toml", """
        [defaults]
        model = "smollm2-135m-instruct"
        backend = "transformers"
        engine = { dtype = "float32" }   # lm-eval's reference run is fp32

        [variants.base]
    """)
    suites = root / "suites"
    general = write(suites / "general.yaml", f"""
        suite: general
        lm_eval:
          tasks: [{rel(TASKS / 'openbookqa.yaml', suites)}]
          limit: {PARITY_N}
        variants: [base]
        gates:
          - base.retention >= 0.25
    """)
    native = write(suites / "native.yaml", f"""
        suite: native
        data:
          path: {rel(OBQA, suites)}
          fields: {{id: id, input: question.stem, choices: question.choices.text,
                    choice_labels: question.choices.label, answer: answerKey}}
          limit: 10
        variants: [base]
        scorers:
          retention:
            choice: {{normalize: bytes}}
    """)
    cache = GenerationCache(root / "cache.sqlite")
    pool = BackendPool()
    try:
        first = run(root, [general, native], root / "models.toml", pool=pool, cache=cache)
    finally:
        pool.close()
    again_pool = BackendPool()
    again = run(root, [general, native], root / "models.toml", pool=again_pool, cache=cache)
    return first, pool.loads, again, again_pool.loads


@pytest.mark.model
def test_per_item_correctness_equals_lm_eval_hf_model(hf_reference, harness_run):
    aggregate, samples = hf_reference
    first = harness_run[0]
    ours = {int(r["case_id"].split("/")[1]): r for r in first.records if r["suite"] == "general"}
    assert len(ours) == len(samples) == PARITY_N
    for doc_id, sample in samples.items():
        record = ours[doc_id]
        assert record["checks"]["retention"]["acc_norm"]["score"] == sample["acc_norm"], doc_id
        assert record["checks"]["retention"]["acc"]["score"] == sample["acc"], doc_id
        assert record["scores"]["retention"] == sample["acc_norm"]
        theirs = [resp[0] for resp in sample["filtered_resps"]]
        assert record["choice_logprobs"] == pytest.approx(theirs, abs=1e-3)


@pytest.mark.model
def test_aggregate_equals_lm_eval_accuracy(hf_reference, harness_run):
    aggregate, _ = hf_reference
    first = harness_run[0]
    scores = [r["scores"]["retention"] for r in first.records if r["suite"] == "general"]
    assert sum(scores) / len(scores) == pytest.approx(aggregate["acc_norm,none"], abs=1e-12)
    ours = first.manifest["runs"]["general/base"]["lm_eval"]["tasks"]["openbookqa_local"]["results"]
    assert ours["acc,none"] == pytest.approx(aggregate["acc,none"], abs=1e-12)
    assert ours["acc_norm,none"] == pytest.approx(aggregate["acc_norm,none"], abs=1e-12)


@pytest.mark.model
def test_lm_eval_and_native_suites_share_one_engine_load_and_the_cache(harness_run):
    first, loads, again, again_loads = harness_run
    assert not first.errors
    assert loads == 1 and first.manifest["counts"]["engine_loads"] == 1
    assert {r["suite"] for r in first.records} == {"general", "native"}
    native = [r for r in first.records if r["suite"] == "native"]
    assert len(native) == 10 and all("choice" in r["checks"]["retention"] for r in native)
    assert again_loads == 0 and again.manifest["counts"]["generated"] == 0
    assert [r["scores"] for r in again.records] == [r["scores"] for r in first.records]


# --------------------------------------------------------------------------- task files are data (issue 19, finding 1)

SNEAKY_TASK = textwrap.dedent("""
    task: sneaky
    dataset_path: json
    dataset_kwargs: {data_files: {test: data.jsonl}}
    test_split: test
    output_type: multiple_choice
    doc_to_text: "{{q}}"
    doc_to_target: 0
    doc_to_choice: "{{[a, 'x']}}"
    metric_list: [{metric: acc}]
""").lstrip()


def _hostile_project(tmp_path: Path) -> Path:
    """tasks/utils.py writes a marker file when imported: the proof that project code ran."""
    marker = tmp_path / "imported"
    write_jsonl(tmp_path / "tasks" / "data.jsonl", [{"q": "2 + 2?", "a": "4"}])
    code = f"open({str(marker)!r}, 'w').close()\ndef score(doc, results):\n    return {{'acc': 1.0}}\n"
    write(tmp_path / "tasks" / "utils.py", code)
    write(tmp_path / "elsewhere" / "utils.py", code)
    return marker


# Each bypass of the old vetting (which read only files named .yaml literally containing "!function"):
# (files to write, the suite's lm_eval mapping, the file and line the refusal must name).
BYPASSES = {
    "include_path": (
        {"tasks/sneaky.yaml": SNEAKY_TASK + "process_results: !function utils.score\n"},
        "{tasks: [sneaky], include_path: tasks}", "tasks/sneaky.yaml", 10),
    "include": (
        {"tasks/main.yaml": "include: ../elsewhere/base.inc\ntask: sneaky\n",
         "elsewhere/base.inc": SNEAKY_TASK.replace("data.jsonl", "../tasks/data.jsonl")
         + "process_results: !function utils.score\n"},
        "{tasks: [tasks/main.yaml]}", "elsewhere/base.inc", 10),
    "include_path_include": (
        {"tasks/main.yaml": "include: ../elsewhere/base.inc\ntask: sneaky\n",
         "elsewhere/base.inc": SNEAKY_TASK.replace("data.jsonl", "../tasks/data.jsonl")
         + "process_results: !function utils.score\n"},
        "{tasks: [sneaky], include_path: tasks}", "elsewhere/base.inc", 10),
    "percent_tag": (
        {"tasks/sneaky.yaml": "%TAG !x! !fun\n---\n" + SNEAKY_TASK.strip()
         + "\nprocess_results: !x!ction utils.score\n"},
        "{tasks: [tasks/sneaky.yaml]}", "tasks/sneaky.yaml", 12),
    "primary_handle_renamed": (
        {"tasks/sneaky.yaml": "%TAG ! !fun\n---\n" + SNEAKY_TASK.strip()
         + "\nprocess_results: !ction utils.score\n"},
        "{tasks: [sneaky], include_path: tasks}", "tasks/sneaky.yaml", 12),
    "yml_file": (
        {"tasks/sneaky.yml": SNEAKY_TASK + "process_results: !function utils.score\n"},
        "{tasks: [tasks/sneaky.yml]}", "tasks/sneaky.yml", 10),
    "python_tag": (
        {"tasks/sneaky.yaml": SNEAKY_TASK + "process_results: !!python/object/apply:builtins.exec ['import utils']\n"},
        "{tasks: [tasks/sneaky.yaml]}", "tasks/sneaky.yaml", 10),
    "python_task_class": (
        {"tasks/sneaky.yaml": "task: sneaky\nclass: !function utils.score\n"},
        "{tasks: [sneaky], include_path: tasks}", "tasks/sneaky.yaml", 2),
    "group_member": (
        {"tasks/sneaky.yaml": SNEAKY_TASK + "process_results: !function utils.score\n",
         "groups/g.yaml": "group: g\ntask: [sneaky]\n"},
        "{tasks: [groups/g.yaml], include_path: tasks}", "tasks/sneaky.yaml", 10),
}


@pytest.mark.parametrize("case", sorted(BYPASSES))
def test_task_files_reached_any_way_are_data_and_refused_at_suite_load(tmp_path, case):
    files, source, culprit, line = BYPASSES[case]
    marker = _hostile_project(tmp_path)
    models = write(tmp_path / "models.toml", FAKE_MODELS)
    for name, text in files.items():
        write(tmp_path / name, text)
    assert "!function" not in (tmp_path / culprit).read_text() or case not in ("percent_tag", "primary_handle_renamed")
    suite = write(tmp_path / "s.yaml", f"suite: s\nlm_eval: {source}\nvariants: [base]\n")
    with pytest.raises(ConfigError) as info:
        load_suite(suite)
    assert info.value.file == str((tmp_path / culprit).resolve()) and info.value.line == line, str(info.value)
    assert not marker.exists()
    # The run path refuses too (it re-reads the same files through the same loader), and nothing ran.
    with pytest.raises(ConfigError):
        run(tmp_path, [suite], models)
    assert not marker.exists()
    # The CLI: exit 2, a message naming the file and line, no traceback, no marker.
    harness = Path(sys.executable).with_name("harness")
    done = subprocess.run([str(harness), "run", "s.yaml", "--no-progress"], cwd=tmp_path, capture_output=True,
                          text=True, env={**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache")})
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{(tmp_path / culprit).resolve()}:{line}" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not marker.exists()
    assert not (tmp_path / "reports").exists() and not (tmp_path / "cache").exists()


def test_prepare_refuses_a_hostile_task_file_even_when_suite_load_was_skipped(tmp_path):
    from harness.sources.lmeval import LmEvalSource, prepare

    marker = _hostile_project(tmp_path)
    write(tmp_path / "tasks" / "sneaky.yaml", "%TAG ! !fun\n---\n" + SNEAKY_TASK.strip()
          + "\nprocess_results: !ction utils.score\n")
    source = LmEvalSource(tasks=("sneaky",), paths=(None,), include_paths=((tmp_path / "tasks").resolve(),))
    with pytest.raises(ConfigError, match="would run code from the project"):
        prepare(source)
    assert not marker.exists()


def test_function_of_the_installed_lm_eval_is_allowed_however_the_tag_is_spelled(tmp_path):
    import lm_eval.tasks.truthfulqa.utils as reference

    from harness.sources.lmeval import load_task_yaml

    path = write(tmp_path / "t.yaml", "%TAG !e! !func\n---\ntask: t\n"
                                      "a: !e!tion lm_eval.tasks.truthfulqa.utils.process_results_mc2\n"
                                      "b: !<!function> lm_eval.tasks.truthfulqa.utils.process_results_mc2\n")
    cfg = load_task_yaml(path, resolve=True)
    assert cfg["a"] is reference.process_results_mc2 and cfg["b"] is reference.process_results_mc2
    assert load_task_yaml(path)["a"] == "!function lm_eval.tasks.truthfulqa.utils.process_results_mc2"
    # A name that looks like lm-eval's but is not a module of the installed package is refused with its line.
    write(path, "task: t\nx: 1\na: !function lm_eval.tasks.nothing_here.utils.f\n")
    with pytest.raises(ConfigError) as info:
        load_task_yaml(path)
    assert info.value.line == 3 and "no module" in str(info.value)
