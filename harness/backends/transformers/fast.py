"""Which of the transformers backend's CPU fast paths a loaded model may take, and why not.

Every fast path of the backend (its own attention function, the prompt prefix kept once, the greedy
loop, the multiple-choice context reuse, the output layer on selected rows, merged adapters) computes
what transformers' own forward pass and `generate` compute, but only for the architectures and
configurations the conformance matrix (tests/backends/test_conformance.py) proves it on. This module
declares that allowlist and checks a model's config and generation config against it when an engine
loads: anything outside takes the reference path (transformers' forward / `generate`), and the engine
logs the reason once. docs/backends.md has the table.
"""

from __future__ import annotations

from typing import Any

ATTENTION = "attention"
"""The backend's own attention function (GQA inside the SDPA kernel for prompts, batched matmuls for one
query token, a prompt prefix stored once for all rows)."""
SHARED_PREFIX = "shared_prefix"
"""A prompt prefix every request of a call begins with (few-shot examples, a system turn) runs once; the
batches continue from its KV cache (generation and scoring)."""
GREEDY_LOOP = "greedy_loop"
"""Greedy requests without stop strings decode in the backend's own loop (finished rows leave the batch)."""
CONTEXT_REUSE = "context_reuse"
"""The choices of one multiple-choice question run on a copy of their context's KV cache."""
OUTPUT_ROWS = "output_rows"
"""Scoring runs the output layer only on the positions it scores and reduces the logits a block at a time."""
MERGE_ADAPTERS = "merge_adapters"
"""A LoRA adapter's update is merged into the base weights while its requests run."""

PATHS = (ATTENTION, SHARED_PREFIX, GREEDY_LOOP, CONTEXT_REUSE, OUTPUT_ROWS, MERGE_ADAPTERS)

# The model types each path is proven on by the conformance matrix (tests/backends/test_conformance.py),
# in float32 against eager attention, `generate` and full-sequence log-softmax. A type that is not listed
# takes the reference path; add it here only together with its row in the matrix.
_DECODERS = frozenset({
    "llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "phi3", "gpt2", "granite", "cohere",
    "falcon", "bloom", "deepseek_v3",
})
VERIFIED: dict[str, frozenset[str]] = {
    # The attention function reads query/key/value heads of one size and no position bias (ALiBi models
    # pass theirs inside the mask or do not call the attention interface at all).
    ATTENTION: frozenset({"llama", "mistral", "qwen2", "qwen3", "gemma3_text", "phi3", "granite", "cohere"}),
    SHARED_PREFIX: _DECODERS,
    GREEDY_LOOP: _DECODERS,
    CONTEXT_REUSE: _DECODERS,
    OUTPUT_ROWS: _DECODERS,
    MERGE_ADAPTERS: _DECODERS,
}

# generation_config fields that make `generate` decode otherwise than by the plain argmax the greedy loop
# takes (logits processors, beam or assisted search, extra stopping rules). Any of them away from its
# default sends greedy requests through `generate`, which applies them.
GREEDY_NEUTRAL_FIELDS = (
    "repetition_penalty", "encoder_repetition_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size",
    "bad_words_ids", "force_words_ids", "constraints", "sequence_bias", "min_length", "min_new_tokens",
    "forced_bos_token_id", "forced_eos_token_id", "remove_invalid_values", "exponential_decay_length_penalty",
    "suppress_tokens", "begin_suppress_tokens", "guidance_scale", "watermarking_config", "renormalize_logits",
    "num_beams", "num_beam_groups", "diversity_penalty", "penalty_alpha", "dola_layers", "low_memory",
    "prompt_lookup_num_tokens", "assistant_early_exit", "max_matching_ngram_size", "token_healing",
    "stop_strings", "max_time", "use_mtp", "speculation_type", "num_return_sequences", "output_scores",
)


def text_config(config: Any) -> Any:
    getter = getattr(config, "get_text_config", None)
    return getter() if callable(getter) else config


def sliding_window(config: Any) -> int | None:
    """The attention window of the model's sliding-window layers (None: every layer sees the whole sequence).

    transformers masks key j out of query i's attention when j <= i - window (masking_utils
    `sliding_window_overlay`), and sliding layers' caches keep only the last window - 1 tokens; a sequence
    of fewer than `window` cache slots is therefore computed exactly as by a full-attention layer.
    """
    cfg = text_config(config)
    window = getattr(cfg, "sliding_window", None)
    if not window:
        return None
    layer_types = getattr(cfg, "layer_types", None)
    if layer_types is not None and not any("sliding" in str(kind) or "chunk" in str(kind) for kind in layer_types):
        return None
    if getattr(cfg, "use_sliding_window", True) is False:
        return None
    return int(window)


def eager_only(config: Any) -> str | None:
    """Why transformers' SDPA attention would not compute what its eager attention computes for this model
    (None: they agree). Such models load with eager attention, the reference."""
    cfg = text_config(config)
    if getattr(cfg, "attn_logit_softcapping", None):
        return "attention logits are soft-capped (attn_logit_softcapping), which transformers' SDPA path ignores"
    if getattr(cfg, "model_type", None) == "falcon" and getattr(cfg, "alibi", False):
        return "Falcon's SDPA path adds the ALiBi bias unscaled, its eager path scales it by 1/sqrt(head size)"
    return None


def greedy_blockers(generation_config: Any) -> list[str]:
    """The generation_config settings (name=value) under which `generate`'s greedy decoding is not a plain argmax."""
    if generation_config is None:
        return []
    from transformers import GenerationConfig

    default = GenerationConfig()
    found = []
    for name in GREEDY_NEUTRAL_FIELDS:
        value = getattr(generation_config, name, None)
        if value != getattr(default, name, None) and not (name == "min_length" and not value):
            found.append(f"{name}={value!r}")
    return found


def plan(model: Any, *, attention: str | None, user_attention: bool) -> dict[str, str | None]:
    """For each fast path: None (taken) or why the reference path runs instead, from the model's config and
    generation config (checked once, when the engine loads; sequence lengths are checked per call)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config
    cfg = text_config(config)
    model_type = getattr(cfg, "model_type", None) or getattr(config, "model_type", None)
    reasons: dict[str, str | None] = {}
    for path in PATHS:
        if model_type not in VERIFIED[path]:
            reasons[path] = f"model type {model_type!r} is not verified for this path by the conformance matrix"
        else:
            reasons[path] = None
    if reasons[ATTENTION] is None:
        if user_attention:
            reasons[ATTENTION] = "the engine sets attn_implementation"
        elif attention != "sdpa":
            reasons[ATTENTION] = f"the model runs {attention!r} attention, not sdpa"
        elif eager_only(config):
            reasons[ATTENTION] = eager_only(config)
        elif _head_sizes_differ(cfg):
            reasons[ATTENTION] = "value heads are not the size of query heads"
        elif getattr(model, "device", None) is not None and getattr(model.device, "type", "cpu") != "cpu":
            reasons[ATTENTION] = "the model is not on the CPU"
    extra = [key for key in ("final_logit_softcapping", "logit_scale", "logits_scaling") if getattr(cfg, key, None)]
    if reasons[OUTPUT_ROWS] is None and (extra or not type(base).__name__.endswith("ForCausalLM")):
        reasons[OUTPUT_ROWS] = (f"the logits are transformed after the output layer ({', '.join(extra)})" if extra
                                else f"{type(base).__name__} is not a plain causal LM")
    blockers = greedy_blockers(getattr(base, "generation_config", None))
    if reasons[GREEDY_LOOP] is None and blockers:
        reasons[GREEDY_LOOP] = "generation_config sets " + ", ".join(blockers) + " (generate applies it)"
    return reasons


def _head_sizes_differ(cfg: Any) -> bool:
    v_head = getattr(cfg, "v_head_dim", None)
    qk_head = getattr(cfg, "qk_head_dim", None) or (
        (getattr(cfg, "qk_nope_head_dim", 0) or 0) + (getattr(cfg, "qk_rope_head_dim", 0) or 0) or None)
    return v_head is not None and qk_head is not None and v_head != qk_head
