"""Gate expressions -> verdicts.

Grammar (one expression per gate):
    VARIANT.AXIS OP NUMBER                       threshold on one variant's rate
    VARIANT.AXIS OP VARIANT.AXIS [(+|-) MARGIN]  paired comparison on the same cases
    VARIANT.AXIS ~= VARIANT.AXIS +- MARGIN       equivalence (TOST): |A - B| < MARGIN
and, after a comparison without a margin, an optional `min_effect=NUMBER` (the improvement worth
having; default: the suite's `min_effect`, else DEFAULT_MIN_EFFECT).
OP is one of >=, >, <=, <. Without a margin `A.m > B.m` and `A.m >= B.m` are the same superiority
test; with a margin `A.m >= B.m - 0.02` is non-inferiority (A may be at most 0.02 worse) and
`A.m <= B.m + 0.02` the same for lower-is-better axes.

The three-way rule (docs/statistics.md): every comparison gate is decided by one test and its
1 - 2*alpha interval of A - B (Tango's score interval for pass/fail scores, the cluster-robust t
interval when clusters are declared, the paired BCa bootstrap otherwise), oriented so that "better"
is positive:
    superiority      PASS  lower end > 0 and (Holm-adjusted) p < alpha
                     FAIL  upper end < min_effect: the data rule out an improvement that large
    non-inferiority  PASS  lower end > -margin and (Holm-adjusted) p < alpha
                     FAIL  upper end <= -margin: A is worse than B by more than the margin
    equivalence      PASS  interval inside (-margin, +margin) and (Holm-adjusted) TOST p < alpha
                     FAIL  interval entirely outside [-margin, +margin]
and INCONCLUSIVE otherwise. A model compared with itself never FAILs a non-inferiority or
equivalence gate: its interval always contains 0.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

PASS, FAIL, INCONCLUSIVE, ERROR = "PASS", "FAIL", "INCONCLUSIVE", "ERROR"
DEFAULT_MIN_EFFECT = 0.05
"""The improvement a superiority gate is about when neither the gate nor the suite names one (5 points)."""
MULTIPLICITY = "holm"
"""The run's policy for gates: Holm over the paired gates of each suite (the pytest plugin's family too)."""
NOT_EVALUATED = "NOT EVALUATED"
"""A declared gate whose variants did not run: no evidence, so it blocks (never a silent GO)."""

_REF = r"(?P<{v}>[A-Za-z0-9_][A-Za-z0-9_-]*)\.(?P<{a}>[A-Za-z_][A-Za-z0-9_]*)"
_NUM = r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_GATE = re.compile(
    r"^\s*" + _REF.format(v="lv", a="la") + r"\s*(?P<op>>=|<=|~=|>|<)\s*"
    r"(?:" + _REF.format(v="rv", a="ra") + rf"\s*(?:(?P<sign>\+-|\+/-|±|[-+])\s*(?P<margin>{_NUM}))?"
    rf"(?:\s+min_effect\s*=\s*(?P<min_effect>{_NUM}))?"
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
    """Allowed shortfall, >= 0: A may be this much worse than B and still pass (equivalence: +-)."""
    min_effect: float | None = None
    """Superiority only: the gate's own effect of interest (else the suite's)."""

    @property
    def kind(self) -> str:
        if self.other is None:
            return "threshold"
        if self.op == "~=":
            return "equivalence"
        return "superiority" if self.margin == 0 else "non-inferiority"

    @property
    def direction(self) -> int:
        return 1 if self.op in (">", ">=", "~=") else -1

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
            f"cannot parse gate '{text}'. Write VARIANT.AXIS OP NUMBER (e.g. 'ft.format >= 0.95'), "
            "VARIANT.AXIS OP VARIANT.AXIS [+|- MARGIN] (e.g. 'ft.retention >= base.retention - 0.02') or "
            "VARIANT.AXIS ~= VARIANT.AXIS +- MARGIN (e.g. 'small.accuracy ~= large.accuracy +- 0.02')"
        )
    g = match.groupdict()
    if g["num"] is not None:
        if g["op"] == "~=":
            raise ValueError(f"gate '{text}': '~=' compares two variants (A.m ~= B.m +- 0.02), not a number")
        return Gate(text=text.strip(), variant=g["lv"], axis=g["la"], op=g["op"], threshold=float(g["num"]))
    if g["ra"] != g["la"]:
        raise ValueError(f"gate '{text}' compares different axes ({g['la']} vs {g['ra']}); compare one axis")
    if g["lv"] == g["rv"]:
        raise ValueError(f"gate '{text}' compares variant '{g['lv']}' with itself")
    margin = float(g["margin"]) if g["margin"] is not None else 0.0
    min_effect = float(g["min_effect"]) if g["min_effect"] is not None else None
    base = dict(text=text.strip(), variant=g["lv"], axis=g["la"], op=g["op"], other=g["rv"], other_axis=g["ra"])
    if g["op"] == "~=":
        if g["sign"] not in ("+-", "+/-", "±") or not margin > 0:
            raise ValueError(f"gate '{text}': an equivalence gate needs a positive margin, "
                             f"e.g. '{g['lv']}.{g['la']} ~= {g['rv']}.{g['ra']} +- 0.02'")
        if min_effect is not None:
            raise ValueError(f"gate '{text}': min_effect applies to superiority gates (A.m > B.m), not equivalence")
        return Gate(**base, margin=margin)
    if g["sign"] in ("+-", "+/-", "±"):
        raise ValueError(f"gate '{text}': '+-' belongs to equivalence gates; write "
                         f"'{g['lv']}.{g['la']} ~= {g['rv']}.{g['ra']} +- {g['margin']}'")
    direction = 1 if g["op"] in (">", ">=") else -1
    signed = margin if g["sign"] == "+" else -margin
    # The margin must loosen the gate: A >= B - m, or A <= B + m.
    if margin and signed * direction > 0:
        raise ValueError(
            f"gate '{text}' has its margin on the strict side; write 'A.m >= B.m - {margin}' "
            f"(higher is better) or 'A.m <= B.m + {margin}' (lower is better)"
        )
    if min_effect is not None and margin:
        raise ValueError(f"gate '{text}': min_effect applies to superiority gates (no margin); "
                         "a non-inferiority gate is decided by its margin")
    if min_effect is not None and not min_effect > 0:
        raise ValueError(f"gate '{text}': min_effect must be positive")
    return Gate(**base, margin=margin, min_effect=min_effect)


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


def _cluster_keys(ids: list[str], clusters: dict[str, str]) -> list[Any] | None:
    """The cases' cluster keys when the suite declares clusters for them (a case without one is its own)."""
    if not clusters or not any(i in clusters for i in ids):
        return None
    return [clusters.get(i, i) for i in ids]


def _too_few_clusters(keys: list[Any] | None) -> str | None:
    from harness.analysis import stats
    if keys is None:
        return None
    g = len(set(keys))
    if g >= stats.MIN_CLUSTERS:
        return None
    return (f"only {g} cluster(s) among these cases: cluster-robust intervals are not trustworthy with fewer "
            f"than {stats.MIN_CLUSTERS} clusters, so this gate cannot be decided (the numbers shown treat the "
            f"cases as independent, for information only); add cases from more clusters or drop the cluster key")


def evaluate_threshold(gate: Gate, suite: str, scores: dict[str, float], clusters: dict[str, str],
                       *, mode: str, confidence: float) -> GateResult:
    """A rate against a number: exact one-sided bounds (Clopper-Pearson; Korn-Graubard when clustered)."""
    from harness.analysis import stats
    base = dict(gate=gate.text, suite=suite, kind=gate.kind, variant=gate.variant, axis=gate.axis,
                threshold=gate.threshold, n=len(scores), op=gate.op)
    if not scores:
        return GateResult(**base, verdict=ERROR, reason=f"no scored cases for {gate.variant}.{gate.axis}")
    if len(scores) < 2:
        return GateResult(**base, verdict=ERROR, reason=f"1 scored case for {gate.variant}.{gate.axis}: too few to test")
    ids = sorted(scores)
    values = [scores[i] for i in ids]
    keys = _cluster_keys(ids, clusters)
    refused = _too_few_clusters(keys)
    est = stats.threshold_estimate(values, clusters=None if refused else keys, confidence=confidence)
    t = gate.threshold
    point, low, high = est.value, est.ci_low, est.ci_high
    extra: dict[str, Any] = {"confidence": confidence}
    if keys is not None:
        extra["clusters"] = len(set(keys))

    def holds(x: float) -> bool:
        return {">=": x >= t, ">": x > t, "<=": x <= t, "<": x < t}[gate.op]

    interval = f"{confidence:.0%} CI [{low:.3f}, {high:.3f}] ({est.method})"
    if mode == "lenient":
        verdict = PASS if holds(point) else FAIL
        reason = f"point estimate {point:.3f} {'meets' if verdict == PASS else 'misses'} {gate.op} {t:g} (lenient mode)"
    elif refused:
        verdict, reason = INCONCLUSIVE, f"{refused}: {interval}"
    else:
        sure, never = (low, high) if gate.direction > 0 else (high, low)
        if holds(sure):
            verdict, reason = PASS, f"{interval} clears {gate.op} {t:g}"
        elif not holds(never):
            verdict, reason = FAIL, f"{interval} is entirely on the wrong side of {t:g}"
        else:
            verdict, reason = INCONCLUSIVE, f"{interval} straddles {t:g}; more cases would decide"
    return GateResult(**base, verdict=verdict, reason=reason, estimate=point, ci=(low, high), test=est.method,
                      extra=extra)


def evaluate_paired(gate: Gate, suite: str, a: dict[str, float], b: dict[str, float], clusters: dict[str, str],
                    *, alpha: float, min_effect: float = DEFAULT_MIN_EFFECT, log=None) -> GateResult:
    """Superiority, non-inferiority or equivalence on the cases both variants have: the numbers
    (difference, its 1 - 2*alpha interval, the one-sided p of the same test); `decide` gives the verdict."""
    from harness.analysis import stats
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
    keys = _cluster_keys(shared, clusters)
    refused = _too_few_clusters(keys)
    if refused:
        extra["refused"] = refused
    if keys is not None:
        extra["clusters"] = len(set(keys))
    use_keys = None if refused else keys
    s = gate.direction
    # Orient so that "better" is positive: d = s * (A - B).
    xa, xb = (va, vb) if s > 0 else (vb, va)
    if gate.kind == "equivalence":
        nulls = (-gate.margin, gate.margin)
    else:
        nulls = (-gate.margin,)
    confidence = 1 - 2 * alpha
    t = stats.paired_test(xa, xb, nulls=nulls, confidence=confidence, clusters=use_keys)
    if gate.kind == "equivalence":
        p = max(t.p(-gate.margin, "greater"), t.p(gate.margin, "less"))
    else:
        p = t.p(-gate.margin, "greater")
    lo, hi = sorted((s * t.ci_low, s * t.ci_high))
    mde = stats.paired_mde(va, vb, clusters=use_keys, alpha=min(2 * alpha, 0.999))
    effect = (gate.min_effect if gate.min_effect is not None else min_effect) if gate.kind == "superiority" else None
    extra.update(a_only=t.a_only if s > 0 else t.b_only, b_only=t.b_only if s > 0 else t.a_only,
                 confidence=confidence, oriented_ci=[t.ci_low, t.ci_high], alpha=alpha)
    if effect is not None:
        extra["min_effect"] = effect
    return GateResult(**base, n=t.n, estimate=float(sum(va) / len(va)), baseline_estimate=float(sum(vb) / len(vb)),
                      diff=s * t.diff, diff_ci=(lo, hi), p_value=p, test=t.method, mde=mde, verdict=FAIL, reason="",
                      extra=extra)


def _p_text(result: GateResult) -> str:
    if result.p_adjusted is None:
        return f"p={result.p_value:.3g} (one-sided, not adjusted: holm is off)"
    family = result.extra.get("holm_family", 1)
    return (f"p={result.p_value:.3g} one-sided, p_adj={result.p_adjusted:.3g} "
            f"(Holm over {family} paired gate(s) of suite {result.suite})")


def decide(result: GateResult, *, alpha: float, inconclusive_blocks: bool) -> GateResult:
    """PASS / FAIL / INCONCLUSIVE from one interval and the (adjusted) p of the test it inverts."""
    result.extra["inconclusive_blocks"] = inconclusive_blocks
    if result.verdict in (ERROR, NOT_EVALUATED) or result.kind == "threshold":
        return result
    s = -1 if result.op in ("<", "<=") else 1
    oriented = result.extra.get("oriented_ci")
    low, high = oriented if oriented else sorted((s * result.diff_ci[0], s * result.diff_ci[1]))
    m = result.margin or 0.0
    p = result.p_adjusted if result.p_adjusted is not None else result.p_value
    conf = result.extra.get("confidence", 1 - 2 * alpha)
    raw_low, raw_high = result.diff_ci
    numbers = (f"diff {result.diff:+.3f} ({result.variant} - {result.baseline}), {conf:.0%} CI "
               f"[{raw_low:+.3f}, {raw_high:+.3f}] ({result.test}), {_p_text(result)}")
    v, bl = result.variant, result.baseline
    better, worse = ("higher", "lower") if s > 0 else ("lower", "higher")
    if result.kind == "superiority":
        effect = result.extra.get("min_effect", DEFAULT_MIN_EFFECT)
        claim = f"{v} beats {bl}"
        clears = low > 0
        fails = high < effect
        fail_text = (f"the CI rules out an improvement of {effect:g} (the effect of interest, min_effect): "
                     f"{v} is not {effect:g} {better} than {bl}")
        undecided = (f"the CI reaches both 0 and the effect of interest {effect:g}: the data cannot tell "
                     f"whether {v} beats {bl}; more cases would decide (MDE {result.mde:.3f})")
    elif result.kind == "equivalence":
        claim = f"{v} is within +-{m:g} of {bl}"
        clears = -m < low and high < m
        fails = high <= -m or low >= m
        fail_text = f"the CI lies entirely outside +-{m:g}: {v} differs from {bl} by more than the margin"
        undecided = (f"the CI is not inside +-{m:g} nor outside it: the data cannot tell; more cases would decide "
                     f"(MDE {result.mde:.3f})")
    else:  # non-inferiority
        claim = f"{v} is at most {m:g} worse than {bl}"
        clears = low > -m
        fails = high <= -m
        fail_text = f"the CI lies entirely beyond the margin: {v} is more than {m:g} {worse} than {bl}"
        undecided = (f"the CI straddles the margin {-s * m:+g}: the data cannot tell; more cases would decide "
                     f"(MDE {result.mde:.3f})")
    refused = result.extra.get("refused")
    if refused:
        result.verdict, result.reason = INCONCLUSIVE, f"{refused}: {numbers}"
    elif clears and p < alpha:
        result.verdict, result.reason = PASS, f"{claim}: {numbers}"
    elif clears and result.p_adjusted is not None and result.p_value is not None and result.p_value < alpha:
        # Clear on its own, not after the multiplicity correction: no evidence against the claim either.
        result.verdict = INCONCLUSIVE
        result.reason = (f"cannot tell whether {claim}: {numbers}; its own CI clears the boundary but not after "
                         f"Holm's correction over {result.extra.get('holm_family', 'several')} paired gates, "
                         f"so more cases are needed")
    elif clears:  # a bootstrap interval that clears by a hair while its inverted p sits at alpha
        result.verdict = INCONCLUSIVE
        result.reason = (f"cannot tell whether {claim}: {numbers}; the CI clears the boundary only by the "
                         f"bootstrap's resolution (p is not below {alpha:g}); more cases would decide")
    elif fails:
        result.verdict, result.reason = FAIL, f"not shown that {claim}: {numbers}; {fail_text}"
    else:
        result.verdict, result.reason = INCONCLUSIVE, f"cannot tell whether {claim}: {numbers}; {undecided}"
    return result


def evaluate_run(records: list[dict[str, Any]], manifest: dict[str, Any]) -> list[GateResult]:
    """Every gate of every suite in a run, from the records and manifest alone. Paired gates are
    Holm-adjusted per suite (the family the pytest plugin sees too)."""
    from harness.analysis import stats
    results: list[GateResult] = []
    for suite_name, info in manifest.get("suites", {}).items():
        ran = set(info.get("variants", []))
        alpha = info.get("alpha", 0.05)
        min_effect = info.get("min_effect", DEFAULT_MIN_EFFECT)
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
                    result = evaluate_paired(gate, suite_name, a, b, clusters, alpha=alpha, min_effect=min_effect)
            result.extra["holm"] = info.get("holm", True)
            result.extra["alpha"] = alpha
            result.extra["inconclusive_blocks"] = info.get("inconclusive", "fail") == "fail"
            suite_results.append(result)
        paired = [r for r in suite_results
                  if r.kind != "threshold" and r.p_value is not None and r.extra.get("holm", True)]
        if paired:
            adjusted = stats.holm([r.p_value for r in paired])
            for r, p in zip(paired, adjusted, strict=True):
                r.p_adjusted = p
                r.extra["holm_family"] = len(paired)
                r.extra["p_adjustment"] = MULTIPLICITY
        results.extend(suite_results)
    for r in results:
        decide(r, alpha=r.extra.get("alpha", 0.05), inconclusive_blocks=r.extra.get("inconclusive_blocks", True))
    return results


def overall(results: list[GateResult]) -> str:
    """GO when no gate blocks; NO-GO otherwise."""
    return "NO-GO" if any(r.blocking for r in results) else "GO"
