"""Paired comparison tables from run records alone: every variant against a baseline, per suite
and axis, with intervals, the paired test, raw and Benjamini-Hochberg-adjusted p-values and the
minimum detectable effect.

Each row is decided by the test whose interval it prints (`stats.paired_test`: Tango's score test and
interval for pass/fail scores, the cluster-robust t with clusters, the paired BCa bootstrap otherwise),
two-sided at 95%, so a row is "better" or "worse" only when its interval excludes 0. The table is exploratory: its adjusted column
is Benjamini-Hochberg over the table's rows (`p_adjustment` says so in every row); gates use Holm
over the paired gates of their suite (`harness.analysis.gates`), and print their own adjusted p.

Variants are paired on the cases both have. When their case sets differ (a recorded-outputs
variant with missing cases, a variant filtered by --limit in another run), the table pairs on
the intersection and says so loudly in `unpaired` and a warning: dropping cases silently could
hide exactly the failures a review needs to see.
"""

from __future__ import annotations

import math
from typing import Any

from harness.engine.records import Run

CONFIDENCE = 0.95
"""Two-sided level of the table's intervals; a row's p < 1 - CONFIDENCE exactly when its interval excludes 0."""
P_ADJUSTMENT = "benjamini-hochberg"
"""The table's adjusted column (exploratory, false discovery rate); gates use Holm (harness.analysis.gates)."""


def _scores(records, suite, variant, axis) -> dict[str, float]:
    return {r["case_id"]: float(r["scores"][axis]) for r in records
            if r["suite"] == suite and r["variant"] == variant and axis in r.get("scores", {})}


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def compare_run(run: Run, baseline: str | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows with the stable keys of `harness compare --json`, and warnings."""
    from harness.analysis import stats
    rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    baseline_estimates: dict[tuple, Any] = {}
    for suite, info in run.manifest.get("suites", {}).items():
        ran = info.get("variants", [])
        base = baseline or info.get("baseline") or (ran[0] if ran else None)
        if base not in ran:
            warnings.append(f"{suite}: baseline '{base}' was not run; skipping the suite (ran: {', '.join(ran)})")
            continue
        records = [r for r in run.records if r["suite"] == suite]
        clusters = {r["case_id"]: r["cluster"] for r in records if r.get("cluster") is not None}
        for axis, axis_info in info.get("axes", {}).items():
            b_scores = _scores(records, suite, base, axis)
            for variant in ran:
                if variant == base:
                    continue
                a_scores = _scores(records, suite, variant, axis)
                shared = sorted(set(a_scores) & set(b_scores))
                row: dict[str, Any] = {
                    "suite": suite, "axis": axis, "variant": variant, "baseline": base,
                    "direction": axis_info.get("direction", "higher"), "n": len(shared),
                }
                unpaired = {variant: len(set(a_scores) - set(b_scores)), base: len(set(b_scores) - set(a_scores))}
                if any(unpaired.values()):
                    row["unpaired"] = unpaired
                    warnings.append(f"{suite}/{axis}: {variant} vs {base} paired on {len(shared)} shared cases; "
                                    f"unpaired cases dropped: {unpaired}")
                if len(shared) < 2:
                    row.update(estimate=None, baseline_estimate=None, diff=None, ci_low=None, ci_high=None,
                               p_value=None, p_adjusted=None, test=None, mde=None,
                               note=f"{len(shared)} paired cases: too few to compare")
                    rows.append(row)
                    continue
                a = [a_scores[i] for i in shared]
                b = [b_scores[i] for i in shared]
                keys = [clusters.get(i, i) for i in shared] if any(i in clusters for i in shared) else None
                if keys is not None and len(set(keys)) < stats.MIN_CLUSTERS:
                    warnings.append(f"{suite}/{axis}: {variant} vs {base}: only {len(set(keys))} cluster(s); "
                                    f"cluster-robust intervals need at least {stats.MIN_CLUSTERS}, so this row "
                                    "treats the cases as independent (gates on it are INCONCLUSIVE)")
                    keys = None
                est_a = stats.estimate(a, clusters=keys)
                b_key = (suite, axis, tuple(shared), keys is not None)
                if b_key not in baseline_estimates:  # the baseline's rate on these cases: once, not per variant
                    baseline_estimates[b_key] = stats.estimate(b, clusters=keys)
                est_b = baseline_estimates[b_key]
                cmp = stats.paired_test(a, b, nulls=(0.0,), confidence=CONFIDENCE, clusters=keys)
                row.update(
                    estimate=est_a.value, estimate_ci=[est_a.ci_low, est_a.ci_high],
                    baseline_estimate=est_b.value, baseline_ci=[est_b.ci_low, est_b.ci_high],
                    diff=cmp.diff, ci_low=cmp.ci_low, ci_high=cmp.ci_high, confidence=CONFIDENCE,
                    p_value=cmp.p(0.0, "two-sided"), test=cmp.method,
                    mde=stats.paired_mde(a, b, clusters=keys, alpha=1 - CONFIDENCE),
                    a_only=cmp.a_only, b_only=cmp.b_only, interval=est_a.method,
                )
                rows.append(row)
    tested = [r for r in rows if r.get("p_value") is not None]
    if tested:
        for row, p in zip(tested, stats.benjamini_hochberg([r["p_value"] for r in tested]), strict=True):
            row["p_adjusted"] = p
            row["p_adjustment"] = f"{P_ADJUSTMENT} over {len(tested)} rows"
    for row in rows:
        row.setdefault("p_adjusted", None)
        row.setdefault("p_adjustment", None)
        row["verdict"] = _verdict(row)
    return [{k: _clean(v) for k, v in row.items()} for row in rows], warnings


def _verdict(row: dict[str, Any], alpha: float = 0.05) -> str:
    p = row.get("p_adjusted")
    if p is None or row.get("diff") is None:
        return "n/a"
    if p >= alpha:
        return "no significant difference" if row["mde"] is None else f"no significant difference (MDE {row['mde']:.3f})"
    better = (row["diff"] > 0) == (row["direction"] == "higher")
    return "better" if better else "worse"


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table of comparison rows."""
    def pct(x):
        return "-" if x is None else f"{x:.3f}"

    def ci(lo, hi):
        return "-" if lo is None else f"[{lo:+.3f}, {hi:+.3f}]"

    header = f"{'suite':<14} {'axis':<13} {'variant':<18} {'vs':<10} {'est':>6} {'base':>6} {'diff':>7} {'diff CI':>18} " \
             f"{'test':<22} {'p':>7} {'p_BH':>7} {'MDE':>6} {'n':>5}  verdict"
    lines = [header, "-" * len(header)]
    for r in rows:
        diff = "-" if r.get("diff") is None else f"{r['diff']:+.3f}"
        p = "-" if r.get("p_value") is None else f"{r['p_value']:.3g}"
        padj = "-" if r.get("p_adjusted") is None else f"{r['p_adjusted']:.3g}"
        lines.append(
            f"{r['suite'][:14]:<14} {r['axis'][:13]:<13} {r['variant'][:18]:<18} {r['baseline'][:10]:<10} "
            f"{pct(r.get('estimate')):>6} {pct(r.get('baseline_estimate')):>6} {diff:>7} "
            f"{ci(r.get('ci_low'), r.get('ci_high')):>18} {str(r.get('test') or '-')[:22]:<22} {p:>7} {padj:>7} "
            f"{pct(r.get('mde')):>6} {r['n']:>5}  {r['verdict']}"
        )
    n_tested = sum(1 for r in rows if r.get("p_value") is not None)
    lines.append(f"diff CI: {CONFIDENCE:.0%}, two-sided, by the row's test; p_BH: Benjamini-Hochberg over the "
                 f"{n_tested} rows of this table (gates below: Holm over each suite's paired gates)")
    return "\n".join(lines)
