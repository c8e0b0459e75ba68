"""Timing benchmark for harness.analysis.stats (not a test; prints wall-clock timings).

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_stats.py [--repeats 5]

Target: a paired bootstrap with 10,000 resamples on 10,000 cases in < 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

try:
    from harness.analysis import stats
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from harness.analysis import stats
N_CASES = 10_000
N_RESAMPLES = 10_000


def _time(fn: Callable[[], object], repeats: int) -> tuple[float, float, float]:
    """(best wall, median wall, best process CPU time): on a shared machine the CPU time is the work done."""
    fn()  # warm-up (imports, caches)
    times, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return min(times), statistics.median(times), min(cpu)


def main() -> None:
    """Run the benchmarks and print best / median wall-clock times."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(12345)
    bin_a = (rng.random(N_CASES) < 0.62).astype(float)
    bin_b = np.where(rng.random(N_CASES) < 0.15, 1.0 - bin_a, bin_a)
    cont_a = rng.beta(2.0, 3.0, N_CASES)
    cont_b = np.clip(cont_a + rng.normal(0.01, 0.1, N_CASES), 0.0, 1.0)

    d = cont_a - cont_b
    boot_rng = np.random.default_rng(0)

    cases: list[tuple[str, Callable[[], object]]] = [
        (
            "paired_compare, binary      (McNemar + paired BCa bootstrap)",
            lambda: stats.paired_compare(bin_a, bin_b, n_resamples=N_RESAMPLES),
        ),
        (
            "paired_compare, continuous  (sign-flip permutation + paired BCa bootstrap)",
            lambda: stats.paired_compare(cont_a, cont_b, n_resamples=N_RESAMPLES),
        ),
        (
            "  of which: paired bootstrap distribution only (continuous)",
            lambda: stats._bootstrap_ratio(d, None, N_RESAMPLES, boot_rng),
        ),
        (
            "paired_test, continuous     (the gates' paired BCa bootstrap, 10k x 10k; target 500 ms)",
            lambda: stats.paired_test(cont_a, cont_b, nulls=(0.0,), n_resamples=N_RESAMPLES),
        ),
        (
            "estimate, continuous        (BCa bootstrap)",
            lambda: stats.estimate(cont_a, n_resamples=N_RESAMPLES),
        ),
    ]
    print(f"n_cases={N_CASES}, n_resamples={N_RESAMPLES}, repeats={args.repeats}")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (wall times grow with it; CPU time is "
          "the work, summed over threads)")
    for label, fn in cases:
        best, median, cpu = _time(fn, args.repeats)
        print(f"{label:<78s} best {best * 1e3:8.1f} ms   median {median * 1e3:8.1f} ms   CPU {cpu * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
