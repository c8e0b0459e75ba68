"""Gate verdicts and the comparison table, computed from synthetic run records."""

import json
import random

import pytest

from harness.analysis.compare import compare_run
from harness.analysis.gates import FAIL, INCONCLUSIVE, PASS, evaluate_run, overall
from harness.analysis.stats import noninferiority_p
from harness.engine.records import Run


def make_run(scores: dict[str, list[float]], gates: list[str], *, axis="accuracy", direction="higher",
             gate_mode="strict", inconclusive="fail", holm=True, alpha=0.05) -> Run:
    records = []
    for variant, values in scores.items():
        for i, v in enumerate(values):
            records.append({"suite": "s", "variant": variant, "case_id": f"c{i}", "scores": {axis: v}})
    manifest = {"suites": {"s": {"variants": list(scores), "baseline": list(scores)[0], "gates": gates,
                                 "axes": {axis: {"direction": direction, "binary": True}}, "alpha": alpha,
                                 "gate_mode": gate_mode, "inconclusive": inconclusive, "holm": holm}}}
    return Run(path=None, records=records, manifest=manifest)


def bernoulli(p, n, seed):
    rng = random.Random(seed)
    return [1.0 if rng.random() < p else 0.0 for _ in range(n)]


def verdicts(run):
    return {r.gate: r for r in evaluate_run(run.records, run.manifest)}


def test_threshold_strict_uses_the_confidence_bound_and_lenient_the_estimate():
    run = make_run({"a": [1.0] * 92 + [0.0] * 8}, ["a.accuracy >= 0.9"])
    (r,) = verdicts(run).values()
    assert r.verdict == INCONCLUSIVE and r.estimate == pytest.approx(0.92) and r.ci[0] < 0.9 < r.ci[1]
    run = make_run({"a": [1.0] * 92 + [0.0] * 8}, ["a.accuracy >= 0.9"], gate_mode="lenient")
    assert next(iter(verdicts(run).values())).verdict == PASS
    run = make_run({"a": [1.0] * 990 + [0.0] * 10}, ["a.accuracy >= 0.95"])
    assert next(iter(verdicts(run).values())).verdict == PASS
    run = make_run({"a": [1.0] * 50 + [0.0] * 50}, ["a.accuracy >= 0.9"])
    assert next(iter(verdicts(run).values())).verdict == FAIL


def test_superiority_needs_a_significant_paired_difference():
    base = bernoulli(0.3, 300, 1)
    better = [1.0 if (b or random.Random(i).random() < 0.4) else 0.0 for i, b in enumerate(base)]
    run = make_run({"base": base, "ft": better}, ["ft.accuracy > base.accuracy", "base.accuracy > ft.accuracy"])
    v = verdicts(run)
    assert v["ft.accuracy > base.accuracy"].verdict == PASS
    assert v["ft.accuracy > base.accuracy"].test == "tango-score"  # the test whose interval is printed
    assert v["ft.accuracy > base.accuracy"].extra["b_only"] == 0
    assert v["base.accuracy > ft.accuracy"].verdict == FAIL
    assert overall(list(v.values())) == "NO-GO"


def test_identical_variants_superiority_is_inconclusive_small_and_fails_large():
    """A model against itself: at 40 cases the interval reaches the 5-point effect of interest
    (INCONCLUSIVE); at 400 it rules that improvement out (FAIL: no gain worth having)."""
    base = bernoulli(0.5, 40, 2)
    v = verdicts(make_run({"base": base, "ft": list(base)}, ["ft.accuracy > base.accuracy"]))
    r = v["ft.accuracy > base.accuracy"]
    assert r.diff == 0 and r.p_value == 0.5 and r.verdict == INCONCLUSIVE
    assert r.diff_ci[0] < 0 < 0.05 < r.diff_ci[1]
    big = bernoulli(0.5, 400, 2)
    r = verdicts(make_run({"base": big, "ft": list(big)}, ["ft.accuracy > base.accuracy"]))["ft.accuracy > base.accuracy"]
    assert r.verdict == FAIL and r.diff_ci[1] < 0.05 and "rules out an improvement of 0.05" in r.reason
    ft = list(base)
    flips = [i for i, b in enumerate(base) if b == 0][:3]
    for i in flips:
        ft[i] = 1.0
    ft[next(i for i, b in enumerate(base) if b == 1)] = 0.0
    r = verdicts(make_run({"base": base, "ft": ft}, ["ft.accuracy > base.accuracy"]))["ft.accuracy > base.accuracy"]
    assert r.verdict == INCONCLUSIVE and "more cases would decide" in r.reason


def test_non_inferiority_passes_within_margin_and_fails_a_real_drop():
    base = bernoulli(0.6, 2000, 3)
    same = list(base)
    rng = random.Random(4)
    dropped = [0.0 if (b and rng.random() < 0.2) else b for b in base]  # loses ~12 points
    run = make_run({"base": base, "same": same, "drop": dropped},
                   ["same.accuracy >= base.accuracy - 0.02", "drop.accuracy >= base.accuracy - 0.02"])
    v = verdicts(run)
    assert v["same.accuracy >= base.accuracy - 0.02"].verdict == PASS
    assert v["drop.accuracy >= base.accuracy - 0.02"].verdict == FAIL


def test_lower_is_better_non_inferiority():
    base = bernoulli(0.2, 1000, 5)
    fewer = [0.0 if random.Random(i).random() < 0.5 else b for i, b in enumerate(base)]
    run = make_run({"base": base, "ft": fewer}, ["ft.hallucination <= base.hallucination + 0.02"],
                   axis="hallucination", direction="lower")
    assert verdicts(run)["ft.hallucination <= base.hallucination + 0.02"].verdict == PASS


def test_holm_adjusts_comparison_gates_together():
    base = bernoulli(0.5, 200, 6)
    nudged = [1.0 if (b or random.Random(i).random() < 0.08) else 0.0 for i, b in enumerate(base)]
    gates = ["ft.accuracy > base.accuracy", "ft2.accuracy > base.accuracy"]
    run = make_run({"base": base, "ft": nudged, "ft2": nudged}, gates)
    results = verdicts(run)
    for r in results.values():
        assert r.p_adjusted == pytest.approx(min(1.0, 2 * r.p_value))
    unadjusted = verdicts(make_run({"base": base, "ft": nudged, "ft2": nudged}, gates, holm=False))
    assert all(r.p_adjusted is None for r in unadjusted.values())


def test_noninferiority_p_agrees_with_the_bound():
    from harness.analysis import stats
    base = bernoulli(0.6, 400, 7)
    ft = [0.0 if (b and random.Random(i).random() < 0.03) else b for i, b in enumerate(base)]
    p = noninferiority_p(ft, base, margin=0.05)
    assert 0 < p < 1
    assert stats.noninferiority_bound(ft, base, alpha=p * 1.05) > -0.05
    assert stats.noninferiority_bound(ft, base, alpha=p * 0.95) <= -0.05


def test_inconclusive_can_be_allowed_by_the_suite():
    run = make_run({"a": [1.0] * 92 + [0.0] * 8}, ["a.accuracy >= 0.9"], inconclusive="pass")
    results = list(verdicts(run).values())
    assert results[0].verdict == INCONCLUSIVE and overall(results) == "GO"


def test_gate_on_a_variant_without_scores_is_an_error():
    run = make_run({"base": [1.0, 0.0, 1.0], "ft": [1.0, 1.0, 1.0]}, ["ft.accuracy > base.accuracy"])
    run.records = [r for r in run.records if r["variant"] != "ft"]
    (r,) = verdicts(run).values()
    assert r.verdict == "ERROR" and "no scored cases for ft" in r.reason


def test_compare_rows_have_the_stable_keys_and_pair_on_the_intersection():
    base = bernoulli(0.5, 100, 8)
    run = make_run({"base": base, "ft": bernoulli(0.7, 100, 9)}, [])
    run.records = [r for r in run.records if not (r["variant"] == "ft" and r["case_id"] == "c0")]
    rows, warnings = compare_run(run)
    (row,) = rows
    for key in ("suite", "axis", "variant", "baseline", "estimate", "baseline_estimate", "diff", "ci_low",
                "ci_high", "p_value", "p_adjusted", "test", "mde", "n"):
        assert key in row
    assert row["n"] == 99 and row["unpaired"] == {"ft": 0, "base": 1}
    assert warnings and "paired on 99 shared cases" in warnings[0]
    json.dumps(rows)  # serialisable


def test_compare_json_equals_gate_numbers(tmp_path):
    """The same paired numbers come out of `compare` and the gates for the same pair."""
    base = bernoulli(0.4, 150, 10)
    ft = bernoulli(0.6, 150, 11)
    run = make_run({"base": base, "ft": ft}, ["ft.accuracy > base.accuracy"])
    (row,), _ = compare_run(run)
    (gate,) = verdicts(run).values()
    # compare reports the two-sided p; the superiority gate the one-sided one (exact McNemar: half of it).
    assert row["diff"] == pytest.approx(gate.diff) and row["p_value"] == pytest.approx(min(1.0, 2 * gate.p_value))


def test_clear_alone_but_not_after_holm_is_inconclusive_not_fail():
    """A non-inferiority gate whose own CI clears the margin, but whose Holm-adjusted p does not,
    has no evidence against it: INCONCLUSIVE (more cases), never FAIL."""
    n = 100
    base = [1.0] * 13 + [0.0] * 87
    ft = list(base)
    for i in range(13, 19):  # ft alone right on 6 cases, base alone right on 5: diff +0.01
        ft[i] = 1.0
    for i in range(5):
        ft[i] = 0.0
    gates = ["ft.accuracy >= base.accuracy - 0.05"] + [f"x{k}.accuracy > base.accuracy" for k in range(5)]
    scores = {"base": base, "ft": ft, **{f"x{k}": list(base) for k in range(5)}}
    alone = verdicts(make_run({"base": base, "ft": ft}, gates[:1]))[gates[0]]
    assert alone.verdict == PASS and alone.p_value < 0.05 and alone.diff_ci[0] > -0.05
    together = verdicts(make_run(scores, gates))[gates[0]]
    assert together.p_value == pytest.approx(alone.p_value) and together.p_adjusted >= 0.05
    assert together.verdict == INCONCLUSIVE, together.reason
    assert "Holm" in together.reason and "6 paired gates" in together.reason
    assert len(base) == n


def test_cases_in_too_few_clusters_are_inconclusive_not_pretended_independent():
    """A smoke run's first cases can all share one cluster (or a suite declares 6 categories): with
    fewer than 10 clusters no cluster-robust interval is trustworthy, so the gates say INCONCLUSIVE and
    why; the comparison table still shows the unclustered numbers, with a warning."""
    base = bernoulli(0.5, 60, 11)
    ft = [1.0] * 60
    run = make_run({"base": base, "ft": ft}, ["ft.accuracy > base.accuracy", "ft.accuracy >= 0.9"])
    for record in run.records:
        record["cluster"] = "Misconceptions"
    results = verdicts(run)
    for gate in ("ft.accuracy > base.accuracy", "ft.accuracy >= 0.9"):
        assert results[gate].verdict == INCONCLUSIVE
        assert "only 1 cluster(s)" in results[gate].reason and "fewer than 10 clusters" in results[gate].reason
    rows, warnings = compare_run(run)
    assert rows and all(r["diff"] == pytest.approx(sum(ft) / 60 - sum(base) / 60) for r in rows)
    assert any("only 1 cluster(s)" in w for w in warnings)


def test_a_ci_touching_the_margin_is_inconclusive_whatever_the_mde():
    """Found on the demo: IFEval, diff +0.010, CI [-0.050, +0.070] against a 0.05 margin, MDE 0.10. The CI
    bound sitting exactly on the margin is neither clear of it nor beyond it: more cases, not FAIL.
    (This test used to expect FAIL when the MDE was below the margin: a FAIL whose interval still
    reaches the PASS region, issue 18. FAIL now needs the whole interval beyond the margin.)"""
    from harness.analysis.gates import GateResult, decide

    def gate(low, mde):
        return decide(GateResult(gate="ft.format >= base.format - 0.05", suite="s", kind="noninferiority", verdict="",
                                 reason="", diff=0.01, diff_ci=(low, 0.07), p_value=0.3, p_adjusted=0.3, mde=mde,
                                 margin=0.05, variant="ft", baseline="base", axis="format", op=">="),
                      alpha=0.05, inconclusive_blocks=True)

    assert gate(-0.05, 0.10).verdict == INCONCLUSIVE
    assert gate(-0.06, 0.10).verdict == INCONCLUSIVE
    assert gate(-0.05, 0.03).verdict == INCONCLUSIVE  # the interval still reaches the PASS region

    def beyond(low, high):
        return decide(GateResult(gate="ft.format >= base.format - 0.05", suite="s", kind="non-inferiority",
                                 verdict="", reason="", diff=(low + high) / 2, diff_ci=(low, high), p_value=0.99,
                                 p_adjusted=0.99, mde=0.03, margin=0.05, variant="ft", baseline="base",
                                 axis="format", op=">="), alpha=0.05, inconclusive_blocks=True)

    assert beyond(-0.12, -0.05).verdict == FAIL and beyond(-0.12, -0.049).verdict == INCONCLUSIVE
