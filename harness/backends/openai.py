"""OpenAI-compatible HTTP backend: OpenAI itself, a vLLM server (`vllm serve`), any cluster behind
the same API. One instance talks to one (base_url, model) pair.

models.toml:
    [variants.remote]
    backend = "openai"
    model = "my-model"                       # the *served* model id (vLLM: --served-model-name, or a
                                             # --lora-modules NAME for a LoRA adapter served by vLLM)
    base_url = "http://127.0.0.1:8000/v1"    # required
    api_key_env = "OPENAI_API_KEY"           # NAME of an environment variable holding the key (optional)
    headers = {"OpenAI-Organization" = "org-..."}   # extra request headers (optional)
    timeout = 120                            # seconds per HTTP attempt (default 120)
    max_concurrency = 8                      # requests in flight (default 8)
    max_attempts = 6                         # attempts per request, first one included (default 6)
    retry_base_delay = 0.5                   # backoff: delay before retry k is ~ base * 2**(k-1) ...
    retry_max_delay = 30                     # ... capped at this many seconds (default 30)

Requests run concurrently (asyncio + httpx on a private event loop thread, at most `max_concurrency`
in flight). Each request is retried on its own on HTTP 408/409/425/429/5xx, timeouts, connection
errors and malformed responses, with exponential backoff and jitter (sleep d/2 + U(0, d/2) with
d = min(retry_max_delay, retry_base_delay * 2**(k-1))), or exactly the server's `Retry-After`
(seconds or an HTTP date; capped at 10 minutes) when it sends one; after `max_attempts` it has
failed. HTTP 401/403 (bad or missing key: the message names `api_key_env`, never the key) and 404
(unknown model or wrong base_url: the message lists the served model ids) stop the whole batch at
once with a one-line BackendError. Other 4xx answers fail that request without retrying. When some
requests of a batch fail for good, `generate` raises a BackendError saying how many failed and why;
the results that did succeed are on the exception as `partial_results` (None where failed), so a
caller can keep them, and a re-run resumes from the cache.

Generation uses /chat/completions (the server applies its own chat template) with `max_tokens`,
`temperature`, `stop`, and - when sampling (temperature > 0) - `top_p` and `seed`; greedy requests
send neither, which matches the cache key (greedy ignores top_p and seed).

Log-likelihood uses /completions with `echo=True, logprobs=1, max_tokens=0` (vLLM returns the
prompt's token logprobs this way; OpenAI's current models do not). The endpoint is probed once and
the answer cached for the backend's lifetime. Only *raw-text* contexts are supported: the
completions endpoint takes text, and a chat context would have to be rendered with the server's
chat template, which the client does not know. Chat-context log-likelihood (what the runner sends
for multiple-choice suites) therefore raises a BackendError pointing at the `choice_letter` scorer
or a local backend. The continuation's tokens are found by character offsets in the echoed prompt;
a token that straddles the context/continuation boundary is counted with the continuation (and
counted in `info()["loglikelihood"]["boundary_tokens"]`). Trailing whitespace of the context moves to
the continuation, as in lm-eval and the local backends (`base.split_trailing_whitespace`, part of the one
encode convention); the server tokenizes the whole prompt with its tokenizer's default special tokens (a
vLLM server adds BOS when its tokenizer does, as lm-eval's hf model does). The `add_bos_token` engine
argument cannot reach a remote tokenizer and is refused here.

No local adapters: an `openai` variant cannot load a PEFT directory. Serve the adapter from vLLM
(`--enable-lora --lora-modules NAME=PATH`) and point the variant's `model` at NAME.

The API key is read from the environment when the backend starts and only ever sent in the
Authorization header. It is never stored in records, the manifest or the cache, and every text the
backend reports (errors, `info()`) is scrubbed of it; server messages on 401/403 are not echoed at
all (OpenAI's echo a masked key). `info()` records base_url, the served model id, the
`system_fingerprint`s the server returned, the log-likelihood method, request / retry / failure
counts by reason and token usage.

Proxies: for a loopback base_url (127.0.0.1, localhost, ::1) proxy environment variables are
ignored, so local servers are always reached directly; other hosts honour HTTP(S)_PROXY/NO_PROXY.

Cache identity: `model_identity()` is "openai:<base_url>#<model>" - the served id and where it is
served. A server that swaps the weights behind the same id is not detected by the cache key; use a
new served id (or a fresh cache) when the weights change. The system_fingerprints in the manifest
show whether the server changed between runs.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC
from typing import Any
from urllib.parse import urlsplit

from harness.backends.base import (
    Backend,
    EngineSpec,
    GenerateRequest,
    Generation,
    Loglikelihood,
    LoglikelihoodRequest,
    split_trailing_whitespace,
)
from harness.errors import BackendError

IMPLEMENTATION = "openai/1"
"""Version of this module's outputs (generations, log-likelihoods), part of the cache identity of every
engine it serves (runner.engine_fingerprint) and of blessed baselines: bump it by hand whenever a change here
could change an output; tests/test_implementation.py fails until you do."""

OPTION_DEFAULTS: dict[str, Any] = {
    "timeout": 120.0,
    "max_concurrency": 8,
    "max_attempts": 6,
    "retry_base_delay": 0.5,
    "retry_max_delay": 30.0,
}
OPTION_KEYS = {"base_url", "api_key_env", "headers", *OPTION_DEFAULTS}
"""The variant options this backend reads (config.VARIANT_KEYS/OPTION_KEYS must accept them)."""
RETRY_STATUS = {408, 409, 425, 429}
"""Retried besides every 5xx."""
MAX_RETRY_AFTER = 600.0
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
LOGPROB_METHOD = "completions echo=True logprobs=1 max_tokens=0 (raw-text contexts only)"
CHAT_LL_MESSAGE = (
    "the openai backend cannot score log-likelihoods of chat contexts: the completions endpoint takes raw "
    "text and the server's chat template is not known client-side. Multiple-choice suites need "
    "log-likelihoods of chat prompts; score them with the `choice_letter` scorer (generated text) on this "
    "variant, or run the suite on a local backend (vllm / transformers). Raw-text contexts are supported."
)


def normalize_base_url(base_url: str) -> str:
    return base_url.strip().rstrip("/")


def model_identity(model: str, options: dict[str, Any]) -> str:
    """The cache's 'weights' identity of an API model: the served id and where it is served."""
    return f"openai:{normalize_base_url(str(options.get('base_url') or ''))}#{model}"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent/invalid."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


class _Fatal(Exception):
    """Stops the whole batch (401/403/404, missing capability)."""


class _Failed(Exception):
    """One request failed for good."""

    def __init__(self, reason: str, status: int | None = None, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.detail = detail


class _Malformed(ValueError):
    """A 200 response whose body is not what the endpoint promises."""


class _LoopThread:
    """A private event loop on a daemon thread, so `generate` works from sync code and from inside
    someone else's running loop (pytest-asyncio, notebooks) alike."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="harness-openai", daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float | None = None):
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
            raise

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()


class OpenAIBackend(Backend):
    name = "openai"
    batch_size = 16

    def __init__(self, spec: EngineSpec) -> None:
        super().__init__(spec)
        try:
            import httpx
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise BackendError(f"the openai backend needs the httpx package ({exc}). Run `make install`.") from None
        self._httpx = httpx
        opts = spec.option_args
        where = f"openai variant with model '{spec.model}'"
        base_url = opts.get("base_url")
        if not isinstance(base_url, str) or not base_url.strip():
            raise BackendError(f"{where}: set base_url (e.g. \"http://127.0.0.1:8000/v1\") in models.toml.")
        parts = urlsplit(base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise BackendError(f"{where}: base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, "
                               f"got '{base_url}'.")
        self.base_url = normalize_base_url(base_url)
        self.model = spec.model
        if spec.quantization:
            raise BackendError(f"{where}: quantization = '{spec.quantization}' cannot apply to a served model; "
                               "the server decides the weights' precision. Remove quantization from this variant.")

        def number(key: str, kind: type, minimum: float) -> Any:
            value = opts.get(key, OPTION_DEFAULTS[key])
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum \
                    or (kind is int and not float(value).is_integer()):
                raise BackendError(f"{where}: option {key} must be {'an integer' if kind is int else 'a number'} "
                                   f">= {minimum}, got {value!r}.")
            return kind(value)

        self.timeout = number("timeout", float, 0.001)
        self.max_concurrency = number("max_concurrency", int, 1)
        self.max_attempts = number("max_attempts", int, 1)
        self.retry_base_delay = number("retry_base_delay", float, 0.0)
        self.retry_max_delay = number("retry_max_delay", float, 0.0)

        self.api_key_env = opts.get("api_key_env")
        self._key: str | None = None
        if self.api_key_env is not None:
            # Never echo the value: a user may have pasted the key itself here.
            if not isinstance(self.api_key_env, str) or not ENV_NAME.match(self.api_key_env):
                raise BackendError(f"{where}: api_key_env must be the NAME of an environment variable that holds "
                                   "the key (e.g. \"OPENAI_API_KEY\"), not the key itself.")
            self._key = os.environ.get(self.api_key_env) or None
            if self._key is None:
                raise BackendError(f"{where}: the environment variable {self.api_key_env} (api_key_env) is not set "
                                   "or empty; export it with the API key.")
        headers = opts.get("headers") or {}
        if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in headers.items()):
            raise BackendError(f"{where}: headers must be a table of string values, e.g. headers = {{X-Team = \"ml\"}}.")
        self._headers = {"Content-Type": "application/json", **headers}
        if self._key is not None:
            self._headers["Authorization"] = f"Bearer {self._key}"
        self._secrets = [s for s in [self._key, *headers.values()] if s and len(s) >= 8]
        engine = spec.engine_args
        if engine.get("add_bos_token") is not None:
            raise BackendError(f"{where}: engine add_bos_token cannot be applied by the openai backend: the server "
                               "tokenizes the prompt with its own tokenizer's default. Remove it, or score this "
                               "variant on a local backend (transformers / vllm).")
        self.batch_size = int(engine.get("batch_size", 2 * self.max_concurrency))
        self.ignored_engine_args = sorted(k for k in engine if k != "batch_size")
        self.trust_env = (parts.hostname or "").lower() not in LOOPBACK

        self.counts: Counter[str] = Counter()
        self.retry_reasons: Counter[str] = Counter()
        self.failure_reasons: Counter[str] = Counter()
        self.usage: Counter[str] = Counter()
        self.system_fingerprints: set[str] = set()
        self.logprobs_supported: bool | None = None
        self.logprobs_unsupported_reason: str | None = None
        self.boundary_tokens = 0
        self._served_models: list[str] | None = None
        self._client = None
        self._semaphore: asyncio.Semaphore | None = None
        self._loop = _LoopThread()
        self.stats.loads += 1

    # -- text hygiene ---------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _server_message(self, response) -> str:
        """The server's error message, one line, short, with secrets removed."""
        try:
            body = response.json()
            message = body.get("error") or body.get("detail") or body if isinstance(body, dict) else body
            if isinstance(message, dict):
                message = message.get("message") or json.dumps(message)
        except ValueError:
            message = response.text
        message = " ".join(str(message).split())
        return self._scrub(message[:300])

    # -- HTTP with retries ----------------------------------------------------------------
    async def _ensure_client(self) -> None:
        if self._client is None:
            httpx = self._httpx
            self._client = httpx.AsyncClient(
                headers=self._headers,
                timeout=httpx.Timeout(self.timeout),
                limits=httpx.Limits(max_connections=self.max_concurrency,
                                    max_keepalive_connections=self.max_concurrency),
                trust_env=self.trust_env,
            )
            self._semaphore = asyncio.Semaphore(self.max_concurrency)

    def _backoff(self, attempt: int) -> float:
        cap = min(self.retry_max_delay, self.retry_base_delay * 2 ** (attempt - 1))
        return cap / 2 + random.uniform(0, cap / 2)

    async def _post(self, path: str, payload: dict[str, Any], parse: Callable[[dict], Any]) -> Any:
        """POST with per-request retries; returns parse(json) or raises _Failed / _Fatal."""
        httpx = self._httpx
        url = self.base_url + path
        reason = "no attempt made"
        for attempt in range(1, self.max_attempts + 1):
            retry_after: float | None = None
            assert self._semaphore is not None and self._client is not None
            async with self._semaphore:
                self.counts["http_attempts"] += 1
                try:
                    response = await asyncio.wait_for(self._client.post(url, json=payload), self.timeout)
                except (TimeoutError, httpx.TimeoutException):
                    reason = "timeout"
                    response = None
                except httpx.TransportError as exc:
                    reason = f"connection error ({type(exc).__name__})"
                    response = None
            if response is not None:
                status = response.status_code
                if status in (401, 403):
                    raise _Fatal(self._auth_message(status))
                if status == 404:
                    raise _Failed("HTTP 404", 404, self._server_message(response))
                if 200 <= status < 300:
                    try:
                        data = response.json()
                        if not isinstance(data, dict):
                            raise _Malformed("not a JSON object")
                        self._note(data)
                        return parse(data)
                    except (ValueError, KeyError, IndexError, TypeError) as exc:
                        reason = "malformed JSON" if isinstance(exc, json.JSONDecodeError) else "malformed response"
                elif status in RETRY_STATUS or status >= 500:
                    reason = f"HTTP {status}"
                    retry_after = parse_retry_after(response.headers.get("retry-after"))
                else:
                    raise _Failed(f"HTTP {status}", status, self._server_message(response))
            if attempt == self.max_attempts:
                break
            self.retry_reasons[reason] += 1
            if retry_after is not None:
                self.counts["retry_after_honoured"] += 1
                delay = retry_after
            else:
                delay = self._backoff(attempt)
            await asyncio.sleep(delay)
        raise _Failed(f"{reason} (after {self.max_attempts} attempt{'s' if self.max_attempts > 1 else ''})")

    def _note(self, data: dict[str, Any]) -> None:
        fingerprint = data.get("system_fingerprint")
        if isinstance(fingerprint, str) and fingerprint:
            self.system_fingerprints.add(fingerprint)
        usage = data.get("usage")
        if isinstance(usage, dict):
            for key in ("prompt_tokens", "completion_tokens"):
                if isinstance(usage.get(key), int):
                    self.usage[key] += usage[key]

    def _auth_message(self, status: int) -> str:
        what = "unauthorized" if status == 401 else "forbidden"
        if self.api_key_env:
            fix = (f"check the API key in the environment variable {self.api_key_env} (api_key_env) and that it may "
                   f"use model '{self.model}'.")
        else:
            fix = "no API key is configured: set api_key_env = \"NAME\" on the variant and export NAME with the key."
        # The server's message is deliberately not included (OpenAI's quotes part of the key).
        return f"openai backend: {self.base_url} answered HTTP {status} ({what}): {fix}"

    async def _not_found_message(self, path: str, detail: str) -> str:
        served = await self._list_models()
        if served is not None and self.model not in served:
            listed = ", ".join(served[:20]) + (" ..." if len(served) > 20 else "")
            return (f"openai backend: model '{self.model}' is not served at {self.base_url} (HTTP 404; served: "
                    f"{listed or 'none'}). Set model to a served id (a vLLM LoRA adapter's id is its "
                    "--lora-modules NAME).")
        if served is not None:
            return (f"openai backend: {self.base_url}{path} answered HTTP 404 for model '{self.model}'"
                    f"{': ' + detail if detail else ''}.")
        return (f"openai backend: {self.base_url}{path} answered HTTP 404{': ' + detail if detail else ''}. Check "
                f"model '{self.model}' (the served model id) and base_url (OpenAI-compatible servers usually end "
                "in /v1).")

    async def _list_models(self) -> list[str] | None:
        if self._served_models is None:
            try:
                assert self._client is not None
                response = await asyncio.wait_for(self._client.get(self.base_url + "/models"), min(self.timeout, 10))
                self._served_models = [str(m.get("id")) for m in response.json()["data"]] \
                    if response.status_code == 200 else None
            except Exception:  # only a hint for an error message
                return None
        return self._served_models

    async def _many(self, path: str, payloads: list[dict[str, Any]], parsers: list[Callable[[dict], Any]], *,
                    fatal_404: bool = True) -> list[Any]:
        """All payloads concurrently; per-request failures come back as _Failed values, _Fatal cancels all."""
        await self._ensure_client()

        async def one(payload, parse):
            try:
                return await self._post(path, payload, parse)
            except _Failed as failure:
                if failure.status == 404 and fatal_404:
                    raise _Fatal(await self._not_found_message(path, failure.detail)) from None
                return failure

        tasks = [asyncio.ensure_future(one(p, f)) for p, f in zip(payloads, parsers, strict=True)]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    def _run(self, path: str, payloads: list[dict[str, Any]], parsers: list[Callable[[dict], Any]], *,
             fatal_404: bool = True) -> list[Any]:
        try:
            return self._loop.run(self._many(path, payloads, parsers, fatal_404=fatal_404))
        except _Fatal as fatal:
            self.counts["fatal_errors"] += 1
            raise BackendError(self._scrub(str(fatal))) from None

    def _raise_failures(self, outcomes: list[Any], what: str) -> list[Any]:
        failures = [o for o in outcomes if isinstance(o, _Failed)]
        if not failures:
            return outcomes
        reasons = Counter(f.reason + (f": {f.detail}" if f.detail else "") for f in failures)
        self.failure_reasons.update(f.reason for f in failures)
        self.counts["failed"] += len(failures)
        summary = "; ".join(f"{n} x {self._scrub(r)}" for r, n in reasons.most_common(3))
        error = BackendError(
            f"openai backend: {len(failures)} of {len(outcomes)} {what} requests to {self.base_url} (model "
            f"'{self.model}') failed after retries: {summary}. Finished batches are cached; re-run to resume."
        )
        error.partial_results = [None if isinstance(o, _Failed) else o for o in outcomes]  # type: ignore[attr-defined]
        raise error

    # -- generation -----------------------------------------------------------------------
    def _check_adapters(self, requests: Sequence[GenerateRequest | LoglikelihoodRequest]) -> None:
        adapter = next((r.adapter for r in requests if r.adapter is not None), None)
        if adapter is not None:
            raise BackendError(
                f"the openai backend cannot apply a local adapter ({adapter.path}): serve it from the server "
                "(vLLM: --enable-lora --lora-modules NAME=PATH) and set model = \"NAME\" on this variant instead "
                "of adapter."
            )

    def _chat_payload(self, request: GenerateRequest) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": request.chat_messages,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if request.temperature > 0:  # greedy ignores both (as the cache key does)
            payload["top_p"] = request.top_p
            payload["seed"] = request.seed
        if request.stop:
            payload["stop"] = list(request.stop)
        return payload

    @staticmethod
    def _parse_chat(data: dict[str, Any]) -> Generation:
        choice = data["choices"][0]
        message = choice["message"]
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise _Malformed("message content is not text")
        usage = data.get("usage") or {}
        tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
        return Generation(text=content or "", finish_reason=choice.get("finish_reason"),
                          output_tokens=tokens if isinstance(tokens, int) else None)

    def generate(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        if not requests:
            return []
        self._check_adapters(requests)
        self.stats.generate_calls += 1
        self.counts["requests"] += len(requests)
        outcomes = self._run("/chat/completions", [self._chat_payload(r) for r in requests],
                             [self._parse_chat] * len(requests))
        results = self._raise_failures(outcomes, "chat")
        self.stats.generated += len(results)
        return results

    # -- log-likelihood -------------------------------------------------------------------
    @staticmethod
    def _split(request: LoglikelihoodRequest) -> tuple[str, str]:
        # The one encode convention's text step (harness/backends/base.py); the server tokenizes.
        return split_trailing_whitespace(str(request.context), request.continuation)

    def _completion_payload(self, context: str, continuation: str) -> dict[str, Any]:
        return {"model": self.model, "prompt": context + continuation, "max_tokens": 0, "echo": True,
                "logprobs": 1, "temperature": 0}

    def _parse_logprobs(self, context: str, continuation: str) -> Callable[[dict], Loglikelihood | _Failed]:
        def parse(data: dict[str, Any]) -> Loglikelihood | _Failed:
            logprobs = data["choices"][0].get("logprobs")
            if not isinstance(logprobs, dict) or not isinstance(logprobs.get("token_logprobs"), list):
                return _Failed("no prompt logprobs in the response", 200)
            tokens: list[str] = logprobs["tokens"]
            values: list[float | None] = logprobs["token_logprobs"]
            top = logprobs.get("top_logprobs") or [None] * len(tokens)
            offsets = logprobs.get("text_offset")
            if not isinstance(offsets, list) or len(offsets) != len(tokens):
                offsets, position = [], 0
                for token in tokens:
                    offsets.append(position)
                    position += len(token)
            end = len(context) + len(continuation)
            start = len(context)
            span = [i for i, (offset, token) in enumerate(zip(offsets, tokens, strict=True))
                    if offset < end and offset + max(len(token), 1) > start]
            if not span:
                raise _Malformed("no continuation tokens in the echoed prompt")
            if offsets[span[0]] < start:
                self.boundary_tokens += 1
            if any(values[i] is None for i in span):
                return _Failed("the continuation's first token has no logprob (empty context)", 200)
            total = float(sum(values[i] for i in span))  # type: ignore[misc]
            greedy = all(isinstance(top[i], dict) and top[i] and values[i] >= max(top[i].values()) - 1e-6
                         for i in span)
            return Loglikelihood(total, bool(greedy))

        return parse

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Loglikelihood]:
        if not requests:
            return []
        if any(r.is_chat for r in requests):
            raise BackendError(CHAT_LL_MESSAGE)
        self._check_adapters(requests)
        if self.logprobs_supported is False:
            raise BackendError(self._no_logprobs_message())
        self.stats.loglikelihood_calls += 1
        self.counts["requests"] += len(requests)
        pairs = [self._split(r) for r in requests]
        payloads = [self._completion_payload(c, x) for c, x in pairs]
        parsers = [self._parse_logprobs(c, x) for c, x in pairs]
        outcomes: list[Any] = []
        if self.logprobs_supported is None:  # probe the capability once, with the first request
            outcomes.append(self._probe_logprobs(payloads[0], parsers[0]))
            payloads, parsers = payloads[1:], parsers[1:]
        if payloads:
            outcomes += self._run("/completions", payloads, parsers)
        results = self._raise_failures(outcomes, "completions (log-likelihood)")
        self.stats.scored += len(results)
        return results

    def _probe_logprobs(self, payload: dict[str, Any], parse: Callable[[dict], Any]) -> Any:
        """The first completions request decides (once) whether the endpoint returns prompt logprobs."""
        outcome = self._run("/completions", [payload], [parse], fatal_404=False)[0]
        if isinstance(outcome, Loglikelihood):
            self.logprobs_supported = True
            return outcome
        status = outcome.status
        if status == 404:
            message = self._loop.run(self._not_found_message("/completions", outcome.detail))
            if self._served_models is not None and self.model not in self._served_models:
                self.counts["fatal_errors"] += 1
                raise BackendError(self._scrub(message))
        if status is not None and (status == 200 or 400 <= status < 500):
            self.logprobs_supported = False
            self.logprobs_unsupported_reason = self._scrub(
                outcome.reason + (f": {outcome.detail}" if outcome.detail else ""))
            raise BackendError(self._no_logprobs_message())
        return outcome  # a transient failure (5xx, timeouts): decide on a later call

    def _no_logprobs_message(self) -> str:
        return (f"openai backend: {self.base_url} (model '{self.model}') does not return prompt logprobs on the "
                "completions endpoint (echo=True, logprobs=1, max_tokens=0)"
                f"{' - ' + self.logprobs_unsupported_reason if self.logprobs_unsupported_reason else ''}. "
                "Multiple-choice log-likelihood scoring needs them: use a vLLM server, a local backend, or the "
                "`choice_letter` scorer.")

    # -- reporting ------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "backend": self.name,
            "base_url": self.base_url,
            "model": self.model,
            "system_fingerprints": sorted(self.system_fingerprints),
            "loglikelihood": {
                "method": LOGPROB_METHOD if self.logprobs_supported else
                ("unsupported" if self.logprobs_supported is False else "not used"),
                **({"unsupported_reason": self.logprobs_unsupported_reason}
                   if self.logprobs_unsupported_reason else {}),
                "boundary_tokens": self.boundary_tokens,
            },
            "requests": self.counts["requests"],
            "http_attempts": self.counts["http_attempts"],
            "retries": sum(self.retry_reasons.values()),
            "retry_reasons": dict(self.retry_reasons),
            "retry_after_honoured": self.counts["retry_after_honoured"],
            "failed": self.counts["failed"],
            "failure_reasons": dict(self.failure_reasons),
            "fatal_errors": self.counts["fatal_errors"],
            "usage": dict(self.usage),
            "settings": {"timeout": self.timeout, "max_concurrency": self.max_concurrency,
                         "max_attempts": self.max_attempts, "retry_base_delay": self.retry_base_delay,
                         "retry_max_delay": self.retry_max_delay},
            "api_key_env": self.api_key_env,
            "header_names": sorted(k for k in self._headers if k.lower() != "authorization"),
            "httpx": getattr(self._httpx, "__version__", "unknown"),
        }
        if self.ignored_engine_args:
            info["ignored_engine_args"] = self.ignored_engine_args
        return json.loads(self._scrub(json.dumps(info)))

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and not self._loop.loop.is_closed():
            try:
                self._loop.run(client.aclose(), timeout=10)
            except Exception:  # closing must never mask the run's own outcome
                pass
        self._loop.close()


__all__ = ["OpenAIBackend", "OPTION_KEYS", "model_identity", "parse_retry_after"]
