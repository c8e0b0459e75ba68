"""Tests for harness.analysis.stats: references, worked examples, simulations, properties, edge cases.

Requires statsmodels (dev dependency) as an independent reference implementation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.proportion import proportion_confint

from harness.analysis import stats as hs


def paired_from_table(n11: int, n10: int, n01: int, n00: int) -> tuple[np.ndarray, np.ndarray]:
    """Case-level binary vectors (a, b) for a paired 2x2 table; n10 = a=1,b=0."""
    a = np.r_[np.ones(n11), np.ones(n10), np.zeros(n01), np.zeros(n00)]
    b = np.r_[np.ones(n11), np.zeros(n10), np.ones(n01), np.zeros(n00)]
    return a, b


# ---------------------------------------------------------------------------
# Independent references on fixed data
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("confidence", [0.8, 0.9, 0.95, 0.99])
@pytest.mark.parametrize("k,n", [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (81, 263), (1, 1000), (500, 1000)])
def test_wilson_matches_statsmodels(k: int, n: int, confidence: float) -> None:
    ref = proportion_confint(k, n, alpha=1 - confidence, method="wilson")
    assert hs.wilson_interval(k, n, confidence) == pytest.approx(ref, abs=1e-12)


def test_wilson_newcombe_1998_worked_examples() -> None:
    # Newcombe RG (1998) "Two-sided confidence intervals for the single proportion:
    # comparison of seven methods", Stat Med 17:857-872, Table I, method 3 (Wilson score).
    expected = {
        (81, 263): (0.2553, 0.3662),
        (15, 148): (0.0624, 0.1605),
        (0, 20): (0.0000, 0.1611),
        (1, 29): (0.0061, 0.1718),
    }
    for (k, n), (lo, hi) in expected.items():
        got = hs.wilson_interval(k, n)
        assert round(got[0], 4) == lo and round(got[1], 4) == hi, (k, n, got)


def test_estimate_binary_is_wilson() -> None:
    x = [1] * 81 + [0] * 182
    e = hs.estimate(x)
    assert e.method == "wilson" and e.n == 263
    assert e.value == pytest.approx(81 / 263)
    assert (e.ci_low, e.ci_high) == pytest.approx(proportion_confint(81, 263, method="wilson"), abs=1e-12)


@pytest.mark.parametrize(
    "table",
    [(794, 150, 86, 570), (59, 6, 16, 80), (10, 0, 0, 5), (3, 1, 0, 2), (20, 7, 7, 30), (5, 12, 2, 9), (0, 40, 33, 0)],
)
def test_mcnemar_matches_statsmodels_exact(table: tuple[int, int, int, int]) -> None:
    n11, n10, n01, n00 = table
    a, b = paired_from_table(*table)
    r = hs.paired_compare(a, b, n_resamples=500)
    ref = mcnemar([[n11, n10], [n01, n00]], exact=True)
    assert r.test == "mcnemar-exact"
    assert (r.a_only, r.b_only) == (n10, n01)
    if n10 + n01 == 0:
        assert r.p_value == 1.0
    else:
        assert r.p_value == pytest.approx(ref.pvalue, rel=1e-10, abs=1e-300)
        assert r.p_greater == pytest.approx(sps.binom.sf(n10 - 1, n10 + n01, 0.5), rel=1e-10)
        assert r.p_less == pytest.approx(sps.binom.cdf(n10, n10 + n01, 0.5), rel=1e-10)


def test_mcnemar_agresti_approval_example() -> None:
    # Agresti, An Introduction to Categorical Data Analysis (2nd ed., 2007), Sec. 8.1,
    # Table 8.1 (same data in Agresti, Categorical Data Analysis, 2nd ed., Table 10.1):
    # 1600 people rated performance in two surveys: approve/approve 794, approve/disapprove
    # 150, disapprove/approve 86, disapprove/disapprove 570.  McNemar z = -4.17 (p < 0.0001),
    # difference of proportions 0.59 - 0.55 = 0.04 with 95% CI (0.02, 0.06).
    a, b = paired_from_table(794, 150, 86, 570)
    r = hs.paired_compare(a, b)
    assert (r.a_only, r.b_only, r.n) == (150, 86, 1600)
    assert r.estimate_a == pytest.approx(944 / 1600) and r.estimate_b == pytest.approx(880 / 1600)
    assert r.diff == pytest.approx(0.04)
    z = (r.b_only - r.a_only) / math.sqrt(r.a_only + r.b_only)
    assert round(z, 2) == -4.17
    assert r.p_value < 1e-4 and r.p_greater < 1e-4 and r.p_less > 0.99
    assert r.p_value == pytest.approx(mcnemar([[794, 150], [86, 570]], exact=True).pvalue, rel=1e-10)
    assert r.ci_low == pytest.approx(0.02, abs=0.003) and r.ci_high == pytest.approx(0.06, abs=0.003)


def test_cavo_2012_worked_example_fagerland() -> None:
    # Fagerland, Lydersen & Laake, Statistical Analysis of Contingency Tables (2017), Ch. 8:
    # complete response before/after consolidation therapy (Cavo et al. 2012),
    # table [[59, 6], [16, 80]]: McNemar exact conditional P = 0.052479;
    # Tango asymptotic score 95% CI for the difference: -0.1240 to -0.0054.
    a, b = paired_from_table(59, 6, 16, 80)
    r = hs.paired_compare(a, b, n_resamples=500)
    assert round(r.p_value, 6) == 0.052479
    assert r.diff == pytest.approx(-10 / 161)
    # 95% two-sided Tango interval = two one-sided 97.5% bounds.
    assert round(hs.noninferiority_bound(a, b, alpha=0.025), 4) == -0.1240
    assert round(-hs.noninferiority_bound(b, a, alpha=0.025), 4) == -0.0054


@pytest.mark.parametrize("data_seed,n,dist", [(1, 200, "beta"), (2, 50, "exponential"), (3, 120, "uniform")])
def test_bca_matches_scipy_bootstrap(data_seed: int, n: int, dist: str) -> None:
    rng = np.random.default_rng(data_seed)
    x = {
        "beta": lambda: rng.beta(2, 5, n),
        "exponential": lambda: rng.exponential(1.0, n),
        "uniform": lambda: rng.random(n),
    }[dist]()
    ours = np.array(hs.bootstrap_bca(x, confidence=0.95, n_resamples=20_000, seed=0))
    ref = sps.bootstrap((x,), np.mean, confidence_level=0.95, n_resamples=20_000, method="BCa", random_state=0)
    ref_ci = np.array([ref.confidence_interval.low, ref.confidence_interval.high])
    # Two independent Monte Carlo runs: allow ~5% of the interval width.
    assert ours == pytest.approx(ref_ci, abs=0.05 * (ref_ci[1] - ref_ci[0]))
    e = hs.estimate(x, n_resamples=20_000)
    assert e.method == "bca-bootstrap" and (e.ci_low, e.ci_high) == pytest.approx(tuple(ours))


def test_bca_skewed_data_is_asymmetric_like_scipy() -> None:
    x = np.random.default_rng(7).lognormal(0.0, 1.2, 60)
    lo, hi = hs.bootstrap_bca(x, seed=3)
    m = x.mean()
    assert hi - m > m - lo  # right-skewed data -> longer upper arm


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_holm_and_bh_match_statsmodels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = np.r_[rng.random(12) ** 3, [0.01, 0.01, 1.0, 0.0, 0.04]]
    rng.shuffle(p)
    assert hs.holm(p) == pytest.approx(multipletests(p, method="holm")[1], abs=1e-12)
    assert hs.benjamini_hochberg(p) == pytest.approx(multipletests(p, method="fdr_bh")[1], abs=1e-12)
    assert hs.holm([]) == [] and hs.benjamini_hochberg([]) == []


def test_sign_flip_exact_matches_scipy_permutation_test() -> None:
    rng = np.random.default_rng(11)
    b = rng.random(12)
    a = b + rng.normal(0.15, 0.2, 12)
    a[3] = b[3]  # one zero difference
    r = hs.paired_compare(a, b, n_resamples=10)  # exact enumeration ignores n_resamples
    assert r.test == "sign-flip-permutation"

    def stat(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
        return np.mean(x - y, axis=axis)

    ref = {
        alt: sps.permutation_test(
            (a, b), stat, permutation_type="samples", alternative=alt, n_resamples=np.inf, vectorized=True
        ).pvalue
        for alt in ("two-sided", "greater", "less")
    }
    assert r.p_value == pytest.approx(ref["two-sided"], rel=1e-12)
    assert r.p_greater == pytest.approx(ref["greater"], rel=1e-12)
    assert r.p_less == pytest.approx(ref["less"], rel=1e-12)
    assert hs.paired_compare(a, b, n_resamples=10, seed=99).p_value == r.p_value


def test_sign_flip_monte_carlo_close_to_scipy() -> None:
    rng = np.random.default_rng(12)
    b = rng.random(80)
    a = b + rng.normal(0.03, 0.2, 80)
    r = hs.paired_compare(a, b, n_resamples=20_000)

    def stat(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
        return np.mean(x - y, axis=axis)

    ref = sps.permutation_test(
        (a, b),
        stat,
        permutation_type="samples",
        n_resamples=20_000,
        vectorized=True,
        random_state=0,
        alternative="greater",
    ).pvalue
    assert r.p_greater == pytest.approx(ref, abs=0.01)
    # two-sided = 2 * one-sided for the symmetric sign-flip null (up to MC error)
    assert r.p_value == pytest.approx(2 * min(r.p_greater, r.p_less), abs=0.01)
    # large-sample agreement with the paired t-test
    assert r.p_value == pytest.approx(sps.ttest_rel(a, b).pvalue, abs=0.02)


def test_cluster_se_matches_statsmodels_ols_cluster() -> None:
    rng = np.random.default_rng(5)
    sizes = rng.integers(1, 9, size=25)
    groups = np.repeat(np.arange(25), sizes)
    x = rng.normal(0, 1, 25)[groups] + rng.normal(0, 1, groups.size)
    e = hs.estimate(x, clusters=[f"doc-{g}" for g in groups], confidence=0.9)
    fit = sm.OLS(x, np.ones((x.size, 1))).fit(cov_type="cluster", cov_kwds={"groups": groups})
    t = sps.t.ppf(0.95, 24)
    assert e.method == "cluster-se" and e.n == x.size
    assert e.value == pytest.approx(fit.params[0])
    assert (e.ci_high - e.ci_low) / (2 * t) == pytest.approx(fit.bse[0], rel=1e-10)


def test_cluster_wilson_uses_design_effect() -> None:
    rng = np.random.default_rng(6)
    groups = np.repeat(np.arange(30), 10)
    x = (rng.random(300) < rng.beta(1, 1, 30)[groups]).astype(float)
    e = hs.estimate(x, clusters=groups)
    plain = hs.estimate(x)
    assert e.method == "cluster-wilson" and e.value == plain.value
    assert e.ci_high - e.ci_low > 1.5 * (plain.ci_high - plain.ci_low)  # strong clustering widens
    # manual design effect -> Wilson with effective n and the t_{G-1} quantile
    p = x.mean()
    fit = sm.OLS(x, np.ones((300, 1))).fit(cov_type="cluster", cov_kwds={"groups": groups})
    n_eff = 300 / max(1.0, fit.bse[0] ** 2 / (p * (1 - p) / 300))
    z = sps.t.ppf(0.975, 29)
    centre = (p + z * z / (2 * n_eff)) / (1 + z * z / n_eff)
    half = z * math.sqrt(p * (1 - p) / n_eff + z * z / (4 * n_eff**2)) / (1 + z * z / n_eff)
    assert (e.ci_low, e.ci_high) == pytest.approx((centre - half, centre + half), rel=1e-9)
    # singleton clusters: deff = n/(n-1) ~ 1 -> close to the plain Wilson interval
    s = hs.estimate(x, clusters=range(300))
    assert (s.ci_low, s.ci_high) == pytest.approx((plain.ci_low, plain.ci_high), abs=2e-3)


@pytest.mark.parametrize("n", [2, 5, 12, 40, 250, 5000])
def test_mde_continuous_matches_statsmodels_ttest_power(n: int) -> None:
    ref = TTestPower().solve_power(effect_size=None, nobs=n, alpha=0.05, power=0.8, alternative="two-sided")
    assert hs.mde_paired_continuous(2.0, n) == pytest.approx(2.0 * ref, rel=1e-4)


@pytest.mark.parametrize("effect", [0.1, 0.25, 0.5, 1.3])
def test_required_n_continuous_matches_statsmodels(effect: float) -> None:
    ref = TTestPower().solve_power(effect_size=effect, nobs=None, alpha=0.05, power=0.9, alternative="two-sided")
    assert hs.required_n_paired_continuous(effect * 3.0, 3.0, power=0.9) == math.ceil(ref - 1e-6)


def test_binary_power_formulas_connor() -> None:
    # Connor (1987): n = (z_a sqrt(psi) + z_b sqrt(psi - d^2))^2 / d^2
    za, zb = sps.norm.ppf(0.975), sps.norm.ppf(0.8)
    psi, d = 0.3, 0.1
    expected = math.ceil((za * math.sqrt(psi) + zb * math.sqrt(psi - d * d)) ** 2 / d**2)
    n = hs.required_n_paired_binary(d, psi)
    assert n == expected == 234
    assert hs.mde_paired_binary(n, psi) <= d < hs.mde_paired_binary(n - 1, psi)
    m = hs.mde_paired_binary(500, 0.2)
    assert math.sqrt(500) * m == pytest.approx(za * math.sqrt(0.2) + zb * math.sqrt(0.2 - m * m))
    assert hs.mde_paired_binary(10, 0.05) == math.inf  # ~0.5 expected discordant pairs
    for n in (20, 300, 4000):
        mde = hs.mde_paired_continuous(1.5, n)
        assert hs.required_n_paired_continuous(mde * 1.0001, 1.5) <= n
        assert hs.required_n_paired_continuous(mde * 0.999, 1.5) > n


def test_paired_compare_mde_uses_observed_rates() -> None:
    a, b = paired_from_table(300, 60, 40, 600)
    r = hs.paired_compare(a, b, n_resamples=200)
    assert r.mde == pytest.approx(hs.mde_paired_binary(1000, 0.1))
    rng = np.random.default_rng(1)
    x = rng.random(50)
    y = x + rng.normal(0, 0.3, 50)
    r = hs.paired_compare(x, y, n_resamples=200)
    assert r.mde == pytest.approx(hs.mde_paired_continuous(float(np.std(x - y, ddof=1)), 50))
    # no discordant pairs: floor psi = delta (best case), finite and positive
    same = hs.paired_compare(a, a, n_resamples=200)
    za, zb = sps.norm.ppf(0.975), sps.norm.ppf(0.8)
    d = same.mde
    assert 0 < d < 0.05
    assert math.sqrt(1000) * d == pytest.approx(za * math.sqrt(d) + zb * math.sqrt(d - d * d))


# ---------------------------------------------------------------------------
# Seeded simulations (calibration, coverage, power)
# ---------------------------------------------------------------------------


def _aa_binary(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Exchangeable A/A pair: both variants share a latent difficulty per case."""
    u = rng.random(n)
    a = (u < 0.6).astype(float)
    b = (np.where(rng.random(n) < 0.7, u, rng.random(n)) < 0.6).astype(float)
    return (a, b) if rng.random() < 0.5 else (b, a)


def test_simulation_aa_type_one_error() -> None:
    rng = np.random.default_rng(2024)
    sims, alpha = 600, 0.05
    se = math.sqrt(alpha * (1 - alpha) / sims)
    rej_bin = rej_cont = 0
    for i in range(sims):
        a, b = _aa_binary(rng, 200)
        rej_bin += hs.paired_compare(a, b, n_resamples=50, seed=i).p_greater <= alpha
        base = rng.beta(2, 5, 40)
        x = np.clip(base + rng.normal(0, 0.1, 40), 0, 1)
        y = np.clip(base + rng.normal(0, 0.1, 40), 0, 1)
        rej_cont += hs.paired_compare(x, y, n_resamples=400, seed=i).p_greater <= alpha
    assert rej_bin / sims <= alpha + 3 * se
    assert rej_cont / sims <= alpha + 3 * se


def test_simulation_wilson_and_bootstrap_coverage() -> None:
    rng = np.random.default_rng(99)
    n, p = 40, 0.3
    ks = rng.binomial(n, p, 4000)
    cover = np.mean([lo <= p <= hi for lo, hi in (hs.wilson_interval(int(k), n) for k in ks)])
    assert 0.93 <= cover <= 0.97

    sims = 400
    mu = 2 / 7
    hits = sum(
        (lambda e: e.ci_low <= mu <= e.ci_high)(hs.estimate(rng.beta(2, 5, 60), n_resamples=1000, seed=i))
        for i in range(sims)
    )
    # 3 simulation SEs (~0.033) below nominal; bootstrap intervals undercover slightly at n ~ 50
    assert 0.91 <= hits / sims <= 0.98

    # paired difference CI (normal differences; true diff 0.05)
    hits = 0
    for i in range(300):
        b = rng.random(50)
        a = b + rng.normal(0.05, 0.2, 50)
        r = hs.paired_compare(a, b, n_resamples=1000, seed=i)
        hits += r.ci_low <= 0.05 <= r.ci_high
    assert 0.91 <= hits / 300 <= 0.985


def test_simulation_cluster_wilson_coverage() -> None:
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(40), 10)
    sims, hits, hits_iid = 500, 0, 0
    for _ in range(sims):
        pg = rng.beta(2, 3, 40)  # mean 0.4, strong intra-cluster correlation
        x = (rng.random(400) < pg[groups]).astype(float)
        e = hs.estimate(x, clusters=groups)
        hits += e.ci_low <= 0.4 <= e.ci_high
        plain = hs.estimate(x)
        hits_iid += plain.ci_low <= 0.4 <= plain.ci_high
    assert hits / sims >= 0.91  # ~3 simulation SEs below 0.95 (CR1 SE with G = 40 is slightly small)
    assert hits_iid / sims < 0.85  # ignoring clustering under-covers badly


def test_simulation_power_at_mde() -> None:
    rng = np.random.default_rng(7)
    sims = 700
    # binary: exact McNemar at the Connor MDE (slightly conservative vs the normal approx)
    n, psi = 300, 0.3
    d = hs.mde_paired_binary(n, psi)
    p10, p01 = (psi + d) / 2, (psi - d) / 2
    rej = 0
    for i in range(sims):
        cat = rng.choice(4, size=n, p=[p10, p01, (1 - psi) / 2, (1 - psi) / 2])
        a = np.isin(cat, [0, 2]).astype(float)
        b = np.isin(cat, [1, 2]).astype(float)
        rej += hs.paired_compare(a, b, n_resamples=20, seed=i).p_value <= 0.05
    assert 0.72 <= rej / sims <= 0.88

    # continuous: sign-flip permutation at the noncentral-t MDE
    n = 40
    d = hs.mde_paired_continuous(1.0, n)
    rej = 0
    for i in range(400):
        b = rng.normal(0, 1, n)
        a = b + rng.normal(d, 1, n)
        rej += hs.paired_compare(a, b, n_resamples=400, seed=i).p_value <= 0.05
    assert 0.72 <= rej / 400 <= 0.88


def test_simulation_noninferiority_bound_coverage() -> None:
    rng = np.random.default_rng(11)
    # binary (Tango score bound); cache by table since bounds depend only on counts
    n, p10, p01 = 100, 0.12, 0.06
    cache: dict[tuple[int, int], float] = {}
    sims, hits = 4000, 0
    for b10, b01, _ in rng.multinomial(n, [p10, p01, 1 - p10 - p01], size=sims):
        key = (int(b10), int(b01))
        if key not in cache:
            a, b = paired_from_table(0, key[0], key[1], n - key[0] - key[1])
            cache[key] = hs.noninferiority_bound(a, b, alpha=0.05)
        hits += cache[key] <= p10 - p01
    assert 0.93 <= hits / sims <= 0.97

    # continuous (BCa bootstrap bound)
    hits = 0
    for i in range(400):
        b = rng.beta(2, 5, 60)
        a = b + rng.normal(0.02, 0.1, 60)
        hits += hs.noninferiority_bound(a, b, alpha=0.05, n_resamples=1000, seed=i) <= 0.02
    assert 0.92 <= hits / 400 <= 0.98


# ---------------------------------------------------------------------------
# Property tests
# ---------------------------------------------------------------------------

_scores01 = st.floats(0.0, 1.0, allow_nan=False)
_rubric = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])
_binary = st.sampled_from([0.0, 1.0])


@st.composite
def paired_data(draw: st.DrawFn) -> tuple[list[float], list[float], list[int] | None]:
    n = draw(st.integers(2, 40))
    elem = draw(st.sampled_from([_binary, _rubric, _scores01]))
    a = draw(st.lists(elem, min_size=n, max_size=n))
    b = draw(st.lists(elem, min_size=n, max_size=n))
    clusters = None
    if draw(st.booleans()):
        clusters = draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))
        if len(set(clusters)) < 2:
            clusters = None
    return a, b, clusters


_prop_settings = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_prop_settings
@given(paired_data())
def test_property_swap_symmetry(data: tuple[list[float], list[float], list[int] | None]) -> None:
    a, b, clusters = data
    ab = hs.paired_compare(a, b, clusters=clusters, n_resamples=300, seed=5)
    ba = hs.paired_compare(b, a, clusters=clusters, n_resamples=300, seed=5)
    tol = dict(abs=1e-12, rel=1e-9)
    assert ba.diff == pytest.approx(-ab.diff, **tol)
    assert ba.ci_low == pytest.approx(-ab.ci_high, **tol)
    assert ba.ci_high == pytest.approx(-ab.ci_low, **tol)
    assert ba.p_value == pytest.approx(ab.p_value, **tol)
    assert ba.p_greater == pytest.approx(ab.p_less, **tol)
    assert ba.p_less == pytest.approx(ab.p_greater, **tol)
    assert (ba.a_only, ba.b_only) == (ab.b_only, ab.a_only)
    assert (ba.estimate_a, ba.estimate_b) == (ab.estimate_b, ab.estimate_a)
    assert ba.test == ab.test and ba.mde == pytest.approx(ab.mde, **tol)
    assert ab.ci_low <= ab.diff + 1e-12 and ab.diff <= ab.ci_high + 1e-12
    for p in (ab.p_value, ab.p_greater, ab.p_less):
        assert 0.0 < p <= 1.0


@_prop_settings
@given(paired_data())
def test_property_identical_variants(data: tuple[list[float], list[float], list[int] | None]) -> None:
    a, _, clusters = data
    r = hs.paired_compare(a, a, clusters=clusters, n_resamples=100)
    assert r.diff == 0.0 and (r.ci_low, r.ci_high) == (0.0, 0.0)
    assert r.p_value == r.p_greater == r.p_less == 1.0
    if r.a_only is not None:
        assert r.a_only == r.b_only == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 1.0, allow_nan=False), max_size=30))
def test_property_holm_bh(p: list[float]) -> None:
    h = hs.holm(p)
    bh = hs.benjamini_hochberg(p)
    assert len(h) == len(bh) == len(p)
    for raw, adj_h, adj_bh in zip(p, h, bh, strict=True):
        assert raw <= adj_h + 1e-15 <= 1.0 + 1e-15
        assert raw <= adj_bh + 1e-15 and adj_bh <= adj_h + 1e-15  # BH never stricter than Holm
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(np.asarray(h)[order]) >= 0)
    assert np.all(np.diff(np.asarray(bh)[order]) >= 0)


# ---------------------------------------------------------------------------
# Edge cases and API behaviour
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda x: hs.estimate(x),
        lambda x: hs.bootstrap_bca(x),
        lambda x: hs.paired_compare(x, x),
        lambda x: hs.noninferiority_bound(x, x),
    ],
)
def test_edge_case_errors(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=r"n == 0"):
        call([])
    with pytest.raises(ValueError, match=r"n == 1"):
        call([0.5])
    with pytest.raises(ValueError, match="score arrays contain NaN"):
        call([0.1, float("nan"), 0.3])
    with pytest.raises(ValueError, match="infinite"):
        call([0.1, float("inf")])
    with pytest.raises(ValueError, match="one-dimensional"):
        call([[0.1, 0.2], [0.3, 0.4]])


def test_paired_errors() -> None:
    with pytest.raises(ValueError, match="length mismatch"):
        hs.paired_compare([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="length mismatch"):
        hs.noninferiority_bound([1, 0, 1], [1, 0, 1, 1])
    with pytest.raises(ValueError, match="score arrays contain NaN"):
        hs.paired_compare([1, 0, 1], [1, float("nan"), 0])
    with pytest.raises(ValueError, match="length mismatch"):
        hs.paired_compare([1, 0, 1], [1, 0, 0], clusters=["x", "y"])
    with pytest.raises(ValueError, match="at least 2 distinct clusters"):
        hs.estimate([1, 0, 1], clusters=["x", "x", "x"])
    with pytest.raises(ValueError, match="confidence"):
        hs.paired_compare([1, 0, 1], [1, 0, 0], confidence=1.0)
    with pytest.raises(ValueError, match="alpha"):
        hs.noninferiority_bound([1, 0, 1], [1, 0, 0], alpha=0.5)
    with pytest.raises(ValueError, match="n_resamples"):
        hs.bootstrap_bca([0.1, 0.2], n_resamples=0)


def test_scalar_function_errors() -> None:
    with pytest.raises(ValueError):
        hs.wilson_interval(0, 0)
    with pytest.raises(ValueError):
        hs.wilson_interval(5, 4)
    with pytest.raises(TypeError):
        hs.wilson_interval(1.5, 4)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        hs.required_n_paired_binary(0.2, 0.1)  # |p10 - p01| cannot exceed p10 + p01
    with pytest.raises(ValueError):
        hs.required_n_paired_continuous(0.0, 1.0)
    with pytest.raises(ValueError):
        hs.required_n_paired_continuous(0.1, 0.0)
    with pytest.raises(ValueError):
        hs.mde_paired_continuous(1.0, 1)
    with pytest.raises(ValueError):
        hs.mde_paired_binary(100, 0.0)
    with pytest.raises(ValueError):
        hs.holm([0.1, 1.2])
    with pytest.raises(ValueError):
        hs.benjamini_hochberg([0.1, float("nan")])


def test_all_equal_and_degenerate_data() -> None:
    e = hs.estimate([0.7] * 10)
    assert (e.value, e.ci_low, e.ci_high, e.method) == (pytest.approx(0.7), e.value, e.value, "bca-bootstrap")
    ones = hs.estimate([1] * 10)
    assert ones.method == "wilson" and ones.ci_high == 1.0 and ones.ci_low == pytest.approx(0.7225, abs=1e-4)
    assert hs.bootstrap_bca([2.0, 2.0]) == (2.0, 2.0)
    r = hs.paired_compare([0.2, 0.4, 0.9], [0.1, 0.3, 0.8])  # constant difference 0.1
    assert r.diff == pytest.approx(0.1) and r.ci_low == r.ci_high == r.diff and r.mde == 0.0
    assert hs.noninferiority_bound([0.3, 0.5], [0.3, 0.5]) == 0.0
    # floating-point noise is not a difference: 0.1 + 0.2 != 0.3 in IEEE arithmetic
    noisy = hs.paired_compare([0.1 + 0.2, 0.7, 0.4], [0.3, 0.7, 0.1 + 0.3])
    assert noisy.diff == 0.0 and noisy.p_value == 1.0 and (noisy.ci_low, noisy.ci_high) == (0.0, 0.0)
    # identical binary variants: the Tango bound still reflects finite-sample uncertainty
    a, _ = paired_from_table(40, 0, 0, 60)
    assert -0.05 < hs.noninferiority_bound(a, a) < 0.0
    # n == 2 works everywhere
    assert hs.paired_compare([1, 0], [0, 0]).p_value == 1.0
    assert hs.paired_compare([0.3, 0.1], [0.2, 0.3]).p_value == 1.0


def test_is_binary() -> None:
    assert hs.is_binary([0, 1, 1, 0]) and hs.is_binary([True, False]) and hs.is_binary(np.array([1.0, 1.0]))
    assert not hs.is_binary([0, 0.5, 1]) and not hs.is_binary([]) and not hs.is_binary([0, float("nan")])


def test_determinism_and_seed_dependence() -> None:
    rng = np.random.default_rng(0)
    x = rng.random(300)
    y = x + rng.normal(0, 0.1, 300)
    r1 = hs.paired_compare(x, y, n_resamples=2000, seed=42)
    assert r1 == hs.paired_compare(x, y, n_resamples=2000, seed=42)
    assert r1 != hs.paired_compare(x, y, n_resamples=2000, seed=43)
    assert hs.estimate(x, seed=1) == hs.estimate(x, seed=1)
    # large inputs take the vectorised index path (threads) - still deterministic
    big = rng.random(3000)
    assert hs.bootstrap_bca(big, n_resamples=2000, seed=3) == hs.bootstrap_bca(big, n_resamples=2000, seed=3)


def test_noninferiority_bound_consistent_with_paired_ci() -> None:
    rng = np.random.default_rng(8)
    b = rng.random(150)
    a = b + rng.normal(0.01, 0.15, 150)
    nb = hs.noninferiority_bound(a, b, alpha=0.05, n_resamples=3000, seed=4)
    r = hs.paired_compare(a, b, confidence=0.90, n_resamples=3000, seed=4)
    assert nb == r.ci_low
    groups = np.repeat(np.arange(30), 5)
    nbc = hs.noninferiority_bound(a, b, alpha=0.05, clusters=groups, n_resamples=3000, seed=4)
    rc = hs.paired_compare(a, b, clusters=groups, confidence=0.90, n_resamples=3000, seed=4)
    assert nbc == rc.ci_low and rc.test == "cluster-sign-flip-permutation"
    # binary: Tango bound is close to the paired-bootstrap bound for moderate n
    a, b = paired_from_table(300, 60, 40, 600)
    tango = hs.noninferiority_bound(a, b, alpha=0.05)
    boot = hs.paired_compare(a, b, confidence=0.90, n_resamples=4000).ci_low
    assert tango == pytest.approx(boot, abs=0.005)


def test_multinomial_and_index_bootstrap_paths_agree_in_distribution() -> None:
    rng = np.random.default_rng(21)
    x = rng.integers(0, 5, 640) / 4.0  # 5 distinct values -> multinomial path
    jitter = x + rng.normal(0, 1e-9, 640)  # all distinct -> index path
    lo1, hi1 = hs.bootstrap_bca(x, n_resamples=20_000, seed=0)
    lo2, hi2 = hs.bootstrap_bca(jitter, n_resamples=20_000, seed=0)
    width = hi1 - lo1
    assert lo1 == pytest.approx(lo2, abs=0.04 * width) and hi1 == pytest.approx(hi2, abs=0.04 * width)


def test_noninferiority_p_is_dual_to_bound() -> None:
    rng = np.random.default_rng(31)
    for _ in range(4):
        n = int(rng.integers(40, 300))
        a = (rng.random(n) < 0.6).astype(float)
        b = np.where(rng.random(n) < 0.2, 1 - a, a)
        lb = hs.noninferiority_bound(a, b, alpha=0.05)
        assert hs.noninferiority_p(a, b, margin=-lb) == pytest.approx(0.05, abs=1e-9)  # Tango score test
        assert hs.noninferiority_p(a, b, margin=-lb + 0.01) < 0.05 < hs.noninferiority_p(a, b, margin=-lb - 0.01)
        x = rng.beta(2, 5, n)
        y = np.clip(x + rng.normal(0, 0.1, n), 0, 1)
        lb = hs.noninferiority_bound(x, y, alpha=0.05, n_resamples=4000, seed=2)
        p = hs.noninferiority_p(x, y, margin=-lb, n_resamples=4000, seed=2)
        assert p == pytest.approx(0.05, abs=0.002)  # inverted BCa (quantile interpolation only)
    # direction=-1 (lower is better) swaps the roles of a and b
    assert hs.noninferiority_p(a, b, margin=0.02, direction=-1) == hs.noninferiority_p(b, a, margin=0.02)
    groups = np.repeat(np.arange(n // 2 + 1), 2)[:n]
    pc = hs.noninferiority_p(x, y, margin=0.01, clusters=groups, n_resamples=2000)
    lbc = hs.noninferiority_bound(x, y, alpha=0.05, clusters=groups, n_resamples=2000)
    assert (pc < 0.05) == (lbc > -0.01)
    with pytest.raises(ValueError, match="direction"):
        hs.noninferiority_p(a, b, margin=0.1, direction=0)
    with pytest.raises(ValueError, match="margin"):
        hs.noninferiority_p(a, b, margin=float("nan"))


def test_index_cache_reuses_the_same_draws_and_changes_no_result(monkeypatch) -> None:
    """Bootstraps of many score vectors on the same cases reuse one index matrix (the same random
    draws a fresh generator would make): every interval equals the one computed without the cache."""
    rng = np.random.default_rng(11)
    x, y = rng.random(500), rng.random(500)
    monkeypatch.setattr(hs, "_INDEX_CACHE", {})
    monkeypatch.setattr(hs, "_INDEX_CACHE_BYTES", 0)  # nothing is cached
    plain = (hs.estimate(x), hs.estimate(y), hs.paired_test(x, y), hs.bootstrap_bca(x, seed=3))
    assert hs._INDEX_CACHE == {}
    monkeypatch.setattr(hs, "_INDEX_CACHE_BYTES", 256 << 20)
    for _ in range(2):
        assert (hs.estimate(x), hs.estimate(y), hs.paired_test(x, y), hs.bootstrap_bca(x, seed=3)) == plain
    assert len(hs._INDEX_CACHE) == 3  # estimate's stream, paired_test's stream and seed 3
    hs.estimate(x, seed=None)  # fresh entropy: a new key, never a stale hit
    assert len(hs._INDEX_CACHE) == 4


@pytest.mark.parametrize("n,c,k", [(5, 0, 1), (5, 2, 1), (5, 2, 3), (6, 3, 2), (6, 6, 4), (7, 1, 7), (4, 3, 4)])
def test_pass_at_k_and_pass_hat_k_equal_enumeration_of_subsets(n: int, c: int, k: int) -> None:
    import itertools

    outcomes = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(outcomes, k))
    assert hs.pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets), abs=1e-15)
    assert hs.pass_hat_k(n, c, k) == pytest.approx(sum(all(s) for s in subsets) / len(subsets), abs=1e-15)


def test_repeated_samples_variance_split_matches_one_way_anova() -> None:
    rng = np.random.default_rng(4)
    n, k = 400, 5
    true_means = rng.beta(2, 2, n)
    x = (rng.random((n, k)) < true_means[:, None]).astype(float)
    r = hs.repeated_samples(x)
    # one-way ANOVA mean squares (statsmodels-free reference): MSW = within, (MSB - MSW) / k = between
    grand = x.mean()
    msb = k * np.sum((x.mean(axis=1) - grand) ** 2) / (n - 1)
    msw = np.sum((x - x.mean(axis=1, keepdims=True)) ** 2) / (n * (k - 1))
    assert r.within_var == pytest.approx(msw) and r.between_var == pytest.approx((msb - msw) / k)
    assert r.between_var == pytest.approx(np.var(true_means), rel=0.15)  # labels by construction
    assert r.se == pytest.approx(np.std(x.mean(axis=1), ddof=1) / math.sqrt(n))
    with pytest.raises(ValueError, match="cases x k"):
        hs.repeated_samples([1.0, 0.0])
