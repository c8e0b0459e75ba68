"""The conformance matrix: every path the transformers backend can take, on tiny random-weight models of
the architectures people fine-tune, equals transformers' reference (eager attention, `generate`, the
full-sequence log-softmax) in float32, or the backend does not take it for that model.

Each test is one path; its parameter is the architecture, so a failure reads `test_<path>[<arch>]`.
`EXPECTED_REFERENCE_PATHS` is the table of docs/backends.md: which fast paths each architecture does not
take, checked against what the backend decides at load.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytest

from harness.backends import Adapter, EngineSpec, GenerateRequest, LoglikelihoodRequest, create_backend, freeze
from tests.backends.tiny_models import ARCHITECTURES, WINDOW, build_adapter, build_model

pytestmark = pytest.mark.model

FP32 = {"dtype": "float32"}
LOGPROB_TOLERANCE = 1e-4

A, P, G, C, OUT, M = ("attention", "shared_prefix", "greedy_loop", "context_reuse", "output_rows", "merge_adapters")
# The fast paths each architecture runs on the reference path, whatever the request (sequences that reach
# a sliding window take the reference path for shared_prefix and context_reuse on top of these).
EXPECTED_REFERENCE_PATHS: dict[str, set[str]] = {
    "llama-mha": set(),
    "llama-gqa": set(),
    "llama-mqa": set(),
    "mistral-sliding": set(),
    "qwen2-sliding": set(),
    "qwen3": set(),
    "gemma2-softcap-sliding": {A, OUT},
    "gemma3-sliding": set(),
    "phi3": set(),
    "gpt2": {A, OUT},
    "granite": {OUT},
    "cohere": {OUT},
    "falcon-alibi": {A},  # and it loads eager attention: Falcon's SDPA path scales ALiBi otherwise
    "bloom-alibi": {A},
    "deepseek_v3-mla": {A},
}
SLIDING = {"mistral-sliding", "qwen2-sliding", "gemma2-softcap-sliding", "gemma3-sliding"}
ADAPTER_FAMILIES = ["llama-gqa", "mistral-sliding", "qwen2-sliding", "gemma2-softcap-sliding", "phi3", "gpt2"]
PROCESSOR_FAMILIES = ["llama-gqa", "mistral-sliding", "gpt2"]

QUESTIONS = ["What is the capital of France?", "Say yes.", "Count one two three four five six seven."]
SYSTEM = {"role": "system", "content": "You are a terse assistant. Answer in one word. " * 3}
SHOTS = [m for q, a in [("What is two plus two?", "four"), ("Capital of Italy?", "Rome"),
                        ("Colour of the sky?", "blue"), ("Colour of grass?", "green"),
                        ("Say hello.", "hello"), ("What is one plus one?", "two")]
         for m in ({"role": "user", "content": q}, {"role": "assistant", "content": a})]


@dataclasses.dataclass
class Arch:
    name: str
    path: Path
    backend: Any
    reference: Any  # the same weights, eager attention
    tokenizer: Any


_BUILT: dict[tuple, Path] = {}


def _model_dir(root: Path, name: str, generation: dict | None = None) -> Path:
    key = (name, tuple(sorted((generation or {}).items())))
    if key not in _BUILT:
        suffix = "-".join(f"{k}{v}" for k, v in key[1])
        _BUILT[key] = build_model(name, root / (name + (f"-{suffix}" if suffix else "")), generation=generation)
    return _BUILT[key]


@pytest.fixture(scope="session")
def model_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny-models")


def _load(path: Path, **engine: Any) -> Arch:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    backend = create_backend(EngineSpec(model=str(path), backend="transformers", engine=freeze({**FP32, **engine})))
    reference = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    return Arch(path.name, path, backend, reference, AutoTokenizer.from_pretrained(path))


@pytest.fixture(scope="module", params=list(ARCHITECTURES))
def arch(request, model_root):
    loaded = _load(_model_dir(model_root, request.param))
    loaded.name = request.param
    yield loaded
    loaded.backend.close()
    _GENERATED.clear()


# -- the reference --------------------------------------------------------------------------------
def prompt_ids(arch: Arch, messages: list[dict]) -> list[int]:
    text = arch.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return arch.tokenizer(text, add_special_tokens=False)["input_ids"]


def _decode(arch: Arch, row: list[int]) -> tuple[str, int]:
    eos = arch.tokenizer.eos_token_id
    length = row.index(eos) if eos in row else len(row)
    return arch.tokenizer.decode(row[:length], skip_special_tokens=True), length


_GENERATED: dict[tuple, tuple] = {}


def reference_generate(arch: Arch, prompts: list[list[dict]], model: Any = None, **settings: Any) -> list[tuple]:
    """transformers' generate, eager attention, each prompt alone: (text, output tokens). Memoised per model
    object, prompt and settings (several paths compare with the same reference)."""
    import torch

    model = model or arch.reference
    out = []
    for messages in prompts:
        key = (id(model), repr(messages), repr(sorted(settings.items())))
        if key in _GENERATED and _GENERATED[key][0] is model:  # the entry holds its model: ids are not reused
            out.append(_GENERATED[key][1])
            continue
        ids = torch.tensor([prompt_ids(arch, messages)])
        with torch.no_grad():
            tokens = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                    pad_token_id=arch.tokenizer.eos_token_id, **settings)
        _GENERATED[key] = (model, _decode(arch, tokens[0, ids.shape[1]:].tolist()))
        out.append(_GENERATED[key][1])
    return out


def reference_sample(arch: Arch, prompts: list[list[dict]], *, seed: int, **settings: Any) -> list[str]:
    """Sampling as the backend batches it (prompts longest first, left-padded, one seed per batch), eager."""
    import torch

    ids = [prompt_ids(arch, m) for m in prompts]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
    width = max(len(r) for r in ids)
    pad = arch.tokenizer.eos_token_id
    batch = torch.tensor([[pad] * (width - len(ids[i])) + ids[i] for i in order])
    mask = torch.tensor([[0] * (width - len(ids[i])) + [1] * len(ids[i]) for i in order])
    torch.manual_seed(seed)
    with torch.no_grad():
        tokens = arch.reference.generate(input_ids=batch, attention_mask=mask, do_sample=True, pad_token_id=pad,
                                         **settings)
    texts = [""] * len(ids)
    for row, i in enumerate(order):
        texts[i] = _decode(arch, tokens[row, width:].tolist())[0]
    return texts


def reference_loglikelihood(arch: Arch, requests: list[LoglikelihoodRequest], model: Any = None) -> list[tuple]:
    """log-softmax over the full sequence's logits, summed over the continuation; argmax per position."""
    import torch

    model = model or arch.reference
    out = []
    for request in requests:
        ctx, cont = arch.backend._encode_pair(request)  # the tokens; the numbers are the reference's
        if not cont:
            out.append((0.0, True))
            continue
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ctx + cont])).logits[0, len(ctx) - 1 : -1].float()
        target = torch.tensor(cont)
        logprobs = torch.log_softmax(logits, -1).gather(1, target[:, None])[:, 0]
        out.append((logprobs.sum().item(), bool((logits.argmax(-1) == target).all())))
    return out


def assert_generations_equal(got, expected, requests) -> None:
    for request, g, (text, tokens) in zip(requests, got, expected, strict=True):
        assert (g.text, g.output_tokens) == (text, tokens), request.chat_messages[-1]


def assert_scores_equal(got, expected, requests) -> None:
    for request, g, (logprob, greedy) in zip(requests, got, expected, strict=True):
        assert abs(g.logprob - logprob) < LOGPROB_TOLERANCE, (request, g.logprob, logprob)
        assert g.is_greedy == greedy, (request, g, greedy)


def chat_requests(prompts, **settings) -> list[GenerateRequest]:
    return [GenerateRequest.chat(p, **settings) for p in prompts]


PLAIN = [[{"role": "user", "content": q}] for q in QUESTIONS]
FEWSHOT = [[SYSTEM, *SHOTS, {"role": "user", "content": q}] for q in QUESTIONS]


def mc_raw_requests() -> list[LoglikelihoodRequest]:
    long = "question: " + "the sea is blue and the sky is blue. " * 4 + "what colour is the grass? answer:"
    requests = [LoglikelihoodRequest(context="the capital of France is", continuation=c)
                for c in (" Paris", " Rome", " a city by the river")]
    requests += [LoglikelihoodRequest(context=long, continuation=c) for c in (" green", " blue", " red apple tree")]
    requests += [LoglikelihoodRequest(context="one two three", continuation=" four five"),
                 LoglikelihoodRequest(context="", continuation="hello world")]
    return requests


def mc_chat_requests() -> list[LoglikelihoodRequest]:
    requests = []
    for question, choices in [("What is the capital of France?", ["Paris", "Rome", "a city by the river"]),
                              ("Colour of grass?", ["green", "blue", "red"]),
                              ("Count to three.", ["one two three", "one"])]:
        context = tuple(tuple(sorted(m.items())) for m in (SYSTEM, *SHOTS[:4], {"role": "user", "content": question}))
        requests += [LoglikelihoodRequest(context=context, continuation=c) for c in choices]
    return requests


# -- the matrix -----------------------------------------------------------------------------------
def test_reference_paths_are_the_documented_ones(arch):
    """What the backend decides at load equals the table in docs/backends.md, and the self-check passed."""
    assert set(arch.backend.fallbacks()) == EXPECTED_REFERENCE_PATHS[arch.name], arch.backend.fallbacks()
    assert arch.backend.self_check_difference < 1e-3
    assert (arch.backend._window is not None) == (arch.name in SLIDING)


def test_plain_prompts_greedy_batched(arch, monkeypatch):
    """Greedy, a batch of chat prompts of different lengths (the greedy loop, left padding) = generate alone."""
    monkeypatch.setattr(arch.backend, "batch_size", 2)
    requests = chat_requests(PLAIN, max_tokens=8)
    assert_generations_equal(arch.backend.generate(requests), reference_generate(arch, PLAIN, max_new_tokens=8),
                             requests)


def test_fewshot_prefix_greedy(arch, monkeypatch):
    """A few-shot/system prefix longer than the sliding window, shared by every prompt of the call."""
    import harness.backends.transformers.backend as tb

    requests = chat_requests(FEWSHOT, max_tokens=8)
    lengths = [len(prompt_ids(arch, m)) for m in FEWSHOT]
    assert min(lengths) > WINDOW and len(tb._shared_prefix([prompt_ids(arch, m) for m in FEWSHOT])) >= tb.PREFIX_MIN_TOKENS
    monkeypatch.setattr(arch.backend, "batch_size", 1)  # several batches continue from the one prefix
    expected = reference_generate(arch, FEWSHOT, max_new_tokens=8)
    assert_generations_equal(arch.backend.generate(requests), expected, requests)
    monkeypatch.setattr(tb, "PREFIX_MIN_TOKENS", 1)  # plain prompts share the template's first tokens
    plain = chat_requests(PLAIN, max_tokens=8)
    assert_generations_equal(arch.backend.generate(plain), reference_generate(arch, PLAIN, max_new_tokens=8), plain)


def test_fewshot_prefix_short_of_the_window(arch, monkeypatch):
    """Prompts shorter than the window (a short shared prefix): the prefix path runs on sliding models too."""
    import harness.backends.transformers.backend as tb

    monkeypatch.setattr(tb, "PREFIX_MIN_TOKENS", 4)
    prompts = [[{"role": "user", "content": f"say {w}"}] for w in ("yes", "no", "red")]
    requests = chat_requests(prompts, max_tokens=6)
    assert max(len(prompt_ids(arch, p)) for p in prompts) + 6 < WINDOW
    assert_generations_equal(arch.backend.generate(requests), reference_generate(arch, prompts, max_new_tokens=6),
                             requests)


def test_stop_strings(arch):
    """A stop string (transformers' generate with stop_strings, then cut at the stop) = generate's text cut there."""
    prompts = PLAIN[:2] + FEWSHOT[:2]
    full = reference_generate(arch, prompts, max_new_tokens=8)
    stops = [text[len(text) // 2 : len(text) // 2 + 2] or "zz" for text, _ in full]
    requests = [GenerateRequest.chat(p, max_tokens=8, stop=(s,)) for p, s in zip(prompts, stops, strict=True)]
    got = arch.backend.generate(requests)
    for g, (text, _), stop in zip(got, full, stops, strict=True):
        cut = text.find(stop)
        assert g.text == (text[:cut] if cut >= 0 else text), (stop, g.text, text)


def test_sampling_with_a_seed(arch):
    """Sampling with a seed equals generate's sampling of the same batch with that seed."""
    for prompts in (PLAIN, FEWSHOT):
        requests = chat_requests(prompts, max_tokens=8, temperature=0.9, top_p=0.95, seed=3)
        got = [g.text for g in arch.backend.generate(requests)]
        assert got == reference_sample(arch, prompts, seed=3, max_new_tokens=8, temperature=0.9, top_p=0.95)


def test_multiple_choice_raw_text(arch, monkeypatch):
    """Raw-text log-likelihoods (shared contexts, a context longer than the window, a lone request) within
    1e-4 of the full-sequence log-softmax, batched and one at a time."""
    requests = mc_raw_requests()
    expected = reference_loglikelihood(arch, requests)
    monkeypatch.setattr(arch.backend, "batch_size", 2)
    assert_scores_equal(arch.backend.loglikelihood(requests), expected, requests)
    alone = [arch.backend.loglikelihood([r])[0] for r in requests]
    assert_scores_equal(alone, expected, requests)


def test_multiple_choice_chat(arch, monkeypatch):
    """Chat multiple choice: contexts share a system turn + examples longer than the window (the shared
    prefix and context reuse paths), within 1e-4 of the reference."""
    requests = mc_chat_requests()
    expected = reference_loglikelihood(arch, requests)
    monkeypatch.setattr(arch.backend, "batch_size", 1)
    assert_scores_equal(arch.backend.loglikelihood(requests), expected, requests)


def test_short_contexts_reuse_their_cache(arch):
    """Multiple choice shorter than the window: the context-reuse path runs on sliding models too."""
    requests = [LoglikelihoodRequest(context="the sky is", continuation=c) for c in (" blue", " green sea", " red")]
    assert max(len(sum(arch.backend._encode_pair(r), [])) for r in requests) < WINDOW
    assert_scores_equal(arch.backend.loglikelihood(requests), reference_loglikelihood(arch, requests), requests)


# -- generation_config processors ---------------------------------------------------------------
@pytest.mark.parametrize("name", PROCESSOR_FAMILIES)
def test_generation_config_processors(name, model_root, caplog):
    """A generation_config with repetition_penalty and no_repeat_ngram_size: greedy requests decode as
    generate does (it applies them), the greedy loop is not taken, and that is logged once."""
    path = _model_dir(model_root, name, {"repetition_penalty": 1.5, "no_repeat_ngram_size": 2})
    with caplog.at_level(logging.INFO, logger="harness"):
        loaded = _load(path)
    try:
        assert "repetition_penalty=1.5" in loaded.backend.fallbacks()[G]
        assert sum("greedy_loop runs the reference path" in r.message for r in caplog.records) == 1
        for prompts in (PLAIN, FEWSHOT):
            requests = chat_requests(prompts, max_tokens=8)
            assert_generations_equal(loaded.backend.generate(requests),
                                     reference_generate(loaded, prompts, max_new_tokens=8), requests)
    finally:
        loaded.backend.close()


# -- adapters -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ADAPTER_FAMILIES)
def test_lora_adapter_merged_and_unmerged(name, model_root, tmp_path):
    """A LoRA adapter (random non-zero B): merged (the default) and unmerged, generation and scoring equal
    PEFT's unmerged model with eager attention, and the adapter changes the outputs."""
    from peft import PeftModel

    from harness.config.files import sha256_dir

    path = _model_dir(model_root, name)
    adapter_dir = build_adapter(path, tmp_path / "adapter")
    adapter = Adapter("lora", adapter_dir, sha256_dir(adapter_dir))
    loaded = _load(path)
    tuned = PeftModel.from_pretrained(loaded.reference, adapter_dir).eval()
    try:
        prompts = PLAIN + FEWSHOT[:2]
        gen = [GenerateRequest.chat(p, max_tokens=8, adapter=adapter) for p in prompts]
        scores = [dataclasses.replace(r, adapter=adapter) for r in mc_raw_requests() + mc_chat_requests()[:3]]
        expected_gen = reference_generate(loaded, prompts, model=tuned, max_new_tokens=8)
        expected_scores = reference_loglikelihood(loaded, scores, model=tuned)
        for merge in (True, False):
            loaded.backend.merge_adapters = merge
            assert_generations_equal(loaded.backend.generate(gen), expected_gen, gen)
            assert_scores_equal(loaded.backend.loglikelihood(scores), expected_scores, scores)
            assert (loaded.backend._merged is not None) == merge
        with tuned.disable_adapter():
            untuned = reference_loglikelihood(loaded, scores, model=tuned)
        assert max(abs(a[0] - b[0]) for a, b in zip(untuned, expected_scores, strict=True)) > 1e-2
    finally:
        loaded.backend.close()


# -- the load-time self-check -------------------------------------------------------------------
def test_a_fast_path_that_diverges_is_caught_at_load_and_not_taken(model_root, monkeypatch):
    """An attention function that drops the oldest key when decoding (a window bug of the kind the matrix
    exists for): the self-check at load finds the difference, warns, and every request then runs the
    reference path with the reference's results."""
    import harness.backends.transformers.backend as tb

    real = tb._register_gqa_sdpa()

    def broken_register():
        from transformers import AttentionInterface, AttentionMaskInterface
        from transformers.masking_utils import sdpa_mask

        good = AttentionInterface._global_mapping[real]

        def forward(module, query, key, value, attention_mask, **kwargs):
            if query.shape[2] == 1 and key.shape[2] > 1:
                key, value = key[:, :, 1:], value[:, :, 1:]
                attention_mask = None if attention_mask is None else attention_mask[..., 1:]
            return good(module, query, key, value, attention_mask, **kwargs)

        AttentionInterface.register("broken_decode", forward)
        AttentionMaskInterface.register("broken_decode", sdpa_mask)
        return "broken_decode"

    monkeypatch.setattr(tb, "_register_gqa_sdpa", broken_register)
    with pytest.warns(UserWarning, match="self-check"):
        loaded = _load(_model_dir(model_root, "llama-gqa"))
    try:
        assert set(loaded.backend.fallbacks()) == {A, P, G, C, OUT, M}
        assert loaded.backend._attention() == "sdpa"
        requests = chat_requests(FEWSHOT, max_tokens=8)
        assert_generations_equal(loaded.backend.generate(requests),
                                 reference_generate(loaded, FEWSHOT, max_new_tokens=8), requests)
        scores = mc_chat_requests()
        assert_scores_equal(loaded.backend.loglikelihood(scores), reference_loglikelihood(loaded, scores), scores)
    finally:
        loaded.backend.close()


def test_sliding_window_fallback_is_logged_once_per_engine(model_root, caplog):
    """Sequences that reach a sliding window take the reference path for the prefix and context reuse; the
    reason is logged once per engine however many calls hit it."""
    with caplog.at_level(logging.INFO, logger="harness"):
        loaded = _load(_model_dir(model_root, "mistral-sliding"))
        try:
            for _ in range(3):
                loaded.backend.generate(chat_requests(FEWSHOT, max_tokens=4))
                loaded.backend.loglikelihood(mc_chat_requests())
        finally:
            loaded.backend.close()
    window_notes = [r.message for r in caplog.records if "sliding attention window" in r.message]
    assert len(window_notes) == len(set(window_notes)) and any("shared_prefix" in m for m in window_notes)
    assert any("context_reuse" in m for m in window_notes)
