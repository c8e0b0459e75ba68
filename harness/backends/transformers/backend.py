"""transformers backend: CPU/GPU, PEFT adapters on one loaded base, bitsandbytes NF4 (QLoRA).

One instance loads one base model. Adapters are loaded into the same PeftModel by name and
switched per batch, so base + N adapters cost one base load.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import math
import os
import subprocess
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.backends.base import (
    Adapter,
    Backend,
    EngineSpec,
    GenerateRequest,
    Generation,
    Loglikelihood,
    LoglikelihoodRequest,
    encode_pair,
)
from harness.backends.identity import resolve_model_path
from harness.backends.transformers import fast
from harness.errors import AdapterError, BackendError

IMPLEMENTATION = "transformers/2"
"""Version of this module's outputs (generations, log-likelihoods), part of the cache identity of every
engine it serves (runner.engine_fingerprint) and of blessed baselines: bump it by hand whenever a change here
could change an output; tests/test_implementation.py fails until you do."""

log = logging.getLogger("harness")

ENGINE_KEYS = {"dtype", "device", "batch_size", "attn_implementation", "max_length", "merge_adapters", "add_bos_token"}
PREFIX_MIN_TOKENS = 64  # shorter shared prefixes are cheaper to recompute than to copy per batch
SCORE_PREFIX_MIN_TOKENS = 8  # scoring copies the prefix once per batch of contexts, not per continuation
LOGIT_BLOCK_ROWS = 8  # rows of logits converted to float32 at a time when scoring (the block stays in cache)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 / AMX-BF16 on x86, the BF16 extension on Arm).

    Where it does, a bfloat16 model runs ~3x faster than float32 on prompts and ~1.8x on generation
    (benchmarks/bench_transformers.py); where it does not, bfloat16 is emulated and slower than float32.
    """
    return _native_bf16_flags(_cpu_flags()) and _isa_cap_allows_bf16(os.environ.get("ONEDNN_MAX_CPU_ISA", ""))


def _native_bf16_flags(flags: set[str]) -> bool:
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def _isa_cap_allows_bf16(cap: str) -> bool:
    """Whether oneDNN's instruction-set cap (ONEDNN_MAX_CPU_ISA) leaves bfloat16 instructions in use.

    Capped below AVX512_CORE_BF16 (e.g. `AVX2`, used to emulate an AVX2-only machine), torch's CPU kernels
    emulate bfloat16, so the default dtype is float32 as it is on such a machine.
    """
    cap = cap.strip().upper()
    if not cap or cap in {"ALL", "DEFAULT"}:
        return True
    return any(part in cap for part in ("BF16", "AMX", "FP16", "AVX10"))


@functools.cache
def _cpu_flags() -> set[str]:
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    flags.update(line.split(":", 1)[-1].split())
    except OSError:
        pass
    if sys.platform == "darwin":  # Apple silicon: M2 and later have FEAT_BF16
        try:
            out = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True, timeout=5)
            if out.stdout.strip() == "1":
                flags.add("bf16")
        except (OSError, subprocess.SubprocessError):
            pass
    return flags


def default_dtype(device: str | None = None) -> str:
    """The dtype a model loads in when its variant sets none: bfloat16 where the hardware computes it
    natively (a CUDA GPU with bf16, a CPU with native bf16), else float16 on older GPUs, float32 on CPUs.

    It is part of the cache identity (runner.engine_fingerprint), so results computed in one dtype are
    never served for another; pin it with `engine = { dtype = "float32" }`.
    """
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if device == "cpu":
        return "bfloat16" if cpu_has_native_bf16() else "float32"
    return "float32"


GQA_SDPA = "harness_sdpa_gqa"


def merges_adapters(engine: dict[str, Any], quantization: str | None) -> bool:
    """Whether adapters are merged into the base weights while their requests run (engine arg
    `merge_adapters`, default on). Never on a quantized base: merging re-quantizes its packed weights."""
    value = engine.get("merge_adapters", True)
    if not isinstance(value, bool):
        raise BackendError(f"engine merge_adapters must be true or false, not {value!r}.")
    return value and quantization is None


@functools.cache
def _register_gqa_sdpa() -> str:
    """transformers' SDPA attention, with two CPU paths of its own.

    - Prompts (several query tokens) with a mask: grouped-query attention runs inside the kernel
      (`enable_gqa`) instead of first copying every K/V head once per query head. transformers only lets the
      kernel do GQA without a mask (a CUDA constraint); on CPU the copies dominate after a long prompt: one
      layer over 1,500 cached tokens for 16 rows takes 46 ms with the copies and 2.6 ms without.
    - Decoding (one query token): plain batched matmuls, which the CPU runs several times faster than the
      SDPA kernel for a single query, in bfloat16 especially (0.9 ms -> 0.2 ms per layer at 100 tokens).
    """
    import torch
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import sdpa_mask

    def decode(query, key, value, attention_mask, scaling):
        """One query token per row: two batched matmuls with the query heads grouped per K/V head and the
        softmax in float32 (~5x faster than the SDPA kernel in bfloat16 on CPU, same within one bf16 ulp)."""
        batch, heads, _, dim = query.shape
        kv_heads, length = key.shape[1], key.shape[2]
        grouped = query.reshape(batch, kv_heads, heads // kv_heads, dim)
        scores = torch.matmul(grouped, key.transpose(-1, -2)).float() * (dim**-0.5 if scaling is None else scaling)
        if attention_mask is not None:
            mask = attention_mask[:, :, -1:, -length:].reshape(batch, 1, 1, length)
            scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
        out = torch.matmul(torch.softmax(scores, dim=-1).to(value.dtype), value)
        return out.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous()

    def decode_shared(query, prefix, key, value, attention_mask, scaling):
        """`decode` for rows that all begin with one prefix, whose keys/values are stored once: every row's
        query meets the prefix in one matmul (the prefix is read once, not once per row), its own tokens
        in a batched one; one softmax over both."""
        batch, heads, _, dim = query.shape
        kv_heads, length = key.shape[1], key.shape[2]
        prefix_keys, prefix_values = prefix  # [1, kv_heads, P, dim]
        shared = prefix_keys.shape[2]
        grouped = query.reshape(batch, kv_heads, heads // kv_heads, dim)
        across = grouped.transpose(0, 1).reshape(kv_heads, -1, dim)  # [kv_heads, batch x group, dim]
        scale = dim**-0.5 if scaling is None else scaling
        on_prefix = torch.matmul(across, prefix_keys[0].transpose(-1, -2)).float() * scale
        on_prefix = on_prefix.reshape(kv_heads, batch, -1, shared).transpose(0, 1)
        own = torch.matmul(grouped, key.transpose(-1, -2)).float() * scale
        if attention_mask is not None:  # the prefix is visible to every row; the mask covers the rows' own tokens
            mask = attention_mask[:, :, -1:, -length:].reshape(batch, 1, 1, length)
            own = own.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else own + mask
        probs = torch.softmax(torch.cat([on_prefix, own], dim=-1), dim=-1).to(value.dtype)
        out = torch.matmul(probs[..., shared:], value)
        across = probs[..., :shared].transpose(0, 1).reshape(kv_heads, -1, shared)
        out = out + torch.matmul(across, prefix_values[0]).reshape(kv_heads, batch, -1, dim).transpose(0, 1)
        return out.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous()

    def forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs):
        plain = (
            query.device.type == "cpu"
            and kwargs.get("position_bias") is None
            and kwargs.get("cache") is None
            and not kwargs.get("output_attentions")
            and not (dropout and module.training)
        )
        shared = getattr(key, "shared_prefix", None)  # set by a SharedPrefixLayer cache
        if shared is not None:
            shared.reads += 1
            if plain and query.shape[2] == 1 and query.shape[1] % key.shape[1] == 0:
                return decode_shared(query, shared.prefix, key, value, attention_mask, scaling), None
            rows = key.shape[0]
            key = torch.cat([shared.prefix[0].expand(rows, -1, -1, -1), key], dim=-2)
            value = torch.cat([shared.prefix[1].expand(rows, -1, -1, -1), value], dim=-2)
        if plain and query.shape[2] == 1 and query.shape[1] % key.shape[1] == 0:
            return decode(query, key, value, attention_mask, scaling), None
        if plain and attention_mask is not None and getattr(module, "num_key_value_groups", 1) > 1:
            out = torch.nn.functional.scaled_dot_product_attention(
                query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, enable_gqa=True
            )
            return out.transpose(1, 2).contiguous(), None
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )

    AttentionInterface.register(GQA_SDPA, forward)
    AttentionMaskInterface.register(GQA_SDPA, sdpa_mask)
    return GQA_SDPA


def _denormals_flushed() -> bool:
    tiny = sys.float_info.min
    return tiny * 0.5 == 0.0


@contextlib.contextmanager
def _compute(torch: Any):
    """inference_mode with denormal floats flushed to zero, restored afterwards.

    Denormals make CPU matmuls of small models several times slower, but flushing them is a
    process-wide floating-point mode: left on, it changes arithmetic in the caller's own code
    (a pytest session, a notebook). So it is on only while the model computes.
    """
    was = _denormals_flushed()
    torch.set_flush_denormal(True)
    try:
        with torch.inference_mode():
            yield
    finally:
        torch.set_flush_denormal(was)


def _can_drop_rows(cache: Any) -> bool:
    """Whether every layer of a transformers cache can keep a subset of its rows (attention layers can;
    the state layers of some hybrid architectures cannot: their rows then stay until the batch ends)."""
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(callable(getattr(layer, "batch_select_indices", None)) for layer in layers)


@dataclass
class SharedPrefix:
    """A prompt prefix's keys/values ([1, kv heads, P, dim]) that every row of a batch attends to."""

    prefix: tuple[Any, Any]
    reads: int = 0


@functools.cache
def _shared_prefix_layer() -> type:
    from transformers.cache_utils import DynamicLayer

    class SharedPrefixLayer(DynamicLayer):
        """One attention layer's KV cache for a batch whose rows all begin with one prefix: the prefix's
        keys/values once ([1, kv heads, P, dim], never copied per row), each row's own tokens after it as a
        DynamicLayer keeps them. The keys it returns carry `shared` (`shared_prefix`: the prefix, and `reads`,
        which the backend's attention function counts up when it attends to the prefix too); not the layer
        itself, which holds the keys: that cycle would keep a finished batch's cache alive until a gc pass."""

        is_croppable = False

        def __init__(self, keys: Any, values: Any) -> None:
            super().__init__()
            self.shared = SharedPrefix(prefix=(keys, values))

        def own_length(self) -> int:
            return 0 if not self.is_initialized or self.keys.numel() == 0 else self.keys.shape[-2]

        def update(self, key_states, value_states, *args, **kwargs):
            keys, values = super().update(key_states, value_states, *args, **kwargs)
            keys.shared_prefix = self.shared
            return keys, values

        def get_seq_length(self) -> int:
            return self.shared.prefix[0].shape[-2] + self.own_length()

        def batch_select_indices(self, indices: Any) -> None:
            if self.own_length():
                self.keys, self.values = self.keys[indices, ...], self.values[indices, ...]

        def batch_repeat_interleave(self, repeats: int) -> None:
            if self.own_length():
                self.keys = self.keys.repeat_interleave(repeats, dim=0)
                self.values = self.values.repeat_interleave(repeats, dim=0)

        def reorder_cache(self, beam_idx: Any) -> None:
            if self.own_length():
                self.keys = self.keys.index_select(0, beam_idx.to(self.keys.device))
                self.values = self.values.index_select(0, beam_idx.to(self.values.device))

    return SharedPrefixLayer


def _can_share(prefix_cache: Any) -> bool:
    """Whether every layer of `prefix_cache` is a plain attention layer (sliding windows and states keep a
    copy per row)."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(prefix_cache, "layers", None)
    return bool(layers) and all(type(layer) is DynamicLayer and layer.is_initialized for layer in layers)


def _shared_prefix_cache(prefix_cache: Any) -> Any | None:
    """A cache for a batch of rows that begin with `prefix_cache`'s tokens, holding them once (None where
    the layers do not allow it)."""
    if not _can_share(prefix_cache):
        return None
    cache = copy.copy(prefix_cache)
    cache.layers = [_shared_prefix_layer()(layer.keys, layer.values) for layer in prefix_cache.layers]
    return cache


def _check_prefix_reads(cache: Any) -> None:
    """After a forward pass on a shared-prefix cache: every layer's attention must have read its prefix
    (a model whose attention gets the keys some other way would silently ignore it)."""
    unread = [i for i, layer in enumerate(getattr(cache, "layers", []))
              if getattr(getattr(layer, "shared", None), "reads", None) == 0]
    if unread:
        raise BackendError(
            f"the model's attention did not read the shared prompt prefix (layers {unread[:5]}); "
            "set TransformersBackend.share_prefixes = False for this model."
        )


def _contiguous_input(module: Any) -> None:
    """Make `module` (the output layer) copy a strided input into one block first.

    With `logits_to_keep` a model hands its output layer a slice of the hidden states ([rows, 1, hidden],
    strided). For a weight without gradient (a frozen base model, as under PEFT) torch's linear then takes
    a batched-matmul path that copies the whole vocabulary x hidden weight once per row: 957 ms instead of
    9 ms for 16 rows of a 49k-token vocabulary on CPU, which made every forward pass after an adapter loaded
    3x slower. Copying the small input avoids it.
    """
    if module is None:
        return

    def contiguous(_module: Any, args: tuple) -> tuple | None:
        if args and hasattr(args[0], "is_contiguous") and not args[0].is_contiguous():
            return (args[0].contiguous(), *args[1:])
        return None

    module.register_forward_pre_hook(contiguous)


def _shared_prefix(rows: list[list[int]]) -> list[int]:
    """The longest token prefix every row starts with, leaving each row at least one token of its own."""
    if len(rows) < 2:
        return []
    first, shortest = rows[0], min(len(r) for r in rows)
    n = 0
    while n < shortest - 1 and all(r[n] == first[n] for r in rows):
        n += 1
    return first[:n]


def _truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class TransformersBackend(Backend):
    name = "transformers"
    greedy_loop = True
    """Greedy requests without stop strings decode in the backend's own loop (finished rows leave the batch);
    False: transformers' generate for everything."""
    share_prefixes = True
    """In the greedy loop, a prompt prefix shared by a batch (few-shot examples) is stored and read once for
    all rows; False: a copy per row, as generate does."""
    self_check_difference: float | None = None
    """The largest log-prob difference the load-time self-check found between the fast paths and the reference."""

    def __init__(self, spec: EngineSpec) -> None:
        super().__init__(spec)
        try:
            import torch
            import transformers  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise BackendError(f"the transformers backend needs torch and transformers ({exc}). Run `make install`.") from exc
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        engine = spec.engine_args
        unknown = set(engine) - ENGINE_KEYS
        if unknown:
            raise BackendError(
                f"unknown engine argument(s) for the transformers backend: {', '.join(sorted(unknown))}. "
                f"Valid: {', '.join(sorted(ENGINE_KEYS))}."
            )
        self.torch = torch
        self.device = engine.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype_name = engine.get("dtype") or default_dtype(self.device)
        dtype = getattr(torch, dtype_name, None)
        if not isinstance(dtype, torch.dtype):
            raise BackendError(f"engine dtype '{dtype_name}' is not a torch dtype (e.g. float32, bfloat16).")
        self.batch_size = int(engine.get("batch_size", 16))
        self.merge_adapters = merges_adapters(engine, spec.quantization)
        self.max_length = engine.get("max_length")
        path = resolve_model_path(spec.model)
        self._noted: set[tuple[str, str]] = set()
        started = time.perf_counter()
        kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": spec.trust_remote_code}
        if engine.get("attn_implementation"):
            kwargs["attn_implementation"] = engine["attn_implementation"]
        if spec.quantization == "nf4":
            try:
                import bitsandbytes  # noqa: F401
                from transformers import BitsAndBytesConfig
            except ImportError as exc:
                raise BackendError(f"quantization = 'nf4' needs bitsandbytes ({exc}). Run `make install`.") from exc
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype
            )
            if self.device != "cpu":
                kwargs["device_map"] = self.device
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=spec.trust_remote_code)
            eager_reason = fast.eager_only(AutoConfig.from_pretrained(path, trust_remote_code=spec.trust_remote_code))
            if eager_reason and "attn_implementation" not in kwargs:
                # The reference where transformers' SDPA path computes something else (Gemma2's soft-capping,
                # Falcon's ALiBi); some models pick their attention class when built, so it is set at load.
                kwargs["attn_implementation"] = "eager"
            self.model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        except OSError as exc:
            raise BackendError(f"could not load model '{spec.model}' ({path}): {exc}") from None
        if "quantization_config" not in kwargs:
            self.model.to(self.device)
        if eager_reason and not engine.get("attn_implementation"):
            self._note(fast.ATTENTION, f"runs eager attention: {eager_reason}")
        self.fast = fast.plan(self.model, attention=self._attention(), user_attention=bool(engine.get("attn_implementation")))
        self._window = fast.sliding_window(self.model.config)
        self._reference_attention = self._attention()
        if self.fast[fast.ATTENTION] is None:
            self.model.set_attn_implementation(_register_gqa_sdpa())
        self.model.eval()
        self.model.requires_grad_(False)  # as PEFT leaves the base model: one behaviour before and after an adapter
        _contiguous_input(self.model.get_output_embeddings())
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.load_seconds = time.perf_counter() - started
        self.stats.loads += 1
        self._loaded_adapters: dict[str, str] = {}
        self._merged: str | None = None  # the adapter whose update is in the base weights now
        self._merge_saved: list[tuple[Any, Any]] = []  # (parameter, its base value) while an adapter is merged
        self._unmergeable: set[str] = set()  # adapters that always run unmerged
        for path, reason in self.fast.items():
            if reason is not None:
                self._note(path, reason)
        self._self_check()

    def chunk_size(self, kind: str) -> int:
        # Generation: large enough for full generation batches (up to 8 x batch_size rows). Scoring: the
        # choices of a hundred-odd questions, so that contexts sorted by length fill whole batches and few
        # questions have their choices split across calls (a lone choice runs without KV reuse).
        # Either way at most ~30 s of CPU work is lost to an interruption.
        return 8 * self.batch_size if kind == "generate" else 64 * self.batch_size

    def _attention(self) -> str | None:
        return getattr(self.model.config, "_attn_implementation", None)

    def _set_attention(self, implementation: str) -> bool:
        try:
            self.model.set_attn_implementation(implementation)
        except (ValueError, ImportError, AttributeError, NotImplementedError) as exc:
            self._note(fast.ATTENTION, f"cannot switch to {implementation} attention ({str(exc)[:120]})")
            return False
        return True

    # -- which fast paths run ---------------------------------------------------------------
    def _note(self, path: str, reason: str) -> None:
        """Log once per engine that `path` takes the reference path, and why."""
        if (path, reason) not in self._noted:
            self._noted.add((path, reason))
            log.info("harness: transformers backend, %s: %s runs the reference path: %s",
                     self.spec.model, path, reason)

    def _fast(self, path: str, length: int | None = None) -> bool:
        """Whether fast path `path` runs (for sequences of up to `length` cache slots, where it depends on
        them: a sliding attention window shorter than the sequence changes what the reused caches hold)."""
        reason = self.fast.get(path)
        if reason is not None:
            return False
        if length is not None and self._window is not None and length >= self._window:
            self._note(path, f"sequences that reach the sliding attention window ({self._window} tokens)")
            return False
        return True

    def fallbacks(self) -> dict[str, str]:
        """The fast paths this engine does not take, each with its reason (static ones, from the load)."""
        return {path: reason for path, reason in self.fast.items() if reason is not None}

    def _disable_fast_paths(self, reason: str) -> None:
        if self._attention() != self._reference_attention:
            self.model.set_attn_implementation(self._reference_attention or "sdpa")
        for path in fast.PATHS:
            if self.fast[path] is None:
                self.fast[path] = reason
                self._note(path, reason)

    def _self_check(self) -> None:
        """One short prompt through the fast paths (the backend's attention, a prefix cache, one-token
        decoding, the output layer on selected rows) and through the reference (transformers' forward pass
        with the fallback attention, log-softmax): a difference beyond the dtype's rounding turns every fast
        path off, with a warning."""
        if all(self.fast[p] is not None for p in (fast.ATTENTION, fast.SHARED_PREFIX, fast.OUTPUT_ROWS)):
            return
        torch = self.torch
        text = "The quick brown fox jumps over the lazy dog; 1, 2, 3, 4, 5, 6, 7, 8, 9, 10."
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"][:16]
        if len(ids) < 6:
            return
        split = len(ids) - 4  # three decoding steps
        targets = torch.tensor(ids[1:], device=self.device)
        try:
            with _compute(torch):
                ours = self._score_positions(ids)  # log P(ids[t+1] | ids[:t+1]), t = 0 .. n-2
                decoded = self._decode_positions(ids, split)  # the same for t = split .. n-2, one token at a time
                reference = self._reference_logprobs(ids, targets)
        except Exception as exc:  # a fast path that cannot even run this model
            self._disable_fast_paths(f"the load-time self-check failed ({type(exc).__name__}: {str(exc)[:160]})")
            warnings.warn(f"harness: {self.spec.model}: the transformers backend's fast paths failed their self-check "
                          f"({type(exc).__name__}); every request runs the reference path.", stacklevel=3)
            return
        # float32: the paths agree to ~1e-5. bfloat16/float16: one-token decoding and the SDPA kernel round
        # differently (SmolLM2 in bfloat16: 0.014 at most); a fast path that is wrong is off by nats.
        tolerance = 1e-3 if self.model.dtype == torch.float32 else 0.15
        worst = max(max(abs(a - b) for a, b in zip(ours, reference, strict=True)),
                    max(abs(a - b) for a, b in zip(decoded, reference[split:], strict=True)))
        self.self_check_difference = worst
        if worst > tolerance:
            reason = f"the load-time self-check found log-probs {worst:.3g} away from the reference (tolerance {tolerance})"
            self._disable_fast_paths(reason)
            log.warning("harness: %s: %s; every request runs the reference path.", self.spec.model, reason)
            warnings.warn(f"harness: {self.spec.model}: {reason}; every request runs the reference path.", stacklevel=3)

    def _score_positions(self, ids: list[int]) -> list[float]:
        torch = self.torch
        wanted = torch.ones(1, len(ids), dtype=torch.bool, device=self.device)
        wanted[0, -1] = False
        logits = self._logits_at(wanted, input_ids=torch.tensor([ids], device=self.device))
        return self._target_logprobs(logits, torch.tensor(ids[1:], device=self.device))[0]

    def _decode_positions(self, ids: list[int], split: int) -> list[float]:
        """Two identical rows: the first `split` tokens as a shared prefix cache (where that path runs), then
        one token per forward pass, as the greedy loop decodes."""
        torch = self.torch
        prefix_cache = self._prefix_cache(ids[:split]) if self._fast(fast.SHARED_PREFIX, len(ids)) else None
        cached = split if prefix_cache is not None else 0
        rows = [ids[: split + 1]] * 2
        input_ids, mask, cache = self._prefixed_batch(rows, prefix_cache, shared=self._shares_prefixes())
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        if cache is None:
            from transformers import DynamicCache

            cache = DynamicCache(config=self.model.config)
        if cached == 0:  # no prefix cache: the first `split` tokens as a prompt
            out = self._forward_last(input_ids=input_ids[:, :split], attention_mask=mask[:, :split],
                                     position_ids=positions[:, :split], past_key_values=cache, use_cache=True)
            cache = out.past_key_values
        found = []
        for t in range(split, len(ids) - 1):
            step_mask = torch.ones(2, t + 1, dtype=mask.dtype, device=self.device)
            out = self._forward_last(input_ids=torch.tensor([[ids[t]]] * 2, device=self.device),
                                     attention_mask=step_mask, position_ids=torch.full((2, 1), t, device=self.device),
                                     past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            logprobs = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
            found.append(logprobs[1, ids[t + 1]].item())
        return found

    def _reference_logprobs(self, ids: list[int], targets: Any) -> list[float]:
        """The reference path: transformers' full forward pass with the attention the engine would fall back
        to (its SDPA, or eager where they disagree; in float32 both within 1e-5 of eager, the matrix's
        reference), log-softmax in float32."""
        torch = self.torch
        current, reference = self._attention(), self._reference_attention or "sdpa"
        switched = current != reference and self._set_attention(reference)
        try:
            logits = self.model(input_ids=torch.tensor([ids], device=self.device)).logits[0, :-1].float()
        finally:
            if switched:
                self.model.set_attn_implementation(current)
        return torch.log_softmax(logits, dim=-1).gather(-1, targets[:, None])[:, 0].tolist()

    # -- adapters -------------------------------------------------------------------------
    def _adapter_context(self, adapter: Adapter | None):
        """Make `adapter` (None: the base model) the one the next forward passes use. With merging on, the
        adapter's update is merged into the base weights until another adapter or the base is asked for;
        the base weights then come back from a saved copy, bit for bit."""
        from peft import PeftModel

        key = None if adapter is None else "a_" + adapter.sha256[:16]
        if self._merged is not None and (self._merged != key or not self.merge_adapters
                                         or not self._fast(fast.MERGE_ADAPTERS)):
            self._unmerge()
        if adapter is None:
            if isinstance(self.model, PeftModel):
                return self.model.disable_adapter()
            return contextlib.nullcontext()
        if self._merged == key:
            return contextlib.nullcontext()
        if key not in self._loaded_adapters:
            try:
                if isinstance(self.model, PeftModel):
                    self.model.load_adapter(str(adapter.path), adapter_name=key)
                else:
                    self.model = PeftModel.from_pretrained(self.model, str(adapter.path), adapter_name=key)
                self.model.eval()
            except (RuntimeError, ValueError, KeyError) as exc:
                raise AdapterError(
                    f"adapter {adapter.path} does not fit base model '{self.spec.model}': {str(exc)[:300]}"
                ) from None
            self._loaded_adapters[key] = str(adapter.path)
            self._head_of = None  # PEFT may have wrapped the output layer: look it up again
        self.model.set_adapter(key)
        if self.merge_adapters and key not in self._unmergeable and self._fast(fast.MERGE_ADAPTERS):
            self._merge(key)
        return contextlib.nullcontext()

    def _merge(self, key: str) -> None:
        """Merge adapter `key` into the base weights, saving the weights it changes first. An adapter that
        cannot be merged (a layer type PEFT cannot merge, an update to weights the input and output layers
        share, a quantized checkpoint) runs unmerged, always: its results never depend on what ran before."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        layers = [m for m in self.model.modules() if isinstance(m, BaseTunerLayer)
                  and any(key in getattr(m, name, {}) for name in m.adapter_layer_names)]
        params = [p for m in layers for p in m.get_base_layer().parameters(recurse=False)]
        reason = self._cannot_merge(params)
        if reason is None:
            self._merge_saved = [(p, p.detach().to("cpu", copy=True)) for p in params]
            self._merged = key
            try:
                self.model.merge_adapter([key])
                return
            except Exception as exc:
                self._unmerge()  # takes out whatever layers did merge
                if not isinstance(exc, (NotImplementedError, ValueError, RuntimeError, TypeError)):
                    raise
                reason = str(exc)
        self._unmergeable.add(key)
        self.model.set_adapter(key)
        warnings.warn(f"adapter {self._loaded_adapters[key]} is not merged ({reason}); it runs unmerged.", stacklevel=3)

    def _cannot_merge(self, params: list[Any]) -> str | None:
        if getattr(self.model, "is_quantized", False) or getattr(self.model.get_base_model(), "is_quantized", False):
            return "the checkpoint is quantized"
        inputs, outputs = self.model.get_input_embeddings(), self.model.get_output_embeddings()
        if inputs is not None and outputs is not None and inputs.weight.data_ptr() == outputs.weight.data_ptr() \
                and any(p.data_ptr() == inputs.weight.data_ptr() for p in params):
            return "it changes the embeddings the input and output layers share"
        return None

    def _unmerge(self) -> None:
        from peft.tuners.tuners_utils import BaseTunerLayer

        for module in self.model.modules():  # PEFT's bookkeeping; its subtraction leaves rounding residue ...
            if isinstance(module, BaseTunerLayer) and module.merged:
                module.unmerge()
        with self.torch.no_grad():  # ... so the base weights come back from the copy
            for param, saved in self._merge_saved:
                param.copy_(saved)
        self._merge_saved = []
        self._merged = None

    # -- generation -----------------------------------------------------------------------
    def render(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        """Greedy or sampled generation in batches of prompts of similar length.

        Prompts of one call that begin with the same tokens (a system prompt, the k examples of a
        few-shot variant) share that prefix: it runs once, and every batch continues from a copy of
        its KV cache instead of recomputing it per prompt.
        """
        results: list[Generation | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, request in enumerate(requests):
            key = (request.adapter, request.max_tokens, request.temperature, request.top_p, request.seed, request.stop)
            groups[key].append(i)
        for (adapter, max_tokens, temperature, top_p, seed, stop), indices in groups.items():
            ids = {i: self.tokenizer(self.render(requests[i].chat_messages), add_special_tokens=False)["input_ids"]
                   for i in indices}
            order = sorted(indices, key=lambda i: len(ids[i]), reverse=True)
            prefix = _shared_prefix([ids[i] for i in indices])
            longest = max(len(ids[i]) for i in indices) + max_tokens
            if len(prefix) < PREFIX_MIN_TOKENS or not self._fast(fast.SHARED_PREFIX, longest):
                prefix = []
            with self._adapter_context(adapter):
                prefix_cache = self._prefix_cache(prefix) if prefix else None
                # Kept once, not per row, the prefix does not count against the batch budget.
                once = prefix_cache is not None and self._greedy(temperature, stop) and self._shares_prefixes() \
                    and _can_share(prefix_cache)
                for batch in self._generation_batches(order, ids, max_tokens, len(prefix) if once else 0):
                    emitted: set[int] = set()

                    def early(rows: list[int], done: list[Generation], batch=batch, emitted=emitted) -> None:
                        emitted.update(rows)  # rows that ended: committed now, before the batch ends
                        self._batch_done([batch[j] for j in rows], done)

                    generations = self._generate_batch(
                        [ids[i] for i in batch], prefix_cache, max_tokens, temperature, top_p, seed, stop,
                        on_rows=early if self._on_batch is not None else None,
                    )
                    for i, generation in zip(batch, generations, strict=True):
                        results[i] = generation
                    rest = [j for j in range(len(batch)) if j not in emitted]
                    self._batch_done([batch[j] for j in rest], [generations[j] for j in rest])
        self.stats.generate_calls += 1
        self.stats.generated += len(requests)
        return results  # type: ignore[return-value]

    def _generation_batches(self, order: list[int], ids: dict[int, list[int]], max_tokens: int,
                            shared: int = 0) -> list[list[int]]:
        """Prompts longest first, packed up to 8 x batch_size rows while rows x (longest prompt + max_tokens)
        stays within 2048 x batch_size tokens: decoding reads every weight once per step whatever the number
        of rows, so more rows are nearly free (on 2 CPU cores, 64 rows 1.7x the tokens/s of 16, 128 rows
        1.2x that of 64), until the KV cache of long prompts grows large. `shared`: leading tokens kept once
        for all rows, not counted."""
        rows, budget = 8 * self.batch_size, 2048 * self.batch_size
        batches: list[list[int]] = []
        for i in order:
            batch = batches[-1] if batches else None
            if batch and len(batch) < rows and (len(batch) + 1) * (len(ids[batch[0]]) - shared + max_tokens) <= budget:
                batch.append(i)
            else:
                batches.append([i])
        return batches

    def _forward_last(self, **inputs: Any) -> Any:
        """A forward pass that needs only the last position's logits (`logits_to_keep=1`, unless the
        architecture does not take it: then the full logits, and it is not offered again)."""
        if getattr(self, "_keeps_logits", True):
            try:
                return self.model(**inputs, logits_to_keep=1)
            except TypeError:
                self._keeps_logits = False
        return self.model(**inputs)

    def _prefix_cache(self, prefix: list[int]) -> Any:
        torch = self.torch
        with _compute(torch):
            out = self._forward_last(input_ids=torch.tensor([prefix], device=self.device), use_cache=True)
        return out.past_key_values

    def _prefixed_batch(self, rows: list[list[int]], prefix_cache: Any, shared: bool = False) -> tuple[Any, Any, Any]:
        """(input ids, attention mask, KV cache) for token rows whose first `prefix_cache.get_seq_length()`
        tokens (0 without a cache) are that shared prefix. Layout [prefix][padding][rest], the padding masked
        out, so that every token keeps the position it has alone; the cache is a copy per row or, `shared`
        (the greedy loop), the prefix once for all rows where the model's layers allow it."""
        torch = self.torch
        pad = self.tokenizer.pad_token_id
        cached = prefix_cache.get_seq_length() if prefix_cache is not None else 0
        width = max(len(r) for r in rows) - cached
        ids = [r[:cached] + [pad] * (width - len(r) + cached) + r[cached:] for r in rows]
        mask = [[1] * cached + [0] * (width - len(r) + cached) + [1] * (len(r) - cached) for r in rows]
        cache = _shared_prefix_cache(prefix_cache) if shared and prefix_cache is not None else None
        if prefix_cache is not None and cache is None:
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(rows))
        return torch.tensor(ids, device=self.device), torch.tensor(mask, device=self.device), cache

    def _generate_batch(self, rows, prefix_cache, max_tokens, temperature, top_p, seed, stop,
                        on_rows=None) -> list[Generation]:
        """Generate for token rows; with `prefix_cache`, the rows' first `prefix_cache.get_seq_length()`
        tokens are that prefix. Layout: [prefix][padding][rest], the padding masked out, so every row's
        tokens keep the positions they have alone."""
        torch = self.torch
        pad = self.tokenizer.pad_token_id
        cached = prefix_cache.get_seq_length() if prefix_cache is not None else 0
        greedy = self._greedy(temperature, stop)
        ids, mask, cache = self._prefixed_batch(rows, prefix_cache, shared=greedy and self._shares_prefixes())
        encoded = {"input_ids": ids, "attention_mask": mask}
        if greedy:
            return self._greedy_batch(encoded, cache, cached, max_tokens, on_rows=on_rows)
        kwargs: dict[str, Any] = {"max_new_tokens": max_tokens, "pad_token_id": pad}
        if cache is not None:
            kwargs["past_key_values"] = cache
        if temperature > 0:
            torch.manual_seed(seed)
            kwargs.update(do_sample=True, temperature=temperature, top_p=top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if stop:
            kwargs.update(stop_strings=list(stop), tokenizer=self.tokenizer)
        with _compute(torch):
            output = self.model.generate(**encoded, **kwargs)
        new_tokens = output[:, encoded["input_ids"].shape[1] :]
        eos_ids = self._eos_ids()
        results = []
        for row in new_tokens.tolist():
            length = len(row)
            while length and row[length - 1] == self.tokenizer.pad_token_id and self.tokenizer.pad_token_id in eos_ids:
                length -= 1
            ended = length < len(row) or (length and row[length - 1] in eos_ids)
            text = self.tokenizer.decode(row[:length], skip_special_tokens=True)
            text, stopped = _truncate_at_stop(text, stop)
            reason = "stop" if (ended or stopped) else "length"
            results.append(Generation(text=text, finish_reason=reason, output_tokens=length))
        return results

    def _greedy(self, temperature: float, stop: Sequence[str]) -> bool:
        """Whether requests with these settings decode in the backend's own greedy loop."""
        return self.greedy_loop and temperature == 0 and not stop and self._fast(fast.GREEDY_LOOP)

    def _shares_prefixes(self) -> bool:
        """Whether the greedy loop keeps a shared prefix once for all rows: the backend's own attention
        function runs (it reads the prefix) and the engine allows it."""
        return self._attention() == GQA_SDPA and self.share_prefixes and self._fast(fast.ATTENTION)

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        return set(eos if isinstance(eos, list) else [eos] if eos is not None else [])

    def _greedy_batch(self, encoded: dict[str, Any], cache: Any, cached: int, max_tokens: int,
                      on_rows=None) -> list[Generation]:
        """Greedy decoding that drops finished rows from the batch (transformers' generate keeps computing
        them until the last row ends): once an eighth of the rows have ended, the KV cache keeps only the
        running ones. Same tokens as generate's greedy search (the equivalence test compares them).
        `on_rows(rows, generations)`, if given, receives the rows that ended each time rows are dropped,
        so the runner commits them before the batch ends (bounded loss on an interruption)."""
        torch = self.torch
        eos = self._eos_ids()
        mask = encoded["attention_mask"]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        if cache is None:
            from transformers import DynamicCache

            cache = DynamicCache(config=self.model.config)
        tokens: list[list[int]] = [[] for _ in range(mask.shape[0])]
        ended = [False] * len(tokens)
        rows = list(range(len(tokens)))  # the original row of each cache row
        inputs = {"input_ids": encoded["input_ids"][:, cached:], "position_ids": positions[:, cached:]}
        next_position = positions[:, -1] + 1
        with _compute(torch):
            for step in range(max_tokens):
                out = self._forward_last(**inputs, attention_mask=mask, past_key_values=cache, use_cache=True)
                cache = out.past_key_values
                if step == 0:
                    _check_prefix_reads(cache)
                chosen = out.logits[:, -1].max(-1).indices  # the first maximum, as argmax (bf16 -> float32 is exact)
                for row, token in zip(rows, chosen.tolist(), strict=True):
                    if not ended[row]:
                        tokens[row].append(token)
                        ended[row] = token in eos
                running = [j for j, row in enumerate(rows) if not ended[row]]
                if not running or step == max_tokens - 1:
                    break
                if len(rows) - len(running) >= max(1, len(rows) // 8) and _can_drop_rows(cache):
                    if on_rows is not None:
                        finished = [row for row in rows if ended[row]]
                        on_rows(finished, [self._generation(tokens[row], True) for row in finished])
                    keep = torch.tensor(running, device=self.device)
                    cache.batch_select_indices(keep)
                    rows, mask, chosen, next_position = ([rows[j] for j in running], mask[keep], chosen[keep],
                                                         next_position[keep])
                mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=-1)
                inputs = {"input_ids": chosen[:, None], "position_ids": next_position[:, None]}
                next_position = next_position + 1
        return [self._generation(row, done) for row, done in zip(tokens, ended, strict=True)]

    def _generation(self, row: list[int], done: bool) -> Generation:
        text = self.tokenizer.decode(row[:-1] if done else row, skip_special_tokens=True)
        return Generation(text=text, finish_reason="stop" if done else "length",
                          output_tokens=len(row) - 1 if done else len(row))

    # -- log-likelihood -------------------------------------------------------------------
    def _encode_pair(self, request: LoglikelihoodRequest) -> tuple[list[int], list[int]]:
        return encode_pair(self, request)  # the one encode convention (harness/backends/base.py)

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        """Sum of log P(continuation | context) per request, and whether it is the greedy continuation.

        Requests that share a context (the choices of one multiple-choice question) run the context
        once and the continuations on its KV cache; the rest run as padded full sequences.
        """
        results: list[Loglikelihood | None] = [None] * len(requests)
        by_adapter: dict[Adapter | None, list[int]] = defaultdict(list)
        for i, request in enumerate(requests):
            by_adapter[request.adapter].append(i)
        for adapter, indices in by_adapter.items():
            pairs = {i: self._encode_pair(requests[i]) for i in indices}
            by_context: dict[tuple[int, ...], list[int]] = defaultdict(list)
            for i in indices:
                by_context[tuple(pairs[i][0])].append(i)
            alone = [i for members in by_context.values() if len(members) == 1 for i in members]
            shared = [(list(c), members) for c, members in by_context.items() if len(members) > 1]
            longest = max(len(pairs[i][0]) + len(pairs[i][1]) for i in indices)
            if shared and not self._fast(fast.CONTEXT_REUSE, longest):
                alone, shared = indices, []
            with self._adapter_context(adapter):
                self._score_context_groups(shared, pairs, results)
                self._score_full_rows(alone, pairs, results)
        self.stats.loglikelihood_calls += 1
        self.stats.scored += len(requests)
        return results  # type: ignore[return-value]

    def _score_full_rows(self, indices: list[int], pairs: dict, results: list) -> None:
        torch = self.torch
        order = sorted(indices, key=lambda i: len(pairs[i][0]) + len(pairs[i][1]), reverse=True)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            rows = [(pairs[i][0] + pairs[i][1])[:-1] for i in batch]
            width = max(len(r) for r in rows)
            pad = self.tokenizer.pad_token_id
            ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=self.device)
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=self.device)
            # The continuation's positions: each predicts the next token of the row.
            wanted = torch.zeros(len(batch), width, dtype=torch.bool)
            targets = []
            for row, i in enumerate(batch):
                ctx, cont = pairs[i]
                wanted[row, len(ctx) - 1 : len(ctx) + len(cont) - 1] = True
                targets += cont
            with _compute(torch):
                logits = self._logits_at(wanted.to(self.device), input_ids=ids, attention_mask=mask)
                token_logprobs, hits = self._target_logprobs(logits, torch.tensor(targets, device=self.device))
            at = 0
            for i in batch:
                n = len(pairs[i][1])
                results[i] = Loglikelihood(math.fsum(token_logprobs[at : at + n]), all(hits[at : at + n]))
                at += n
            self._batch_done(batch, [results[i] for i in batch])

    def _score_context_groups(self, groups: list[tuple[list[int], list[int]]], pairs: dict, results: list) -> None:
        """Contexts shared by several requests: each context runs once (a left-padded batch of contexts),
        then every continuation runs on a copy of its context's KV cache (right-padded rows, sorted by
        length so that rows of similar length share a batch). The tokens every context begins with (the
        chat template's system turn) run once per call, each batch of contexts continuing from them."""
        torch = self.torch
        pad = self.tokenizer.pad_token_id
        groups = sorted(groups, key=lambda g: len(g[0]), reverse=True)
        prefix = _shared_prefix([c for c, _ in groups])
        longest = max((len(c) + len(pairs[i][1]) for c, members in groups for i in members), default=0)
        use_prefix = len(prefix) >= SCORE_PREFIX_MIN_TOKENS and self._fast(fast.SHARED_PREFIX, longest)
        prefix_cache = self._prefix_cache(prefix) if use_prefix else None
        # Up to 4 x batch_size contexts per batch and 8 x batch_size continuation rows, within 2048 x
        # batch_size tokens (of KV cache, which each continuation row copies): on 2 CPU cores 1.25x the
        # requests/s of batch_size and 2 x batch_size (TruthfulQA, bf16).
        start = 0
        while start < len(groups):  # longest context first: the first of a batch sets its width
            count = self._rows_within_budget(len(groups[start][0]), 4 * self.batch_size)
            with _compute(torch):
                self._score_chunk(groups[start : start + count], pairs, results, pad, prefix_cache)
            done = [i for _, members in groups[start : start + count] for i in members]
            self._batch_done(done, [results[i] for i in done])
            start += count

    def _rows_within_budget(self, tokens_per_row: int, most: int) -> int:
        return max(1, min(most, 2048 * self.batch_size // max(1, tokens_per_row)))

    def _score_chunk(self, chunk: list[tuple[list[int], list[int]]], pairs: dict, results: list, pad: int,
                     prefix_cache: Any = None) -> None:
        """One batch of contexts and their continuations. With `prefix_cache`, every context's first
        `prefix_cache.get_seq_length()` tokens are that prefix: layout [prefix][padding][rest], so that
        each token keeps the position it has alone."""
        torch = self.torch
        cached = prefix_cache.get_seq_length() if prefix_cache is not None else 0
        ids, mask, cache = self._prefixed_batch([c for c, _ in chunk], prefix_cache)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self._forward_last(input_ids=ids[:, cached:], attention_mask=mask, position_ids=positions[:, cached:],
                                 past_key_values=cache, use_cache=True)
        first = out.logits[:, -1].float()
        first_logprobs = torch.log_softmax(first, dim=-1)  # each continuation's first token
        first_greedy = first.max(-1).indices.tolist()  # the first maximum, as argmax
        rows = []  # (owner context, request) for continuations longer than one token
        for g, (_, indices) in enumerate(chunk):
            for i in indices:
                cont = pairs[i][1]
                if not cont:
                    results[i] = Loglikelihood(0.0, True)
                elif len(cont) == 1:
                    results[i] = Loglikelihood(first_logprobs[g, cont[0]].item(), first_greedy[g] == cont[0])
                else:
                    rows.append((g, i))
        rows.sort(key=lambda row: len(pairs[row[1]][1]), reverse=True)
        start = 0
        while start < len(rows):  # longest continuation first: the first of a batch sets its width
            step = self._rows_within_budget(mask.shape[1] + len(pairs[rows[start][1]][1]), 8 * self.batch_size)
            batch = rows[start : start + step]
            start += step
            last = start >= len(rows)
            cache = out.past_key_values if last else copy.deepcopy(out.past_key_values)
            owners = torch.tensor([g for g, _ in batch], device=self.device)
            cache.reorder_cache(owners)  # one cache row per continuation (index_select on the batch dimension)
            conts = [pairs[i][1] for _, i in batch]
            width = max(len(c) for c in conts) - 1  # the last token is only predicted, never an input
            # Right padding after each row's real tokens: causal attention never lets a real token see it.
            tail_ids = torch.tensor([c[:-1] + [pad] * (width - len(c) + 1) for c in conts], device=self.device)
            targets = torch.tensor([c[1:] + [pad] * (width - len(c) + 1) for c in conts], device=self.device)
            row_mask = mask[owners]
            full_mask = torch.cat([row_mask, torch.ones(len(batch), width, dtype=mask.dtype, device=self.device)], 1)
            tail_positions = row_mask.sum(-1, keepdim=True) + torch.arange(width, device=self.device)
            real = torch.arange(width, device=self.device) < torch.tensor([len(c) - 1 for c in conts],
                                                                          device=self.device)[:, None]
            logits = self._logits_at(real, input_ids=tail_ids, attention_mask=full_mask,
                                     position_ids=tail_positions, past_key_values=cache, use_cache=True)
            token_logprobs, hits = self._target_logprobs(logits, targets[real])
            at = 0
            for (g, i), cont in zip(batch, conts, strict=True):
                n = len(cont) - 1
                total = first_logprobs[g, cont[0]].item() + sum(token_logprobs[at : at + n])
                greedy = first_greedy[g] == cont[0] and all(hits[at : at + n])
                at += n
                results[i] = Loglikelihood(total, greedy)

    def _target_logprobs(self, logits: Any, targets: Any) -> tuple[list[float], list[bool]]:
        """Per row of [rows, vocabulary] logits: log P(target) in float32 and whether the target is the
        argmax (the first maximum, as argmax picks). A few rows at a time: converting all the logits to
        float32 at once and reducing them op by op cost 6x more (the copy leaves the cache)."""
        torch = self.torch
        if not self._fast(fast.OUTPUT_ROWS):  # the textbook computation: log-softmax over all rows at once
            full = torch.log_softmax(logits.float(), dim=-1)
            if full.shape[0] == 0:
                return [], []
            return full.gather(-1, targets[:, None])[:, 0].tolist(), (full.argmax(-1) == targets).tolist()
        logprobs, hits = [], []
        for start in range(0, logits.shape[0], LOGIT_BLOCK_ROWS):
            block = logits[start : start + LOGIT_BLOCK_ROWS].float()
            target = targets[start : start + LOGIT_BLOCK_ROWS, None]
            top, best = block.max(-1, keepdim=True)
            norm = (block - top).exp_().sum(-1, keepdim=True).log_() + top
            logprobs.append((block.gather(-1, target) - norm)[:, 0])
            hits.append((best == target)[:, 0])
        if not logprobs:
            return [], []
        return torch.cat(logprobs).tolist(), torch.cat(hits).tolist()

    def _logits_at(self, positions: Any, **inputs: Any) -> Any:
        """Logits (the model's dtype) at the True entries of a [rows, width] mask, flattened in row-major order.

        The output layer (vocabulary x hidden, a fifth of a small model's compute per token) runs only on
        those positions, not on padding, when the model exposes its decoder and output layer and does
        nothing after the output layer; otherwise the full forward pass, then the selection.
        """
        head = self._plain_head()
        if head is None:
            return self.model(**inputs).logits[positions]
        decoder, output = head
        hidden = decoder(**inputs).last_hidden_state
        return output(hidden[positions])

    def _plain_head(self) -> tuple[Any, Any] | None:
        if getattr(self, "_head_of", None) is not self.model:  # computed once per model object (PEFT wraps it)
            self._head_of = self.model
            model = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
            config = model.config
            extra = any(getattr(config, key, None) for key in ("final_logit_softcapping", "logit_scale", "logits_scaling"))
            extra = extra or not self._fast(fast.OUTPUT_ROWS)
            try:
                decoder, output = model.get_decoder(), model.get_output_embeddings()
            except (AttributeError, NotImplementedError):
                decoder = output = None
            plain = decoder is not None and output is not None and not extra and type(model).__name__.endswith("ForCausalLM")
            self._head = (decoder, output) if plain else None
        return self._head

    def info(self) -> dict[str, Any]:
        import torch
        import transformers

        info = {
            "backend": self.name,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "device": self.device,
            "dtype": str(self.model.dtype).replace("torch.", ""),
            "load_seconds": round(self.load_seconds, 2),
            "reference_paths": self.fallbacks(),
        }
        if self.spec.quantization:
            import bitsandbytes

            info["bitsandbytes"] = bitsandbytes.__version__
        if self._loaded_adapters:
            import peft

            info["peft"] = peft.__version__
        return info

    def close(self) -> None:
        self.model = None
        import gc

        gc.collect()
