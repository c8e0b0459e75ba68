"""A scripted fake backend for fast tests of everything around the model.

Configure it in models.toml (`backend = "fake"`) with a `fake` table:
    fake = {responses = [{match = "France", output = "Paris"}], default = "I don't know"}
    fake = {script = "fake.jsonl"}           # lines {"match": ..., "output": ...}
    fake = {echo = true}                      # repeat the last user turn
    fake = {responder = "name"}               # a Python function registered with `register_responder`
`match` is a substring of the last user turn; the first matching rule wins. Log-likelihoods are a
deterministic hash of the request unless `prefer` lists substrings to score highest.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.backends.base import Backend, EngineSpec, GenerateRequest, Generation, Loglikelihood, LoglikelihoodRequest
from harness.errors import BackendError

IMPLEMENTATION = "fake/1"
"""Version of this module's outputs (generations, log-likelihoods), part of the cache identity of every
engine it serves (runner.engine_fingerprint) and of blessed baselines: bump it by hand whenever a change here
could change an output; tests/test_implementation.py fails until you do."""

RESPONDERS: dict[str, Callable[[GenerateRequest], str]] = {}
FAKE_KEYS = {"responses", "script", "default", "echo", "responder", "prefer", "adapter_suffix", "delay", "log"}


def register_responder(name: str, fn: Callable[[GenerateRequest], str]) -> None:
    """Make `fn(request) -> output text` usable as `fake = {responder = name}`."""
    RESPONDERS[name] = fn


class FakeBackend(Backend):
    name = "fake"
    batch_size = 8

    def __init__(self, spec: EngineSpec) -> None:
        super().__init__(spec)
        options: dict[str, Any] = spec.option_args.get("fake", {}) or {}
        unknown = set(options) - FAKE_KEYS
        if unknown:
            raise BackendError(f"unknown fake backend option(s): {', '.join(sorted(unknown))}.")
        self.rules: list[tuple[str, str]] = [(r["match"], r["output"]) for r in options.get("responses", [])]
        if options.get("script"):
            for line in Path(options["script"]).read_text().splitlines():
                if line.strip():
                    rule = json.loads(line)
                    self.rules.append((rule["match"], rule["output"]))
        self.default = options.get("default", "")
        self.echo = bool(options.get("echo", False))
        self.prefer = list(options.get("prefer", []))
        self.adapter_suffix = options.get("adapter_suffix", "")
        self.delay = float(options.get("delay", 0.0))
        """Seconds per generated answer (to test interruption)."""
        self.log = Path(options["log"]) if options.get("log") else None
        """Append every generated request's last user turn here (to prove nothing is generated twice)."""
        self.responder = None
        if options.get("responder"):
            if options["responder"] not in RESPONDERS:
                raise BackendError(f"fake responder '{options['responder']}' is not registered.")
            self.responder = RESPONDERS[options["responder"]]
        self.stats.loads += 1
        self.calls: list[GenerateRequest] = []

    def _answer(self, request: GenerateRequest) -> str:
        if self.responder is not None:
            return self.responder(request)
        user = next((m["content"] for m in reversed(request.chat_messages) if m["role"] == "user"), "")
        for match, output in self.rules:
            if match in user:
                return output
        text = user if self.echo else self.default
        return text + (self.adapter_suffix if request.adapter else "")

    def generate(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        self.stats.generate_calls += 1
        self.stats.generated += len(requests)
        self.calls.extend(requests)
        out = []
        for request in requests:
            if self.delay:
                time.sleep(self.delay)
            if self.log is not None:
                with self.log.open("a") as handle:
                    handle.write(json.dumps(request.chat_messages[-1]["content"]) + "\n")
            text = self._answer(request)
            words = text.split()
            if len(words) > request.max_tokens:
                text = " ".join(words[: request.max_tokens])
                out.append(Generation(text, "length", request.max_tokens))
            else:
                out.append(Generation(text, "stop", len(words)))
            self._batch_done([len(out) - 1], [out[-1]])  # the fake's batch is one request
        return out

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        self.stats.loglikelihood_calls += 1
        self.stats.scored += len(requests)
        out = []
        for request in requests:
            payload = json.dumps(request.cache_payload(), sort_keys=True)
            noise = int(hashlib.sha256(payload.encode()).hexdigest()[:8], 16) / 16**8
            bonus = 10.0 if any(p in request.continuation for p in self.prefer) else 0.0
            out.append(Loglikelihood(-5.0 * noise + bonus - 0.01 * len(request.continuation), False))
        return out

    def info(self) -> dict[str, Any]:
        return {"backend": self.name}
