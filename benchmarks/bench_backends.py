"""Throughput benchmark for the generation backends (not a test; prints wall-clock timings).

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_backends.py [--prompts 64] [--max-tokens 32] [--repeats 2]

On the same prompts and greedy settings it prints:
  1. harness-through-vLLM (Runner cache-through path, fresh cache) vs raw `vllm.LLM.chat` on the same
     engine                                                                      target >= 0.9x
  2. harness-through-transformers vs a raw `model.generate` loop with the same batching (length-sorted,
     left-padded batches of `batch_size`) on the same loaded model                target >= 0.9x
  3. vLLM backend vs transformers backend (generation, and multiple-choice log-likelihood), and the
     transformers backend's shared-context KV reuse for multiple choice vs full sequences
  4. base + 2 LoRA adapters evaluated by `run_suites` with one vLLM engine load (loads counted)

Each timed vLLM run starts with an empty prefix cache so neither path profits from the other's work.
vLLM spawns processes, so this file must run as a script (`if __name__ == "__main__"`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the checkout's harness, and tests.backends.test_model_integration.make_adapter
DATA = REPO.parent / "shared" / "data" / "external"
MODEL = "smollm2-135m-instruct"


def chat_prompts(n: int) -> list[list[dict[str, str]]]:
    """Real questions of varied length (GSM8K), as single-turn chats."""
    rows = [json.loads(line) for line in (DATA / "gsm8k_test.jsonl").read_text().splitlines()[:n] if line.strip()]
    prompts = [[{"role": "user", "content": r["question"]}] for r in rows]
    while len(prompts) < n:  # fewer rows than asked: pad with short synthetic prompts
        prompts.append([{"role": "user", "content": f"Write one sentence about the number {len(prompts)}."}])
    return prompts


def mc_requests(n: int):
    from harness.backends import LoglikelihoodRequest

    requests = []
    for line in (DATA / "openbookqa_test.jsonl").read_text().splitlines()[:n]:
        row = json.loads(line)
        context = ((("content", row["question"]["stem"]), ("role", "user")),)
        requests += [LoglikelihoodRequest(context=context, continuation=c["text"]) for c in row["question"]["choices"]]
    return requests


def timed(fn: Callable[[], int], repeats: int, before: Callable[[], None] = lambda: None) -> tuple[float, int]:
    """Median seconds over `repeats` runs of fn (which returns the number of output tokens)."""
    times, tokens = [], 0
    for _ in range(repeats):
        before()
        started = time.perf_counter()
        tokens = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), tokens


def line(label: str, seconds: float, n: int, tokens: int) -> None:
    print(f"  {label:<44} {seconds:7.2f} s  {n / seconds:7.2f} req/s  {tokens / seconds:8.1f} tok/s", flush=True)


class _Shared:
    """Hands an already loaded backend to a BackendPool; closing stays with the benchmark."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.calls = 0

    def __call__(self, spec):
        self.calls += 1
        backend = self.backend
        proxy = type("SharedBackend", (), {})()
        proxy.__dict__.update({"name": backend.name, "batch_size": backend.batch_size, "stats": backend.stats,
                               "generate": backend.generate, "loglikelihood": backend.loglikelihood,
                               "info": backend.info, "close": lambda: None})
        return proxy


def through_runner(spec, backend, requests, kind: str, workdir: Path) -> list[dict]:
    """The harness's own model-call path: cache lookup, chunks of batch_size * 2, cache writes."""
    from harness.engine.cache import GenerationCache
    from harness.engine.runner import BackendPool, Runner

    cache = GenerationCache(Path(tempfile.mkdtemp(dir=workdir)) / "c.sqlite")
    runner = Runner(None, cache=cache, pool=BackendPool(factory=_Shared(backend)))  # type: ignore[arg-type]
    values, _ = runner._through_cache(spec, requests, kind, lambda n: None)
    cache.close()
    return values


def bench_vllm(args, prompts, workdir: Path, adapters: list[Path]):
    from vllm import SamplingParams

    from harness.backends import EngineSpec, GenerateRequest, create_backend

    print(f"\n[1] vLLM: harness vs raw LLM.chat  ({len(prompts)} prompts, max_tokens={args.max_tokens}, greedy)")
    started = time.perf_counter()
    spec = EngineSpec(model=MODEL, backend="vllm")
    backend = create_backend(spec)
    backend.expect_adapters(adapters)  # what the runner's BackendPool does (proposed change)
    backend._start()
    print(f"  engine load {time.perf_counter() - started:.1f} s; {json.dumps(backend.info()['engine_args'])}")
    llm = backend.llm
    params = SamplingParams(max_tokens=args.max_tokens, temperature=0.0)
    requests = [GenerateRequest.chat(p, max_tokens=args.max_tokens) for p in prompts]
    reset = llm.reset_prefix_cache

    def raw() -> int:
        outputs = llm.chat(prompts, params, use_tqdm=False)
        return sum(len(o.outputs[0].token_ids) for o in outputs)

    def harness_path() -> int:
        values = through_runner(spec, backend, requests, "generate", workdir)
        return sum(v["output_tokens"] for v in values)

    timed(raw, 1, reset)  # warm-up
    raw_s, raw_tok = timed(raw, args.repeats, reset)
    h_s, h_tok = timed(harness_path, args.repeats, reset)
    line("raw vllm.LLM.chat", raw_s, len(prompts), raw_tok)
    line("harness (Runner -> VLLMBackend)", h_s, len(prompts), h_tok)
    print(f"  harness / raw throughput: {raw_s / h_s:.2f}x  (target >= 0.9x)")
    same = [o.outputs[0].text for o in llm.chat(prompts, params, use_tqdm=False)]
    mine = [g.text for g in backend.generate(requests)]
    print(f"  identical outputs harness vs raw chat: {sum(a == b for a, b in zip(same, mine, strict=True))}/{len(same)}")
    return spec, backend, h_s, h_tok


def bench_transformers(args, prompts, workdir: Path):
    import torch

    from harness.backends import EngineSpec, GenerateRequest, create_backend, freeze

    print("\n[2] transformers: harness vs raw model.generate loop  (batch_size=16, same prompts)")
    started = time.perf_counter()
    spec = EngineSpec(model=MODEL, backend="transformers", engine=freeze({"dtype": "float32"}))  # vLLM on CPU is fp32
    backend = create_backend(spec)
    print(f"  model load {time.perf_counter() - started:.1f} s")
    model, tokenizer = backend.model, backend.tokenizer
    requests = [GenerateRequest.chat(p, max_tokens=args.max_tokens) for p in prompts]

    def raw() -> int:
        texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        tokens = 0
        torch.set_flush_denormal(True)  # as the backend does while it computes (denormals are slow on CPU)
        for start in range(0, len(order), backend.batch_size):
            batch = [texts[i] for i in order[start : start + backend.batch_size]]
            encoded = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.inference_mode():
                out = model.generate(**encoded, max_new_tokens=args.max_tokens, do_sample=False, temperature=None,
                                     top_p=None, top_k=None, pad_token_id=tokenizer.pad_token_id)
            new = out[:, encoded["input_ids"].shape[1]:]
            tokenizer.batch_decode(new, skip_special_tokens=True)
            tokens += int((new != tokenizer.pad_token_id).sum())
        torch.set_flush_denormal(False)
        return tokens

    def harness_path() -> int:
        values = through_runner(spec, backend, requests, "generate", workdir)
        return sum(v["output_tokens"] for v in values)

    timed(raw, 1)  # warm-up
    raw_s, raw_tok = timed(raw, args.repeats)
    h_s, h_tok = timed(harness_path, args.repeats)
    line("raw model.generate loop", raw_s, len(prompts), raw_tok)
    line("harness (Runner -> TransformersBackend)", h_s, len(prompts), h_tok)
    print(f"  harness / raw throughput: {raw_s / h_s:.2f}x  (target >= 0.9x)")
    return spec, backend, h_s, h_tok


def bench_mc(args, vspec, vbackend, tspec, tbackend, workdir: Path):
    requests = mc_requests(args.mc_items)
    print(f"\n[3b] multiple-choice log-likelihood: {args.mc_items} OpenBookQA items = {len(requests)} requests")
    results = {}
    for label, spec, backend in (("vllm", vspec, vbackend), ("transformers", tspec, tbackend)):
        before = vbackend.llm.reset_prefix_cache if label == "vllm" else (lambda: None)
        def score(spec=spec, backend=backend) -> int:
            return len(through_runner(spec, backend, requests, "loglikelihood", workdir))

        seconds, _ = timed(score, args.repeats, before)
        results[label] = seconds
        print(f"  {label + ' backend':<44} {seconds:7.2f} s  {len(requests) / seconds:7.2f} req/s", flush=True)
    print(f"  vllm / transformers throughput: {results['transformers'] / results['vllm']:.2f}x")

    # The transformers backend scores the choices of one question on the question's KV cache; the
    # same requests as full padded sequences (its path for requests that share no context):
    pairs = {i: tbackend._encode_pair(r) for i, r in enumerate(requests)}

    def full_rows() -> int:
        out: list = [None] * len(requests)
        tbackend._score_full_rows(list(pairs), pairs, out)
        return len(out)

    seconds, _ = timed(full_rows, args.repeats)
    print(f"  {'transformers, full sequences (no KV reuse)':<44} {seconds:7.2f} s  {len(requests) / seconds:7.2f} req/s")
    print(f"  shared-context KV reuse speed-up: {seconds / results['transformers']:.2f}x")


def make_adapters(workdir: Path) -> list[Path]:
    from tests.backends.test_model_integration import make_adapter

    return [make_adapter(workdir / "lora-a", zero=False, seed=1), make_adapter(workdir / "lora-b", zero=False, seed=2,
                                                                             rank=16)]


def bench_adapters(vbackend, workdir: Path, adapters: list[Path]) -> None:
    from harness.config.suite import load_suite
    from harness.config.variants import load_models
    from harness.engine.cache import GenerationCache
    from harness.engine.runner import BackendPool, RunOptions, run_suites
    print("\n[4] base + 2 LoRA adapters (ranks 8, 16) through run_suites on the vllm backend")
    one, two = adapters
    (workdir / "models.toml").write_text(
        f'[defaults]\nmodel = "{MODEL}"\nbackend = "vllm"\n[variants.base]\n'
        f'[variants.lora-a]\nadapter = "{one}"\n[variants.lora-b]\nadapter = "{two}"\n')
    rows = [json.loads(x) for x in (DATA / "gsm8k_test.jsonl").read_text().splitlines()[:16]]
    with (workdir / "data.jsonl").open("w") as handle:
        for i, r in enumerate(rows):
            handle.write(json.dumps({"id": f"g{i}", "messages": [{"role": "user", "content": r["question"]},
                                    {"role": "assistant", "content": r["answer"].split("####")[-1].strip()}]}) + "\n")
    (workdir / "s.yaml").write_text("suite: adapters\ndata: {path: data.jsonl}\nvariants: [base, lora-a, lora-b]\n"
                                    "generation: {max_tokens: 16}\nscorers: {accuracy: contains}\n")
    factory = _Shared(vbackend)
    pool = BackendPool(factory=factory)
    loads_before = vbackend.stats.loads
    started = time.perf_counter()
    result = run_suites([load_suite(workdir / "s.yaml")], load_models(workdir / "models.toml"),
                        RunOptions(out_root=workdir / "runs", progress=False),
                        cache=GenerationCache(workdir / "adapters.sqlite"), pool=pool, log=lambda s: None)
    seconds = time.perf_counter() - started
    guard = {k: v.get("adapter_guard") for k, v in result.manifest["runs"].items() if v.get("adapter_guard")}
    print(f"  {len(result.records)} records (3 variants x 16 cases, max_tokens 16) in {seconds:.1f} s; errors: {result.errors or 'none'}")
    print(f"  engines requested by the runner: {pool.loads}; vLLM engine loads: {vbackend.stats.loads - loads_before} "
          f"extra beyond the 1 already counted ({vbackend.stats.loads} total); adapter guard: {guard}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--mc-items", type=int, default=50)
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="intra-op threads for the transformers side (default: torch's choice)")
    args = parser.parse_args()
    import torch

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    print(f"torch intra-op threads (transformers side): {torch.get_num_threads()}; "
          f"load average at start: {open('/proc/loadavg').read().split()[0]}")
    from harness.backends.vllm import quiet_vllm_logging

    quiet_vllm_logging()
    prompts = chat_prompts(args.prompts)
    with tempfile.TemporaryDirectory(prefix="bench-backends-") as tmp:
        workdir = Path(tmp)
        adapters = make_adapters(workdir)
        vspec, vbackend, v_s, v_tok = bench_vllm(args, prompts, workdir, adapters)
        tspec, tbackend, t_s, t_tok = bench_transformers(args, prompts, workdir)
        print("\n[3a] generation, harness path: vllm backend vs transformers backend")
        line("vllm backend", v_s, len(prompts), v_tok)
        line("transformers backend", t_s, len(prompts), t_tok)
        print(f"  vllm / transformers throughput: {t_s / v_s:.2f}x (requests/s)")
        bench_mc(args, vspec, vbackend, tspec, tbackend, workdir)
        tbackend.close()
        bench_adapters(vbackend, workdir, adapters)
        vbackend.close()


if __name__ == "__main__":
    main()
