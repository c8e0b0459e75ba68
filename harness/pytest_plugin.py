"""pytest plugin: `pytest suites/` runs every gate of every suite as a test (model CI).

Registered through the `pytest11` entry point as `harness` (turn it off with `-p no:harness`).

Opt-in: nothing is collected unless the project asks
    Installing the package does not make pytest read anyone's YAML (as pytest's own doctest plugin
    collects text files only on request). Collection is on when
      - the ini option `harness_suites` lists folders (`harness_suites = suites`, relative to the
        ini file; in pyproject.toml `harness_suites = ["suites"]`): suites inside those folders
        are collected, YAML anywhere else is not; or
      - `--harness` is passed: suites are collected wherever pytest looks.
    A YAML file named on the command line while collection is off is a collection error that says
    how to opt in; a project that did not opt in and has an unrelated `suites/` folder is untouched.

Which YAML files are suites (once collection is on)
    A `*.yaml` / `*.yml` file is collected as a suite when it sits *directly* in one of the
    `harness_suites` folders (or, with `--harness`, directly in a folder named `suites`), or when it
    has a top-level `suite:` or `scorers:` key (a line-start regex over the raw bytes; no YAML
    parse). Every valid suite needs `scorers:`, so suites in nested folders are found too, while
    helper YAML below `suites/` (`suites/schemas/x.yaml`) and every other YAML file is left alone.
    A suite that does not load (bad YAML, unknown key, a variant missing from models.toml, a
    malformed gate) is a collection error showing the harness's one-paragraph message (file, line,
    key, fix); `--continue-on-collection-errors` runs the other suites anyway.

Items and ids
    `suites/x.yaml::run`     the suite as a whole: fails when it cannot run (bad models.toml, data
                             error, backend error) with the harness's message, no traceback.
    `suites/x.yaml::<gate>`  one per gate; the id is the gate text without whitespace, e.g.
                             `suites/tickets.yaml::json-lora.accuracy>fewshot.accuracy`.
    `-k`, `-m`, `--lf`, `-x` and `--junitxml` work as for any test. The suite's name is a `-k`
    keyword; its `marks: [slow, nightly]` become marks on every item (registered as they are
    found, so `--strict-markers` stays happy). A failing gate's report shows the estimates with
    CIs, the difference with its CI, the p-value (raw and Holm-adjusted), the MDE, the verdict
    and its reason, and the top flipped cases; a passing gate puts its numbers in
    `report.sections` (`-rP` shows them). The numbers are also `user_properties` (so they land in
    JUnit XML as `<property name="harness.verdict" ...>`), and one table of all gates closes the
    terminal summary. A gate blocks (fails) when `GateResult.blocking`: FAIL, ERROR, or
    INCONCLUSIVE under the suite's `inconclusive: fail` (the default).

Shared, lazy work
    Nothing runs at collection: it parses models.toml and the suites (scorers validate their
    options, e.g. load a JSON Schema), reads no data, loads no model and imports nothing heavy;
    runner, stats and backends are imported inside `runtest`. The first item of a suite
    that runs runs the suite once, for exactly the variants that the *selected* gates of that
    suite name (all of its variants when only `::run` is selected), through the same generation
    cache as `harness run` (`GenerationCache()`, i.e. $HARNESS_CACHE_DIR). The outcome is kept in
    `config.stash`, so every other item of the suite only reads it; suites deselected by `-k`/`-m`
    generate nothing. Gates naming a variant left out by `--harness-variants` fail as NOT EVALUATED (no evidence, no pass).

Holm correction
    `evaluate_run` is called once per suite run, so the Holm family is one suite: the paired gates
    of that suite whose variants ran in this session (with everything selected: all its gates).
    Selecting a subset with `-k` can therefore shrink the family; CI should run whole suites.

pytest-xdist (`-n N`)
    Every worker collects everything, so each computes the same per-suite variant set. Around a
    suite's run a worker takes an exclusive `fcntl.flock` on one lock file per (suite, variant), in
    sorted order (no deadlock), in `locks/` next to the generation cache. The controller hands every
    worker the same run-directory prefix (`pytest_configure_node`), so the worker that gets the
    locks second finds the first one's complete run directory and reuses its records; were it gone,
    it would still find every generation in the cache (SQLite WAL + busy timeout: concurrent
    writers are safe). Either way nothing is generated twice. Without fcntl (Windows) there is no
    lock: results stay correct, work may repeat.

Options (group "harness")
    --harness                collect suite YAML wherever pytest looks (without it: only inside the
                             folders of the `harness_suites` ini option; with neither: none)
    --harness-models PATH    models.toml (default: models.toml at the rootdir, else in the cwd)
    --harness-variants a,b   only these variants
    --harness-limit N        at most N evaluation cases per suite
    --harness-report DIR     write each suite's run records (records.jsonl, manifest.json with the
                             gate results) under DIR; without it they go to a temporary directory
                             that is removed when the session ends
    --harness-baseline DIR   blessed baselines directory (default: reports/baselines at the rootdir);
                             matching blessed variants are reused, mismatching ones refused

Forgetting alerts
    A failed non-inferiority gate on the retention axis writes an alert record under
    reports/alerts/ at the rootdir and POSTs it to the configured webhook, as `harness run` does.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from harness.errors import ConfigError, HarnessError, did_you_mean

if TYPE_CHECKING:  # type names only; importing these at runtime is deferred to keep collection cheap
    from harness.analysis.gates import Gate, GateResult
    from harness.config.suite import Suite
    from harness.config.variants import ModelsConfig
    from harness.engine.cache import GenerationCache
    from harness.engine.runner import BackendPool

SUITES_DIR = "suites"
SUITE_SUFFIXES = (".yaml", ".yml")
RUN_ITEM = "run"
_TOP_LEVEL_SUITE_KEY = re.compile(rb"""^["']?(?:suite|scorers)["']?[ \t]*:""", re.MULTILINE)
_SNIFF_BYTES = 256 * 1024
_PROP = "harness."
SHOWN_CASES, SHOWN_CASES_VERBOSE = 5, 20
CLIP, CLIP_VERBOSE = 160, 600


# -- options and session state --------------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "LLM evaluation harness (suite YAML as tests)")
    group.addoption("--harness", action="store_true", default=False, dest="harness_collect",
                    help="Collect suite YAML wherever pytest looks (default: only inside the folders "
                         "of the harness_suites ini option; with neither, no YAML is collected).")
    group.addoption("--harness-models", metavar="PATH", default=None,
                    help="models.toml with the variants (default: models.toml at the rootdir, else in the cwd).")
    group.addoption("--harness-variants", metavar="A,B", default=None,
                    help="Only run these variants; gates naming another variant fail as NOT EVALUATED.")
    group.addoption("--harness-limit", metavar="N", type=int, default=None,
                    help="At most N evaluation cases per suite (smoke runs).")
    group.addoption("--harness-report", metavar="DIR", default=None,
                    help="Write each suite's run records (records.jsonl, manifest.json) under DIR.")
    group.addoption("--harness-baseline", metavar="DIR", default=None,
                    help="Blessed baselines directory (default: reports/baselines at the rootdir).")
    parser.addini("harness_suites", type="paths", default=[],
                  help="Folders (relative to the ini file) whose suite YAML files are collected as tests; "
                       "e.g. `harness_suites = suites`. Without it (or --harness) no YAML is collected.")


@dataclass
class _SuiteOutcome:
    """One suite's run in this session, shared by all of its items."""

    suite: Suite
    path: Path
    variants: list[str]
    error: str | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
    run_dir: Path | None = None
    reused: bool = False
    keep_records: bool = False
    """The run directory outlives the session (--harness-report), so reports may point at it."""
    results: dict[str, GateResult] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    _by_variant: dict[str, dict[str, dict[str, Any]]] | None = None

    def records_of(self, variant: str) -> dict[str, dict[str, Any]]:
        if self._by_variant is None:
            self._by_variant = {}
            for record in self.records:
                self._by_variant.setdefault(record["variant"], {})[record["case_id"]] = record
        return self._by_variant.get(variant, {})

    def variant_errors(self, variants: list[str] | None = None) -> list[str]:
        return [f"variant '{e['variant']}': {e['error']}" for e in self.manifest.get("errors", [])
                if variants is None or e.get("variant") in variants]


@dataclass
class _State:
    """Per-session (per-worker under xdist) state, kept in `config.stash`."""

    config: pytest.Config
    models_option: Path | None
    variants: list[str] | None
    limit: int | None
    report_dir: Path | None
    baseline: Path | None
    """--harness-baseline; consumed by the blessed-baselines feature."""
    run_prefix: str
    runs_dir: Path
    is_worker: bool
    outcomes: dict[Path, _SuiteOutcome] = field(default_factory=dict)
    marks: set[str] = field(default_factory=set)
    _models: ModelsConfig | HarnessError | None = None
    _selection: dict[Path, tuple[set[str], bool]] | None = None
    _cache: GenerationCache | None = None
    _pool: BackendPool | None = None

    # -- configuration ----------------------------------------------------------------------
    def models_path(self) -> Path:
        if self.models_option is not None:
            if not self.models_option.is_file():
                raise ConfigError("file not found.", file=self.models_option,
                                  hint="Pass an existing models.toml with --harness-models PATH.")
            return self.models_option
        roots = dict.fromkeys([self.config.rootpath, self.config.invocation_params.dir])
        for root in roots:
            if (root / "models.toml").is_file():
                return root / "models.toml"
        raise ConfigError(f"no models.toml at the rootdir ({self.config.rootpath}) or in the current directory.",
                          hint="Create one or pass --harness-models PATH.")

    def models(self) -> ModelsConfig:
        """models.toml, loaded once; a problem with it (or with --harness-variants) is raised on every use."""
        if self._models is None:
            from harness.config.variants import load_models

            try:
                models = load_models(self.models_path())
                for name in self.variants or []:
                    if name not in models.variants:
                        raise ConfigError(f"--harness-variants names '{name}', which is not declared.",
                                          file=models.path, hint=did_you_mean(name, models.variants))
                self._models = models
            except HarnessError as exc:
                self._models = exc
        if isinstance(self._models, HarnessError):
            raise self._models
        return self._models

    def known_variants(self) -> set[str] | None:
        try:
            return set(self.models().variants)
        except HarnessError:
            return None  # the suite still collects; its items report the models.toml problem

    def register_mark(self, name: str) -> None:
        if name in self.marks:
            return
        self.marks.add(name)
        registered = {line.split(":")[0].split("(")[0].strip() for line in self.config.getini("markers")}
        if name not in registered:
            self.config.addinivalue_line("markers", f"{name}: declared by a harness suite's `marks:`")

    def excluded(self, gate: Gate) -> list[str]:
        """The gate's variants that --harness-variants leaves out."""
        if self.variants is None:
            return []
        return [v for v, _ in gate.refs if v not in self.variants]

    # -- what to run --------------------------------------------------------------------------
    def _select(self, session: pytest.Session) -> dict[Path, tuple[set[str], bool]]:
        """Per suite file: variants named by its selected gates, and whether `::run` is selected."""
        selection: dict[Path, tuple[set[str], bool]] = {}
        for item in session.items:
            if isinstance(item, GateItem):
                wanted, run_selected = selection.setdefault(item.path, (set(), False))
                if not self.excluded(item.gate):
                    wanted.update(v for v, _ in item.gate.refs)
            elif isinstance(item, RunItem):
                wanted, _ = selection.get(item.path, (set(), False))
                selection[item.path] = (wanted, True)
        return selection

    def needed_variants(self, item: pytest.Item) -> list[str]:
        if self._selection is None:
            self._selection = self._select(item.session)
        suite = item.parent.suite
        wanted, run_selected = self._selection.get(item.path, (set(), False))
        if not wanted and run_selected:
            wanted = {v for v in suite.variants if self.variants is None or v in self.variants}
        return [v for v in suite.variants if v in wanted]

    # -- running --------------------------------------------------------------------------------
    def generation_cache(self) -> GenerationCache:
        if self._cache is None:
            from harness.engine.cache import GenerationCache

            self._cache = GenerationCache()
        return self._cache

    def backend_pool(self) -> BackendPool:
        if self._pool is None:
            from harness.engine.runner import BackendPool

            self._pool = BackendPool()
        return self._pool

    @contextmanager
    def locked(self, suite_path: Path, variants: list[str]) -> Iterator[None]:
        """Exclusive across processes for these (suite, variant) pairs; sorted, so never deadlocks. The
        same lock files as `harness run` (harness/engine/cache.py), so a CLI run and pytest never both generate."""
        from harness.engine.cache import exclusive, lock_dir, lock_name

        with exclusive(lock_dir(self.generation_cache()), [lock_name(suite_path, v) for v in variants]):
            yield

    def run_id(self, suite: Suite, path: Path) -> str:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", suite.name).strip("-")[:40] or "suite"
        return f"{self.run_prefix}-{slug}-{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:6]}"

    def _finished_run(self, run_dir: Path, suite: Suite, variants: list[str]):
        """A complete run of exactly this suite x variants x limit (e.g. by another xdist worker)."""
        from harness.engine.records import MANIFEST, load_run

        if not (run_dir / MANIFEST).is_file():
            return None
        try:
            run = load_run(run_dir)
        except HarnessError:
            return None
        info = run.manifest.get("suites", {}).get(suite.name, {})
        if (run.manifest.get("status") == "complete" and info.get("variants") == variants
                and run.manifest.get("limit") == self.limit and "gates" in run.manifest):
            return run
        return None

    def run_suite(self, item: pytest.Item) -> _SuiteOutcome:
        if item.path not in self.outcomes:
            try:
                self.outcomes[item.path] = self._run_suite(item)
            except Exception as exc:  # a bug: its traceback shows on this item; the suite's others say so
                suite = item.parent.suite
                self.outcomes[item.path] = _SuiteOutcome(
                    suite=suite, path=item.path, variants=[],
                    error=f"suite '{suite.name}' ({_rel(self.config, item.path)}) could not run: internal error "
                          f"{type(exc).__name__}: {exc} (traceback on {item.nodeid}).")
                raise
        return self.outcomes[item.path]

    def _run_suite(self, item: pytest.Item) -> _SuiteOutcome:
        suite: Suite = item.parent.suite
        outcome = _SuiteOutcome(suite=suite, path=item.path, variants=self.needed_variants(item),
                                keep_records=self.report_dir is not None)
        try:
            models = self.models()
            from harness.analysis.gates import evaluate_run
            from harness.engine.records import RunWriter
            from harness.engine.runner import RunOptions, preflight, run_suites

            run_dir = self.runs_dir / self.run_id(suite, item.path)
            results = None
            with self.locked(item.path, outcome.variants):
                finished = self._finished_run(run_dir, suite, outcome.variants)
                if finished is not None:
                    outcome.records, outcome.manifest, outcome.reused = finished.records, finished.manifest, True
                else:
                    if run_dir.exists():  # a stale or different run under our name: never append to it
                        run_dir = run_dir.with_name(f"{run_dir.name}-{secrets.token_hex(2)}")
                    options = RunOptions(variants=outcome.variants, limit=self.limit, out_root=run_dir.parent,
                                         run_id=run_dir.name, progress=False, baselines=self.baselines_dir())
                    preflight([suite], models, options)  # bad inputs fail before the cache or run directory exists
                    result = run_suites([suite], models, options, cache=self.generation_cache(),
                                        pool=self.backend_pool(), log=outcome.log.append)
                    outcome.records, outcome.manifest = result.records, result.manifest
                    results = evaluate_run(outcome.records, outcome.manifest)
                    outcome.manifest["gates"] = [r.as_dict() for r in results]
                    outcome.manifest["alerts"] = self.raise_alerts(results, outcome, models)
                    writer = RunWriter(run_dir)
                    writer.write_manifest(outcome.manifest)  # last: a manifest with gates marks a reusable run
                    writer.close()
            outcome.run_dir = run_dir
            if results is None:  # deterministic: the same verdicts the other worker computed
                results = evaluate_run(outcome.records, outcome.manifest)
        except HarnessError as exc:
            outcome.error = f"suite '{suite.name}' ({_rel(self.config, item.path)}) could not run: {exc}"
            return outcome
        outcome.results = {r.gate: r for r in results}
        return outcome

    def baselines_dir(self) -> Path:
        return self.baseline or (self.config.rootpath / "reports" / "baselines")

    def raise_alerts(self, results, outcome: _SuiteOutcome, models) -> list[str]:
        from harness.analysis.alerts import raise_alerts

        alerts = raise_alerts(results, outcome.records, outcome.manifest,
                              alerts_dir=self.config.rootpath / "reports" / "alerts",
                              webhook=models.alerts.get("webhook"))
        for alert in alerts:
            outcome.log.append(f"ALERT catastrophic forgetting: {alert.alert['variant']} vs "
                               f"{alert.alert['baseline']} -> {alert.path}")
            if alert.delivered is False:
                outcome.log.append(f"alert webhook delivery failed: {alert.delivery_error}")
        return [str(a.path) for a in alerts]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        if self._cache is not None:
            self._cache.close()
        if not self.is_worker and self.report_dir is None:
            shutil.rmtree(self.runs_dir, ignore_errors=True)


_STATE = pytest.StashKey[_State]()


def baseline_run(config: pytest.Config) -> Path | None:
    """The --harness-baseline run directory, for the blessed-baselines feature (None when not given)."""
    state = config.stash.get(_STATE, None)
    return state.baseline if state is not None else None


def _split(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [v.strip() for v in value.split(",") if v.strip()] or None


def _rel(config: pytest.Config, path: Path) -> str:
    try:
        return path.relative_to(config.rootpath).as_posix()
    except ValueError:
        return str(path)


def pytest_configure(config: pytest.Config) -> None:
    option = config.option
    here = config.invocation_params.dir

    def resolve(value: str | None) -> Path | None:
        return None if value is None else (here / Path(value).expanduser())

    if option.harness_limit is not None and option.harness_limit < 1:
        raise pytest.UsageError("--harness-limit must be at least 1.")
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None:
        prefix = workerinput.get("harness_run_prefix") or f"xdist-{workerinput.get('testrunuid', 'run')[:12]}"
    else:
        prefix = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
    report_dir = resolve(option.harness_report)
    if report_dir is not None:
        runs_dir = report_dir
    elif workerinput is not None and workerinput.get("harness_runs_dir"):
        runs_dir = Path(workerinput["harness_runs_dir"])
    else:  # created only if a suite runs; removed by the controller at the end
        runs_dir = Path(tempfile.gettempdir()) / f"harness-pytest-{prefix}"
    config.stash[_STATE] = _State(
        config=config, models_option=resolve(option.harness_models), variants=_split(option.harness_variants),
        limit=option.harness_limit, report_dir=report_dir, baseline=resolve(option.harness_baseline),
        run_prefix=prefix, runs_dir=runs_dir, is_worker=workerinput is not None,
    )
    config.pluginmanager.register(_GateTable(), "harness-gate-table")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist: every worker writes (and finds) a suite's run under the same name."""
    state = node.config.stash.get(_STATE, None)
    if state is not None:
        node.workerinput["harness_run_prefix"] = state.run_prefix
        node.workerinput["harness_runs_dir"] = str(state.runs_dir)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is not None:
        state.close()


# -- collection -------------------------------------------------------------------------------------

def is_suite_file(path: Path, direct_dirs: tuple[Path, ...] = ()) -> bool:
    """The collection rule (see the module docstring): cheap, and never parses YAML.

    `direct_dirs`: folders whose YAML children are suites without a look inside (the
    `harness_suites` folders); with none given, folders named `suites` (the `--harness` rule)."""
    if path.suffix.lower() not in SUITE_SUFFIXES:
        return False
    if path.parent.name == SUITES_DIR if not direct_dirs else _absolute(path.parent) in direct_dirs:
        return True
    try:
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError:
        return False
    return _TOP_LEVEL_SUITE_KEY.search(head) is not None


def _absolute(path: Path) -> Path:
    return Path(os.path.normpath(path.absolute()))


@dataclass(frozen=True)
class _Collection:
    """Whether, and where, suite YAML is collected in this session (the opt-in)."""

    everywhere: bool
    """--harness"""
    folders: tuple[Path, ...]
    """The harness_suites ini folders, absolute and normalised."""
    named: frozenset[Path]
    """Paths named on the command line (for the opt-in hint)."""

    @classmethod
    def of(cls, config: pytest.Config) -> _Collection:
        folders = tuple(dict.fromkeys(_absolute(Path(p)) for p in config.getini("harness_suites")))
        here = config.invocation_params.dir
        named = frozenset(_absolute(here / str(arg).split("::", 1)[0]) for arg in config.args)
        return cls(everywhere=bool(config.option.harness_collect), folders=folders, named=named)

    def collects(self, path: Path) -> bool:
        if self.everywhere:
            return is_suite_file(path, self.folders) or is_suite_file(path)
        path = _absolute(path)
        inside = [f for f in self.folders if path.is_relative_to(f)]
        return bool(inside) and is_suite_file(path, self.folders)

    def hint_for(self, path: Path) -> bool:
        """A suite-looking YAML named on the command line that the opt-in leaves out."""
        return _absolute(path) in self.named and is_suite_file(path)


_COLLECTION = pytest.StashKey[_Collection]()


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.File | None:
    if file_path.suffix.lower() not in SUITE_SUFFIXES:
        return None
    config = parent.config
    collection = config.stash.get(_COLLECTION, None)
    if collection is None:
        collection = config.stash[_COLLECTION] = _Collection.of(config)
    if collection.collects(file_path):
        return SuiteFile.from_parent(parent, path=file_path)
    if collection.hint_for(file_path):
        return _NotOptedIn.from_parent(parent, path=file_path)
    return None


class _NotOptedIn(pytest.File):
    """A suite YAML named on the command line in a session that did not opt in to collecting suites."""

    def collect(self):
        inside = ("; it is outside the harness_suites folders" if self.config.getini("harness_suites") else "")
        raise HarnessCollectionError(
            f"{_rel(self.config, self.path)}: suite YAML is collected only on request{inside}. "
            "Pass --harness, or list its folder in the pytest ini option harness_suites "
            "(pytest.ini/tox.ini: `harness_suites = suites`; pyproject.toml [tool.pytest.ini_options]: "
            "`harness_suites = [\"suites\"]`).")

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, HarnessCollectionError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


class HarnessCollectionError(Exception):
    """A collection problem reported as its message alone (no traceback)."""


class SuiteFile(pytest.File):
    """A suite YAML: one `::run` item plus one item per gate."""

    suite: Suite | None = None

    def collect(self):
        from harness.config.suite import load_suite

        state = self.config.stash[_STATE]
        suite = load_suite(self.path, known_variants=state.known_variants())
        self.suite = suite
        self.extra_keyword_matches.add(suite.name)
        for mark in suite.marks:
            state.register_mark(mark)
            self.add_marker(mark)  # inherited by every item below
        yield RunItem.from_parent(self, name=RUN_ITEM)
        seen: dict[str, int] = {}
        for index, gate in enumerate(suite.gates):
            seen[gate.id] = seen.get(gate.id, 0) + 1
            name = gate.id if seen[gate.id] == 1 else f"{gate.id}[{seen[gate.id]}]"
            yield GateItem.from_parent(self, name=name, gate=gate, index=index)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, HarnessError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


class HarnessFailure(Exception):
    """A failed item whose report is `text` exactly (no traceback: the harness explains itself)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class _HarnessItem(pytest.Item):
    parent: SuiteFile

    @property
    def state(self) -> _State:
        return self.config.stash[_STATE]

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, HarnessFailure):
            return excinfo.value.text
        if isinstance(excinfo.value, HarnessError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def _line(self, *key: Any) -> int:
        line = self.parent.suite.lines.get(tuple(key)) if self.parent.suite else None
        return (line - 1) if line else 0


class RunItem(_HarnessItem):
    """The suite as a whole: generation and scoring succeed for every variant it runs."""

    def runtest(self) -> None:
        outcome = self.state.run_suite(self)
        if outcome.error:
            raise HarnessFailure(outcome.error)
        errors = outcome.variant_errors()
        if errors:
            raise HarnessFailure(f"suite '{outcome.suite.name}' ({_rel(self.config, self.path)}): "
                                 + "; ".join(errors))
        self.add_report_section("call", "harness", _run_summary(outcome))

    def reportinfo(self):
        return self.path, self._line("suite"), f"suite {self.parent.suite.name}"


class GateItem(_HarnessItem):
    """One gate of a suite."""

    def __init__(self, *, gate: Gate, index: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate
        self.index = index

    def runtest(self) -> None:
        state = self.state
        suite = self.parent.suite
        try:
            state.models()  # a bad models.toml or --harness-variants fails the gate rather than skipping it
            excluded = state.excluded(self.gate)
            if excluded:  # no evidence, no pass (issue 19): a gate whose variants do not run fails as NOT EVALUATED
                reason = (f"gate '{self.gate.text}' NOT EVALUATED: --harness-variants leaves out "
                          f"{', '.join(excluded)}; run them to decide this gate.")
                self.user_properties += [(_PROP + "suite", suite.name), (_PROP + "gate", self.gate.text),
                                         (_PROP + "verdict", "NOT EVALUATED"), (_PROP + "blocking", True),
                                         (_PROP + "reason", reason)]
                raise HarnessFailure(reason)
            outcome = state.run_suite(self)
            error = outcome.error
        except HarnessError as exc:
            error = f"suite '{suite.name}' ({_rel(self.config, self.path)}) could not run: {exc}"
        if error:
            self.user_properties += [(_PROP + "suite", suite.name), (_PROP + "gate", self.gate.text),
                                     (_PROP + "verdict", "ERROR"), (_PROP + "blocking", True),
                                     (_PROP + "reason", error)]
            raise HarnessFailure(error)
        result = outcome.results.get(self.gate.text)
        if result is None:  # evaluate_run only leaves out gates whose variants did not run
            raise HarnessFailure(f"gate '{self.gate.text}' was not evaluated: its variants "
                                 f"({', '.join(v for v, _ in self.gate.refs)}) were not run.")
        verbose = self.config.get_verbosity() >= 2
        evidence = _Evidence(outcome, self.gate, result, verbose=verbose)
        self.user_properties += evidence.properties()
        if result.blocking:
            raise HarnessFailure(evidence.failure_text(_rel(self.config, self.path), self._line("gates", self.index) + 1))
        self.add_report_section("call", "harness gate", evidence.numbers_text())

    def reportinfo(self):
        return self.path, self._line("gates", self.index), f"gate {self.gate.text}"


# -- reports -------------------------------------------------------------------------------------------

def _num(value: float | None, signed: bool = False, digits: int = 3) -> str:
    if value is None or value != value:  # None or NaN
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _interval(ci: tuple[float, float] | list[float] | None, signed: bool = False) -> str:
    return f"[{_num(ci[0], signed)}, {_num(ci[1], signed)}]" if ci else "[n/a]"


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _clip(value: Any, width: int) -> str:
    if value is None:
        return "(none)"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + f"… (+{len(text) - width + 1} chars)"


def _run_summary(outcome: _SuiteOutcome) -> str:
    counts = outcome.manifest.get("counts", {})
    lines = [f"variants run: {', '.join(outcome.variants) or '(none)'}"]
    if outcome.reused:
        lines.append(f"records reused from {outcome.run_dir} (run by another worker)")
    else:
        lines.append(f"{counts.get('records', 0)} records; {counts.get('cached', 0)} of {counts.get('requests', 0)} "
                     f"model requests cached, {counts.get('generated', 0)} generated")
        lines += outcome.log
    if outcome.keep_records:
        lines.append(f"run records: {outcome.run_dir}")
    return "\n".join(lines)


class _Evidence:
    """The numbers and flipped cases behind one gate result."""

    def __init__(self, outcome: _SuiteOutcome, gate: Gate, result: GateResult, *, verbose: bool) -> None:
        self.outcome, self.gate, self.result = outcome, gate, result
        self.alpha = float(result.extra.get("alpha", outcome.suite.alpha))
        self.confidence = 1 - 2 * self.alpha
        self.shown = SHOWN_CASES_VERBOSE if verbose else SHOWN_CASES
        self.width = CLIP_VERBOSE if verbose else CLIP
        self._ci_cache: tuple[tuple[float, float] | None, tuple[float, float] | None] | None = None

    # -- numbers --
    def _scores(self, variant: str) -> dict[str, float]:
        return {cid: float(r["scores"][self.gate.axis]) for cid, r in self.outcome.records_of(variant).items()
                if self.gate.axis in r.get("scores", {})}

    def _estimate(self, variant: str, case_ids: list[str]) -> tuple[float, float] | None:
        """CI of one variant's rate on these cases, at the gate's confidence."""
        if not case_ids:
            return None
        from harness.analysis import stats
        records = self.outcome.records_of(variant)
        scores = self._scores(variant)
        clusters = [records[c].get("cluster", c) for c in case_ids]
        has_clusters = any(records[c].get("cluster") is not None for c in case_ids)
        try:
            est = stats.estimate([scores[c] for c in case_ids], clusters=stats.usable_clusters(clusters) if has_clusters else None,
                                 confidence=self.confidence)
        except (ValueError, ArithmeticError):
            return None
        return est.ci_low, est.ci_high

    def _shared(self) -> list[str]:
        """Case ids the gate is computed on, in the suite's case order."""
        a = self._scores(self.gate.variant)
        if self.gate.other is None:
            return list(a)
        b = self._scores(self.gate.other)
        return [c for c in a if c in b]

    def _cis(self) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
        """(variant CI, baseline CI) on the gate's cases; a threshold gate's CI comes from the gate."""
        if self._ci_cache is None:
            if self.gate.other is None or self.result.diff is None:
                self._ci_cache = (self.result.ci, None)
            else:
                shared = self._shared()
                self._ci_cache = (self._estimate(self.gate.variant, shared), self._estimate(self.gate.other, shared))
        return self._ci_cache

    def _holm_family(self) -> int:
        if self.result.extra.get("holm_family"):  # the family evaluate_run adjusted over (reason, report, compare)
            return int(self.result.extra["holm_family"])
        return sum(1 for r in self.outcome.results.values()
                   if r.kind != "threshold" and r.p_value is not None and r.extra.get("holm", True))

    def numbers_lines(self) -> list[str]:
        r, g = self.result, self.gate
        conf = f"{self.confidence:.0%} CI"
        lines = [f"verdict: {r.verdict}: {r.reason}"]
        if r.kind == "threshold":
            lines.append(f"  {g.variant}.{g.axis}  {_num(r.estimate)}  {conf} {_interval(r.ci)}  n={r.n}  "
                         f"(gate: {g.op} {g.threshold:g})")
        elif r.diff is not None:
            ci_a, ci_b = self._cis()
            width = max(len(f"{g.variant}.{g.axis}"), len(f"{g.other}.{g.axis}"), len("difference"))
            lines.append(f"  {g.variant + '.' + g.axis:<{width}}  {_num(r.estimate)}  {conf} "
                         f"{_interval(ci_a)}  n={r.n}")
            lines.append(f"  {g.other + '.' + g.axis:<{width}}  {_num(r.baseline_estimate)}  {conf} "
                         f"{_interval(ci_b)}")
            margin = f", margin {r.margin:g}" if r.margin else ""
            lines.append(f"  {'difference':<{width}} {_num(r.diff, True)}  {conf} {_interval(r.diff_ci, True)}"
                         f"  ({g.variant} - {g.other}{margin})")
            if r.p_adjusted is not None:
                adjusted = f"Holm-adjusted over {self._holm_family()} paired gate(s) of this suite: {_p(r.p_adjusted)}"
            else:
                adjusted = "not adjusted (holm: false)"
            lines.append(f"  p-value: {_p(r.p_value)} one-sided ({r.test}); {adjusted}; alpha {self.alpha:g}")
            lines.append(f"  MDE: {_num(r.mde)} (smallest true difference these cases detect with 80% power)")
            if r.extra.get("a_only") is not None:
                lines.append(f"  discordant cases: {g.variant} only {r.extra['a_only']}, "
                             f"{g.other} only {r.extra['b_only']}")
            if r.extra.get("unpaired_cases"):
                lines.append(f"  unpaired cases left out: {r.extra['unpaired_cases']}")
        return lines

    def numbers_text(self) -> str:
        return "\n".join(self.numbers_lines())

    # -- cases --
    def _bad(self) -> tuple[str, list[str]]:
        """Heading and ids of the cases behind a bad verdict, worst first."""
        g = self.gate
        a = self._scores(g.variant)
        if g.kind == "threshold":
            t = g.threshold
            misses = {">=": lambda x: x < t, ">": lambda x: x <= t, "<=": lambda x: x > t, "<": lambda x: x >= t}[g.op]
            ids = [c for c in a if misses(a[c])]
            ids.sort(key=lambda c: -abs(a[c] - t))
            side = "below" if g.direction > 0 else "above"
            return f"cases where {g.variant}.{g.axis} is {side} {t:g}", ids
        b = self._scores(g.other)
        ids = [c for c in self._shared() if (a[c] - b[c]) * g.direction < 0]
        ids.sort(key=lambda c: -abs(a[c] - b[c]))
        worse = "lower" if g.direction > 0 else "higher"
        return f"flipped cases: {g.variant} scores {worse} than {g.other} on {g.axis}", ids

    def _output(self, record: dict[str, Any]) -> Any:
        if record.get("output") is not None or not record.get("choice_logprobs"):
            return record.get("output")
        logprobs = record["choice_logprobs"]
        return f"picked: {record['choices'][logprobs.index(max(logprobs))]}"

    def _why(self, record: dict[str, Any]) -> str | None:
        checks = record.get("checks", {}).get(self.gate.axis, {})
        reasons = [f"{name}: {c['reason']}" for name, c in checks.items() if c.get("reason")]
        return "; ".join(reasons) or None

    def case_lines(self) -> list[str]:
        g = self.gate
        heading, ids = self._bad()
        if not ids:
            return []
        total = len(self._shared())
        lines = [f"{heading}: {len(ids)} of {total}, worst first"
                 + (f" (showing {self.shown}; -vv shows more)" if len(ids) > self.shown else "")]
        shown_variants = [g.variant] if g.other is None else [g.other, g.variant]
        label_width = max(len("reference"), *(len(v) for v in shown_variants))
        for case_id in ids[: self.shown]:
            first = self.outcome.records_of(g.variant)[case_id]
            prompt = first.get("prompt") or []
            user = next((m.get("content") for m in reversed(prompt) if m.get("role") == "user"), None)
            scores = ", ".join(f"{v} {_num(self._scores(v)[case_id], digits=2)}" for v in shown_variants)
            lines.append(f"  [{case_id}] {g.axis}: {scores}")
            lines.append(f"    {'input':<{label_width}}  {_clip(user, self.width)}")
            for variant in shown_variants:
                record = self.outcome.records_of(variant)[case_id]
                lines.append(f"    {variant:<{label_width}}  {_clip(self._output(record), self.width)}")
            lines.append(f"    {'reference':<{label_width}}  {_clip(first.get('reference'), self.width)}")
            why = self._why(first)
            if why:
                lines.append(f"    {'why':<{label_width}}  {_clip(why, self.width)}")
        return lines

    def failure_text(self, path: str, line: int) -> str:
        r = self.result
        lines = [f"gate {r.verdict}: {self.gate.text}   (suite '{r.suite}', {path}:{line})"]
        lines += self.numbers_lines() if r.verdict != "ERROR" else [f"verdict: ERROR: {r.reason}"]
        if r.verdict == "INCONCLUSIVE":
            lines.append("  INCONCLUSIVE blocks because the suite has `inconclusive: fail` (the default).")
        errors = self.outcome.variant_errors([v for v, _ in self.gate.refs])
        lines += [f"  {e}" for e in errors]
        if r.verdict != "ERROR":
            lines += self.case_lines()
        if self.outcome.keep_records:
            lines.append(f"run records: {self.outcome.run_dir}")
        return "\n".join(lines)

    def properties(self) -> list[tuple[str, Any]]:
        r = self.result
        ci, baseline_ci = self._cis()
        values: dict[str, Any] = {
            "suite": r.suite, "gate": r.gate, "verdict": r.verdict, "blocking": r.blocking, "reason": r.reason,
            "n": r.n, "estimate": r.estimate, "ci": _interval(ci) if ci else None,
            "baseline_estimate": r.baseline_estimate, "baseline_ci": _interval(baseline_ci) if baseline_ci else None,
            "diff": r.diff,
            "diff_ci": _interval(r.diff_ci, True) if r.diff_ci else None,
            "p_value": r.p_value, "p_adjusted": r.p_adjusted, "mde": r.mde, "test": r.test,
        }
        return [(_PROP + k, float(f"{v:.6g}") if isinstance(v, float) else v) for k, v in values.items() if v is not None]


# -- terminal summary -------------------------------------------------------------------------------------

class _GateTable:
    """Collects gate rows from reports (under xdist the controller sees the workers' reports) and
    prints one table of all gates at the end of the terminal summary."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        props = {k[len(_PROP):]: v for k, v in report.user_properties if isinstance(k, str) and k.startswith(_PROP)}
        if "verdict" in props:
            self.rows.append({"nodeid": report.nodeid, **props})

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.rows:
            return
        rows = sorted(self.rows, key=lambda r: r["nodeid"])
        table = [("verdict", "gate", "estimate [CI]", "vs", "diff [CI]", "p_adj", "MDE", "n")]
        for r in rows:
            p = r.get("p_adjusted", r.get("p_value"))
            table.append((
                str(r["verdict"]), r["nodeid"],
                f"{_num(r['estimate'])} {r.get('ci', '')}".strip() if r.get("estimate") is not None else "",
                _num(r["baseline_estimate"]) if r.get("baseline_estimate") is not None else "",
                f"{_num(r['diff'], True)} {r.get('diff_ci', '')}".strip() if r.get("diff") is not None else "",
                _p(p) if p is not None else "",
                _num(r["mde"]) if r.get("mde") is not None else "",
                str(r.get("n", "")),
            ))
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        colors = {"PASS": {"green": True}, "FAIL": {"red": True}, "ERROR": {"red": True},
                  "INCONCLUSIVE": {"yellow": True}}
        terminalreporter.write_sep("=", "harness gates")
        for i, row in enumerate(table):
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
            if i == 0:
                terminalreporter.write_line("  ".join(cells).rstrip(), bold=True)
                continue
            terminalreporter.write(cells[0], **colors.get(row[0], {}))
            terminalreporter.write_line(("  " + "  ".join(cells[1:])).rstrip())
        counts: dict[str, int] = {}
        for r in rows:
            counts[str(r["verdict"])] = counts.get(str(r["verdict"]), 0) + 1
        blocking = sum(1 for r in rows if str(r.get("blocking")) == "True")
        terminalreporter.write_line(f"{len(rows)} gate(s): " + ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
                                    + f"; {blocking} blocking")
