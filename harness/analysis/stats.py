"""Statistical core for comparing LLM variants on per-case scores.

Pure numpy/scipy; nothing here imports the rest of ``harness``.  Every random
procedure is deterministic given ``seed`` (``np.random.default_rng(seed)``).

Methods and why
---------------
Single-variant estimates (:func:`estimate`)
  * Binary scores (all values in {0, 1}): **Wilson score interval**.  Unlike
    the Wald interval it keeps close to nominal coverage for small n and rates
    near 0 or 1 (Brown, Cai & DasGupta 2001; Newcombe 1998), which is exactly
    where LLM pass rates often sit.
  * Continuous scores: **BCa bootstrap** of the mean (Efron 1987).  BCa is
    second-order accurate and corrects for the skew / boundedness typical of
    judge or similarity scores.  The bootstrap is vectorised: data with few
    distinct values (e.g. rubric scores) resample multinomial counts over the
    distinct values, other data draw index matrices in chunks (two fixed RNG
    streams spawned from ``seed``, run on two threads; the result does not
    depend on the thread count).  The acceleration uses the closed-form
    jackknife for the mean; ties in the bias-correction count as half.
  * With ``clusters`` (e.g. several questions generated from one document):
    the **cluster-robust (CR1 / Liang-Zeger sandwich) standard error** of the
    mean, ``se^2 = G/(G-1) * sum_g (S_g - mean * n_g)^2 / N^2``, which equals
    statsmodels' OLS ``cov_type="cluster"`` SE of an intercept-only model.
    - continuous scores -> ``mean +/- t_{G-1} * se`` (method ``"cluster-se"``);
    - binary scores -> **design-effect-adjusted Wilson**: ``deff = se^2 /
      (p(1-p)/N)`` floored at 1 (clustering is never allowed to *narrow* the
      interval), then Wilson with effective sample size ``N / deff`` and the
      ``t_{G-1}`` quantile in place of z (method ``"cluster-wilson"``).  This
      keeps Wilson's good behaviour near 0 / 1.

Paired comparisons (:func:`paired_compare`), ``diff = mean(a - b)``
  * Binary a and b: **exact (conditional) McNemar test**, i.e. a binomial test
    of the discordant pairs with ``scipy.stats.binomtest``.  Two-sided p is
    ``binomtest(min(a_only, b_only), a_only + b_only)``; the one-sided p-values
    are the upper tails of ``a_only`` resp. ``b_only``.  No discordant pairs
    -> all p-values are 1.
  * Otherwise: **paired sign-flip permutation test** on the differences
    (exchangeability of the A/B labels within a case under H0; no normality
    assumption).  Zero differences are dropped (flipping them is a no-op).
    With <= 16 non-zero differences all 2^m sign patterns are enumerated
    (exact p); otherwise ``n_resamples`` random patterns with the
    ``(1 + count) / (1 + n_resamples)`` correction.  Implemented with 8-bit
    lookup tables of partial sums, so one resample costs ``m/8`` gathers.
  * With ``clusters`` both the test and the CI operate on clusters: the
    sign-flip test flips whole clusters (test ``"cluster-sign-flip-
    permutation"``; McNemar assumes independent pairs so it is not used), and
    the CI is a cluster bootstrap.
  * CI of the difference: **paired BCa bootstrap** of ``mean(a - b)``
    (the same resampled cases for a and b, i.e. resampling the differences;
    cluster bootstrap of the ratio ``sum d / n`` if clustered).
  * ``mde``: minimum detectable |diff| for a two-sided level-``alpha`` test
    with the requested power.  Binary: Connor (1987) normal approximation to
    McNemar with the observed discordance rate ``psi = (a_only + b_only) / n``,
    raised to ``max(psi, delta)`` at effect ``delta`` because a true
    difference delta implies at least a fraction delta of discordant pairs.
    This is also the floor when no discordant pair was observed (psi = 0 ->
    psi = delta, the most favourable split), so the MDE stays finite and
    non-zero instead of being reported as 0 or inf (inf only for n <= 3 at the
    default alpha and power).
    The public :func:`mde_paired_binary` keeps psi fixed and returns inf when
    no delta <= psi reaches the power.  Continuous: exact power of the paired
    t-test (noncentral t) with the observed SD of the differences; SD 0 ->
    MDE 0.  Clustered: the same formulas with effective n = n / deff (deff of
    ``mean(a - b)``, floored at 1).

Non-inferiority (:func:`noninferiority_bound`)
  * Binary, unclustered: lower limit of the **Tango (1998) score interval**
    for the difference of paired proportions, at one-sided level 1 - alpha.
    Score intervals have near-nominal coverage even with few discordant pairs,
    where Wald and bootstrap intervals are too narrow (exact one-sided
    coverage 0.94-0.95 for moderate n; it can dip to ~0.93 for very sparse,
    skewed tables such as n=100, p10=0.03, p01=0.01).  It gives a strictly
    negative bound for identical variants (finite-sample uncertainty), unlike
    the bootstrap.
  * Otherwise: lower end of the two-sided ``1 - 2*alpha`` BCa (cluster)
    bootstrap interval, identical to ``paired_compare(...,
    confidence=1 - 2*alpha).ci_low`` with the same seed.

:func:`noninferiority_p` is the matching one-sided p-value for
H0: ``direction * mean(a - b) <= -margin``: the Tango score test (binary) or
the inverted BCa lower bound (otherwise), so that ``p < alpha`` exactly when
the ``noninferiority_bound`` at ``alpha`` exceeds ``-margin`` (BCa: up to the
bootstrap quantile interpolation).  ``direction=-1`` is for lower-is-better
scores (it swaps a and b).

Gates and comparison tables (:func:`paired_test`, :func:`threshold_estimate`)
  * One decision, one interval: :func:`paired_test` returns the difference, its two-sided interval
    and the one-sided p-values of the *same* test at any null, so that p < (1 - confidence) / 2
    exactly when the interval clears the null. Binary unclustered: Tango's score test and interval
    (:func:`tango_interval`, :func:`tango_p_greater`) at every margin including 0. Clustered: the
    CR1 cluster-robust t interval and test (G - 1 df). Otherwise: the paired BCa bootstrap and the
    p-values inverting its endpoints, from the same draws.
    (:func:`paired_compare` keeps exact McNemar / sign-flip for callers that want those tests.)
  * :func:`threshold_estimate`: Clopper-Pearson (binary), Korn-Graubard (binary, clustered; the
    worst-case design effect when every case scores the same), BCa / cluster-se (continuous).
  * Planning: :func:`power_paired_binary` / :func:`power_threshold` are exact (a sum over every
    outcome of the gates' own tests); :func:`required_n_gate_binary`, :func:`required_n_threshold`,
    :func:`required_n_gate_continuous` (noncentral t) give the cases a gate needs.
  See docs/statistics.md for the decision rule and its measured error rates.

Multiplicity: Holm step-down (FWER) and Benjamini-Hochberg (FDR) adjusted
p-values, both monotone in the raw p-values and capped at 1.

Planning: ``mde_*`` / ``required_n_*`` use the same power formulas as above
(Connor 1987 for paired binary; noncentral t for paired continuous).

Edge cases (all raise ``ValueError`` with a specific message)
  * empty input (n == 0);
  * a single case (n == 1) -- no variability can be estimated; at least 2
    cases are required by every function taking score arrays
    (:func:`wilson_interval`, which takes counts, accepts n == 1);
  * NaN ("score arrays contain NaN") or +/-inf;
  * length mismatch between ``a``/``b`` or scores/``clusters``;
  * fewer than 2 distinct clusters.
  All-equal data are *not* an error: binary data use Wilson as usual;
  constant continuous data give the degenerate interval ``[c, c]``; identical
  paired variants give diff 0, CI [0, 0] and p = 1.  Values equal up to
  floating-point noise (relative 1e-12 of the score scale) count as equal:
  paired differences that small are snapped to exact ties, so e.g. scores
  computed as ``0.1 + 0.2`` and ``0.3`` do not produce a spurious difference.
"""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import integrate, optimize, stats

__all__ = [
    "Estimate",
    "PairedComparison",
    "is_binary",
    "wilson_interval",
    "bootstrap_bca",
    "estimate",
    "paired_compare",
    "noninferiority_bound",
    "noninferiority_p",
    "holm",
    "benjamini_hochberg",
    "mde_paired_binary",
    "mde_paired_continuous",
    "required_n_paired_binary",
    "required_n_paired_continuous",
    "MIN_CLUSTERS",
    "PairedTest",
    "paired_test",
    "paired_mde",
    "tango_interval",
    "tango_p_greater",
    "clopper_pearson",
    "threshold_estimate",
    "power_paired_binary",
    "power_threshold",
    "required_n_gate_binary",
    "required_n_gate_continuous",
    "required_n_threshold",
    "pass_at_k",
    "pass_hat_k",
    "RepeatedSamples",
    "repeated_samples",
]

# Exact sign-flip enumeration up to this many non-zero differences (2^16 patterns).
_EXACT_PERMUTATION_MAX = 16
# Elements per chunk of the bootstrap index matrix (~4 MB of int64 per chunk).
_CHUNK_ELEMS = 1 << 19
# Fixed number of independent RNG streams for the index bootstrap; results do
# not depend on how many threads actually run them.
_N_STREAMS = 2
# Use threads only when the resampling work is large enough to amortise them.
_THREAD_MIN_WORK = 2_000_000
# The multinomial-counts path is used when #distinct units <= #units / this.
_MULTINOMIAL_RATIO = 32


# --------------------------------------------------------------------------
# Result types
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """Point estimate (mean score) with a two-sided confidence interval."""

    value: float
    ci_low: float
    ci_high: float
    n: int
    method: str  # "wilson" | "bca-bootstrap" | "cluster-wilson" | "cluster-se"


@dataclass(frozen=True)
class PairedComparison:
    """Result of comparing variant A with variant B on the same cases."""

    estimate_a: float
    estimate_b: float
    diff: float  # mean(a - b)
    ci_low: float
    ci_high: float
    p_value: float  # two-sided
    p_greater: float  # one-sided, H1: a > b
    p_less: float  # one-sided, H1: a < b
    test: str  # "mcnemar-exact" | "sign-flip-permutation" | "cluster-sign-flip-permutation"
    n: int
    a_only: int | None
    b_only: int | None
    mde: float


# --------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------


def _scores(x: ArrayLike, name: str = "scores") -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a one-dimensional sequence of scores, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (n == 0); at least 2 cases are required")
    if np.isnan(arr).any():
        raise ValueError("score arrays contain NaN")
    if np.isinf(arr).any():
        raise ValueError("score arrays contain infinite values")
    if arr.size < 2:
        raise ValueError(f"{name} has a single case (n == 1); at least 2 cases are required to quantify uncertainty")
    return arr


def _paired(a: ArrayLike, b: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    xa = _scores(a, "a")
    xb = _scores(b, "b")
    if xa.size != xb.size:
        raise ValueError(f"length mismatch: a has {xa.size} cases, b has {xb.size}")
    return xa, xb


def usable_clusters(clusters: Sequence[Hashable] | None) -> list[Hashable] | None:
    """The cluster keys when they name at least 2 clusters, else None (plain, unclustered inference).

    A subset of cases (a smoke run's first few, a category-sorted file) can fall in one cluster,
    where cluster-robust errors are undefined; treating the cases as independent is then the only
    estimate there is.
    """
    if clusters is None:
        return None
    keys = list(clusters)
    return keys if len(set(keys)) >= 2 else None


def _cluster_codes(clusters: Sequence[Hashable], n: int) -> tuple[np.ndarray, int]:
    keys = list(clusters)
    if len(keys) != n:
        raise ValueError(f"length mismatch: clusters has {len(keys)} entries, scores have {n}")
    mapping: dict[Hashable, int] = {}
    codes = np.fromiter((mapping.setdefault(k, len(mapping)) for k in keys), dtype=np.intp, count=n)
    n_clusters = len(mapping)
    if n_clusters < 2:
        raise ValueError("clusters must contain at least 2 distinct clusters for cluster-robust inference")
    return codes, n_clusters


def _check_prob(value: float, name: str, *, upper_exclusive: float = 1.0) -> float:
    v = float(value)
    if not (0.0 < v < upper_exclusive):
        raise ValueError(f"{name} must be in (0, {upper_exclusive:g}), got {value!r}")
    return v


def _check_resamples(n_resamples: int) -> int:
    try:
        b = operator.index(n_resamples)
    except TypeError:
        raise TypeError(f"n_resamples must be an integer, got {n_resamples!r}") from None
    if b < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    return b


# Relative size below which values are treated as equal (floating-point noise,
# e.g. 0.4 - 0.3 != 0.2 - 0.1).
_REL_EPS = 1e-12


def _is_constant(x: np.ndarray) -> bool:
    return float(np.ptp(x)) <= _REL_EPS * max(1.0, float(np.max(np.abs(x))))


def _differences(xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
    """a - b with floating-point noise (|d| <= 1e-12 * score scale) snapped to exact 0."""
    d = xa - xb
    scale = max(1.0, float(np.max(np.abs(xa))), float(np.max(np.abs(xb))))
    d[np.abs(d) <= _REL_EPS * scale] = 0.0
    return d


def _count(value: int, name: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer count, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError(f"{name} must be an integer count, got {value!r}") from None


# --------------------------------------------------------------------------
# Wilson
# --------------------------------------------------------------------------


def _wilson(p: float, n: float, z: float) -> tuple[float, float]:
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2.0 * n)) / denom
    half = z * math.sqrt(max(p * (1.0 - p), 0.0) / n + z2 / (4.0 * n * n)) / denom
    lo = 0.0 if p <= 0.0 else max(0.0, center - half)
    hi = 1.0 if p >= 1.0 else min(1.0, center + half)
    return lo, hi


def is_binary(scores: ArrayLike) -> bool:
    """Return True if every score is 0 or 1 (False for an empty input)."""
    arr = np.asarray(scores, dtype=float).ravel()
    if arr.size == 0:
        return False
    return bool(np.all((arr == 0.0) | (arr == 1.0)))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion successes/n."""
    k = _count(successes, "successes")
    m = _count(n, "n")
    if m < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 <= k <= m:
        raise ValueError(f"successes must be in [0, n], got successes={k}, n={m}")
    conf = _check_prob(confidence, "confidence")
    z = float(stats.norm.ppf(0.5 + conf / 2.0))
    return _wilson(k / m, float(m), z)


# --------------------------------------------------------------------------
# Bootstrap engine
# --------------------------------------------------------------------------


# Index matrices of recent bootstraps, by (generator state, units, resamples): a comparison table
# bootstraps many score vectors of the same cases with the same seed, and drawing the indices is
# half the work. Bounded by _INDEX_CACHE_BYTES; entries larger than half of it are not kept.
_INDEX_CACHE: dict[tuple, list[np.ndarray]] = {}
_INDEX_CACHE_BYTES = 256 << 20


def _cached_indices(key: tuple, units: int, n_resamples: int, streams: list[np.random.Generator],
                    bounds: np.ndarray, rows: int) -> list[list[np.ndarray]] | None:
    """The index chunks the streams draw (drawn once per key), or None when they are too large to keep."""
    if key in _INDEX_CACHE:
        _INDEX_CACHE[key] = _INDEX_CACHE.pop(key)  # most recently used last
        return _INDEX_CACHE[key]
    size = 8 * units * n_resamples
    if size * 2 > _INDEX_CACHE_BYTES:
        return None
    chunks = [[r.integers(0, units, size=(min(int(bounds[i + 1]), start + rows) - start, units))
               for start in range(int(bounds[i]), int(bounds[i + 1]), rows)] for i, r in enumerate(streams)]
    used = sum(8 * k[-2] * k[-1] for k in _INDEX_CACHE) + size
    while _INDEX_CACHE and used > _INDEX_CACHE_BYTES:
        oldest = next(iter(_INDEX_CACHE))
        used -= 8 * oldest[-2] * oldest[-1]
        del _INDEX_CACHE[oldest]
    _INDEX_CACHE[key] = chunks
    return chunks


def _index_bootstrap(
    num: np.ndarray, den: np.ndarray | None, n_resamples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """Resample units by index matrices in chunks; return per-resample sums.

    The two streams are spawned from ``rng``'s seed sequence, so the indices depend only on it (its
    entropy, spawn key and how many children it spawned before): with a fixed seed they are drawn once
    and reused by later calls on the same number of units (the same random draws, so the same result).
    """
    units = num.size
    out_num = np.empty(n_resamples)
    out_den = None if den is None else np.empty(n_resamples)
    seq = rng.bit_generator.seed_seq
    key = None
    if isinstance(seq, np.random.SeedSequence):
        key = (seq.entropy, seq.spawn_key, seq.pool_size, seq.n_children_spawned, units, n_resamples)
    streams = rng.spawn(_N_STREAMS)
    bounds = np.linspace(0, n_resamples, _N_STREAMS + 1).astype(int)
    rows = max(1, _CHUNK_ELEMS // units)
    cached = None if key is None else _cached_indices(key, units, n_resamples, streams, bounds, rows)

    def work(i: int) -> None:
        r = streams[i]
        for j, start in enumerate(range(int(bounds[i]), int(bounds[i + 1]), rows)):
            stop = min(int(bounds[i + 1]), start + rows)
            idx = cached[i][j] if cached is not None else r.integers(0, units, size=(stop - start, units))
            out_num[start:stop] = np.take(num, idx).sum(axis=1)  # np.take: ~2x faster than num[idx]
            if out_den is not None:
                out_den[start:stop] = np.take(den, idx).sum(axis=1)

    if n_resamples * units >= _THREAD_MIN_WORK and (os.cpu_count() or 1) > 1:
        with ThreadPoolExecutor(max_workers=_N_STREAMS) as pool:
            list(pool.map(work, range(_N_STREAMS)))
    else:
        for i in range(_N_STREAMS):
            work(i)
    return out_num, out_den


def _bootstrap_ratio(num: np.ndarray, den: np.ndarray | None, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap distribution of sum(num)/sum(den) over units drawn with replacement.

    ``den=None`` means every unit has weight 1 (the plain mean).  Units with
    identical (num, den) are grouped; if there are few groups the resample is
    a multinomial count vector over groups, which has exactly the same
    distribution as resampling indices but costs O(#groups) per resample.
    Groups are ordered by first occurrence so that negating the data negates
    the bootstrap distribution exactly (same random draws).
    """
    units = num.size
    if den is not None and np.all(den == den[0]):
        den_const: float | None = float(den[0]) * units
        den = None
    else:
        den_const = float(units) if den is None else None

    if den is None:
        _, first, inverse = np.unique(num, return_index=True, return_inverse=True)
    else:
        _, first, inverse = np.unique(np.column_stack([num, den]), axis=0, return_index=True, return_inverse=True)
    inverse = np.asarray(inverse).ravel()
    n_groups = first.size
    if n_groups * _MULTINOMIAL_RATIO <= units:
        order = np.argsort(first, kind="stable")
        rank = np.empty(n_groups, dtype=np.intp)
        rank[order] = np.arange(n_groups)
        freq = np.bincount(rank[inverse], minlength=n_groups).astype(float)
        vals_num = num[first[order]]
        counts = rng.multinomial(units, freq / units, size=n_resamples).astype(float)
        boot_num = (counts * vals_num).sum(axis=1)
        if den is None:
            return boot_num / den_const
        boot_den = (counts * den[first[order]]).sum(axis=1)
        return boot_num / boot_den
    boot_num, boot_den = _index_bootstrap(num, den, n_resamples, rng)
    if boot_den is None:
        return boot_num / den_const
    return boot_num / boot_den


def _jackknife_accel(num: np.ndarray, den: np.ndarray | None) -> float:
    """BCa acceleration from the delete-one-unit jackknife of sum(num)/sum(den)."""
    if den is None:
        e = num - num.sum() / num.size  # closed form for the mean
    else:
        loo = (num.sum() - num) / (den.sum() - den)
        e = loo.mean() - loo
    s2 = float(np.sum(e * e))
    if s2 <= 0.0:
        return 0.0
    return float(np.sum(e * e * e)) / (6.0 * s2**1.5)


def _ecdf_mid(boot: np.ndarray, x: float) -> float:
    """P(boot < x) + P(boot == x)/2 (ties up to float noise), clipped away from 0 and 1."""
    b = boot.size
    tol = 1e-12 * max(abs(x), float(np.max(np.abs(boot))), 1e-300)
    less = np.count_nonzero(boot < x - tol)
    equal = np.count_nonzero(np.abs(boot - x) <= tol)
    prop = (less + 0.5 * equal) / b
    return min(max(prop, 0.5 / b), 1.0 - 0.5 / b)


def _bca_from_boot(theta: float, boot: np.ndarray, accel: float, confidence: float) -> tuple[float, float]:
    z0 = float(stats.norm.ppf(_ecdf_mid(boot, theta)))
    z_alpha = float(stats.norm.ppf((1.0 - confidence) / 2.0))
    levels = []
    for z in (z_alpha, -z_alpha):
        w = z0 + z
        denom = 1.0 - accel * w
        if denom <= 0.0:
            levels.append(1.0 if w > 0 else 0.0)
        else:
            levels.append(float(stats.norm.cdf(z0 + w / denom)))
    lo, hi = np.quantile(boot, levels)
    return float(lo), float(hi)


def _bca_pvalue_lower(theta: float, boot: np.ndarray, accel: float, null: float) -> float:
    """Smallest alpha whose one-sided BCa lower bound reaches ``null`` (H1: mean > null).

    Inverts the BCa lower endpoint: the endpoint at level alpha is the
    bootstrap quantile at Phi(z0 + u / (1 - a u)), u = z0 + z_alpha; setting
    that quantile level to the bootstrap CDF at ``null`` and solving gives
    u = w / (1 + a w), w = Phi^-1(F(null)) - z0, alpha = Phi(u - z0).
    """
    z0 = float(stats.norm.ppf(_ecdf_mid(boot, theta)))
    w = float(stats.norm.ppf(_ecdf_mid(boot, null))) - z0
    denom = 1.0 + accel * w
    if denom <= 0.0:
        return 0.0 if w < 0 else 1.0
    return float(stats.norm.cdf(w / denom - z0))


def _bca_ratio(
    num: np.ndarray,
    den: np.ndarray | None,
    confidence: float,
    n_resamples: int,
    rng: np.random.Generator,
    *,
    constant: bool,
    null: float | None = None,
) -> tuple[float, float]:
    """BCa interval for sum(num)/sum(den) with unit resampling (or (p, nan) if ``null`` given).

    ``constant`` (all case-level values equal) short-circuits to the degenerate
    interval [theta, theta]; it is decided on the case-level data by the caller
    because cluster sums of equal values need not be exactly proportional.
    With ``null`` the first element is the one-sided BCa p-value for
    H1: ratio > null, computed from the same bootstrap distribution.
    """
    theta = float(num.sum() / (num.size if den is None else den.sum()))
    boot = None if constant else _bootstrap_ratio(num, den, n_resamples, rng)
    if boot is None or np.all(boot == boot[0]):
        if null is not None:
            return (0.0 if theta > null else 1.0), math.nan
        return theta, theta
    accel = _jackknife_accel(num, den)
    if null is not None:
        return _bca_pvalue_lower(theta, boot, accel, null), math.nan
    return _bca_from_boot(theta, boot, accel, confidence)


def bootstrap_bca(
    scores: ArrayLike, confidence: float = 0.95, n_resamples: int = 10_000, seed: int | None = 0
) -> tuple[float, float]:
    """Vectorised BCa bootstrap confidence interval for the mean of ``scores``."""
    x = _scores(scores)
    conf = _check_prob(confidence, "confidence")
    b = _check_resamples(n_resamples)
    return _bca_ratio(x, None, conf, b, np.random.default_rng(seed), constant=_is_constant(x))


# --------------------------------------------------------------------------
# Cluster-robust helpers
# --------------------------------------------------------------------------


def _cluster_sums(x: np.ndarray, codes: np.ndarray, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    sums = np.bincount(codes, weights=x, minlength=n_clusters)
    sizes = np.bincount(codes, minlength=n_clusters).astype(float)
    return sums, sizes


def _cluster_var_of_mean(sums: np.ndarray, sizes: np.ndarray) -> float:
    """CR1 sandwich variance of the overall (case-weighted) mean."""
    g = sums.size
    n = sizes.sum()
    mean = sums.sum() / n
    resid = sums - mean * sizes
    return float(g / (g - 1) * np.sum(resid * resid) / (n * n))


def _design_effect(x: np.ndarray, codes: np.ndarray, n_clusters: int, ddof: int) -> float:
    """Cluster-robust variance of the mean over the iid variance, floored at 1."""
    n = x.size
    iid = float(np.var(x, ddof=ddof)) / n
    if iid <= 0.0:
        return 1.0
    sums, sizes = _cluster_sums(x, codes, n_clusters)
    return max(1.0, _cluster_var_of_mean(sums, sizes) / iid)


# --------------------------------------------------------------------------
# estimate
# --------------------------------------------------------------------------


def estimate(
    scores: ArrayLike,
    *,
    clusters: Sequence[Hashable] | None = None,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int | None = 0,
) -> Estimate:
    """Mean score with CI: Wilson (binary), BCa bootstrap (continuous), or cluster-robust."""
    x = _scores(scores)
    conf = _check_prob(confidence, "confidence")
    b = _check_resamples(n_resamples)
    n = int(x.size)
    binary = is_binary(x)
    z = float(stats.norm.ppf(0.5 + conf / 2.0))

    if clusters is None:
        if binary:
            k = int(x.sum())
            lo, hi = _wilson(k / n, float(n), z)
            return Estimate(k / n, lo, hi, n, "wilson")
        lo, hi = _bca_ratio(x, None, conf, b, np.random.default_rng(seed), constant=_is_constant(x))
        return Estimate(float(x.sum() / n), lo, hi, n, "bca-bootstrap")

    codes, g = _cluster_codes(clusters, n)
    sums, sizes = _cluster_sums(x, codes, g)
    mean = float(x.sum() / n)
    t = float(stats.t.ppf(0.5 + conf / 2.0, g - 1))
    if binary:
        deff = _design_effect(x, codes, g, ddof=0)
        lo, hi = _wilson(mean, n / deff, t)
        return Estimate(mean, lo, hi, n, "cluster-wilson")
    se = math.sqrt(_cluster_var_of_mean(sums, sizes))
    return Estimate(mean, mean - t * se, mean + t * se, n, "cluster-se")


# --------------------------------------------------------------------------
# Tests for paired data
# --------------------------------------------------------------------------


def _mcnemar_exact(a_only: int, b_only: int) -> tuple[float, float, float]:
    m = a_only + b_only
    if m == 0:
        return 1.0, 1.0, 1.0
    p_two = stats.binomtest(min(a_only, b_only), m, 0.5, alternative="two-sided").pvalue
    p_greater = stats.binomtest(a_only, m, 0.5, alternative="greater").pvalue
    p_less = stats.binomtest(b_only, m, 0.5, alternative="greater").pvalue
    return float(min(1.0, p_two)), float(p_greater), float(p_less)


_BYTE_SIGNS = np.where((np.arange(256)[:, None] >> np.arange(8)[None, :]) & 1, 1.0, -1.0)  # (256, 8)


def _sign_flip_pvalues(units: np.ndarray, n_resamples: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """Two-sided, greater and less p-values of the sign-flip test of sum(units)."""
    v = units[units != 0.0]
    m = v.size
    if m == 0:
        return 1.0, 1.0, 1.0
    n_groups = -(-m // 8)
    padded = np.zeros(n_groups * 8)
    padded[:m] = v
    blocks = padded.reshape(n_groups, 8)
    # table[j, byte] = sum_k sign_k(byte) * blocks[j, k], accumulated in a fixed order.
    table = np.zeros((n_groups, 256))
    for k in range(8):
        table += blocks[:, k, None] * _BYTE_SIGNS[None, :, k]
    flat_table = table.ravel()
    offsets = np.arange(n_groups, dtype=np.intp) * 256
    t_obs = float(table[:, 255].sum())
    tol = 1e-10 * float(np.abs(v).sum())
    abs_obs = abs(t_obs)

    def stat(byte_rows: np.ndarray) -> np.ndarray:
        return flat_table[byte_rows.astype(np.intp) + offsets].sum(axis=1)

    if m <= _EXACT_PERMUTATION_MAX:
        patterns = np.arange(2**m, dtype=np.int64)[:, None]
        t = stat((patterns >> (8 * np.arange(n_groups))) & 0xFF)  # byte j = signs of block j
        total = t.size
        return (
            float(np.count_nonzero(np.abs(t) >= abs_obs - tol) / total),
            float(np.count_nonzero(t >= t_obs - tol) / total),
            float(np.count_nonzero(t <= t_obs + tol) / total),
        )

    rows = max(1, (1 << 20) // n_groups)
    c_two = c_greater = c_less = 0
    for start in range(0, n_resamples, rows):
        size = min(rows, n_resamples - start)
        t = stat(rng.integers(0, 256, size=(size, n_groups), dtype=np.uint8))
        c_two += int(np.count_nonzero(np.abs(t) >= abs_obs - tol))
        c_greater += int(np.count_nonzero(t >= t_obs - tol))
        c_less += int(np.count_nonzero(t <= t_obs + tol))
    denom = n_resamples + 1.0
    return (1 + c_two) / denom, (1 + c_greater) / denom, (1 + c_less) / denom


# --------------------------------------------------------------------------
# Power / MDE
# --------------------------------------------------------------------------


def _mde_binary(n: float, psi: float, alpha: float, power: float) -> float:
    za = float(stats.norm.ppf(1.0 - alpha / 2.0))
    zb = float(stats.norm.ppf(power))
    rn = math.sqrt(n)

    def f(delta: float) -> float:
        return rn * delta - za * math.sqrt(psi) - zb * math.sqrt(max(psi - delta * delta, 0.0))

    if f(0.0) >= 0.0:
        return 0.0
    if f(psi) < 0.0:
        return math.inf
    return float(optimize.brentq(f, 0.0, psi, xtol=1e-14, rtol=1e-12))


def _mde_binary_observed(n: float, psi_hat: float, alpha: float, power: float) -> float:
    """MDE when the discordance rate at effect delta is max(psi_hat, delta).

    A true difference delta = p10 - p01 forces p10 + p01 >= delta, so the
    observed rate is raised to delta where it is infeasible.  This is also the
    floor used when no discordant pair was observed (psi_hat == 0): the best
    case psi = delta (all discordant pairs in one direction).
    """
    if psi_hat > 0.0:
        mde = _mde_binary(n, psi_hat, alpha, power)
        if math.isfinite(mde):
            return mde
    za = float(stats.norm.ppf(1.0 - alpha / 2.0))
    zb = float(stats.norm.ppf(power))
    rn = math.sqrt(n)

    def g(delta: float) -> float:
        return rn * delta - za * math.sqrt(delta) - zb * math.sqrt(max(delta - delta * delta, 0.0))

    lo = max(psi_hat, 1e-300)
    if g(1.0) < 0.0:
        return math.inf
    if g(lo) >= 0.0:
        return lo
    return float(optimize.brentq(g, lo, 1.0, xtol=1e-14, rtol=1e-12))


def _power_t(n: float, effect_size: float, alpha: float) -> float:
    """Power of the two-sided one-sample t-test with n cases at standardized effect."""
    df = n - 1.0
    tc = float(stats.t.ppf(1.0 - alpha / 2.0, df))
    nc = effect_size * math.sqrt(n)
    power = float(stats.nct.sf(tc, df, nc) + stats.nct.cdf(-tc, df, nc))
    if math.isfinite(power):
        return power

    # scipy's noncentral t can return NaN for tiny df / large nc: integrate over
    # the chi-distributed denominator instead, T = (Z + nc) / (U / sqrt(df)).
    def integrand(u: float) -> float:
        s = tc * u / math.sqrt(df)
        return float(stats.chi.pdf(u, df) * (stats.norm.sf(s - nc) + stats.norm.cdf(-s - nc)))

    return float(integrate.quad(integrand, 0.0, math.inf, limit=200)[0])


def _mde_continuous(sd: float, n: float, alpha: float, power: float) -> float:
    if sd == 0.0:
        return 0.0
    if n <= 1.0:
        return math.inf
    if power <= alpha:  # a zero effect already rejects with probability alpha
        return 0.0
    df = n - 1.0
    # Bracket: the normal approximation under-shoots (t tails are heavier), the
    # t-quantile approximation (t_{1-alpha/2} + t_{power}) / sqrt(n) is close.
    lo = (float(stats.norm.ppf(1.0 - alpha / 2.0)) + float(stats.norm.ppf(power))) / math.sqrt(n)
    hi = (float(stats.t.ppf(1.0 - alpha / 2.0, df)) + float(stats.t.ppf(power, df))) / math.sqrt(n)
    lo, hi = max(min(lo, hi) * 0.9, 0.0), max(lo, hi) * 1.1 + 1e-12
    while _power_t(n, lo, alpha) > power and lo > 1e-12:
        lo *= 0.5
    while _power_t(n, hi, alpha) < power:
        hi *= 2.0
        if hi > 1e12:  # pragma: no cover - defensive
            return math.inf
    es = optimize.brentq(lambda e: _power_t(n, e, alpha) - power, lo, hi, xtol=1e-12, rtol=1e-10)
    return float(es * sd)


def mde_paired_binary(n: int, discordance_rate: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimal |p10 - p01| detectable by McNemar (Connor 1987 normal approx); inf if none is."""
    m = _count(n, "n")
    if m < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    psi = float(discordance_rate)
    if not 0.0 < psi <= 1.0:
        raise ValueError(f"discordance_rate must be in (0, 1], got {discordance_rate!r}")
    return _mde_binary(float(m), psi, _check_prob(alpha, "alpha"), _check_prob(power, "power"))


def mde_paired_continuous(sd_diff: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimal |mean diff| detectable by a two-sided paired t-test (noncentral t power)."""
    m = _count(n, "n")
    if m < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    sd = float(sd_diff)
    if not (sd >= 0.0 and math.isfinite(sd)):
        raise ValueError(f"sd_diff must be a finite non-negative number, got {sd_diff!r}")
    return _mde_continuous(sd, float(m), _check_prob(alpha, "alpha"), _check_prob(power, "power"))


def required_n_paired_binary(effect: float, discordance_rate: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Cases needed for McNemar to detect |p10 - p01| = effect (Connor 1987)."""
    delta = abs(float(effect))
    psi = float(discordance_rate)
    if not 0.0 < psi <= 1.0:
        raise ValueError(f"discordance_rate must be in (0, 1], got {discordance_rate!r}")
    if not 0.0 < delta <= psi:
        raise ValueError(
            f"effect must satisfy 0 < |effect| <= discordance_rate (|p10 - p01| <= p10 + p01), got {effect!r}"
        )
    za = float(stats.norm.ppf(1.0 - _check_prob(alpha, "alpha") / 2.0))
    zb = float(stats.norm.ppf(_check_prob(power, "power")))
    n = (za * math.sqrt(psi) + zb * math.sqrt(max(psi - delta * delta, 0.0))) ** 2 / (delta * delta)
    return max(1, math.ceil(n - 1e-9))


def required_n_paired_continuous(effect: float, sd_diff: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Cases needed for a two-sided paired t-test to detect mean diff = effect (noncentral t)."""
    delta = abs(float(effect))
    sd = float(sd_diff)
    if not (delta > 0.0 and math.isfinite(delta)):
        raise ValueError(f"effect must be non-zero and finite, got {effect!r}")
    if not (sd > 0.0 and math.isfinite(sd)):
        raise ValueError(f"sd_diff must be positive and finite, got {sd_diff!r}")
    a = _check_prob(alpha, "alpha")
    pw = _check_prob(power, "power")
    es = delta / sd
    za = float(stats.norm.ppf(1.0 - a / 2.0))
    zb = float(stats.norm.ppf(pw))
    n = max(2, math.ceil(((za + zb) / es) ** 2))
    while _power_t(n, es, a) < pw:
        n += 1
    while n > 2 and _power_t(n - 1, es, a) >= pw:
        n -= 1
    return int(n)


# --------------------------------------------------------------------------
# paired_compare / noninferiority_bound
# --------------------------------------------------------------------------


def _diff_bca(
    d: np.ndarray,
    codes: np.ndarray | None,
    n_clusters: int,
    confidence: float,
    n_resamples: int,
    rng: np.random.Generator,
    null: float | None = None,
) -> tuple[float, float]:
    constant = _is_constant(d)
    if codes is None:
        return _bca_ratio(d, None, confidence, n_resamples, rng, constant=constant, null=null)
    sums, sizes = _cluster_sums(d, codes, n_clusters)
    return _bca_ratio(sums, sizes, confidence, n_resamples, rng, constant=constant, null=null)


def paired_compare(
    a: ArrayLike,
    b: ArrayLike,
    *,
    clusters: Sequence[Hashable] | None = None,
    confidence: float = 0.95,
    alpha: float = 0.05,
    power: float = 0.8,
    n_resamples: int = 10_000,
    seed: int | None = 0,
) -> PairedComparison:
    """Compare variants A and B on the same cases: diff, paired-bootstrap CI, p-values, MDE."""
    xa, xb = _paired(a, b)
    conf = _check_prob(confidence, "confidence")
    al = _check_prob(alpha, "alpha")
    pw = _check_prob(power, "power")
    bres = _check_resamples(n_resamples)
    n = int(xa.size)
    d = _differences(xa, xb)
    binary = is_binary(xa) and is_binary(xb)
    boot_rng, perm_rng = np.random.default_rng(seed).spawn(2)

    codes: np.ndarray | None = None
    g = 0
    if clusters is not None:
        codes, g = _cluster_codes(clusters, n)

    ci_low, ci_high = _diff_bca(d, codes, g, conf, bres, boot_rng)

    a_only = b_only = None
    if binary:
        a_only = int(np.count_nonzero(d > 0))
        b_only = int(np.count_nonzero(d < 0))

    if codes is None:
        n_eff = float(n)
        if binary:
            p_two, p_greater, p_less = _mcnemar_exact(a_only, b_only)
            test = "mcnemar-exact"
        else:
            p_two, p_greater, p_less = _sign_flip_pvalues(d, bres, perm_rng)
            test = "sign-flip-permutation"
    else:
        sums, _ = _cluster_sums(d, codes, g)
        p_two, p_greater, p_less = _sign_flip_pvalues(sums, bres, perm_rng)
        test = "cluster-sign-flip-permutation"
        n_eff = n / _design_effect(d, codes, g, ddof=1)

    if binary:
        mde = _mde_binary_observed(n_eff, (a_only + b_only) / n, al, pw)
    else:
        sd = 0.0 if _is_constant(d) else float(np.std(d, ddof=1))
        mde = _mde_continuous(sd, n_eff, al, pw)

    return PairedComparison(
        estimate_a=float(xa.mean()),
        estimate_b=float(xb.mean()),
        diff=float(d.sum() / n),
        ci_low=ci_low,
        ci_high=ci_high,
        p_value=p_two,
        p_greater=p_greater,
        p_less=p_less,
        test=test,
        n=n,
        a_only=a_only,
        b_only=b_only,
        mde=mde,
    )


def _tango_score(a_only: int, b_only: int, n: int, delta: float) -> float:
    """Tango's (1998) score statistic for H0: p(a=1,b=0) - p(a=0,b=1) = delta.

    Uses the closed-form restricted MLE of p(a=0,b=1) under H0; large values
    are evidence that the difference exceeds delta.
    """
    b, c = float(a_only), float(b_only)
    w = -b - c + (2.0 * n - b + c) * delta
    q21 = (math.sqrt(max(w * w + 8.0 * n * c * delta * (1.0 - delta), 0.0)) - w) / (4.0 * n)
    num = b - c - n * delta
    var = n * (2.0 * q21 + delta * (1.0 - delta))
    if var <= 0.0:
        return 0.0 if num == 0.0 else math.copysign(math.inf, num)
    return num / math.sqrt(var)


def _tango_lower(a_only: int, b_only: int, n: int, z: float) -> float:
    """Lower limit of Tango's (1998) score interval: smallest delta with score(delta) <= z."""
    if b_only == n:
        return -1.0
    lo, hi = -1.0 + 1e-12, (a_only - b_only) / n
    if _tango_score(a_only, b_only, n, lo) - z <= 0.0:
        return -1.0
    return float(optimize.brentq(lambda x: _tango_score(a_only, b_only, n, x) - z, lo, hi, xtol=1e-12, rtol=1e-12))


def noninferiority_bound(
    a: ArrayLike,
    b: ArrayLike,
    *,
    alpha: float = 0.05,
    clusters: Sequence[Hashable] | None = None,
    n_resamples: int = 10_000,
    seed: int | None = 0,
) -> float:
    """One-sided (1 - alpha) lower confidence bound of mean(a - b): Tango score (binary) or BCa."""
    xa, xb = _paired(a, b)
    al = _check_prob(alpha, "alpha", upper_exclusive=0.5)
    bres = _check_resamples(n_resamples)
    n = int(xa.size)
    d = _differences(xa, xb)
    if clusters is None and is_binary(xa) and is_binary(xb):
        z = float(stats.norm.ppf(1.0 - al))
        return _tango_lower(int(np.count_nonzero(d > 0)), int(np.count_nonzero(d < 0)), n, z)
    codes: np.ndarray | None = None
    g = 0
    if clusters is not None:
        codes, g = _cluster_codes(clusters, n)
    boot_rng, _ = np.random.default_rng(seed).spawn(2)  # same stream as paired_compare's CI
    lo, _ = _diff_bca(d, codes, g, 1.0 - 2.0 * al, bres, boot_rng)
    return lo


# --------------------------------------------------------------------------
# Multiplicity
# --------------------------------------------------------------------------


def _pvals(p_values: Sequence[float]) -> np.ndarray:
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"p_values must be one-dimensional, got shape {p.shape}")
    if np.isnan(p).any():
        raise ValueError("p_values contain NaN")
    if ((p < 0.0) | (p > 1.0)).any():
        raise ValueError("p_values must lie in [0, 1]")
    return p


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (family-wise error), in input order."""
    p = _pvals(p_values)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adj
    return [float(v) for v in out]


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg step-up adjusted p-values (false discovery rate), in input order."""
    p = _pvals(p_values)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    adj = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    out = np.empty(m)
    out[order] = adj
    return [float(v) for v in out]


def noninferiority_p(
    a: ArrayLike,
    b: ArrayLike,
    *,
    margin: float,
    direction: int = 1,
    clusters: Sequence[Hashable] | None = None,
    n_resamples: int = 10_000,
    seed: int | None = 0,
) -> float:
    """One-sided p for H0: direction * mean(a - b) <= -margin (dual of noninferiority_bound)."""
    m = float(margin)
    if not math.isfinite(m):
        raise ValueError(f"margin must be finite, got {margin!r}")
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 (higher is better) or -1 (lower is better), got {direction!r}")
    xa, xb = _paired(a, b)
    if direction < 0:
        xa, xb = xb, xa
    bres = _check_resamples(n_resamples)
    n = int(xa.size)
    d = _differences(xa, xb)
    if clusters is None and is_binary(xa) and is_binary(xb):
        a_only, b_only = int(np.count_nonzero(d > 0)), int(np.count_nonzero(d < 0))
        if m >= 1.0:  # H0 "diff <= -1" only holds if every pair is (a=0, b=1)
            return 1.0 if b_only == n else 0.0
        if m <= -1.0:  # H1 "diff > 1" is impossible
            return 1.0
        return float(stats.norm.sf(_tango_score(a_only, b_only, n, -m)))
    codes: np.ndarray | None = None
    g = 0
    if clusters is not None:
        codes, g = _cluster_codes(clusters, n)
    boot_rng, _ = np.random.default_rng(seed).spawn(2)  # same stream as noninferiority_bound
    p, _ = _diff_bca(d, codes, g, 0.9, bres, boot_rng, null=-m)
    return p


# --------------------------------------------------------------------------
# One decision, one interval: the tests gates and comparison tables decide by
# --------------------------------------------------------------------------

MIN_CLUSTERS = 10
"""Below this many clusters cluster-robust intervals are not trusted: gates say INCONCLUSIVE."""


def tango_p_greater(a_only: int, b_only: int, n: int, delta: float) -> float:
    """One-sided Tango (1998) score p-value for H1: p10 - p01 > delta (paired binary, n pairs)."""
    d = float(delta)
    if d >= 1.0:  # H1 impossible
        return 1.0
    if d <= -1.0:  # H0 "diff <= -1" only holds if every pair is (a=0, b=1)
        return 1.0 if b_only == n else 0.0
    return float(stats.norm.sf(_tango_score(a_only, b_only, n, d)))


def tango_interval(a_only: int, b_only: int, n: int, confidence: float) -> tuple[float, float]:
    """Two-sided Tango (1998) score interval for p10 - p01: the deltas its score test does not reject.

    Each end is the one-sided (1 + confidence) / 2 bound, so the lower end exceeds ``delta`` exactly
    when :func:`tango_p_greater` at ``delta`` is below (1 - confidence) / 2.
    """
    conf = _check_prob(confidence, "confidence")
    z = float(stats.norm.ppf(0.5 + conf / 2.0))
    return _tango_lower(a_only, b_only, n, z), -_tango_lower(b_only, a_only, n, z)


@dataclass(frozen=True)
class PairedTest:
    """A paired comparison decided by the test whose interval it carries.

    ``p_greater[k]`` is the one-sided p for H1: mean(a - b) > ``nulls[k]``; the two-sided interval at
    ``confidence`` has its lower end above ``nulls[k]`` exactly when ``p_greater[k] < (1 - confidence) / 2``
    (Tango: by inversion of the same score test; bootstrap: the p inverts the same BCa endpoint). The
    p-value for H1: mean(a - b) < null is ``1 - p_greater`` (continuous test statistics).
    """

    estimate_a: float
    estimate_b: float
    diff: float
    ci_low: float
    ci_high: float
    confidence: float
    nulls: tuple[float, ...]
    p_greater: tuple[float, ...]
    method: str  # "tango-score" | "bca-bootstrap" | "cluster-t" | "cluster-t+tango-score"
    n: int
    n_clusters: int | None
    a_only: int | None
    b_only: int | None
    p_less: tuple[float, ...] | None = None
    """One-sided p for H1: diff < nulls[k] when it is not 1 - p_greater (the two-test union)."""

    def p(self, null: float, alternative: str = "greater") -> float:
        """One-sided p for H1: diff > null ("greater") or diff < null ("less"); two-sided ("two-sided")."""
        k = self.nulls.index(null)
        pg = self.p_greater[k]
        if alternative == "greater":
            return pg
        pl = min(1.0, max(0.0, 1.0 - pg)) if self.p_less is None else self.p_less[k]
        if alternative == "less":
            return pl
        if alternative == "two-sided":
            return min(1.0, 2.0 * min(pg, pl))
        raise ValueError(f"alternative must be 'greater', 'less' or 'two-sided', got {alternative!r}")


def paired_test(
    a: ArrayLike,
    b: ArrayLike,
    *,
    nulls: Sequence[float] = (0.0,),
    confidence: float = 0.95,
    clusters: Sequence[Hashable] | None = None,
    n_resamples: int = 10_000,
    seed: int | None = 0,
) -> PairedTest:
    """Difference mean(a - b), its two-sided interval and the one-sided p-values that invert it.

    Binary scores without clusters: Tango's score test and its interval (margin 0 and any margin alike,
    so ``A > B`` and ``A >= B - 0`` are one test). Clustered: the cluster-robust (CR1) t interval and
    t test with G - 1 degrees of freedom. Otherwise: the paired BCa bootstrap interval and the p-values
    that invert its endpoints, from the same bootstrap draws.
    """
    xa, xb = _paired(a, b)
    conf = _check_prob(confidence, "confidence")
    bres = _check_resamples(n_resamples)
    null_values = tuple(float(v) for v in nulls)
    for v in null_values:
        if not math.isfinite(v):
            raise ValueError(f"nulls must be finite, got {v!r}")
    n = int(xa.size)
    d = _differences(xa, xb)
    diff = float(d.sum() / n)
    binary = is_binary(xa) and is_binary(xb)
    codes: np.ndarray | None = None
    g = 0
    if clusters is not None:
        codes, g = _cluster_codes(clusters, n)
    a_only = b_only = None
    p_less: tuple[float, ...] | None = None
    if binary:
        a_only = int(np.count_nonzero(d > 0))
        b_only = int(np.count_nonzero(d < 0))
    if binary and codes is None:
        lo, hi = tango_interval(a_only, b_only, n, conf)
        ps = tuple(tango_p_greater(a_only, b_only, n, v) for v in null_values)
        method = "tango-score"
    elif codes is not None:
        # Clustered: the cluster-robust (CR1) standard error with t_{G-1}; with equal cluster sizes this
        # is exactly the one-sample t on cluster means (the cluster bootstrap under-covers with few clusters).
        sums, sizes = _cluster_sums(d, codes, g)
        se = 0.0 if _is_constant(d) else math.sqrt(_cluster_var_of_mean(sums, sizes))
        if se <= 0.0:
            lo = hi = diff
            ps = tuple(0.0 if diff > v else 1.0 for v in null_values)
        else:
            q = float(stats.t.ppf(0.5 + conf / 2.0, g - 1))
            lo, hi = diff - q * se, diff + q * se
            ps = tuple(float(stats.t.sf((diff - v) / se, g - 1)) for v in null_values)
        method = "cluster-t"
        if binary:
            # Clustering never narrows a pass/fail interval: the union with the unclustered Tango interval
            # (cluster-robust errors of all-equal differences are 0; Tango's are not), and the larger p.
            t_lo, t_hi = tango_interval(a_only, b_only, n, conf)
            t_ps = [tango_p_greater(a_only, b_only, n, v) for v in null_values]
            p_less = tuple(max(1.0 - pc, 1.0 - pt) for pc, pt in zip(ps, t_ps, strict=True))
            lo, hi = min(lo, t_lo), max(hi, t_hi)
            ps = tuple(max(pc, pt) for pc, pt in zip(ps, t_ps, strict=True))
            method = "cluster-t+tango-score"
    else:
        boot_rng, _ = np.random.default_rng(seed).spawn(2)  # the stream paired_compare's CI uses
        num, den = d, None
        theta = diff
        boot = None if _is_constant(d) else _bootstrap_ratio(num, den, bres, boot_rng)
        if boot is None or np.all(boot == boot[0]):
            lo = hi = theta
            ps = tuple(0.0 if theta > v else 1.0 for v in null_values)
        else:
            accel = _jackknife_accel(num, den)
            lo, hi = _bca_from_boot(theta, boot, accel, conf)
            ps = tuple(_bca_pvalue_lower(theta, boot, accel, v) for v in null_values)
        method = "bca-bootstrap"
    return PairedTest(
        estimate_a=float(xa.mean()), estimate_b=float(xb.mean()), diff=diff, ci_low=float(lo), ci_high=float(hi),
        confidence=conf, nulls=null_values, p_greater=ps, method=method, n=n,
        n_clusters=None if codes is None else g, a_only=a_only, b_only=b_only, p_less=p_less,
    )


def paired_mde(
    a: ArrayLike,
    b: ArrayLike,
    *,
    clusters: Sequence[Hashable] | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
) -> float:
    """Minimum detectable |mean(a - b)| of a two-sided level-``alpha`` paired test (as in paired_compare)."""
    xa, xb = _paired(a, b)
    al = _check_prob(alpha, "alpha")
    pw = _check_prob(power, "power")
    n = int(xa.size)
    d = _differences(xa, xb)
    n_eff = float(n)
    if clusters is not None:
        codes, g = _cluster_codes(clusters, n)
        n_eff = n / _design_effect(d, codes, g, ddof=1)
    if is_binary(xa) and is_binary(xb):
        return _mde_binary_observed(n_eff, int(np.count_nonzero(d)) / n, al, pw)
    sd = 0.0 if _is_constant(d) else float(np.std(d, ddof=1))
    return _mde_continuous(sd, n_eff, al, pw)


def clopper_pearson(successes: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval; each end is the exact one-sided (1 + confidence) / 2 bound.

    ``successes`` and ``n`` may be fractional (effective counts, Korn & Graubard 1998).
    """
    k, m = float(successes), float(n)
    if not (m > 0 and 0.0 <= k <= m):
        raise ValueError(f"need 0 <= successes <= n and n > 0, got successes={successes}, n={n}")
    tail = (1.0 - _check_prob(confidence, "confidence")) / 2.0
    lo = 0.0 if k <= 0.0 else float(stats.beta.ppf(tail, k, m - k + 1.0))
    hi = 1.0 if k >= m else float(stats.beta.ppf(1.0 - tail, k + 1.0, m - k))
    return lo, hi


def threshold_estimate(
    scores: ArrayLike,
    *,
    clusters: Sequence[Hashable] | None = None,
    confidence: float = 0.90,
    n_resamples: int = 10_000,
    seed: int | None = 0,
) -> Estimate:
    """The rate a threshold gate decides by, with its two-sided interval (ends = one-sided bounds).

    * binary, unclustered: Clopper-Pearson (exact: a one-sided bound's size is <= its level for every n);
    * binary, clustered: Korn & Graubard (1998): Clopper-Pearson on the effective sample size
      ``n / deff`` (deff floored at 1) further shrunk by ``(z / t_{G-1})^2``; when every case scores
      the same the design effect cannot be estimated and the worst case is used (effective n = the
      number of clusters), never the unadjusted n;
    * continuous: BCa bootstrap; clustered: ``mean +/- t_{G-1} * CR1 se``.
    """
    x = _scores(scores)
    conf = _check_prob(confidence, "confidence")
    n = int(x.size)
    if not is_binary(x):
        est = estimate(x, clusters=clusters, confidence=conf, n_resamples=n_resamples, seed=seed)
        return est
    k = float(x.sum())
    if clusters is None:
        lo, hi = clopper_pearson(k, n, conf)
        return Estimate(k / n, lo, hi, n, "clopper-pearson")
    codes, g = _cluster_codes(clusters, n)
    p = k / n
    sums, sizes = _cluster_sums(x, codes, g)
    var = _cluster_var_of_mean(sums, sizes)
    if p <= 0.0 or p >= 1.0 or var <= 0.0:
        n_eff = float(min(n, g)) if (p <= 0.0 or p >= 1.0) else float(n)
    else:
        n_eff = min(float(n), p * (1.0 - p) / var)
    z = float(stats.norm.ppf(0.5 + conf / 2.0))
    t = float(stats.t.ppf(0.5 + conf / 2.0, g - 1))
    n_eff *= (z / t) ** 2
    lo, hi = clopper_pearson(p * n_eff, n_eff, conf)
    return Estimate(p, lo, hi, n, "cluster-clopper-pearson")


# --------------------------------------------------------------------------
# Planning: exact power of the tests the gates decide by
# --------------------------------------------------------------------------

PLAN_KINDS = ("superiority", "non-inferiority", "equivalence", "threshold")


def _tango_score_vec(b: np.ndarray, c: np.ndarray, n: int, delta: float) -> np.ndarray:
    """_tango_score over arrays of discordant counts (same closed form, same degenerate cases)."""
    b = b.astype(float)
    c = c.astype(float)
    w = -b - c + (2.0 * n - b + c) * delta
    q21 = (np.sqrt(np.maximum(w * w + 8.0 * n * c * delta * (1.0 - delta), 0.0)) - w) / (4.0 * n)
    num = b - c - n * delta
    var = n * (2.0 * q21 + delta * (1.0 - delta))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / np.sqrt(var)
    degenerate = var <= 0.0
    out[degenerate] = np.where(num[degenerate] == 0.0, 0.0, np.copysign(np.inf, num[degenerate]))
    return out


def _check_cells(p10: float, p01: float) -> tuple[float, float]:
    a, b = float(p10), float(p01)
    if not (0.0 <= a and 0.0 <= b and a + b <= 1.0 and a + b > 0.0):
        raise ValueError(f"need p10, p01 >= 0 with 0 < p10 + p01 <= 1 (discordance), got p10={p10!r}, p01={p01!r}")
    return a, b


def power_paired_binary(n: int, p10: float, p01: float, *, kind: str = "superiority", margin: float = 0.0,
                        alpha: float = 0.05, two_sided: bool = False) -> float:
    """Exact probability that the gate's Tango test PASSes with n pairs, cells p10 = P(A only), p01 = P(B only).

    Sums the trinomial over every (A-only, B-only) count: superiority PASSes when the score at 0 exceeds
    z_{1-alpha} (two_sided: |score| > z_{1-alpha/2}, either direction), non-inferiority when the score at
    -margin does, equivalence when both one-sided tests at -margin and +margin reject (TOST).
    """
    m = _count(n, "n")
    if m < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    q10, q01 = _check_cells(p10, p01)
    al = _check_prob(alpha, "alpha", upper_exclusive=0.5)
    if kind not in PLAN_KINDS[:3]:
        raise ValueError(f"kind must be one of {PLAN_KINDS[:3]}, got {kind!r}")
    mg = float(margin)
    def span(q: float) -> np.ndarray:  # counts holding all but ~1e-20 of a Bin(m, q)'s mass
        sd = math.sqrt(m * q * (1.0 - q))
        return np.arange(max(0, math.floor(m * q - 10.0 * sd - 10)), min(m, math.ceil(m * q + 10.0 * sd + 10)) + 1)

    b = span(q10)
    pb = stats.binom.pmf(b, m, q10)
    cond = 0.0 if q10 >= 1.0 else min(1.0, q01 / (1.0 - q10))
    c = span(q01)
    bb, cc = np.meshgrid(b, c, indexing="ij")
    valid = cc <= m - bb
    pc = np.where(valid, stats.binom.pmf(cc, m - bb, cond), 0.0)
    weight = pb[:, None] * pc
    bb, cc, weight = bb[valid], cc[valid], weight[valid]
    if kind == "superiority":
        s = _tango_score_vec(bb, cc, m, 0.0)
        if two_sided:
            z = float(stats.norm.ppf(1.0 - al / 2.0))
            reject = np.abs(s) > z
        else:
            reject = s > float(stats.norm.ppf(1.0 - al))
    elif kind == "non-inferiority":
        reject = _tango_score_vec(bb, cc, m, -mg) > float(stats.norm.ppf(1.0 - al))
    else:
        z = float(stats.norm.ppf(1.0 - al))
        reject = (_tango_score_vec(bb, cc, m, -mg) > z) & (_tango_score_vec(bb, cc, m, mg) < -z)
    return float(np.sum(weight[reject]))


def _threshold_critical(n: int, threshold: float, alpha: float) -> int:
    """Smallest k whose Clopper-Pearson one-sided (1 - alpha) lower bound reaches ``threshold`` (n + 1: none)."""
    lo, hi = 0, n + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if clopper_pearson(mid, n, 1.0 - 2.0 * alpha)[0] >= threshold:
            hi = mid
        else:
            lo = mid + 1
    return lo


def power_threshold(n: int, rate: float, threshold: float, *, alpha: float = 0.05) -> float:
    """Exact probability that ``A.m >= threshold`` PASSes (Clopper-Pearson bound) with n cases at true ``rate``."""
    m = _count(n, "n")
    if m < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    k = _threshold_critical(m, float(threshold), _check_prob(alpha, "alpha", upper_exclusive=0.5))
    return 0.0 if k > m else float(stats.binom.sf(k - 1, m, float(rate)))


def _smallest_n(power_at, target: float, start: int, n_max: int, lookback: float = 0.1) -> int | None:
    """Smallest n with power_at(n) >= target: bisection to a first n, then a scan down over the last
    ``lookback`` share of it (exact power is a sawtooth in n, so a smaller n can reach the target too)."""
    lo = max(2, int(start * 0.5))
    hi = max(lo + 1, int(start * 1.2) + 1)
    while power_at(hi) < target:
        lo = hi
        hi *= 2
        if hi > n_max:
            return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if power_at(mid) >= target:
            hi = mid
        else:
            lo = mid
    best = hi
    for n in range(hi - 1, max(1, hi - 20 - int(hi * lookback)), -1):
        if power_at(n) >= target:
            best = n
    return best


def required_n_gate_binary(kind: str, *, effect: float, discordance: float, margin: float = 0.0,
                           alpha: float = 0.05, power: float = 0.8, two_sided: bool = False,
                           n_max: int = 200_000) -> int | None:
    """Cases a paired pass/fail gate needs to PASS with probability ``power`` (exact, the gate's own test).

    ``effect`` is the true A - B (superiority: the improvement to detect; non-inferiority/equivalence: the
    assumed true difference, often 0), ``discordance`` the share of cases where the variants disagree.
    None when no n up to ``n_max`` reaches the power.
    """
    delta, psi = float(effect), float(discordance)
    if not (0.0 < psi <= 1.0):
        raise ValueError(f"discordance must be in (0, 1], got {discordance!r}")
    if abs(delta) > psi:
        raise ValueError(f"|effect| must not exceed the discordance (|p10 - p01| <= p10 + p01), got {effect!r}")
    pw = _check_prob(power, "power")
    mg = float(margin)
    if kind == "superiority" and delta <= 0:
        raise ValueError("a superiority plan needs a positive effect (the improvement to detect)")
    if kind == "non-inferiority" and not (mg > 0 and delta > -mg):
        raise ValueError("a non-inferiority plan needs margin > 0 and a true effect above -margin")
    if kind == "equivalence" and not (mg > 0 and abs(delta) < mg):
        raise ValueError("an equivalence plan needs margin > 0 and a true effect inside +-margin")
    p10, p01 = (psi + delta) / 2.0, (psi - delta) / 2.0
    z = float(stats.norm.ppf(1.0 - alpha / (2.0 if two_sided else 1.0))) + float(stats.norm.ppf(pw))
    gap = delta + mg if kind != "equivalence" else mg - abs(delta)
    start = max(4, math.ceil(z * z * psi / (gap * gap)))
    return _smallest_n(lambda n: power_paired_binary(n, p10, p01, kind=kind, margin=mg, alpha=alpha,
                                                     two_sided=two_sided), pw, start, n_max)


def required_n_threshold(rate: float, threshold: float, *, alpha: float = 0.05, power: float = 0.8,
                         n_max: int = 200_000) -> int | None:
    """Cases an ``A.m >= threshold`` gate needs to PASS with probability ``power`` at true ``rate`` (exact)."""
    p, t = float(rate), float(threshold)
    if not (0.0 < t < p <= 1.0):
        raise ValueError(f"need 0 < threshold < rate <= 1 (a rate that clears the threshold), got rate={rate!r}, "
                         f"threshold={threshold!r}")
    pw = _check_prob(power, "power")
    z = float(stats.norm.ppf(1.0 - alpha)) + float(stats.norm.ppf(pw))
    start = max(2, math.ceil(z * z * p * (1 - p) / ((p - t) ** 2)))
    return _smallest_n(lambda n: power_threshold(n, p, t, alpha=alpha), pw, start, n_max, lookback=0.3)


def required_n_gate_continuous(kind: str, *, effect: float, sd_diff: float, margin: float = 0.0,
                               alpha: float = 0.05, power: float = 0.8, two_sided: bool = False) -> int:
    """Cases a paired continuous gate needs (noncentral-t power; the gate itself uses a bootstrap)."""
    delta, mg = float(effect), float(margin)
    if kind == "superiority":
        return required_n_paired_continuous(delta, sd_diff, alpha=alpha if two_sided else 2 * alpha, power=power)
    if kind == "non-inferiority":
        return required_n_paired_continuous(delta + mg, sd_diff, alpha=2 * alpha, power=power)
    if kind != "equivalence":
        raise ValueError(f"kind must be one of {PLAN_KINDS[:3]}, got {kind!r}")
    sd = float(sd_diff)
    if not (mg > 0 and abs(delta) < mg and sd > 0):
        raise ValueError("an equivalence plan needs margin > 0, |effect| < margin and sd_diff > 0")
    pw = _check_prob(power, "power")

    def tost_power(n: int) -> float:
        df, se = n - 1, sd / math.sqrt(n)
        t = float(stats.t.ppf(1.0 - alpha, df))
        return max(0.0, float(stats.nct.cdf(-t, df, (delta - mg) / se) - stats.nct.cdf(t, df, (delta + mg) / se)))

    lo, hi = 2, 4
    while tost_power(hi) < pw:
        lo, hi = hi, hi * 2
        if hi > 10_000_000:  # pragma: no cover - defensive
            raise ValueError("no n reaches the power")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if tost_power(mid) >= pw else (mid, hi)
    return hi


# --------------------------------------------------------------------------
# Repeated samples per case (k generations at temperature > 0)
# --------------------------------------------------------------------------


def _successes(n_samples: int, n_correct: int, k: int) -> tuple[int, int, int]:
    n, c, kk = _count(n_samples, "n_samples"), _count(n_correct, "n_correct"), _count(k, "k")
    if not (1 <= kk <= n and 0 <= c <= n):
        raise ValueError(f"need 1 <= k <= n_samples and 0 <= n_correct <= n_samples, got n={n}, c={c}, k={kk}")
    return n, c, kk


def pass_at_k(n_samples: int, n_correct: int, k: int) -> float:
    """Unbiased pass@k of one case (Chen et al. 2021): P(at least one of k samples drawn without
    replacement from the n generated is correct) = 1 - C(n - c, k) / C(n, k)."""
    n, c, kk = _successes(n_samples, n_correct, k)
    if n - c < kk:
        return 1.0
    return 1.0 - math.comb(n - c, kk) / math.comb(n, kk)


def pass_hat_k(n_samples: int, n_correct: int, k: int) -> float:
    """Unbiased pass^k of one case: P(all k samples drawn without replacement are correct) = C(c, k) / C(n, k)."""
    n, c, kk = _successes(n_samples, n_correct, k)
    return math.comb(c, kk) / math.comb(n, kk)


@dataclass(frozen=True)
class RepeatedSamples:
    """Per-case means of k samples as the unit of analysis, with the variance split within/between cases."""

    mean: float
    case_means: np.ndarray
    within_var: float  # mean over cases of the samples' variance around their case mean (ddof 1)
    between_var: float  # variance of the true case means: var(case means) - within_var / k, floored at 0
    se: float  # standard error of the mean over cases (the case means are the independent units)
    k: int


def repeated_samples(samples: ArrayLike) -> RepeatedSamples:
    """Summarise a (cases x k) array of scores: one-way random-effects decomposition (balanced design)."""
    x = np.asarray(samples, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"samples must be a (cases x k) array, got shape {x.shape}")
    n, k = x.shape
    if n < 2 or k < 1:
        raise ValueError(f"need at least 2 cases and 1 sample per case, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("samples contain NaN or infinite values")
    means = x.mean(axis=1)
    within = float(x.var(axis=1, ddof=1).mean()) if k > 1 else math.nan
    var_means = float(means.var(ddof=1))
    between = max(0.0, var_means - within / k) if k > 1 else math.nan
    return RepeatedSamples(mean=float(means.mean()), case_means=means, within_var=within, between_var=between,
                           se=math.sqrt(var_means / n), k=k)
