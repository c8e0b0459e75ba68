"""transformers backend: CPU/GPU, PEFT adapters on one loaded base, bitsandbytes NF4 (QLoRA).

One instance loads one base model. Adapters are loaded into the same PeftModel by name and
switched per batch, so base + N adapters cost one base load.
"""

from __future__ import annotations

import contextlib
import copy
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from harness.backends.base import (
    Adapter,
    Backend,
    EngineSpec,
    Generation,
    GenerateRequest,
    Loglikelihood,
    LoglikelihoodRequest,
)
from harness.errors import AdapterError, BackendError
from harness.models import resolve_model_path

ENGINE_KEYS = {"dtype", "device", "batch_size", "attn_implementation", "max_length"}


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


def _truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class TransformersBackend(Backend):
    name = "transformers"

    def __init__(self, spec: EngineSpec) -> None:
        super().__init__(spec)
        try:
            import torch
            import transformers
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise BackendError(f"the transformers backend needs torch and transformers ({exc}). Run `make install`.")
        from transformers import AutoModelForCausalLM, AutoTokenizer
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
        default_dtype = "float32" if self.device == "cpu" else "bfloat16"
        dtype_name = engine.get("dtype", default_dtype)
        dtype = getattr(torch, dtype_name, None)
        if not isinstance(dtype, torch.dtype):
            raise BackendError(f"engine dtype '{dtype_name}' is not a torch dtype (e.g. float32, bfloat16).")
        self.batch_size = int(engine.get("batch_size", 16))
        self.max_length = engine.get("max_length")
        path = resolve_model_path(spec.model)
        started = time.perf_counter()
        kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": spec.trust_remote_code}
        if engine.get("attn_implementation"):
            kwargs["attn_implementation"] = engine["attn_implementation"]
        if spec.quantization == "nf4":
            try:
                from transformers import BitsAndBytesConfig

                import bitsandbytes  # noqa: F401
            except ImportError as exc:
                raise BackendError(f"quantization = 'nf4' needs bitsandbytes ({exc}). Run `make install`.")
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype
            )
            if self.device != "cpu":
                kwargs["device_map"] = self.device
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=spec.trust_remote_code)
            self.model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        except OSError as exc:
            raise BackendError(f"could not load model '{spec.model}' ({path}): {exc}") from None
        if "quantization_config" not in kwargs:
            self.model.to(self.device)
        self.model.eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.load_seconds = time.perf_counter() - started
        self.stats.loads += 1
        self._loaded_adapters: dict[str, str] = {}

    # -- adapters -------------------------------------------------------------------------
    def _adapter_context(self, adapter: Adapter | None):
        from peft import PeftModel

        if adapter is None:
            if isinstance(self.model, PeftModel):
                return self.model.disable_adapter()
            return contextlib.nullcontext()
        key = "a_" + adapter.sha256[:16]
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
        self.model.set_adapter(key)
        return contextlib.nullcontext()

    # -- generation -----------------------------------------------------------------------
    def render(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        results: list[Generation | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, request in enumerate(requests):
            key = (request.adapter, request.max_tokens, request.temperature, request.top_p, request.seed, request.stop)
            groups[key].append(i)
        for (adapter, max_tokens, temperature, top_p, seed, stop), indices in groups.items():
            prompts = {i: self.render(requests[i].chat_messages) for i in indices}
            order = sorted(indices, key=lambda i: len(prompts[i]), reverse=True)
            with self._adapter_context(adapter):
                for start in range(0, len(order), self.batch_size):
                    batch = order[start : start + self.batch_size]
                    texts = self._generate_batch([prompts[i] for i in batch], max_tokens, temperature, top_p, seed, stop)
                    for i, generation in zip(batch, texts):
                        results[i] = generation
        self.stats.generate_calls += 1
        self.stats.generated += len(requests)
        return results  # type: ignore[return-value]

    def _generate_batch(self, prompts, max_tokens, temperature, top_p, seed, stop) -> list[Generation]:
        torch = self.torch
        encoded = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        kwargs: dict[str, Any] = {"max_new_tokens": max_tokens, "pad_token_id": self.tokenizer.pad_token_id}
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
        eos_ids = self.model.generation_config.eos_token_id
        eos_ids = set(eos_ids if isinstance(eos_ids, list) else [eos_ids])
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

    # -- log-likelihood -------------------------------------------------------------------
    def _encode_pair(self, request: LoglikelihoodRequest) -> tuple[list[int], list[int]]:
        context = self.render(request.chat_messages) if request.is_chat else request.context
        continuation = request.continuation
        # lm-eval's convention: trailing spaces of the context belong to the continuation.
        spaces = len(context) - len(context.rstrip(" "))
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole = self.tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
        ctx = self.tokenizer(context, add_special_tokens=False)["input_ids"]
        cont = whole[len(ctx) :]
        if not ctx:  # score the first token too: condition on a start token
            bos = self.tokenizer.bos_token_id
            ctx = [bos if bos is not None else self.tokenizer.eos_token_id]
        return ctx, cont

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
            with _compute(torch):
                logprobs = torch.log_softmax(self.model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
            for row, i in enumerate(batch):
                ctx, cont = pairs[i]
                n = len(cont)
                if n == 0:
                    results[i] = Loglikelihood(0.0, True)
                    continue
                end = len(ctx) + n - 1
                span = logprobs[row, end - n : end]
                target = torch.tensor(cont, device=self.device)
                total = span.gather(1, target[:, None]).sum().item()
                greedy = bool((span.argmax(-1) == target).all().item())
                results[i] = Loglikelihood(total, greedy)

    def _score_context_groups(self, groups: list[tuple[list[int], list[int]]], pairs: dict, results: list) -> None:
        """Contexts shared by several requests: each context runs once (a left-padded batch of contexts),
        then every continuation runs on a copy of its context's KV cache (right-padded rows, sorted by
        length so that rows of similar length share a batch)."""
        torch = self.torch
        pad = self.tokenizer.pad_token_id
        groups = sorted(groups, key=lambda g: len(g[0]), reverse=True)
        for start in range(0, len(groups), self.batch_size):
            with _compute(torch):
                self._score_chunk(groups[start : start + self.batch_size], pairs, results, pad)

    def _score_chunk(self, chunk: list[tuple[list[int], list[int]]], pairs: dict, results: list, pad: int) -> None:
        torch = self.torch
        contexts = [c for c, _ in chunk]
        length = max(len(c) for c in contexts)
        ids = torch.tensor([[pad] * (length - len(c)) + c for c in contexts], device=self.device)
        mask = torch.tensor([[0] * (length - len(c)) + [1] * len(c) for c in contexts], device=self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        try:  # only the last position's logits are needed
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                             logits_to_keep=1)
        except TypeError:  # an architecture without `logits_to_keep`
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        first = out.logits[:, -1].float()
        first_logprobs = first - torch.logsumexp(first, dim=-1, keepdim=True)  # each continuation's first token
        first_greedy = first.argmax(-1).tolist()
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
        step = 2 * self.batch_size
        for start in range(0, len(rows), step):
            batch = rows[start : start + step]
            last = start + step >= len(rows)
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
            logits = self.model(input_ids=tail_ids, attention_mask=full_mask, position_ids=tail_positions,
                                past_key_values=cache, use_cache=True).logits.float()
            token_logprobs = (logits.gather(-1, targets[..., None])[..., 0] - torch.logsumexp(logits, dim=-1)).tolist()
            hits = (logits.argmax(-1) == targets).tolist()
            for row, ((g, i), cont) in enumerate(zip(batch, conts)):
                n = len(cont) - 1
                total = first_logprobs[g, cont[0]].item() + sum(token_logprobs[row][:n])
                greedy = first_greedy[g] == cont[0] and all(hits[row][:n])
                results[i] = Loglikelihood(total, greedy)

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
