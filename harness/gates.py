"""Gate expressions -> verdicts.

Grammar (one expression per gate):
    VARIANT.AXIS OP NUMBER                      threshold on one variant's rate
    VARIANT.AXIS OP VARIANT.AXIS [(+|-) MARGIN] paired comparison on the same cases
OP is one of >=, >, <=, <. With no margin, `A.m > B.m` is a superiority test; with a margin,
`A.m >= B.m - 0.02` is non-inferiority (A may be at most 0.02 worse) and `A.m <= B.m + 0.02`
the same for lower-is-better axes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

PASS, FAIL, INCONCLUSIVE, ERROR = "PASS", "FAIL", "INCONCLUSIVE", "ERROR"
NOT_EVALUATED = "NOT EVALUATED"
"""A declared gate whose variants did not run: no evidence, so it blocks (never a silent GO)."""

_REF = r"(?P<{v}>[A-Za-z0-9_][A-Za-z0-9_-]*)\.(?P<{a}>[A-Za-z_][A-Za-z0-9_]*)"
_NUM = r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_GATE = re.compile(
    r"^\s*" + _REF.format(v="lv", a="la") + r"\s*(?P<op>>=|<=|>|<)\s*"
    r"(?:" + _REF.format(v="rv", a="ra") + rf"\s*(?:(?P<sign>[-+])\s*(?P<margin>{_NUM}))?"
    rf"|(?P<num>-?{_NUM}))\s*$"
)


@dataclass(frozen=True)
class Gate:
    """A parsed gate. `direction` is +1 when the left side should be larger, -1 when smaller."""

    text: str
    variant: str
    axis: str
    op: str
    threshold: float | None = None
    other: str | None = None
    other_axis: str | None = None
    margin: float = 0.0
    """Allowed shortfall, >= 0: A may be this much worse than B and still pass."""

    @property
    def kind(self) -> str:
        if self.other is None:
            return "threshold"
        return "superiority" if self.margin == 0 and self.op in (">", "<") else "non-inferiority"

    @property
    def direction(self) -> int:
        return 1 if self.op in (">", ">=") else -1

    @property
    def refs(self) -> list[tuple[str, str]]:
        refs = [(self.variant, self.axis)]
        if self.other is not None:
            refs.append((self.other, self.other_axis))
        return refs

    @property
    def id(self) -> str:
        return re.sub(r"\s+", "", self.text)


def parse_gate(text: Any) -> Gate:
    """Parse one gate expression; ValueError with the reason when it is malformed."""
    if not isinstance(text, str):
        raise ValueError(f"a gate must be a string like 'ft.accuracy > base.accuracy', got {text!r}")
    match = _GATE.match(text)
    if not match:
        raise ValueError(
            f"cannot parse gate '{text}'. Write VARIANT.AXIS OP NUMBER (e.g. 'ft.format >= 0.95') or "
            "VARIANT.AXIS OP VARIANT.AXIS [+|- MARGIN] (e.g. 'ft.retention >= base.retention - 0.02')"
        )
    g = match.groupdict()
    if g["num"] is not None:
        return Gate(text=text.strip(), variant=g["lv"], axis=g["la"], op=g["op"], threshold=float(g["num"]))
    if g["ra"] != g["la"]:
        raise ValueError(f"gate '{text}' compares different axes ({g['la']} vs {g['ra']}); compare one axis")
    if g["lv"] == g["rv"]:
        raise ValueError(f"gate '{text}' compares variant '{g['lv']}' with itself")
    margin = float(g["margin"]) if g["margin"] is not None else 0.0
    direction = 1 if g["op"] in (">", ">=") else -1
    signed = margin if g["sign"] == "+" else -margin
    # The margin must loosen the gate: A >= B - m, or A <= B + m.
    if margin and signed * direction > 0:
        raise ValueError(
            f"gate '{text}' has its margin on the strict side; write 'A.m >= B.m - {margin}' "
            f"(higher is better) or 'A.m <= B.m + {margin}' (lower is better)"
        )
    return Gate(text=text.strip(), variant=g["lv"], axis=g["la"], op=g["op"], other=g["rv"],
                other_axis=g["ra"], margin=margin)


@dataclass
class GateResult:
    """The verdict of one gate with the numbers behind it."""

    gate: str
    suite: str
    kind: str
    verdict: str
    reason: str
    n: int = 0
    estimate: float | None = None
    ci: tuple[float, float] | None = None
    baseline_estimate: float | None = None
    diff: float | None = None
    diff_ci: tuple[float, float] | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    test: str | None = None
    mde: float | None = None
    margin: float | None = None
    threshold: float | None = None
    variant: str | None = None
    baseline: str | None = None
    axis: str | None = None
    op: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for key in ("ci", "diff_ci"):
            if out[key] is not None:
                out[key] = list(out[key])
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}

    @property
    def blocking(self) -> bool:
        return self.verdict in (FAIL, ERROR, NOT_EVALUATED) or (self.verdict == INCONCLUSIVE and self.extra.get("inconclusive_blocks", True))


# -- evaluation over run records -------------------------------------------------------------

def _scores_by_case(records: list[dict[str, Any]], suite: str, variant: str, axis: str) -> dict[str, float]:
    return {
        r["case_id"]: float(r["scores"][axis])
        for r in records
        if r["suite"] == suite and r["variant"] == variant and axis in r.get("scores", {})
    }


def evaluate_threshold(gate: Gate, suite: str, scores: dict[str, float], clusters: dict[str, str],
                       *, mode: str, confidence: float) -> GateResult:
    from harness import stats

    base = dict(gate=gate.text, suite=suite, kind=gate.kind, variant=gate.variant, axis=gate.axis,
                threshold=gate.threshold, n=len(scores), op=gate.op)
    if not scores:
        return GateResult(**base, verdict=ERROR, reason=f"no scored cases for {gate.variant}.{gate.axis}")
    ids = sorted(scores)
    values = [scores[i] for i in ids]
    cluster_keys = stats.usable_clusters([clusters.get(i, i) for i in ids]) if clusters else None
    est = stats.estimate(values, clusters=cluster_keys, confidence=confidence)
    t = gate.threshold
    point, low, high = est.value, est.ci_low, est.ci_high

    def holds(x: float) -> bool:
        return {">=": x >= t, ">": x > t, "<=": x <= t, "<": x < t}[gate.op]

    if mode == "lenient":
        verdict = PASS if holds(point) else FAIL
        reason = f"point estimate {point:.3f} {'meets' if verdict == PASS else 'misses'} {gate.op} {t:g}"
    else:
        sure, never = (low, high) if gate.direction > 0 else (high, low)
        if holds(sure):
            verdict, reason = PASS, f"{confidence:.0%} CI [{low:.3f}, {high:.3f}] clears {gate.op} {t:g}"
        elif not holds(never):
            verdict, reason = FAIL, f"{confidence:.0%} CI [{low:.3f}, {high:.3f}] is entirely on the wrong side of {t:g}"
        else:
            verdict, reason = INCONCLUSIVE, (f"{confidence:.0%} CI [{low:.3f}, {high:.3f}] straddles {t:g}; "
                                             "more cases would decide")
    return GateResult(**base, verdict=verdict, reason=reason, estimate=point, ci=(low, high), test=est.method)


def evaluate_paired(gate: Gate, suite: str, a: dict[str, float], b: dict[str, float], clusters: dict[str, str],
                    *, alpha: float, log=None) -> GateResult:
    """Superiority (`A > B`) or non-inferiority (`A >= B - m`) on the cases both variants have."""
    from harness import stats

    base = dict(gate=gate.text, suite=suite, kind=gate.kind, variant=gate.variant, baseline=gate.other,
                axis=gate.axis, margin=gate.margin, op=gate.op)
    shared = sorted(set(a) & set(b))
    extra: dict[str, Any] = {}
    if len(shared) != len(a) or len(shared) != len(b):
        extra["unpaired_cases"] = {gate.variant: len(set(a) - set(b)), gate.other: len(set(b) - set(a))}
    if len(shared) < 2:
        return GateResult(**base, n=len(shared), verdict=ERROR, extra=extra,
                          reason=f"{len(shared)} paired cases: too few to test")
    va = [a[i] for i in shared]
    vb = [b[i] for i in shared]
    cluster_keys = stats.usable_clusters([clusters.get(i, i) for i in shared]) if clusters else None
    cmp = stats.paired_compare(va, vb, clusters=cluster_keys, confidence=1 - 2 * alpha, alpha=alpha)
    sign = gate.direction
    if gate.kind == "superiority":
        p = cmp.p_greater if sign > 0 else cmp.p_less
        test = cmp.test
    else:
        p = stats.noninferiority_p(va, vb, margin=gate.margin, direction=sign, clusters=cluster_keys)
        test = f"non-inferiority ({cmp.test.split('-')[0]} paired, margin {gate.margin:g})"
    result = GateResult(**base, n=cmp.n, estimate=cmp.estimate_a, baseline_estimate=cmp.estimate_b,
                        diff=cmp.diff, diff_ci=(cmp.ci_low, cmp.ci_high), p_value=p, test=test,
                        mde=cmp.mde, verdict=FAIL, reason="", extra={**extra, "a_only": cmp.a_only, "b_only": cmp.b_only})
    return result


def decide(result: GateResult, *, alpha: float, inconclusive_blocks: bool) -> GateResult:
    """Turn a paired result's (adjusted) p-value, CI and MDE into PASS / FAIL / INCONCLUSIVE."""
    if result.verdict in (ERROR, NOT_EVALUATED) or result.kind == "threshold":
        result.extra["inconclusive_blocks"] = inconclusive_blocks
        return result
    p = result.p_adjusted if result.p_adjusted is not None else result.p_value
    sign = 1 if result.op in (">", ">=") else -1
    low, high = sorted((result.diff_ci[0] * sign, result.diff_ci[1] * sign))
    boundary = -(result.margin or 0.0)
    if result.kind == "superiority":
        claim = f"{result.variant} beats {result.baseline}"
    else:
        claim = f"{result.variant} is at most {result.margin:g} worse than {result.baseline}"
    # Report the raw difference A - B and its CI, as compare and the report show them.
    raw_low, raw_high = result.diff_ci
    numbers = f"diff {result.diff:+.3f}, CI [{raw_low:+.3f}, {raw_high:+.3f}], p={p:.3g}"
    if p < alpha:
        result.verdict = PASS
        result.reason = f"{claim}: {numbers}"
    elif low <= boundary < high and (result.mde or 0) > (result.margin or 0):  # a bound on the margin: not clear of it
        result.verdict = INCONCLUSIVE
        result.reason = (f"cannot tell whether {claim}: {numbers}; the CI straddles {boundary * sign:+.3f} and the minimum "
                         f"detectable effect {result.mde:.3f} exceeds the margin, so more cases are needed")
    elif low >= boundary and result.p_adjusted is not None and result.p_value is not None and result.p_value < alpha:
        # Clear on its own, not after the multiplicity correction: no evidence against the claim either.
        result.verdict = INCONCLUSIVE
        result.reason = (f"cannot tell whether {claim}: {numbers}; significant on its own (raw p={result.p_value:.3g}) "
                         f"but not after Holm's correction over {result.extra.get('holm_family', 'several')} paired gates, "
                         f"so more cases are needed")
    else:
        result.verdict = FAIL
        result.reason = f"not shown that {claim}: {numbers}"
    result.extra["inconclusive_blocks"] = inconclusive_blocks
    return result


def evaluate_run(records: list[dict[str, Any]], manifest: dict[str, Any]) -> list[GateResult]:
    """Every gate of every suite in a run, from the records and manifest alone."""
    from harness import stats

    results: list[GateResult] = []
    for suite_name, info in manifest.get("suites", {}).items():
        ran = set(info.get("variants", []))
        alpha = info.get("alpha", 0.05)
        suite_records = [r for r in records if r["suite"] == suite_name]
        clusters = {r["case_id"]: r["cluster"] for r in suite_records if r.get("cluster") is not None}
        suite_results = []
        for text in info.get("gates", []):
            gate = parse_gate(text)
            skipped = [v for v, _ in gate.refs if v not in ran]
            if skipped:  # the gate's variants were filtered out of this run (or failed to start): no evidence
                suite_results.append(GateResult(
                    gate=gate.text, suite=suite_name, kind=gate.kind, verdict=NOT_EVALUATED,
                    reason=f"not evaluated: {', '.join(dict.fromkeys(skipped))} did not run in this run "
                           "(left out by --variants?); run them to decide this gate.",
                    variant=gate.variant, baseline=gate.other, axis=gate.axis, margin=gate.margin, op=gate.op))
                continue
            a = _scores_by_case(suite_records, suite_name, gate.variant, gate.axis)
            if gate.kind == "threshold":
                result = evaluate_threshold(gate, suite_name, a, clusters, mode=info.get("gate_mode", "strict"),
                                            confidence=1 - 2 * alpha)
            else:
                b = _scores_by_case(suite_records, suite_name, gate.other, gate.axis)
                if not a or not b:
                    missing = gate.variant if not a else gate.other
                    result = GateResult(gate=gate.text, suite=suite_name, kind=gate.kind, verdict=ERROR,
                                        reason=f"no scored cases for {missing}.{gate.axis} (did the variant fail?)",
                                        variant=gate.variant, baseline=gate.other, axis=gate.axis, margin=gate.margin,
                                        op=gate.op)
                else:
                    result = evaluate_paired(gate, suite_name, a, b, clusters, alpha=alpha)
            result.extra["holm"] = info.get("holm", True)
            result.extra["alpha"] = alpha
            result.extra["inconclusive_blocks"] = info.get("inconclusive", "fail") == "fail"
            suite_results.append(result)
        results.extend(suite_results)
    paired = [r for r in results if r.kind != "threshold" and r.p_value is not None and r.extra.get("holm", True)]
    if paired:
        adjusted = stats.holm([r.p_value for r in paired])
        for r, p in zip(paired, adjusted):
            r.p_adjusted = p
            r.extra["holm_family"] = len(paired)
    for r in results:
        decide(r, alpha=r.extra.get("alpha", 0.05), inconclusive_blocks=r.extra.get("inconclusive_blocks", True))
    return results


def overall(results: list[GateResult]) -> str:
    """GO when no gate blocks; NO-GO otherwise."""
    return "NO-GO" if any(r.blocking for r in results) else "GO"
