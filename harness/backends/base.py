"""The one backend interface. A backend instance serves one base model (one engine load);
adapters ride along per request, so base + N adapters never reload the base.

Only `generate` is required. `loglikelihood` is optional (multiple choice, adapter probes).
Requests are plain frozen dataclasses so they hash into cache keys.
"""

from __future__ import annotations

import contextlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import BackendError

Message = dict[str, str]


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

    def close(self) -> None:
        """Free the engine."""
