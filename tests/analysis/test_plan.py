"""`harness plan`: exact power of the gates' own tests, checked by brute-force enumeration (issue 18)."""

import json

import pytest
from scipy import stats as sps
from typer.testing import CliRunner

from harness.analysis import stats
from harness.cli import app
from harness.engine.records import RunWriter


def _brute_power_paired(n, p10, p01, kind, margin=0.0, alpha=0.05, two_sided=False):
    """Sum the multinomial over every table; PASS read off the printed Tango interval."""
    total = 0.0
    conf = 1 - (alpha if two_sided else 2 * alpha)
    for b in range(n + 1):
        for c in range(n + 1 - b):
            prob = sps.multinomial.pmf([b, c, n - b - c], n, [p10, p01, 1 - p10 - p01])
            if prob < 1e-13:
                continue
            lo, hi = stats.tango_interval(b, c, n, conf)
            if kind == "superiority":
                ok = lo > 0 or (two_sided and hi < 0)
            elif kind == "non-inferiority":
                ok = lo > -margin
            else:
                ok = -margin < lo and hi < margin
            total += prob * ok
    return total


@pytest.mark.parametrize("kind,margin,p10,p01,two_sided", [
    ("superiority", 0.0, 0.15, 0.05, False), ("superiority", 0.0, 0.15, 0.05, True),
    ("superiority", 0.0, 0.1, 0.1, False), ("non-inferiority", 0.05, 0.06, 0.06, False),
    ("equivalence", 0.1, 0.05, 0.05, False)])
def test_paired_power_equals_enumeration_of_the_printed_interval(kind, margin, p10, p01, two_sided):
    n = 60
    exact = stats.power_paired_binary(n, p10, p01, kind=kind, margin=margin, two_sided=two_sided)
    assert exact == pytest.approx(_brute_power_paired(n, p10, p01, kind, margin, two_sided=two_sided), abs=1e-9)


def test_threshold_power_equals_enumeration():
    for n, rate, t in [(40, 0.97, 0.9), (100, 0.98, 0.95), (52, 0.95, 0.95)]:
        brute = sum(sps.binom.pmf(k, n, rate) for k in range(n + 1)
                    if stats.clopper_pearson(k, n, 0.9)[0] >= t)
        assert stats.power_threshold(n, rate, t) == pytest.approx(brute, abs=1e-12)
    assert stats.power_threshold(52, 0.95, 0.95) <= 0.05  # at the boundary PASS is an error: size <= alpha


@pytest.mark.parametrize("kind,kw", [
    ("superiority", dict(effect=0.1, discordance=0.3)),
    ("superiority", dict(effect=0.1, discordance=0.3, two_sided=True)),
    ("non-inferiority", dict(effect=0.0, discordance=0.1, margin=0.05)),
    ("equivalence", dict(effect=0.0, discordance=0.1, margin=0.08))])
def test_required_n_is_the_smallest_n_reaching_the_power(kind, kw):
    n = stats.required_n_gate_binary(kind, **kw)
    delta, psi = kw["effect"], kw["discordance"]
    p10, p01 = (psi + delta) / 2, (psi - delta) / 2
    args = dict(kind=kind, margin=kw.get("margin", 0.0), two_sided=kw.get("two_sided", False))
    assert stats.power_paired_binary(n, p10, p01, **args) >= 0.8
    for smaller in range(max(2, n - 40), n):
        assert stats.power_paired_binary(smaller, p10, p01, **args) < 0.8


def test_required_n_threshold_is_exact_and_minimal():
    n = stats.required_n_threshold(0.98, 0.95)
    assert stats.power_threshold(n, 0.98, 0.95) >= 0.8
    # exact power is a sawtooth in n: no n within the 30% below reaches the power
    assert all(stats.power_threshold(m, 0.98, 0.95) < 0.8 for m in range(int(n * 0.7), n))


def test_plan_command_kinds_and_errors():
    runner = CliRunner()
    out = runner.invoke(app, ["plan", "--effect", "0.1", "--discordance", "0.3"])
    n = stats.required_n_gate_binary("superiority", effect=0.1, discordance=0.3)
    assert out.exit_code == 0 and out.stdout.startswith(f"{n} cases: a superiority gate")
    out = runner.invoke(app, ["plan", "--kind", "threshold", "--threshold", "0.95", "--rate", "0.98"])
    assert out.exit_code == 0 and out.stdout.startswith(f"{stats.required_n_threshold(0.98, 0.95)} cases")
    out = runner.invoke(app, ["plan", "--kind", "equivalence", "--margin", "0.05", "--sd", "0.2"])
    assert out.exit_code == 0 and "an equivalence gate" in out.stdout
    for args, needle in [(["--kind", "threshold", "--rate", "0.9"], "needs --threshold"),
                         (["--kind", "non-inferiority", "--discordance", "0.1"], "needs --margin"),
                         (["--kind", "bogus"], "--kind must be one of"),
                         (["--effect", "0.3", "--discordance", "0.1"], "must not exceed the discordance")]:
        out = runner.invoke(app, ["plan", *args])
        assert out.exit_code == 2 and needle in out.output, (args, out.output)


def test_plan_from_an_earlier_run(tmp_path):
    n = 80
    base = [float(i % 2 == 0) for i in range(n)]
    ft = [1.0 if (i % 10 == 1 or b) else 0.0 for i, b in enumerate(base)]  # 8 gains: discordance 0.1
    records = [{"suite": "s", "variant": v, "case_id": f"c{i}", "scores": {"accuracy": x}}
               for v, values in {"base": base, "ft": ft}.items() for i, x in enumerate(values)]
    manifest = {"status": "complete", "suites": {"s": {
        "variants": ["base", "ft"], "baseline": "base", "alpha": 0.05, "min_effect": 0.05,
        "gates": ["ft.accuracy > base.accuracy", "ft.accuracy >= base.accuracy - 0.02", "ft.accuracy >= 0.5"]}}}
    writer = RunWriter(tmp_path / "run")
    writer.write_records(records)
    writer.write_manifest(manifest)
    writer.close()
    out = CliRunner().invoke(app, ["plan", "--from", str(tmp_path / "run")])
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    sup = stats.required_n_gate_binary("superiority", effect=0.05, discordance=0.1)
    ni = stats.required_n_gate_binary("non-inferiority", effect=0.0, discordance=0.1, margin=0.02)
    thr = stats.required_n_threshold(sum(ft) / n, 0.5)
    assert lines[0].startswith(f"s: ft.accuracy > base.accuracy: {sup} cases")
    assert lines[1].startswith(f"s: ft.accuracy >= base.accuracy - 0.02: {ni} cases")
    assert lines[2].startswith(f"s: ft.accuracy >= 0.5: {thr} cases")
    json.dumps(lines)
