"""Calibration of the gates (issue 18): how often each gate kind says PASS / INCONCLUSIVE / FAIL under known
true effects, the family-wise error of 12 gates comparing a model with itself, and the coverage of every
interval the gates print, each against its nominal level with its Monte-Carlo standard error.

    PYTHONPATH=. python benchmarks/bench_calibration.py              # the table in docs/statistics.md
    PYTHONPATH=. python benchmarks/bench_calibration.py --quick      # a smoke run (few repetitions)

Every verdict comes from the real gate code (`harness.analysis.gates.evaluate_paired` / `evaluate_threshold` and
`decide`, or `evaluate_run` for the 12-gate family), on data drawn with the stated truth:
  * pass/fail paired scores: discordance 0.2 (20% of cases differ), true A - B = delta;
  * continuous paired scores: B ~ Beta(2, 2), A = B + delta + N(0, 0.15) noise;
  * threshold gates `A.m >= 0.9`: true rate 0.9 + delta; clustered: clusters of 5 cases (10, 40 and 200 clusters) whose rates are
    Beta with that mean and intra-cluster correlation 0.1.
alpha = 0.05 (one-sided; intervals at 90%), margin = min_effect = 0.05. A PASS where the claim is false
(the truth at or beyond the boundary) is an error and must stay within alpha + 3 MC s.e.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter

import numpy as np

from harness.analysis import stats
from harness.analysis.gates import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    decide,
    evaluate_paired,
    evaluate_run,
    evaluate_threshold,
    parse_gate,
)

ALPHA = 0.05
MARGIN = 0.05
PSI = 0.2
THRESHOLD = 0.9
ICC = 0.1
CLUSTER_SIZE = 5


def paired_binary(rng, n, delta, psi=PSI):
    p10 = (psi + delta) / 2  # and p01 = psi - p10
    u = rng.random(n)
    a = ((u < p10) | ((u >= psi) & (u < psi + 0.4))).astype(float)
    b = (((u >= p10) & (u < psi)) | ((u >= psi) & (u < psi + 0.4))).astype(float)
    return a, b


def paired_continuous(rng, n, delta):
    b = rng.beta(2, 2, n)
    return b + delta + rng.normal(0, 0.15, n), b


def clustered_binary(rng, n, rate, icc=ICC, size=CLUSTER_SIZE):
    g = max(1, n // size)
    s = (1 - icc) / icc
    rates = rng.beta(rate * s, (1 - rate) * s, g)
    keys = np.repeat(np.arange(g), size)[:n]
    return (rng.random(n) < rates[keys]).astype(float), keys


def _ids(n):
    return [f"c{i}" for i in range(n)]


def paired_verdict(text, a, b):
    ids = _ids(len(a))
    r = evaluate_paired(parse_gate(text), "s", dict(zip(ids, a.tolist(), strict=True)),
                        dict(zip(ids, b.tolist(), strict=True)), {}, alpha=ALPHA, min_effect=MARGIN)
    return decide(r, alpha=ALPHA, inconclusive_blocks=True).verdict


def threshold_verdict(x, keys=None):
    ids = _ids(len(x))
    clusters = {} if keys is None else {i: str(k) for i, k in zip(ids, keys, strict=True)}
    return evaluate_threshold(parse_gate(f"a.m >= {THRESHOLD}"), "s", dict(zip(ids, x.tolist(), strict=True)), clusters,
                              mode="strict", confidence=1 - 2 * ALPHA).verdict


# kind -> (gate text, data maker, PASS is an error when the true effect is <= this)
KINDS = {
    "superiority (pass/fail, Tango)": ("a.m > b.m", "binary", 0.0),
    "non-inferiority (pass/fail, Tango)": (f"a.m >= b.m - {MARGIN}", "binary", -MARGIN),
    "equivalence (pass/fail, Tango TOST)": (f"a.m ~= b.m +- {MARGIN}", "binary", -MARGIN),
    "superiority (continuous, BCa)": ("a.m > b.m", "continuous", 0.0),
    "non-inferiority (continuous, BCa)": (f"a.m >= b.m - {MARGIN}", "continuous", -MARGIN),
    "threshold (pass/fail, Clopper-Pearson)": (None, "threshold", 0.0),
    "threshold (clustered, Korn-Graubard)": (None, "clustered", 0.0),
}
EFFECTS = (0.0, -MARGIN / 2, -MARGIN, -2 * MARGIN)


def verdict_table(ns, reps_binary, reps_continuous, seed):
    rng = np.random.default_rng(seed)
    rows = []
    for kind, (text, data, error_at) in KINDS.items():
        started = time.perf_counter()
        effects = EFFECTS + ((MARGIN,) if kind.startswith("superiority") else ())
        for delta in effects:
            for n in ns:
                reps = reps_continuous if data == "continuous" else reps_binary
                counts = Counter()
                for _ in range(reps):
                    if data == "binary":
                        counts[paired_verdict(text, *paired_binary(rng, n, delta))] += 1
                    elif data == "continuous":
                        counts[paired_verdict(text, *paired_continuous(rng, n, delta))] += 1
                    elif data == "threshold":
                        counts[threshold_verdict((rng.random(n) < THRESHOLD + delta).astype(float))] += 1
                    else:
                        counts[threshold_verdict(*clustered_binary(rng, n, THRESHOLD + delta))] += 1
                freq = {v: counts[v] / reps for v in (PASS, INCONCLUSIVE, FAIL)}
                se = math.sqrt(ALPHA * (1 - ALPHA) / reps)
                pass_is_error = delta <= error_at + 1e-12
                check = ""
                if pass_is_error:
                    check = "ok" if freq[PASS] <= ALPHA + 3 * se else "EXCEEDS"
                rows.append((kind, delta, n, reps, freq, pass_is_error, se, check))
        print(f"{kind}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return rows


def aa_family(reps, n, seed):
    """12 gates (4 superiority, 4 non-inferiority, 4 equivalence) of variants equal in distribution to base."""
    rng = np.random.default_rng(seed)
    gates = ([f"v{k}.m > base.m" for k in range(4)] + [f"v{k}.m >= base.m - {MARGIN}" for k in range(4, 8)]
             + [f"v{k}.m ~= base.m +- {MARGIN}" for k in range(8, 12)])
    manifest = {"suites": {"s": {"variants": ["base"] + [f"v{k}" for k in range(12)], "baseline": "base",
                                 "gates": gates, "alpha": ALPHA, "min_effect": MARGIN}}}
    errors = false_pass = wrong_fail = 0
    for _ in range(reps):
        base = (rng.random(n) < 0.5).astype(float)
        records = [{"suite": "s", "variant": "base", "case_id": f"c{i}", "scores": {"m": x}} for i, x in enumerate(base)]
        for k in range(12):
            flip = rng.random(n) < PSI  # 20% of cases differ, half each way: true difference 0
            v = np.where(flip, 1 - base, base)
            records += [{"suite": "s", "variant": f"v{k}", "case_id": f"c{i}", "scores": {"m": x}} for i, x in enumerate(v)]
        results = evaluate_run(records, manifest)
        fp = any(r.kind == "superiority" and r.verdict == PASS for r in results)
        wf = any(r.kind != "superiority" and r.verdict == FAIL for r in results)
        false_pass += fp
        wrong_fail += wf
        errors += fp or wf
    return errors / reps, false_pass / reps, wrong_fail / reps


def coverage(ns, reps, reps_boot, seed):
    rng = np.random.default_rng(seed)
    conf = 1 - 2 * ALPHA
    out = []

    def record(name, n, hits_two, hits_low, r):
        out.append((name, n, r, hits_two / r, hits_low / r))

    for n in ns:
        delta = -MARGIN
        h2 = hl = 0
        for _ in range(reps):
            a, b = paired_binary(rng, n, delta)
            t = stats.paired_test(a, b, nulls=(0.0,), confidence=conf)
            h2 += t.ci_low <= delta <= t.ci_high
            hl += t.ci_low <= delta
        record("Tango score interval (paired pass/fail, diff -0.05)", n, h2, hl, reps)
        h2 = hl = 0
        for _ in range(reps):
            x = (rng.random(n) < THRESHOLD).astype(float)
            lo, hi = stats.clopper_pearson(x.sum(), n, conf)
            h2 += lo <= THRESHOLD <= hi
            hl += lo <= THRESHOLD
        record("Clopper-Pearson (rate 0.9)", n, h2, hl, reps)
        h2 = hl = 0
        for _ in range(reps):
            x, keys = clustered_binary(rng, n, THRESHOLD)
            est = stats.threshold_estimate(x, clusters=keys, confidence=conf)
            h2 += est.ci_low <= THRESHOLD <= est.ci_high
            hl += est.ci_low <= THRESHOLD
        record(f"Korn-Graubard clustered ({n // CLUSTER_SIZE} clusters, ICC {ICC})", n, h2, hl, reps)
        h2 = hl = 0
        for _ in range(reps):  # the old interval, for comparison (issue 18, finding 5)
            x, keys = clustered_binary(rng, n, THRESHOLD)
            est = stats.estimate(x, clusters=keys, confidence=conf)
            h2 += est.ci_low <= THRESHOLD <= est.ci_high
            hl += est.ci_low <= THRESHOLD
        record(f"(before: design-effect Wilson, {n // CLUSTER_SIZE} clusters)", n, h2, hl, reps)
        h2 = hl = 0
        for _ in range(reps_boot):
            a, b = paired_continuous(rng, n, delta)
            t = stats.paired_test(a, b, nulls=(0.0,), confidence=conf)
            h2 += t.ci_low <= delta <= t.ci_high
            hl += t.ci_low <= delta
        record("paired BCa bootstrap (continuous, diff -0.05)", n, h2, hl, reps_boot)
        h2 = hl = 0
        for _ in range(reps_boot):
            a, b = paired_continuous(rng, n, delta)
            keys = np.repeat(np.arange(max(1, n // CLUSTER_SIZE)), CLUSTER_SIZE)[:n]
            shift = rng.normal(0, 0.05, keys.max() + 1)[keys]  # a cluster effect on the difference
            t = stats.paired_test(a + shift, b, nulls=(0.0,), confidence=conf, clusters=keys)
            h2 += t.ci_low <= delta <= t.ci_high
            hl += t.ci_low <= delta
        record(f"cluster-robust t, CR1 (paired continuous, {n // CLUSTER_SIZE} clusters)", n, h2, hl, reps_boot)
        h2 = hl = 0
        for _ in range(reps_boot):
            x = rng.beta(9, 1, n)  # mean 0.9, skewed towards 1
            est = stats.threshold_estimate(x, confidence=conf)
            h2 += est.ci_low <= 0.9 <= est.ci_high
            hl += est.ci_low <= 0.9
        record("BCa bootstrap of a mean (continuous threshold, Beta(9,1))", n, h2, hl, reps_boot)
    return out


def exact_sizes(ns):
    """The largest PASS probability at the boundary of each claim, over the discordance (exact enumeration)."""
    rows = []
    grid = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0)
    for n in ns:
        for kind, delta, margin in (("superiority", 0.0, 0.0), ("non-inferiority", -MARGIN, MARGIN),
                                    ("equivalence", MARGIN, MARGIN)):
            worst, at = 0.0, None
            for psi in grid:
                if psi < abs(delta):
                    continue
                size = stats.power_paired_binary(n, (psi + delta) / 2, (psi - delta) / 2, kind=kind, margin=margin,
                                                 alpha=ALPHA)
                if size > worst:
                    worst, at = size, psi
            rows.append((f"{kind} (Tango), truth at the boundary", n, worst, f"discordance {at:g}" if at is not None else "never PASSes"))
        worst, at = 0.0, None
        for t in (0.5, 0.8, 0.9, 0.95, 0.99):
            size = stats.power_threshold(n, t, t, alpha=ALPHA)
            if size > worst:
                worst, at = size, t
        rows.append(("threshold (Clopper-Pearson), true rate = threshold", n, worst, f"threshold {at:g}" if at is not None else "never PASSes"))
    return rows


def coverage_table(ns, args) -> None:
    nominal = 1 - 2 * ALPHA
    print(f"\n## Interval coverage (two-sided {nominal:.0%}; its lower end alone is the gates' one-sided "
          f"{1 - ALPHA:.0%} bound)\n")
    print("| interval | n | reps | two-sided coverage | lower-bound coverage | MC s.e. |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, n, r, c2, cl in coverage(ns, args.reps, args.reps_continuous, args.seed + 2):
        print(f"| {name} | {n} | {r} | {c2:.3f} | {cl:.3f} | {math.sqrt(nominal * (1 - nominal) / r):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=1000, help="repetitions per cell, pass/fail gates")
    parser.add_argument("--reps-continuous", type=int, default=200, help="repetitions per cell, bootstrap gates")
    parser.add_argument("--reps-aa", type=int, default=400, help="repetitions of the 12-gate A/A family")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few repetitions")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--only-exact", action="store_true", help="only the exact-size table (no simulation)")
    parser.add_argument("--only-coverage", action="store_true", help="only the interval-coverage table")
    args = parser.parse_args()
    if args.quick:
        args.reps, args.reps_continuous, args.reps_aa = 60, 20, 20
    ns = (50, 200, 1000)
    start = time.perf_counter()
    print(f"## Exact size: the largest chance of a false PASS at the boundary (alpha {ALPHA}; by enumeration)\n")
    print("| gate | n | largest P(PASS) | where |")
    print("| --- | ---: | ---: | --- |")
    for name, n, size, where in exact_sizes(ns):
        print(f"| {name} | {n} | {size:.4f} | {where} |")
    print()
    if args.only_exact:
        return
    if args.only_coverage:
        coverage_table(ns, args)
        return

    print(f"## Verdict frequencies (alpha {ALPHA}, margin = min_effect = {MARGIN}; threshold gates: A.m >= {THRESHOLD})\n")
    print("| gate kind | true effect | n | reps | PASS | INCONCLUSIVE | FAIL | PASS is an error? | alpha + 3 MC s.e. |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    exceeded = 0
    for kind, delta, n, reps, f, err, se, check in verdict_table(ns, args.reps, args.reps_continuous, args.seed):
        bound = f"{ALPHA + 3 * se:.3f} {check}" if err else ""
        exceeded += check == "EXCEEDS"
        print(f"| {kind} | {delta:+.3f} | {n} | {reps} | {f[PASS]:.3f} | {f[INCONCLUSIVE]:.3f} | {f[FAIL]:.3f} | "
              f"{'yes' if err else 'no'} | {bound} |")
    t1 = time.perf_counter()

    fwer, fp, wf = aa_family(args.reps_aa, 200, args.seed + 1)
    se = math.sqrt(ALPHA * (1 - ALPHA) / args.reps_aa)
    print(f"\n## A/A family: 12 gates (4 superiority, 4 non-inferiority, 4 equivalence), n = 200, "
          f"Holm over the suite, {args.reps_aa} runs\n")
    print("| error | rate | nominal | MC s.e. |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| any superiority PASS (a false claim of improvement) | {fp:.3f} | <= {ALPHA} | {se:.3f} |")
    print(f"| any non-inferiority / equivalence FAIL (a model like its base called worse) | {wf:.3f} | <= {ALPHA} | "
          f"{se:.3f} |")
    print(f"| either (family-wise error) | {fwer:.3f} | <= {ALPHA} | {se:.3f} |")
    t2 = time.perf_counter()

    coverage_table(ns, args)
    t3 = time.perf_counter()
    print(f"\nverdict table {t1 - start:.0f} s, A/A family {t2 - t1:.0f} s, coverage {t3 - t2:.0f} s; "
          f"cells with false PASS above alpha + 3 MC s.e.: {exceeded}")


if __name__ == "__main__":
    main()
