"""The pytest plugin (`pytest suites/` as model CI), driven through `pytester` with the fake backend.

Every project below has two suites over disjoint prompts and three fake variants that log each
prompt they generate to their own file, so "generated nothing" and "generated once" are checkable.
"""

from __future__ import annotations

import json
import sqlite3
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import harness.analysis.gates  # noqa: F401
import harness.analysis.stats  # noqa: F401  (imported before pytester snapshots sys.modules, so in-process runs reuse scipy)
import harness.engine.runner  # noqa: F401

pytest_plugins = ["pytester"]

N_CASES = 20
VARIANTS = ("base", "good", "half")

ALPHA = """
    suite: alpha
    data: {path: data/alpha.jsonl}
    variants: [base, good, half]
    scorers:
      accuracy: exact_match
    marks: [slow]
    gates:
      - good.accuracy > base.accuracy
      - base.accuracy > good.accuracy
      - half.accuracy >= 0.5
"""
BETA = """
    suite: beta
    data: {path: data/beta.jsonl}
    variants: [base, good, half]
    scorers:
      accuracy: exact_match
    gates:
      - good.accuracy >= 0.8
      - good.accuracy > half.accuracy
"""
ALPHA_IDS = ["run", "good.accuracy>base.accuracy", "base.accuracy>good.accuracy", "half.accuracy>=0.5"]
BETA_IDS = ["run", "good.accuracy>=0.8", "good.accuracy>half.accuracy"]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")


def _cases(prefix: str) -> str:
    # The reference repeats the prompt, so `echo` answers right and anything else wrong.
    rows = [{"id": f"{prefix}{i}", "messages": [{"role": "user", "content": f"{prefix}-{i}"},
                                                 {"role": "assistant", "content": f"{prefix}-{i}"}]}
            for i in range(N_CASES)]
    return "".join(json.dumps(r) + "\n" for r in rows)


class Project:
    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester
        self.path = pytester.path
        self.cache = self.path / "cache"

    # Hypothesis's own plugin imports hypothesis in every terminal summary (seconds per run here).
    # In-process runs re-load the already-imported plugin, which pytest reports as an assertion-rewrite
    # warning naming site-packages; it says nothing about the plugin, so it is silenced.
    QUIET = ("-p", "no:hypothesispytest", "-W", "ignore::pytest.PytestAssertRewriteWarning")

    def run(self, *args: str) -> pytest.RunResult:
        return self.pytester.runpytest(*args, *self.QUIET)

    def run_subprocess(self, *args: str) -> pytest.RunResult:
        return self.pytester.runpytest_subprocess(*args, *self.QUIET)

    def generated(self, variant: str) -> list[str]:
        """Prompts the fake backend generated for `variant` (one line each)."""
        log = self.path / f"gen-{variant}.log"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def all_generated(self) -> dict[str, list[str]]:
        return {v: self.generated(v) for v in VARIANTS}


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Project:
    root = pytester.path
    # rootdir = the project, so ids read suites/x.yaml::...; the project opts in to collecting suites/
    pytester.makeini("[pytest]\nharness_suites = suites\n")
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(root / "cache"))
    log = {v: json.dumps(str(root / f"gen-{v}.log")) for v in VARIANTS}
    _write(root / "models.toml", f"""
        [defaults]
        backend = "fake"
        model = "fake-model"

        [variants.base]
        fake = {{default = "no idea", log = {log['base']}}}

        [variants.good]
        fake = {{echo = true, log = {log['good']}}}

        [variants.half]
        fake = {{echo = true, responses = [{{match = "-1", output = "wrong"}}], log = {log['half']}}}
    """)
    (root / "suites" / "data").mkdir(parents=True)
    (root / "suites" / "data" / "alpha.jsonl").write_text(_cases("alpha"))
    (root / "suites" / "data" / "beta.jsonl").write_text(_cases("beta"))
    _write(root / "suites" / "alpha.yaml", ALPHA)
    _write(root / "suites" / "beta.yaml", BETA)
    return Project(pytester)


def _lines_in_order(lines: list[str], expected: list[str]) -> None:
    """Each expected text is a substring of a later line than the previous one."""
    position = 0
    for text in expected:
        for offset, line in enumerate(lines[position:]):
            if text in line:
                position += offset + 1
                break
        else:
            raise AssertionError(f"{text!r} not found after line {position}:\n" + "\n".join(lines))


def _alpha_prompts() -> list[str]:
    return [f"alpha-{i}" for i in range(N_CASES)]


def _beta_prompts() -> list[str]:
    return [f"beta-{i}" for i in range(N_CASES)]


# -- collection -------------------------------------------------------------------------------------

def test_collects_every_suite_and_only_suites_with_gate_ids(project: Project) -> None:
    root = project.path
    _write(root / "suites" / "schemas" / "helper.yaml", "type: object\n")        # helper below suites/: left alone
    _write(root / "config" / "settings.yaml", "scorers_note: not a suite\n")   # other YAML: left alone
    _write(root / "nested" / "gamma.yaml", BETA.replace("suite: beta", "suite: gamma")
           .replace("data/beta.jsonl", "../suites/data/beta.jsonl"))       # a suite outside harness_suites
    in_folders = [f"suites/alpha.yaml::{i}" for i in ALPHA_IDS] + [f"suites/beta.yaml::{i}" for i in BETA_IDS]
    result = project.run("--collect-only", "-q", "suites", "config", "nested")
    assert [line for line in result.outlines if "::" in line] == in_folders   # only inside harness_suites
    assert result.ret == 0
    # --harness: suites wherever pytest looks (top-level keys), helpers and other YAML still left alone
    result = project.run("--collect-only", "-q", "--harness", "suites", "config", "nested")
    ids = [line for line in result.outlines if "::" in line]
    assert ids == in_folders + [f"nested/gamma.yaml::{i}" for i in BETA_IDS]
    assert result.ret == 0
    assert project.all_generated() == {v: [] for v in VARIANTS}  # collection runs nothing


UNRELATED_TEST = """
    def test_own():
        assert 1 + 1 == 2
"""


def _collected(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if "::" in line]


def test_a_project_that_did_not_opt_in_is_untouched(project: Project) -> None:
    """The package is installed (the plugin is registered), the project has a `suites/` folder of
    YAML, some of it harness suites and some of it unrelated (a CI tool's own suite format that
    would not even load as a harness suite): without the ini option or --harness none of it is
    collected, and the project's own tests run as before."""
    pytester = project.pytester
    pytester.makeini("[pytest]\n")                                      # no harness_suites
    _write(project.path / "suites" / "nightly.yaml", "suite: nightly\nsteps: [build, deploy]\n")
    _write(project.path / "test_own.py", UNRELATED_TEST)
    assert "harness" in {name for name, _ in pytester.parseconfig().pluginmanager.list_name_plugin()}
    everything = project.run("--collect-only", "-q")
    assert _collected(everything) == ["test_own.py::test_own"] and everything.ret == 0
    folder = project.run("--collect-only", "-q", "suites")
    assert _collected(folder) == [] and folder.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result = project.run()
    result.assert_outcomes(passed=1)
    assert result.ret == 0
    assert project.all_generated() == {v: [] for v in VARIANTS}


def test_a_suite_named_without_opt_in_says_how_to_opt_in(project: Project) -> None:
    project.pytester.makeini("[pytest]\n")
    result = project.run("suites/alpha.yaml")
    out = result.stdout.str()
    assert "suites/alpha.yaml: suite YAML is collected only on request." in out
    assert "Pass --harness, or list its folder in the pytest ini option harness_suites" in out
    assert "Traceback" not in out
    result.assert_outcomes(errors=1)


@pytest.mark.parametrize("opt_in", ["ini", "pyproject", "flag"])
def test_the_ini_option_or_the_flag_turns_collection_on(project: Project, opt_in: str) -> None:
    pytester = project.pytester
    (project.path / "tox.ini").unlink()
    if opt_in == "ini":
        pytester.makeini("[pytest]\nharness_suites = suites\n")
    elif opt_in == "pyproject":
        pytester.makefile(".toml", pyproject='[tool.pytest.ini_options]\nharness_suites = ["suites"]\n')
    else:
        pytester.makeini("[pytest]\n")
    _write(project.path / "test_own.py", UNRELATED_TEST)
    flag = ["--harness"] if opt_in == "flag" else []
    result = project.run("--collect-only", "-q", *flag)
    expected = ([f"suites/alpha.yaml::{i}" for i in ALPHA_IDS] + [f"suites/beta.yaml::{i}" for i in BETA_IDS]
                + ["test_own.py::test_own"])
    assert sorted(_collected(result)) == sorted(expected), result.stdout.str()
    ran = project.run(*flag, "suites/beta.yaml")
    ran.assert_outcomes(passed=3)


def test_harness_suites_lists_folders_relative_to_the_ini_file(project: Project,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (project.path / "tox.ini").unlink()
    project.pytester.makeini("[pytest]\nharness_suites =\n    evals\n    more/evals\n")
    gamma = BETA.replace("suite: beta", "suite: gamma").replace("data/beta.jsonl", "../suites/data/beta.jsonl")
    _write(project.path / "evals" / "gamma.yaml", gamma)
    _write(project.path / "more" / "evals" / "delta.yaml",
           gamma.replace("suite: gamma", "suite: delta").replace("../suites", "../../suites"))
    # directly in a listed folder, so taken for a suite (as in suites/ before): it must load
    _write(project.path / "evals" / "notes.yaml", "title: not a suite\n")
    monkeypatch.chdir(project.path / "suites")        # invoked from elsewhere: folders are the ini file's
    result = project.run("--collect-only", "-q", "..")
    ids = _collected(result)
    assert ids == ([f"evals/gamma.yaml::{i}" for i in BETA_IDS]
                   + [f"more/evals/delta.yaml::{i}" for i in BETA_IDS]), result.stdout.str()  # not suites/
    result.stdout.fnmatch_lines(["*ERROR collecting evals/notes.yaml*"])
    assert result.ret == pytest.ExitCode.INTERRUPTED   # the collection error stops the session


def test_collection_imports_nothing_heavy(project: Project) -> None:
    project.pytester.makeconftest("""
        import sys

        HEAVY = ("torch", "transformers", "vllm", "numpy", "scipy", "harness.engine.runner", "harness.analysis.stats")

        def pytest_collection_finish(session):
            loaded = [m for m in HEAVY if m in sys.modules]
            assert not loaded, f"collection imported {loaded}"
            print("checked-imports", len(session.items))
    """)
    result = project.run_subprocess("--collect-only", "-q", "-s", "suites")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(["checked-imports 7"])


def test_bad_suite_is_a_clear_collection_error(project: Project) -> None:
    _write(project.path / "suites" / "typo.yaml", ALPHA.replace("scorers:", "scorer:"))
    _write(project.path / "suites" / "broken.yaml", "suite: broken\ngates: [\n")
    result = project.run("suites")
    out = result.stdout.str()
    assert "suites/typo.yaml:4, key 'scorer': unknown key. Did you mean 'scorers'?" in out
    assert "broken.yaml:3: invalid YAML" in out
    assert "Traceback" not in out and "site-packages" not in out
    result.assert_outcomes(errors=2)


def test_suite_that_cannot_run_fails_its_items_with_the_harness_message(project: Project) -> None:
    models = project.path / "models.toml"
    models.write_text(models.read_text().replace('default = "no idea"', 'defalt = "no idea"'))
    result = project.run("suites/beta.yaml::run", "suites/alpha.yaml")
    out = result.stdout.str()
    # base cannot load: the suite item says why in one line, gates that need base are ERROR ...
    assert "suite 'alpha' (suites/alpha.yaml): variant 'base': unknown fake backend option(s): defalt." in out
    assert "gate ERROR: good.accuracy > base.accuracy" in out
    assert "Traceback" not in out and "harness/engine/runner.py" not in out
    # ... while beta's run (which needs no gate's variant but runs all) fails alike, nothing else.
    result.assert_outcomes(failed=5)
    models.unlink()
    missing = project.run("suites/beta.yaml")
    missing.stdout.fnmatch_lines(["*could not run: no models.toml at the rootdir*--harness-models PATH.*"])
    missing.assert_outcomes(failed=3)


# -- running --------------------------------------------------------------------------------------

def test_outcomes_messages_and_summary_table(project: Project) -> None:
    result = project.run("suites", "-rfP")
    # alpha: run, good>base pass; base>good fails; half>=0.5 is INCONCLUSIVE and blocks (default).
    result.assert_outcomes(passed=5, failed=2)
    out = result.stdout.str()
    failed = {line.split(" - ")[0] for line in result.outlines if line.startswith("FAILED ")}
    assert failed == {"FAILED suites/alpha.yaml::base.accuracy>good.accuracy", "FAILED suites/alpha.yaml::half.accuracy>=0.5"}
    # The failure message: gate, estimates with CIs, difference with CI, p (adjusted), MDE, flipped cases.
    _lines_in_order(result.outlines, [
        "gate FAIL: base.accuracy > good.accuracy   (suite 'alpha', suites/alpha.yaml:9)",
        "verdict: FAIL: not shown that base beats good",
        "  base.accuracy  0.000  90% CI [0.000, 0.119]  n=20",
        "  good.accuracy  1.000  90% CI [0.881, 1.000]",
        "  difference    -1.000  90% CI [-1.000, -0.762]  (base - good)",
        "  p-value: 1 one-sided (tango-score); Holm-adjusted over 2 paired gate(s) of this suite: 1; alpha 0.05",
        "  MDE: 0.",
        "  discordant cases: base only 0, good only 20",
        "flipped cases: base scores lower than good on accuracy: 20 of 20, worst first (showing 5; -vv shows more)",
        "  [alpha0] accuracy: good 1.00, base 0.00",
        "    input      alpha-0",
        "    good       alpha-0",
        "    base       no idea",
        "    reference  alpha-0",
        "    why        exact_match: ",
        "  [alpha1] accuracy: good 1.00, base 0.00",
    ])
    _lines_in_order(result.outlines, [
        "gate INCONCLUSIVE: half.accuracy >= 0.5",
        "verdict: INCONCLUSIVE: 90% CI [0.",
        "INCONCLUSIVE blocks because the suite has `inconclusive: fail`",
        "cases where half.accuracy is below 0.5: 11 of 20",
        "  [alpha1] accuracy: half 0.00",
    ])
    # Passing gates carry their numbers in report.sections (-rP shows them).
    _lines_in_order(result.outlines, ["Captured harness gate call", "verdict: PASS: good beats half"])
    # One table of every gate closes the terminal summary.
    _lines_in_order(result.outlines, [
        "= harness gates =",
        "verdict",
        "FAIL          suites/alpha.yaml::base.accuracy>good.accuracy  0.000 [0.000, 0.119]  1.000  -1.000 [-1.000, -0.762]",
        "INCONCLUSIVE  suites/alpha.yaml::half.accuracy>=0.5",
        "5 gate(s): 1 FAIL, 1 INCONCLUSIVE, 3 PASS; 2 blocking",
    ])
    assert "Traceback" not in out
    # Each (suite, variant) generated once; beta's gates never name base, so base skipped beta.
    generated = project.all_generated()
    assert sorted(generated["base"]) == sorted(_alpha_prompts())
    assert sorted(generated["good"]) == sorted(generated["half"]) == sorted(_alpha_prompts() + _beta_prompts())
    # A second session reads everything from the generation cache.
    again = project.run("suites")
    again.assert_outcomes(passed=5, failed=2)
    assert project.all_generated() == generated


def test_inconclusive_passes_when_the_suite_says_so(project: Project) -> None:
    alpha = project.path / "suites" / "alpha.yaml"
    alpha.write_text(alpha.read_text() + "inconclusive: pass\n")
    result = project.run("suites/alpha.yaml", "-k", "half")
    result.assert_outcomes(passed=1, deselected=3)
    _lines_in_order(result.outlines, ["INCONCLUSIVE  suites/alpha.yaml::half.accuracy>=0.5", "; 0 blocking"])


def test_deselected_suites_and_unneeded_variants_generate_nothing(project: Project) -> None:
    result = project.run("suites", "-k", "beta and half")
    result.assert_outcomes(passed=1, deselected=6)
    # Only beta ran, and only for the two variants its one selected gate names.
    assert project.all_generated() == {"base": [], "good": _beta_prompts(), "half": _beta_prompts()}


def test_node_id_selects_one_gate(project: Project) -> None:
    result = project.run("suites/alpha.yaml::good.accuracy>base.accuracy")
    result.assert_outcomes(passed=1)
    assert project.all_generated() == {"base": _alpha_prompts(), "good": _alpha_prompts(), "half": []}


def test_suite_marks_select_with_m(project: Project) -> None:
    result = project.run("suites", "-m", "slow", "--strict-markers",
                                        "-W", "error::pytest.PytestUnknownMarkWarning")
    result.assert_outcomes(passed=2, failed=2, deselected=3)
    assert all(not any(p.startswith("beta") for p in prompts) for prompts in project.all_generated().values())
    result = project.run("suites", "-m", "not slow", "--strict-markers")
    result.assert_outcomes(passed=3, deselected=4)


def test_options_limit_variants_report_and_baseline(project: Project) -> None:
    project.pytester.makeconftest("""
        from harness.pytest_plugin import baseline_run

        def pytest_collection_finish(session):
            print("baseline:", baseline_run(session.config))
    """)
    report = project.path / "reports"
    result = project.run("suites", "-s", "--harness-limit", "3", "--harness-variants", "good,half",
                                        "--harness-report", str(report), "--harness-baseline", "runs/blessed")
    # Gates naming base fail as NOT EVALUATED (no evidence, no pass: issue 19; they were skipped before);
    # with 3 cases nothing reaches significance or the 0.8 bar.
    result.assert_outcomes(passed=2, failed=5)
    result.stdout.fnmatch_lines(["*NOT EVALUATED: --harness-variants leaves out base*"])
    result.stdout.fnmatch_lines([f"baseline: {project.path / 'runs' / 'blessed'}"])
    # alpha's only runnable gate names half alone, so good is not generated for alpha.
    assert project.all_generated() == {"base": [], "good": _beta_prompts()[:3],
                                       "half": _alpha_prompts()[:3] + _beta_prompts()[:3]}
    runs = sorted(report.iterdir())
    assert len(runs) == 2
    manifest = json.loads((runs[0] / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["limit"] == 3
    # The gates naming base are in the run's record as NOT EVALUATED (they vanished before issue 19).
    assert [(g["gate"], g["verdict"]) for g in manifest["gates"]] == [
        ("good.accuracy > base.accuracy", "NOT EVALUATED"), ("base.accuracy > good.accuracy", "NOT EVALUATED"),
        ("half.accuracy >= 0.5", "INCONCLUSIVE")]
    assert len((runs[0] / "records.jsonl").read_text().splitlines()) == 3
    bad = project.run("suites/beta.yaml", "--harness-variants", "good,hlf")
    bad.stdout.fnmatch_lines(["*--harness-variants names 'hlf', which is not declared. Did you mean 'half'?"])
    bad.assert_outcomes(failed=3)


def test_junit_xml_carries_gate_results(project: Project) -> None:
    xml_path = project.path / "junit.xml"
    project.run("suites/alpha.yaml", f"--junitxml={xml_path}")
    cases = {case.get("name"): case for case in ET.parse(xml_path).getroot().iter("testcase")}
    assert list(cases) == ALPHA_IDS
    failing = cases["base.accuracy>good.accuracy"]
    failure = failing.find("failure")
    assert failure is not None and "flipped cases" in failure.text and "p-value" in failure.text
    props = {p.get("name"): p.get("value") for p in failing.iter("property")}
    assert props["harness.verdict"] == "FAIL" and props["harness.blocking"] == "True"
    assert props["harness.gate"] == "base.accuracy > good.accuracy"
    assert {"harness.p_adjusted", "harness.diff_ci", "harness.mde", "harness.ci"} <= set(props)
    passing = {p.get("name"): p.get("value") for p in cases["good.accuracy>base.accuracy"].iter("property")}
    assert passing["harness.verdict"] == "PASS" and float(passing["harness.p_adjusted"]) < 0.05


def test_xdist_generates_each_prompt_once(project: Project) -> None:
    pytest.importorskip("xdist")
    report = project.path / "reports"
    result = project.run_subprocess("suites", "-n", "2", "-p", "no:cacheprovider", "--harness-report", str(report))
    result.assert_outcomes(passed=5, failed=2)
    # Whichever worker ran a suite first wrote its run; the other reused it: one run per suite.
    assert sorted(p.name.split("-")[3] for p in report.iterdir()) == ["alpha", "beta"]
    generated = project.all_generated()
    for variant, prompts in generated.items():
        assert len(prompts) == len(set(prompts)), f"{variant} generated a prompt twice"
    assert sorted(generated["good"]) == sorted(_alpha_prompts() + _beta_prompts())
    with sqlite3.connect(project.cache / "generations.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT COUNT(*) FROM generations").fetchone()[0] == sum(map(len, generated.values()))
    _lines_in_order(result.outlines, ["= harness gates =", "5 gate(s): 1 FAIL, 1 INCONCLUSIVE, 3 PASS; 2 blocking"])
