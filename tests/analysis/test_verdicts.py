"""Verdicts never contradict their evidence (issue 18): each finding's exact case, exact
enumeration of every 2x2 table at small n, and the statistics checked against scipy/statsmodels."""

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

from harness.analysis import stats
from harness.analysis.alerts import is_forgetting
from harness.analysis.gates import FAIL, INCONCLUSIVE, PASS, decide, evaluate_paired, evaluate_run, parse_gate
from harness.engine.records import Run


def pairs(n: int, a_only: int, b_only: int, both: int = 0) -> tuple[list[float], list[float]]:
    """n paired binary cases with the given discordant counts (labels by construction)."""
    a, b = [], []
    for i in range(n):
        if i < a_only:
            a.append(1.0), b.append(0.0)
        elif i < a_only + b_only:
            a.append(0.0), b.append(1.0)
        elif i < a_only + b_only + both:
            a.append(1.0), b.append(1.0)
        else:
            a.append(0.0), b.append(0.0)
    return a, b


def run_of(scores: dict[str, list[float]], gates: list[str], axis: str = "accuracy", **suite) -> Run:
    records = [{"suite": "s", "variant": v, "case_id": f"c{i}", "scores": {axis: x}}
               for v, values in scores.items() for i, x in enumerate(values)]
    manifest = {"suites": {"s": {"variants": list(scores), "baseline": list(scores)[0], "gates": gates,
                                 "axes": {axis: {"direction": "higher"}}, "alpha": 0.05, **suite}}}
    return Run(path=None, records=records, manifest=manifest)


def gate_results(scores, gates, **kw):
    run = run_of(scores, gates, **kw)
    return {r.gate: r for r in evaluate_run(run.records, run.manifest)}


def verdict_of(a, b, text, alpha=0.05, min_effect=0.05):
    gate = parse_gate(text)
    r = evaluate_paired(gate, "s", {f"c{i}": x for i, x in enumerate(a)}, {f"c{i}": x for i, x in enumerate(b)},
                        {}, alpha=alpha, min_effect=min_effect)
    return decide(r, alpha=alpha, inconclusive_blocks=True)


# -- finding 1: identical variants --------------------------------------------------------------

def test_finding1_forty_identical_cases_never_fail_nor_alert():
    a = [1.0] * 13 + [0.0] * 27
    results = gate_results({"b": a, "a": list(a)}, ["a.retention >= b.retention - 0.05"], axis="retention")
    (r,) = results.values()
    assert r.verdict == INCONCLUSIVE and not is_forgetting(r)
    assert r.diff_ci[0] < -0.05 < 0 < r.diff_ci[1]  # the interval says why: it reaches past the margin


@pytest.mark.parametrize("n", [2, 3, 5, 10, 40, 100, 400, 2000, 10000])
@pytest.mark.parametrize("text", ["a.m >= b.m - 0.05", "a.m >= b.m - 0.01", "a.m <= b.m + 0.02",
                                  "a.m ~= b.m +- 0.05"])
def test_a_model_against_itself_never_fails_at_any_n(n, text):
    """No discordant pair is the limiting case: INCONCLUSIVE or PASS as the margin and n dictate."""
    a = [float(i % 3 == 0) for i in range(n)]
    r = verdict_of(a, list(a), text)
    assert r.verdict in (PASS, INCONCLUSIVE)
    assert r.diff_ci[0] <= 0 <= r.diff_ci[1]
    if n >= 2000:
        assert r.verdict == PASS  # enough cases to show the margin holds


# -- finding 2: the verdict agrees with its printed interval -------------------------------------

def test_finding2_eight_vs_two_of_a_hundred_passes_with_its_interval_above_zero():
    a, b = pairs(100, 8, 2, both=30)
    r = verdict_of(a, b, "a.m > b.m")
    assert r.verdict == PASS and r.diff_ci[0] > 0
    assert f"[{r.diff_ci[0]:+.3f}, {r.diff_ci[1]:+.3f}]" in r.reason


def _pass_region_ok(r, kind, margin, effect):
    low, high = r.diff_ci
    if r.verdict == PASS:
        if kind == "equivalence":
            return -margin < low and high < margin
        return low > -margin
    if r.verdict == FAIL:
        if kind == "superiority":
            return high < effect
        if kind == "equivalence":
            return high <= -margin or low >= margin
        return high <= -margin
    return True


@pytest.mark.parametrize("n", [12, 30])
def test_every_table_at_small_n_gives_verdicts_consistent_with_their_intervals(n):
    """Exact enumeration: every (a_only, b_only) at this n, every gate kind."""
    gates = {"a.m > b.m": ("superiority", 0.0), "a.m >= b.m - 0.05": ("non-inferiority", 0.05),
             "a.m ~= b.m +- 0.1": ("equivalence", 0.1), "a.m <= b.m + 0.05": ("non-inferiority", 0.05)}
    for ao in range(n + 1):
        for bo in range(n + 1 - ao):
            a, b = pairs(n, ao, bo)
            for text, (kind, margin) in gates.items():
                r = verdict_of(a, b, text)
                if text.startswith("a.m <="):  # lower is better: orient the interval
                    r.diff_ci = (-r.diff_ci[1], -r.diff_ci[0])
                assert _pass_region_ok(r, kind, margin, 0.05), (ao, bo, text, r.verdict, r.diff_ci)
                assert (r.verdict == PASS) == (r.p_value < 0.05), (ao, bo, text)


# -- finding 3: two spellings, one answer -------------------------------------------------------

def test_finding3_three_vs_zero_of_thirty_same_answer_both_spellings():
    a, b = pairs(30, 3, 0, both=10)
    strict, loose = verdict_of(a, b, "a.m > b.m"), verdict_of(a, b, "a.m >= b.m")
    assert strict.verdict == loose.verdict
    assert strict.p_value == loose.p_value and strict.diff_ci == loose.diff_ci and strict.test == loose.test


@pytest.mark.parametrize("n", [10, 30])
def test_strict_and_loose_superiority_never_disagree(n):
    for ao in range(n + 1):
        for bo in range(n + 1 - ao):
            a, b = pairs(n, ao, bo)
            assert verdict_of(a, b, "a.m > b.m").verdict == verdict_of(a, b, "a.m >= b.m - 0").verdict


# -- finding 4: superiority FAILs when the data rule out the effect of interest -------------------

def test_finding4_superiority_fails_when_the_effect_of_interest_is_ruled_out():
    a, b = pairs(100, 2, 8, both=30)  # A truly worse
    r = verdict_of(a, b, "a.m > b.m")
    assert r.verdict == FAIL and r.diff_ci[1] < 0.05
    # the gate's own min_effect overrides the suite's: a 1-point improvement is not ruled out
    a, b = pairs(400, 10, 10)
    assert verdict_of(a, b, "a.m > b.m").verdict == FAIL
    assert verdict_of(a, b, "a.m > b.m min_effect=0.01").verdict == INCONCLUSIVE
    results = gate_results({"b": b, "a": a}, ["a.accuracy > b.accuracy"], min_effect=0.01)
    assert results["a.accuracy > b.accuracy"].verdict == INCONCLUSIVE


def test_seeded_simulation_false_pass_within_alpha_and_aa_never_fails():
    """A fast version of benchmarks/bench_calibration.py: at the boundary of each claim, PASS at most
    alpha + 3 Monte-Carlo s.e.; a variant equal in distribution never FAILs non-inferiority."""
    rng = np.random.default_rng(18)
    reps, n, alpha = 400, 200, 0.05
    bound = alpha + 3 * math.sqrt(alpha * (1 - alpha) / reps)
    counts = {"sup": 0, "ni": 0, "eq": 0, "aa_fail": 0}
    for _ in range(reps):
        u = rng.random(n)
        # superiority at true diff 0 (discordance 0.2)
        a, b = (u < 0.1).astype(float), ((u >= 0.1) & (u < 0.2)).astype(float)
        counts["sup"] += verdict_of(a, b, "a.m > b.m").verdict == PASS
        # non-inferiority at the margin: diff exactly -0.05 (p10 = 0.05, p01 = 0.10)
        a, b = (u < 0.05).astype(float), ((u >= 0.05) & (u < 0.15)).astype(float)
        counts["ni"] += verdict_of(a, b, "a.m >= b.m - 0.05").verdict == PASS
        # equivalence at the margin: diff exactly +0.05
        a, b = (u < 0.125).astype(float), ((u >= 0.125) & (u < 0.2)).astype(float)
        counts["eq"] += verdict_of(a, b, "a.m ~= b.m +- 0.05").verdict == PASS
        # A/A in distribution
        a, b = (u < 0.1).astype(float), ((u >= 0.1) & (u < 0.2)).astype(float)
        counts["aa_fail"] += verdict_of(a, b, "a.m >= b.m - 0.05").verdict == FAIL
    assert counts["sup"] / reps <= bound and counts["ni"] / reps <= bound and counts["eq"] / reps <= bound, counts
    assert counts["aa_fail"] == 0


# -- finding 5: threshold gates with exact one-sided bounds -------------------------------------

def test_finding5_fifty_two_of_fifty_two_does_not_pass_at_095():
    (r,) = gate_results({"a": [1.0] * 52}, ["a.accuracy >= 0.95"]).values()
    assert r.verdict == INCONCLUSIVE and r.test == "clopper-pearson"
    assert r.ci[0] == pytest.approx(0.05 ** (1 / 52))


@pytest.mark.parametrize("t", [0.5, 0.8, 0.9, 0.95, 0.99])
def test_threshold_size_is_at_most_alpha_at_the_boundary_for_every_n(t):
    """Exact: P(PASS | true rate = t) summed over the binomial, n = 1..300."""
    alpha = 0.05
    for n in range(2, 301):
        # the lower bound rises with k: find the smallest k whose bound clears t (bisection on the real function)
        lo, hi = 0, n + 1
        while lo < hi:
            mid = (lo + hi) // 2
            if stats.clopper_pearson(mid, n, 1 - 2 * alpha)[0] >= t:
                hi = mid
            else:
                lo = mid + 1
        size = float(sps.binom.sf(lo - 1, n, t)) if lo <= n else 0.0
        assert size <= alpha + 1e-12, (n, t, size)
        if lo <= n:
            assert stats.clopper_pearson(lo - 1, n, 1 - 2 * alpha)[0] < t


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (10, 10), (52, 52), (45, 50), (1, 1000), (870, 1000)])
@pytest.mark.parametrize("conf", [0.9, 0.95])
def test_clopper_pearson_matches_statsmodels(k, n, conf):
    lo, hi = stats.clopper_pearson(k, n, conf)
    ref = proportion_confint(k, n, alpha=1 - conf, method="beta")
    assert lo == pytest.approx(ref[0], abs=1e-12) and hi == pytest.approx(ref[1], abs=1e-12)


def test_all_equal_clusters_keep_the_adjustment():
    """Every case scores 1: the design effect cannot be estimated; the bound uses the number of clusters
    (worst case), never silently the number of cases."""
    x = [1.0] * 200
    keys = [i // 10 for i in range(200)]  # 20 clusters of 10
    clustered = stats.threshold_estimate(x, clusters=keys, confidence=0.9)
    plain = stats.threshold_estimate(x, confidence=0.9)
    assert clustered.method == "cluster-clopper-pearson"
    assert clustered.ci_low < plain.ci_low
    z, t = sps.norm.ppf(0.95), sps.t.ppf(0.95, 19)
    n_eff = 20 * (z / t) ** 2
    assert clustered.ci_low == pytest.approx(0.05 ** (1 / n_eff))
    (r,) = gate_results({"a": x}, ["a.accuracy >= 0.9"]).values()
    assert r.verdict == PASS  # unclustered 200/200 clears 0.9
    run = run_of({"a": x}, ["a.accuracy >= 0.9"])
    for rec in run.records:
        rec["cluster"] = int(rec["case_id"][1:]) // 10
    (r,) = evaluate_run(run.records, run.manifest)
    assert r.verdict == INCONCLUSIVE and r.test == "cluster-clopper-pearson"


def test_korn_graubard_matches_its_formula():
    rng = np.random.default_rng(3)
    keys = np.repeat(np.arange(15), 8)
    x = (rng.random(120) < np.repeat(rng.uniform(0.5, 0.95, 15), 8)).astype(float)
    est = stats.threshold_estimate(x, clusters=keys, confidence=0.9)
    p = x.mean()
    sums = np.bincount(keys, weights=x)
    sizes = np.bincount(keys).astype(float)
    var = 15 / 14 * np.sum((sums - p * sizes) ** 2) / 120**2
    n_eff = min(120, p * (1 - p) / var) * (sps.norm.ppf(0.95) / sps.t.ppf(0.95, 14)) ** 2
    ref = proportion_confint(p * n_eff, n_eff, alpha=0.1, method="beta")
    assert (est.ci_low, est.ci_high) == pytest.approx(ref, abs=1e-9)


# -- the statistics against oracles --------------------------------------------------------------

@pytest.mark.parametrize("b,c", [(0, 0), (3, 0), (8, 2), (2, 8), (10, 10), (25, 4), (1, 30)])
def test_tango_at_zero_is_the_asymptotic_mcnemar_of_statsmodels(b, c):
    n = 100
    two = stats.paired_test(*pairs(n, b, c), nulls=(0.0,)).p(0.0, "two-sided")
    ref = 1.0 if b + c == 0 else mcnemar([[40, b], [c, n - 40 - b - c]], exact=False, correction=False).pvalue
    assert two == pytest.approx(ref, abs=1e-12)


def _tango_score_numeric(b, c, n, delta):
    """Tango's score statistic with the restricted MLE found numerically (independent of the closed form)."""
    def nll(q):  # q = p01 under H0; p10 = q + delta; likelihood of the discordant cells and the rest
        p10 = q + delta
        rest = 1 - p10 - q
        return -(b * math.log(p10) + c * math.log(q) + (n - b - c) * math.log(rest))
    lo = max(1e-12, -delta + 1e-12)
    hi = (1 - delta) / 2 - 1e-12
    q = optimize.minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-13}).x
    return (b - c - n * delta) / math.sqrt(n * (2 * q + delta * (1 - delta)))


@pytest.mark.parametrize("b,c,n", [(8, 2, 100), (2, 8, 100), (5, 5, 40), (30, 12, 200), (1, 0, 25)])
@pytest.mark.parametrize("conf", [0.9, 0.95])
def test_tango_interval_inverts_the_score_test(b, c, n, conf):
    lo, hi = stats.tango_interval(b, c, n, conf)
    z = sps.norm.ppf(0.5 + conf / 2)
    assert _tango_score_numeric(b, c, n, lo) == pytest.approx(z, abs=1e-5)
    assert _tango_score_numeric(b, c, n, hi) == pytest.approx(-z, abs=1e-5)
    # and the p-value of the same test crosses (1 - conf) / 2 exactly at the ends
    tail = (1 - conf) / 2
    assert stats.tango_p_greater(b, c, n, lo) == pytest.approx(tail, abs=1e-9)
    assert stats.tango_p_greater(b, c, n, lo - 1e-6) < tail < stats.tango_p_greater(b, c, n, lo + 1e-6)


def test_continuous_gate_decides_by_its_bootstrap_interval():
    rng = np.random.default_rng(7)
    for shift in (-0.08, -0.03, 0.0, 0.02, 0.06):
        b = rng.random(150)
        a = np.clip(b + shift + rng.normal(0, 0.15, 150), 0, 1)
        for text, boundary in (("a.m >= b.m - 0.05", -0.05), ("a.m > b.m", 0.0)):
            r = verdict_of(list(a), list(b), text)
            assert r.test == "bca-bootstrap"
            if r.verdict == PASS:
                assert r.diff_ci[0] > boundary
            if r.verdict == FAIL:
                assert r.diff_ci[1] < (0.05 if boundary == 0 else boundary)


# -- equivalence (TOST) ------------------------------------------------------------------------

def test_equivalence_gate_parses_and_refuses_malformed_spellings():
    g = parse_gate("small.accuracy ~= large.accuracy +- 0.02")
    assert g.kind == "equivalence" and g.margin == 0.02 and g.other == "large"
    assert parse_gate("small.accuracy ~= large.accuracy ± 0.02").margin == 0.02
    for bad, why in [("a.m ~= b.m", "needs a positive margin"), ("a.m ~= b.m - 0.02", "needs a positive margin"),
                     ("a.m >= b.m +- 0.02", "'+-' belongs to equivalence"), ("a.m ~= 0.5", "compares two variants"),
                     ("a.m >= b.m - 0.02 min_effect=0.1", "min_effect applies to superiority"),
                     ("a.m > b.m min_effect=0", "must be positive")]:
        with pytest.raises(ValueError, match=re.escape(why)):
            parse_gate(bad)


def test_equivalence_is_tost_on_the_printed_interval():
    """A fine-tuned small model that must match a larger one: PASS inside +-margin, FAIL outside, and the
    p-value is the larger of the two one-sided p-values of the same Tango test."""
    a, b = pairs(2000, 30, 26, both=900)  # diff +0.002
    r = verdict_of(a, b, "a.m ~= b.m +- 0.02")
    t = stats.paired_test(a, b, nulls=(-0.02, 0.02), confidence=0.9)
    assert r.p_value == pytest.approx(max(t.p(-0.02, "greater"), t.p(0.02, "less")))
    assert r.verdict == PASS and -0.02 < r.diff_ci[0] < r.diff_ci[1] < 0.02
    a, b = pairs(2000, 200, 40, both=900)  # diff +0.08
    r = verdict_of(a, b, "a.m ~= b.m +- 0.02")
    assert r.verdict == FAIL and r.diff_ci[0] >= 0.02
    a, b = pairs(100, 4, 2, both=40)
    assert verdict_of(a, b, "a.m ~= b.m +- 0.02").verdict == INCONCLUSIVE


def test_suite_min_effect_and_equivalence_gates_load(tmp_path):
    from harness.config.suite import load_suite
    from harness.errors import ConfigError, GateError
    from tests.helpers import chat_rows, write, write_jsonl

    write_jsonl(tmp_path / "data.jsonl", chat_rows(20))
    body = ("suite: t\ndata: {path: data.jsonl}\nvariants: [base, ft]\nscorers:\n  accuracy: exact_match\n"
            "min_effect: 0.1\ngates:\n  - ft.accuracy > base.accuracy\n  - ft.accuracy > base.accuracy min_effect=0.02\n"
            "  - ft.accuracy ~= base.accuracy +- 0.03\n")
    suite = load_suite(write(tmp_path / "s.yaml", body))
    assert suite.min_effect == 0.1
    assert [g.kind for g in suite.gates] == ["superiority", "superiority", "equivalence"]
    assert suite.gates[1].min_effect == 0.02
    with pytest.raises(ConfigError, match="s.yaml:6"):
        load_suite(write(tmp_path / "s.yaml", body.replace("min_effect: 0.1", "min_effect: -1")))
    with pytest.raises(GateError, match="s.yaml:10"):
        load_suite(write(tmp_path / "s.yaml", body.replace("+- 0.03", "- 0.03 +- 0.03")))


def test_clustered_paired_test_is_the_t_test_on_cluster_means():
    """Equal cluster sizes: the CR1 t interval and p equal scipy's one-sample t-test on the clusters' mean
    differences; a gate on 12 clusters is decided by it."""
    rng = np.random.default_rng(5)
    keys = np.repeat(np.arange(12), 6)
    b = rng.random(72)
    a = b + 0.03 + rng.normal(0, 0.1, 72) + rng.normal(0, 0.05, 12)[keys]
    t = stats.paired_test(a, b, nulls=(0.0, -0.05), confidence=0.9, clusters=keys)
    means = np.bincount(keys, weights=a - b) / 6
    ref = sps.ttest_1samp(means, 0.0, alternative="greater")
    ci = sps.ttest_1samp(means, 0.0).confidence_interval(0.9)
    assert t.method == "cluster-t" and t.p(0.0) == pytest.approx(ref.pvalue, rel=1e-9)
    assert (t.ci_low, t.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert t.p(-0.05) == pytest.approx(sps.ttest_1samp(means, -0.05, alternative="greater").pvalue, rel=1e-9)


def test_clustering_never_narrows_a_pass_fail_interval():
    """Identical pass/fail outputs in 12 clusters: the cluster-robust error of all-zero differences is 0,
    but the interval stays as wide as the unclustered Tango one (no PASS the plain cases would not give)."""
    a = [float(i % 3 == 0) for i in range(36)]
    keys = [i // 3 for i in range(36)]
    clustered = stats.paired_test(a, list(a), nulls=(-0.05,), confidence=0.9, clusters=keys)
    plain = stats.paired_test(a, list(a), nulls=(-0.05,), confidence=0.9)
    assert clustered.method == "cluster-t+tango-score"
    assert clustered.ci_low <= plain.ci_low < 0 < plain.ci_high <= clustered.ci_high
    assert clustered.p(-0.05) >= plain.p(-0.05)
    run = run_of({"b": a, "a": list(a)}, ["a.accuracy >= b.accuracy - 0.05"])
    for rec in run.records:
        rec["cluster"] = int(rec["case_id"][1:]) // 3
    (r,) = evaluate_run(run.records, run.manifest)
    assert r.verdict == INCONCLUSIVE and r.diff_ci[0] < -0.05


def test_clustered_pass_fail_gate_is_consistent_with_its_union_interval():
    rng = np.random.default_rng(9)
    for shift in (0.0, 0.1, 0.25):
        keys = np.repeat(np.arange(15), 20)
        b = (rng.random(300) < 0.5).astype(float)
        a = np.where(rng.random(300) < shift, 1.0, b)
        t = stats.paired_test(a, b, nulls=(0.0, -0.05), confidence=0.9, clusters=keys)
        for null in (0.0, -0.05):
            assert (t.p(null) < 0.05) == (t.ci_low > null)
            assert (t.p(null, "less") < 0.05) == (t.ci_high < null)


@settings(max_examples=150, deadline=None)
@given(n=st.integers(2, 3000), data=st.data(), margin=st.sampled_from([0.0, 0.01, 0.02, 0.05, 0.1]),
       op=st.sampled_from([">", ">=", "<", "<="]))
def test_property_any_table_verdict_agrees_with_its_interval(n, data, margin, op):
    """Hypothesis over every table size: the verdict never contradicts the printed interval, and the two
    spellings of superiority agree."""
    ao = data.draw(st.integers(0, n))
    bo = data.draw(st.integers(0, n - ao))
    a, b = pairs(n, ao, bo)
    sign = "-" if op in (">", ">=") else "+"
    text = f"a.m {op} b.m" if margin == 0 else f"a.m {'>=' if op in ('>', '>=') else '<='} b.m {sign} {margin}"
    r = verdict_of(a, b, text)
    if op in ("<", "<="):
        r.diff_ci = (-r.diff_ci[1], -r.diff_ci[0])
    kind = "superiority" if margin == 0 else "non-inferiority"
    assert _pass_region_ok(r, kind, margin, 0.05), (n, ao, bo, text, r.verdict, r.diff_ci)
    if margin == 0:
        other = text.replace(op, {">": ">=", ">=": ">", "<": "<=", "<=": "<"}[op], 1)
        assert verdict_of(a, b, other).verdict == verdict_of(a, b, text).verdict
