"""Speed of the transformers backend's CPU paths, on the demo's own prompts (not a test; prints timings).

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_transformers.py [--mc-questions 100] [--fewshot 16]

Prints, each as a measured ratio with the outputs compared:
  1. bfloat16 vs float32 (only where the CPU has native bf16): TruthfulQA multiple choice (the demo's
     `truthfulness` suite, first N questions, all choices) and few-shot ticket generation (the demo's
     `tickets` suite with the `fewshot` variant's 5 examples); agreement of MC answers and of texts
  2. grouped-query attention inside the SDPA kernel vs transformers' SDPA (which copies K/V heads
     when there is a mask), few-shot generation, float32: same texts expected
  3. a shared few-shot prefix computed once vs per prompt, few-shot generation, float32: same texts
  4. multiple choice: the contexts' shared system turn computed once per call vs per context, float32
  5. multiple choice with a LoRA adapter loaded (the model's default dtype): the output layer given a
     contiguous input vs the strided slice `logits_to_keep` produces (a frozen weight is then copied per row)
  6. greedy generation: the backend's loop (finished rows leave the batch) vs transformers' generate, the
     demo's IFEval prompts (200 new tokens) with the tickets-lora adapter (the model's default dtype)
  7. adapters merged into the base weights vs PEFT's unmerged forward: multiple choice with each demo
     adapter (the model's default dtype), both against float32 unmerged
  8. the greedy loop's shared prefix kept once for all rows vs a copy per row: 100 few-shot ticket prompts
     (the model's default dtype), both against float32

`--sections 7,8` runs only those.

Run it on an idle machine: two processes on two cores slow each other down several times over.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MODEL = "smollm2-135m-instruct"


def mc_requests(n: int):
    from harness.backends import LoglikelihoodRequest
    from harness.suite import load_suite

    requests, seen = [], set()
    for case in load_suite(REPO / "suites" / "truthfulness.yaml").cases[:n]:
        context = tuple(tuple(sorted(m.items())) for m in case.messages)
        for choice in case.choices:
            if (context, choice) not in seen:  # the harness's cache dedupes identical requests too
                seen.add((context, choice))
                requests.append(LoglikelihoodRequest(context=context, continuation=choice))
    return requests


def fewshot_requests(n: int):
    from harness.backends import GenerateRequest
    from harness.data import select_fewshot
    from harness.prompts import build_messages
    from harness.suite import load_suite

    suite = load_suite(REPO / "suites" / "tickets.yaml")
    cases, pool = suite.splits
    examples = select_fewshot(pool, 5, suite.seed)
    return [GenerateRequest.chat(build_messages(c, examples=examples), max_tokens=96) for c in cases[:n]]


def backend(dtype: str):
    from harness.backends import EngineSpec, create_backend, freeze

    return create_backend(EngineSpec(model=MODEL, backend="transformers", engine=freeze({"dtype": dtype})))


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def timed_without(module, minimum: str, fn):
    """`fn` timed with the prefix threshold `module.<minimum>` out of reach (no shared prefix), then restored."""
    saved = getattr(module, minimum)
    setattr(module, minimum, 10**9)
    try:
        return timed(fn)
    finally:
        setattr(module, minimum, saved)


def mc_answers(requests, results) -> list[int]:
    by_context = defaultdict(list)
    for i, r in enumerate(requests):
        by_context[r.context].append(i)
    return [max(ix, key=lambda i: results[i].logprob) for ix in by_context.values()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mc-questions", type=int, default=100)
    parser.add_argument("--fewshot", type=int, default=16, help="few-shot ticket prompts (one batch at 16)")
    parser.add_argument("--ifeval", type=int, default=100, help="IFEval prompts for section 6")
    parser.add_argument("--fewshot-batch", type=int, default=100, help="few-shot ticket prompts for section 8")
    parser.add_argument("--sections", default="1,2,3,4,5,6,7,8", help="comma-separated sections to run")
    args = parser.parse_args()

    import harness.backends.transformers as tb
    from harness._files import sha256_dir
    from harness.backends import Adapter, EngineSpec, GenerateRequest, create_backend
    from harness.suite import load_suite

    mc = mc_requests(args.mc_questions)
    gen = fewshot_requests(args.fewshot)
    print(f"workload: {args.mc_questions} TruthfulQA questions = {len(mc)} log-likelihoods; "
          f"{len(gen)} few-shot ticket prompts x 96 tokens")

    sections = set(args.sections.split(","))
    if sections & {"1", "2", "3", "4"}:  # they share the float32 timings
        fp32 = backend("float32")
        fp32.loglikelihood(mc[:16])  # warm-up
        mc32_s, mc32 = timed(lambda: fp32.loglikelihood(mc))
        gen32_s, gen32 = timed(lambda: fp32.generate(gen))

        print("\n[1] bfloat16 vs float32")
        if tb.cpu_has_native_bf16():
            fp32.close()
            bf16 = backend("bfloat16")
            bf16.loglikelihood(mc[:16])
            mc16_s, mc16 = timed(lambda: bf16.loglikelihood(mc))
            gen16_s, gen16 = timed(lambda: bf16.generate(gen))
            bf16.close()
            same_mc = sum(a == b for a, b in zip(mc_answers(mc, mc32), mc_answers(mc, mc16)))
            same_text = sum(a.text == b.text for a, b in zip(gen32, gen16))
            print(f"  multiple choice: fp32 {len(mc) / mc32_s:.1f} req/s, bf16 {len(mc) / mc16_s:.1f} req/s "
                  f"-> {mc32_s / mc16_s:.2f}x; same answer on {same_mc}/{args.mc_questions} questions; "
                  f"max |dlogprob| {max(abs(a.logprob - b.logprob) for a, b in zip(mc32, mc16)):.3f}")
            print(f"  few-shot generation: fp32 {gen32_s:.1f} s, bf16 {gen16_s:.1f} s -> {gen32_s / gen16_s:.2f}x; "
                  f"identical text {same_text}/{len(gen)}")
            fp32 = backend("float32")
        else:
            print("  skipped: this CPU has no native bf16 (bf16 would be emulated, slower than fp32)")

        print("\n[2] grouped-query attention in the SDPA kernel vs transformers' SDPA (float32, few-shot generation)")
        fp32.model.set_attn_implementation("sdpa")
        fp32.generate(gen)  # warm-up: its first call runs ~2.5x slower
        stock_s, stock = timed(lambda: fp32.generate(gen))
        fp32.model.set_attn_implementation(tb.GQA_SDPA)
        print(f"  transformers sdpa {stock_s:.1f} s, harness {gen32_s:.1f} s -> {stock_s / gen32_s:.2f}x; "
              f"identical text {sum(a.text == b.text for a, b in zip(stock, gen32))}/{len(gen)}")

        print("\n[3] shared few-shot prefix computed once vs per prompt (float32, few-shot generation)")
        plain_s, plain = timed_without(tb, "PREFIX_MIN_TOKENS", lambda: fp32.generate(gen))
        print(f"  per prompt {plain_s:.1f} s, shared prefix {gen32_s:.1f} s -> {plain_s / gen32_s:.2f}x; "
              f"identical text {sum(a.text == b.text for a, b in zip(plain, gen32))}/{len(gen)}")

        print("\n[4] multiple choice: the contexts' shared system turn once per call vs per context (float32)")
        plain_s, plain = timed_without(tb, "SCORE_PREFIX_MIN_TOKENS", lambda: fp32.loglikelihood(mc))
        print(f"  per context {len(mc) / plain_s:.1f} req/s, shared {len(mc) / mc32_s:.1f} req/s -> {plain_s / mc32_s:.2f}x; "
              f"max |dlogprob| {max(abs(a.logprob - b.logprob) for a, b in zip(plain, mc32)):.1e}")
        fp32.close()

    if "5" in sections:
        print("\n[5] multiple choice with an adapter loaded: contiguous output-layer input vs strided (default dtype)")
        import dataclasses

        path = REPO / "adapters" / "tickets-lora"
        adapter = Adapter("tickets-lora", path, sha256_dir(path))
        engine = create_backend(EngineSpec(model=MODEL, backend="transformers"))
        lora = [dataclasses.replace(r, adapter=adapter) for r in mc]
        engine.loglikelihood(lora[:16])  # loads the adapter
        fast_s, fast = timed(lambda: engine.loglikelihood(lora))
        head = engine.model.get_base_model().get_output_embeddings()
        hooks = dict(head._forward_pre_hooks)
        head._forward_pre_hooks.clear()
        slow_s, slow = timed(lambda: engine.loglikelihood(lora))
        head._forward_pre_hooks.update(hooks)
        dtype = engine.info()["dtype"]
        engine.close()
        print(f"  {dtype}: strided {len(mc) / slow_s:.1f} req/s, contiguous {len(mc) / fast_s:.1f} req/s "
              f"-> {slow_s / fast_s:.2f}x; max |dlogprob| {max(abs(a.logprob - b.logprob) for a, b in zip(slow, fast)):.1e}")

    if "6" in sections:
        print("\n[6] greedy generation: the backend's loop (finished rows leave the batch) vs transformers' generate")
        path = REPO / "adapters" / "tickets-lora"
        adapter = Adapter("tickets-lora", path, sha256_dir(path))
        suite = load_suite(REPO / "suites" / "instructions.yaml")
        prompts = [GenerateRequest.chat(list(c.messages), max_tokens=200, adapter=adapter)
                   for c in suite.cases[: args.ifeval]]
        engine = create_backend(EngineSpec(model=MODEL, backend="transformers"))
        engine.generate(prompts[:4])  # loads the adapter, warms up
        engine.greedy_loop = False
        theirs_s, theirs = timed(lambda: engine.generate(prompts))
        engine.greedy_loop = True
        ours_s, ours = timed(lambda: engine.generate(prompts))
        dtype = engine.info()["dtype"]
        engine.close()
        print(f"  {dtype}, {len(prompts)} IFEval prompts x 200 tokens, tickets-lora: generate {theirs_s:.1f} s, "
              f"own loop {ours_s:.1f} s -> {theirs_s / ours_s:.2f}x; identical text "
              f"{sum(a.text == b.text for a, b in zip(theirs, ours))}/{len(prompts)}")

    if "7" in sections:
        print("\n[7] adapters merged into the base weights vs PEFT's unmerged forward, multiple choice (default dtype)")
        import dataclasses

        engine = create_backend(EngineSpec(model=MODEL, backend="transformers"))
        reference = backend("float32")
        reference.merge_adapters = False
        for name in ("tickets-lora", "tickets-lora-aggressive"):
            path = REPO / "adapters" / name
            adapter = Adapter(name, path, sha256_dir(path))
            tuned = [dataclasses.replace(r, adapter=adapter) for r in mc]
            exact = reference.loglikelihood(tuned)
            engine.merge_adapters = False
            engine.loglikelihood(tuned[:16])  # loads the adapter
            unmerged_s, unmerged = timed(lambda: engine.loglikelihood(tuned))
            engine.merge_adapters = True
            merged_s, merged = timed(lambda: engine.loglikelihood(tuned))

            def off(results):
                return sum(abs(a.logprob - b.logprob) for a, b in zip(results, exact)) / len(exact)

            def same(results):
                return sum(a == b for a, b in zip(mc_answers(mc, results), mc_answers(mc, exact)))

            print(f"  {name} ({engine.info()['dtype']}): unmerged {len(mc) / unmerged_s:.1f} req/s, merged "
                  f"{len(mc) / merged_s:.1f} req/s -> {unmerged_s / merged_s:.2f}x; against float32 unmerged: mean "
                  f"|dlogprob| {off(unmerged):.3f} vs {off(merged):.3f}, same answer on {same(unmerged)} vs "
                  f"{same(merged)} of {args.mc_questions} questions")
        engine.close()
        reference.close()

    if "8" in sections:
        print("\n[8] greedy loop: the few-shot prefix once for all rows vs a copy per row (default dtype)")
        prompts = fewshot_requests(args.fewshot_batch)
        reference = backend("float32")
        reference.share_prefixes = False
        exact = reference.generate(prompts)
        reference.close()
        engine = create_backend(EngineSpec(model=MODEL, backend="transformers"))
        engine.generate(prompts[:4])
        engine.share_prefixes = False
        per_row_s, per_row = timed(lambda: engine.generate(prompts))
        engine.share_prefixes = True
        once_s, once = timed(lambda: engine.generate(prompts))
        dtype = engine.info()["dtype"]
        engine.close()
        print(f"  {dtype}, {len(prompts)} few-shot ticket prompts x 96 tokens: per row {per_row_s:.1f} s, once "
              f"{once_s:.1f} s -> {per_row_s / once_s:.2f}x; same text as float32: {sum(a.text == b.text for a, b in zip(per_row, exact))} "
              f"vs {sum(a.text == b.text for a, b in zip(once, exact))} of {len(prompts)}")


if __name__ == "__main__":
    main()
