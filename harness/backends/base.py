"""The one backend interface. A backend instance serves one base model (one engine load);
adapters ride along per request, so base + N adapters never reload the base.

Only `generate` is required. `loglikelihood` is optional (multiple choice, adapter probes).
Requests are plain frozen dataclasses so they hash into cache keys.

The one encode convention for (context, continuation) pairs lives here too (`encode_pair`): every
backend that tokenizes scores the same tokens, and raw-text pairs are tokenized exactly as lm-eval's
`hf` model does (see `encode_raw_pair`).
"""

from __future__ import annotations

import contextlib
import copy
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import BackendError

Message = dict[str, str]

IMPLEMENTATION = "base/2"
"""Version of the request payloads and the encode convention below. Part of every engine's cache identity
(runner.engine_fingerprint): bump it by hand whenever a change here could change a backend's outputs
(tests/test_implementation.py fails until you do). base/2: raw-text pairs tokenized as lm-eval's hf model
(tokenizer's BOS, add_bos_token, all trailing whitespace moved)."""

ENCODING_ENGINE_KEYS = frozenset({"add_bos_token"})
"""Engine arguments read by the encode convention (accepted by every tokenizing backend)."""


@dataclass(frozen=True)
class Adapter:
    """A PEFT adapter applied on top of the engine's base model."""

    name: str
    path: Path
    sha256: str


@dataclass(frozen=True)
class EngineSpec:
    """What one engine loads. Variants with equal specs share one engine."""

    model: str
    backend: str
    quantization: str | None = None
    engine: tuple[tuple[str, Any], ...] = ()
    """Engine arguments, as sorted (key, value) pairs."""
    trust_remote_code: bool = False
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def engine_args(self) -> dict[str, Any]:
        return {k: _thaw(v) for k, v in self.engine}

    @property
    def option_args(self) -> dict[str, Any]:
        return {k: _thaw(v) for k, v in self.options}


def freeze(mapping: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A hashable, order-independent form of a settings mapping."""
    return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in mapping.items()))


def _thaw(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class GenerateRequest:
    messages: tuple[tuple[tuple[str, str], ...], ...]
    """Chat turns as ((('role', r), ('content', c)), ...) so the request is hashable."""
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    adapter: Adapter | None = None

    @staticmethod
    def chat(messages: Sequence[Message], *, adapter: Adapter | None = None, **params: Any) -> GenerateRequest:
        turns = tuple(tuple(sorted({"role": m["role"], "content": m["content"]}.items())) for m in messages)
        params["stop"] = tuple(params.get("stop") or ())
        return GenerateRequest(messages=turns, adapter=adapter, **params)

    @property
    def chat_messages(self) -> list[Message]:
        return [dict(turn) for turn in self.messages]

    def cache_payload(self) -> dict[str, Any]:
        return {
            "kind": "generate",
            "messages": self.chat_messages,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p if self.temperature > 0 else 1.0,
            "seed": self.seed if self.temperature > 0 else 0,
            "stop": list(self.stop),
            "adapter": self.adapter.sha256 if self.adapter else None,
        }


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """log P(continuation | context). `context` is raw text, or chat turns rendered by the backend's
    chat template with the assistant prefix (so the continuation is scored as the answer)."""

    context: str | tuple[tuple[tuple[str, str], ...], ...]
    continuation: str
    adapter: Adapter | None = None

    @property
    def is_chat(self) -> bool:
        return not isinstance(self.context, str)

    @property
    def chat_messages(self) -> list[Message]:
        return [dict(turn) for turn in self.context] if self.is_chat else []

    def cache_payload(self) -> dict[str, Any]:
        return {
            "kind": "loglikelihood",
            "context": self.chat_messages if self.is_chat else self.context,
            "continuation": self.continuation,
            "adapter": self.adapter.sha256 if self.adapter else None,
        }


@dataclass(frozen=True)
class Generation:
    text: str
    finish_reason: str | None = None
    output_tokens: int | None = None


@dataclass(frozen=True)
class Loglikelihood:
    logprob: float
    is_greedy: bool = False


@dataclass
class BackendStats:
    loads: int = 0
    generate_calls: int = 0
    generated: int = 0
    loglikelihood_calls: int = 0
    scored: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(ABC):
    """One loaded engine for one base model. Subclasses import their heavy library lazily."""

    name = "base"
    batch_size = 16
    """The backend's own batch size (its meaning is the backend's)."""

    def chunk_size(self, kind: str) -> int:
        """How many requests of `kind` ("generate" or "loglikelihood") the runner hands over at once, and
        caches after: the work an interruption can lose."""
        return 2 * self.batch_size

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        self.stats = BackendStats()

    _on_batch: Callable[[list[int], list[Any]], None] | None = None

    @contextlib.contextmanager
    def streaming(self, on_batch: Callable[[list[int], list[Any]], None]) -> Iterator[None]:
        """While inside, a backend that works in internal batches calls `on_batch(positions, results)`
        as each batch of a `generate` / `loglikelihood` call finishes (positions index the call's
        requests): the runner commits them to the cache at once, so an interruption loses at most the
        batch in flight, not the whole chunk. Backends that do not call it are committed per call."""
        self._on_batch = on_batch
        try:
            yield
        finally:
            self._on_batch = None

    def _batch_done(self, positions: list[int], results: list[Any]) -> None:
        if self._on_batch is not None:
            self._on_batch(list(positions), list(results))

    @abstractmethod
    def generate(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        """Answer each chat request; same order and length as `requests`."""

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        """Score continuations; backends that cannot say so with a clear error."""
        raise BackendError(
            f"the {self.name} backend cannot score log-likelihoods (needed by multiple-choice scorers); "
            "use the transformers or vllm backend for this suite."
        )

    @property
    def supports_loglikelihood(self) -> bool:
        return type(self).loglikelihood is not Backend.loglikelihood

    def info(self) -> dict[str, Any]:
        """Versions and device facts for the run manifest."""
        return {"backend": self.name}

    def close(self) -> None:  # noqa: B027 - optional hook: most backends hold nothing to free
        """Free the engine."""


# --------------------------------------------------------------------------- the one encode convention
#
# Raw-text contexts (lm-eval tasks, the adapter probes): lm-eval's `hf` model, exactly
# (lm_eval.api.model.TemplateLM.loglikelihood / _encode_pair and HFLM.tok_encode, lm-eval 0.4.13):
#   - an empty context: the continuation without special tokens, conditioned on the prefix token
#     (BOS, else EOS); if the continuation itself starts with that token, on its first token;
#   - otherwise all trailing whitespace of the context (spaces, newlines) moves to the continuation;
#     context and context + continuation are each encoded with the tokenizer's default special tokens
#     (so a tokenizer that adds BOS adds it), the continuation is the tail of the whole beyond the
#     context's length; `add_bos_token` (engine argument) overrides the default as lm-eval's
#     `add_bos_token` model argument does; a text that already starts with the BOS string gets no second.
# Chat contexts (multiple-choice suites): the chat template decides BOS. The rendered prompt is
# encoded without special tokens (as generation does), only trailing spaces move to the continuation
# (the template's final newline stays in the context), and the continuation is the tail of the whole.
# Either way a context that encodes to nothing is conditioned on BOS (else EOS).


def prefix_token_id(tokenizer: Any) -> int:
    """The token an empty context is conditioned on: BOS, else EOS (lm-eval's HFLM.prefix_token_id)."""
    bos = tokenizer.bos_token_id
    return bos if bos is not None else tokenizer.eos_token_id


def split_trailing_whitespace(context: str, continuation: str) -> tuple[str, str]:
    """lm-eval's rule for raw text: the context's trailing whitespace is scored as the continuation's start."""
    n = len(context) - len(context.rstrip())
    if n:
        return context[:-n], context[-n:] + continuation
    return context, continuation


def check_add_bos_token(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise BackendError(f"engine add_bos_token must be true or false (or left out for the tokenizer's default), "
                       f"not {value!r}.")


def scoring_tokenizer(tokenizer: Any, add_bos_token: bool | None) -> Any:
    """The tokenizer lm-eval's hf model holds: `tokenizer` itself, or (with add_bos_token set) a copy with
    `add_bos_token` applied, as `AutoTokenizer.from_pretrained(..., add_bos_token=...)` does (a fast
    tokenizer rebuilds its post-processor: BOS on or off). The backend's own tokenizer is not changed."""
    if add_bos_token is None:
        return tokenizer
    clone = copy.deepcopy(tokenizer)
    clone.add_bos_token = add_bos_token
    return clone


def encode_raw_pair(tokenizer: Any, context: str, continuation: str,
                    add_bos_token: bool | None = None) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) of a raw-text pair, as lm-eval's hf model encodes it.
    `tokenizer` is the scoring tokenizer (`scoring_tokenizer(tokenizer, add_bos_token)`)."""
    prefix = prefix_token_id(tokenizer)
    if context == "":
        cont = list(tokenizer.encode(continuation, add_special_tokens=False))
        if cont and cont[0] == prefix:
            return cont[:1], cont[1:]
        return [prefix], cont
    context, continuation = split_trailing_whitespace(context, continuation)
    bos_text = tokenizer.decode(prefix) if prefix is not None else ""

    def tok_encode(text: str) -> list[int]:
        kwargs = {} if add_bos_token is None else {"add_special_tokens": add_bos_token}
        if bos_text and text.startswith(bos_text):
            kwargs["add_special_tokens"] = False
        return list(tokenizer.encode(text, **kwargs))

    whole = tok_encode(context + continuation)
    ctx = tok_encode(context)
    cont = whole[len(ctx):]
    if not ctx:  # a whitespace-only context of a BOS-less tokenizer (lm-eval would score from no context)
        ctx = [prefix]
    return ctx, cont


def encode_chat_pair(tokenizer: Any, rendered: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) of a chat context rendered by the chat template (which decides BOS)."""
    spaces = len(rendered) - len(rendered.rstrip(" "))
    if spaces:
        rendered, continuation = rendered[:-spaces], rendered[-spaces:] + continuation
    whole = tokenizer(rendered + continuation, add_special_tokens=False)["input_ids"]
    ctx = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    cont = list(whole[len(ctx):])
    if not ctx:
        ctx = [prefix_token_id(tokenizer)]
    return list(ctx), cont


class PairEncoder:
    """`encode_pair` for one backend: its tokenizer, chat renderer and `add_bos_token` engine argument
    (the scoring tokenizer is built once)."""

    def __init__(self, tokenizer: Any, render: Any, add_bos_token: Any = None) -> None:
        self.tokenizer = tokenizer
        self.render = render
        self.add_bos_token = check_add_bos_token(add_bos_token)
        self._raw: Any = None

    def __call__(self, request: LoglikelihoodRequest) -> tuple[list[int], list[int]]:
        if request.is_chat:
            return encode_chat_pair(self.tokenizer, self.render(request.chat_messages), request.continuation)
        if self._raw is None:
            self._raw = scoring_tokenizer(self.tokenizer, self.add_bos_token)
        return encode_raw_pair(self._raw, str(request.context), request.continuation, self.add_bos_token)


def encode_pair(backend: Any, request: LoglikelihoodRequest) -> tuple[list[int], list[int]]:
    """The one encode convention, for a backend with `tokenizer`, `render(messages)` and `spec`: the
    token ids of a log-likelihood request's context and continuation (see the notes above)."""
    encoder = backend.__dict__.get("_pair_encoder")
    if encoder is None or encoder.tokenizer is not backend.tokenizer:
        encoder = PairEncoder(backend.tokenizer, backend.render, backend.spec.engine_args.get("add_bos_token"))
        backend._pair_encoder = encoder
    return encoder(request)
