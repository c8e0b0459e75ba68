"""Time `harness compare` on a synthetic 5-variant x 4-axis x 1,000-case run (target < 2 s):
compare_run (every variant vs the baseline, per axis) plus evaluate_run (the gates), once with three
pass/fail axes and one continuous axis and once with all four axes continuous (the bootstrap's worst case).
Run: python benchmarks/bench_compare.py"""

import sys
import time

import numpy as np

from harness.analysis.compare import compare_run
from harness.analysis.gates import evaluate_run
from harness.engine.records import Run

VARIANTS, AXES, N = ["base", "fewshot", "lora", "qlora", "aggr"], ["format", "accuracy", "hallucination", "retention"], 1000


def synthetic_run(all_continuous: bool = False) -> Run:
    rng = np.random.default_rng(0)
    records = []
    for v_index, variant in enumerate(VARIANTS):
        scores = {axis: rng.random(N) < 0.5 + 0.05 * v_index for axis in AXES}
        scores["accuracy"] = rng.random(N) * (0.5 + 0.1 * v_index)  # one continuous axis
        if all_continuous:
            scores = {axis: rng.random(N) * (0.5 + 0.1 * v_index) for axis in AXES}
        for i in range(N):
            records.append({"suite": "s", "variant": variant, "case_id": f"c{i}",
                            "scores": {axis: float(scores[axis][i]) for axis in AXES}})
    gates = [f"lora.{a} > base.{a}" for a in AXES] + ["aggr.retention >= base.retention - 0.02",
                                                       "lora.hallucination <= base.hallucination + 0.02"]
    manifest = {"suites": {"s": {"variants": VARIANTS, "baseline": "base", "gates": gates, "alpha": 0.05,
                                 "axes": {a: {"direction": "lower" if a == "hallucination" else "higher"} for a in AXES}}}}
    return Run(path=None, records=records, manifest=manifest)


def main() -> None:
    for label, all_continuous in (("1 continuous + 3 pass/fail axes", False), ("4 continuous axes", True)):
        run = synthetic_run(all_continuous)
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            rows, _ = compare_run(run)
            results = evaluate_run(run.records, run.manifest)
            timings.append(time.perf_counter() - started)
        best = min(timings)
        print(f"compare of {len(VARIANTS)} variants x {len(AXES)} axes x {N} cases, {label}: {len(rows)} comparisons, "
              f"{len(results)} gates; best {best:.2f} s, median {sorted(timings)[1]:.2f} s; target 2 s, "
              f"time / target = {best / 2.0:.2f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
