"""lm-eval tasks as a suite's data source, run through the harness's backends, cache and engine pool.

A suite says `lm_eval: {tasks: [...], num_fewshot: k, limit: n, axis: retention, metric: acc_norm}`
instead of `data:`. Tasks are names from lm-eval's registry or paths (relative to the suite file) to
task YAML files or folders in the project. Per variant, lm-eval's own evaluator runs the tasks with
`HarnessLM` as its model: every log-likelihood / generation request goes through
`Runner._through_cache` (the same SQLite cache, batching and engine pool as native suites, adapters
per request), and lm-eval's own metrics and filters score each document. Each document becomes one
record (`case_id` = "<task>/<doc_id>", `task`, `scores` {axis: the chosen metric}, every per-sample
metric of lm-eval in `checks`), so paired comparisons, gates and forgetting alerts work unchanged.

Suites are data, not code: a task YAML of the project may reference functions (`!function`) of the
installed `lm_eval` package only, and lm-eval's Jinja templates render in Jinja's sandbox.
Datasets are local (`dataset_path: json` + `data_files`, resolved against the task YAML's folder)
unless the suite opts in to the Hugging Face Hub with `hub: true`.

Nothing heavy is imported at module import: lm_eval, datasets and torch load when a suite runs.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import hashlib
import importlib.util
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.errors import ConfigError, HarnessError
from harness.scorers import Score, ScorerInfo

log = logging.getLogger(__name__)

SOURCE_KEYS = ("tasks", "num_fewshot", "limit", "axis", "metric", "include_path", "hub")
DEFAULT_METRICS = ("acc_norm", "acc", "exact_match")
LOCAL_BUILDERS = {"json", "csv", "parquet", "text", "arrow", "pandas", "imagefolder", "audiofolder", "webdataset"}
LOCAL_HINT = (
    "Point the task at local data: copy its YAML into the project (e.g. suites/lm_eval/), set "
    "`dataset_path: json` and `dataset_kwargs: {data_files: {test: data/<file>.jsonl}}` (paths relative to the "
    "task YAML) over a local copy of the data, and list that YAML under lm_eval.tasks "
    "(see suites/lm_eval/openbookqa.yaml)."
)
HUB_HINT = LOCAL_HINT + " Or set `lm_eval: {hub: true}` to let `datasets` download it (or reuse its cache)."


def _no_native_scoring(case, output) -> Score:  # pragma: no cover - lm-eval suites never reach native scoring
    raise HarnessError("an lm_eval suite is scored by lm-eval's own metrics, not by native scorers.")


SCORER_INFO = ScorerInfo(
    name="lm_eval", factory=lambda options, ctx: _no_native_scoring, needs=frozenset(), binary=True,
    doc="lm-eval's own per-sample metric (lm_eval.metric)",
)
"""The pseudo-scorer an lm_eval suite declares on its axis (so gates and manifests know the axis)."""
score_fn = _no_native_scoring


# --------------------------------------------------------------------------- the suite's `lm_eval:` key


@dataclass(frozen=True)
class LmEvalSource:
    """The validated `lm_eval:` mapping of a suite."""

    tasks: tuple[str, ...]
    """As written: registry names or paths (relative to the suite file)."""
    paths: tuple[Path | None, ...]
    """For each task: the resolved file or folder, or None for a registry name."""
    num_fewshot: int | None = None
    limit: int | None = None
    axis: str = "retention"
    metric: str | tuple[tuple[str, str], ...] | None = None
    """One metric for every task ("acc_norm", "exact_match,strict-match"), or (task, metric) pairs."""
    include_paths: tuple[Path, ...] = ()
    hub: bool = False
    suite_path: Path | None = None
    lines: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def where(self, *key: Any) -> dict[str, Any]:
        return {"file": self.suite_path, "key": ".".join(str(k) for k in ("lm_eval", *key)),
                "line": self.lines.get(("lm_eval", *key)) or self.lines.get(("lm_eval",))}

    def metric_for(self, task: str) -> str | None:
        if isinstance(self.metric, str) or self.metric is None:
            return self.metric
        return dict(self.metric).get(task)


def _looks_like_path(text: str, base_dir: Path) -> bool:
    return "/" in text or "\\" in text or text.endswith((".yaml", ".yml")) or (base_dir / text).exists()


def parse_source(data: dict[str, Any], where: Callable[..., dict[str, Any]], base_dir: Path) -> LmEvalSource:
    """Validate a suite's `lm_eval:` mapping (cheap: reads no task and imports no lm_eval)."""
    raw = data.get("lm_eval")
    if data.get("data") is not None:
        raise ConfigError("a suite reads either data: or lm_eval: tasks, not both.", **where("lm_eval"),
                          hint="Put native cases and lm-eval tasks in two suites; one `harness run` runs both.")
    if data.get("scorers"):
        raise ConfigError("an lm_eval suite is scored by lm-eval's own metrics; it takes no scorers.",
                          **where("scorers"),
                          hint="Choose the metric with lm_eval.metric (default acc_norm, else acc, else exact_match) "
                               "and the axis with lm_eval.axis (default retention); put native scorers in another suite.")
    if not isinstance(raw, dict):
        raise ConfigError("must be a mapping, e.g. lm_eval: {tasks: [lm_eval/openbookqa.yaml], limit: 200}.",
                          **where("lm_eval"))
    for key in raw:
        if key not in SOURCE_KEYS:
            close = difflib.get_close_matches(str(key), SOURCE_KEYS, n=1)
            raise ConfigError("unknown key.", **where("lm_eval", key),
                              hint=f"Did you mean '{close[0]}'?" if close else f"Valid keys: {', '.join(SOURCE_KEYS)}.")
    tasks = raw.get("tasks")
    if isinstance(tasks, str):
        tasks = [tasks]
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) and t.strip() for t in tasks):
        raise ConfigError("needs tasks: a list of lm-eval task names or task YAML paths (relative to the suite).",
                          **where("lm_eval", "tasks"), hint="e.g. tasks: [lm_eval/openbookqa.yaml, arc_easy]")
    paths: list[Path | None] = []
    for i, task in enumerate(tasks):
        if _looks_like_path(task, base_dir):
            path = (base_dir / task).resolve()
            if not path.exists():
                raise ConfigError(f"task file or folder not found: {base_dir / task}.", **where("lm_eval", "tasks", i),
                                  hint="Task paths are relative to the suite file; registry names have no '/'.")
            if path.is_file() and path.suffix.lower() not in (".yaml", ".yml"):
                raise ConfigError(f"{task} is not a task YAML file.", **where("lm_eval", "tasks", i))
            paths.append(path)
        else:
            paths.append(None)

    def integer(key: str, minimum: int) -> int | None:
        value = raw.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"must be an integer >= {minimum}, got {value!r}.", **where("lm_eval", key))
        return value

    num_fewshot = integer("num_fewshot", 0)
    limit = integer("limit", 1)
    axis = raw.get("axis", "retention")
    if not isinstance(axis, str) or not axis.isidentifier():
        raise ConfigError(f"must be an axis name such as retention, got {axis!r}.", **where("lm_eval", "axis"))
    metric = raw.get("metric")
    if isinstance(metric, dict):
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metric.items()):
            raise ConfigError("must map task names to metric names.", **where("lm_eval", "metric"))
        metric = tuple(sorted(metric.items()))
    elif metric is not None and not isinstance(metric, str):
        raise ConfigError("must be a metric name (acc_norm, acc, exact_match, 'exact_match,strict-match', ...) or a "
                          "mapping of task names to metric names.", **where("lm_eval", "metric"))
    include = raw.get("include_path") or []
    if isinstance(include, str):
        include = [include]
    if not isinstance(include, list) or not all(isinstance(p, str) for p in include):
        raise ConfigError("must be a folder of task YAMLs or a list of folders.", **where("lm_eval", "include_path"))
    include_paths = []
    for folder in include:
        path = (base_dir / folder).resolve()
        if not path.is_dir():
            raise ConfigError(f"folder not found: {base_dir / folder}.", **where("lm_eval", "include_path"),
                              hint="Paths are relative to the suite file.")
        include_paths.append(path)
    hub = raw.get("hub", False)
    if not isinstance(hub, bool):
        raise ConfigError("must be true or false.", **where("lm_eval", "hub"))
    location = where("lm_eval")
    lines = {("lm_eval",): location.get("line")}
    for key in ("tasks", "metric", "hub", "limit", "num_fewshot"):
        lines[("lm_eval", key)] = where("lm_eval", key).get("line")
    for i in range(len(tasks)):
        lines[("lm_eval", "tasks", i)] = where("lm_eval", "tasks", i).get("line")
    source = LmEvalSource(tasks=tuple(tasks), paths=tuple(paths), num_fewshot=num_fewshot, limit=limit, axis=axis,
                          metric=metric, include_paths=tuple(include_paths), hub=hub,
                          suite_path=Path(location["file"]) if location.get("file") else None, lines=lines)
    # Task files are data: every project task YAML the suite can reach is read now, through the same
    # loader that later loads it, and a custom tag or a `!function` outside lm-eval is refused here.
    vet_reachable([p for p in paths if p is not None and p.is_file()], project_folders(source))
    return source


# --------------------------------------------------------------------------- task YAML: data, not code
#
# The harness reads every task YAML of the project itself, with `_TaskLoader` (PyYAML's SafeLoader plus
# one constructor): lm-eval's own YAML loader (which imports a module placed beside the YAML for
# `!function`) never sees a project file. lm-eval gets the tasks as config dicts, and its TaskManager
# indexes lm-eval's own task folder only, so no project YAML can stand in for one of lm-eval's tasks.
# The rule: plain YAML, plus `!function` (however the tag is spelt: `%TAG` directives resolve before
# the check) naming a function of the installed lm_eval package. Anything else is refused with file and
# line, at suite load (`vet_reachable`) and again whenever a task file is read (`load_task_yaml`).

_SKIP_DIRS = {"__pycache__", ".ipynb_checkpoints"}
_FUNCTION_HINT = ("Task YAMLs are data: plain YAML, plus `!function lm_eval.<module>.<function>` naming a function of "
                  "the installed lm-eval package (e.g. `!function lm_eval.tasks.truthfulqa.utils.process_results_mc2`); "
                  "use lm-eval's built-in metrics (acc, acc_norm, exact_match, ...) instead of project code.")


class _Function(str):
    """A `!function` reference as written, with where it was written."""

    file: Path
    line: int | None

    def __new__(cls, value: str, file: Path, line: int | None) -> _Function:
        obj = super().__new__(cls, value)
        obj.file, obj.line = file, line
        return obj


class _TaskLoader(yaml.SafeLoader):
    """SafeLoader + `!function` (kept as a `_Function`, resolved later against lm_eval only)."""

    task_file: Path = Path("?")


def _construct_function(loader: _TaskLoader, node: yaml.Node) -> _Function:
    line = node.start_mark.line + 1 if node.start_mark else None
    if not isinstance(node, yaml.ScalarNode):
        raise ConfigError("`!function` must name one function (module.function), not a mapping or list.",
                          file=loader.task_file, line=line, hint=_FUNCTION_HINT)
    return _Function(str(loader.construct_scalar(node)).strip(), loader.task_file, line)


_TaskLoader.add_constructor("!function", _construct_function)


def lm_eval_package_dir() -> Path | None:
    """The installed lm_eval package's folder, found without importing it (None if not installed)."""
    try:
        spec = importlib.util.find_spec("lm_eval")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).resolve().parent


def lm_eval_tasks_dir() -> Path:
    package = lm_eval_package_dir()
    if package is None:
        raise HarnessError("lm_eval suites need the lm-eval package (pip install lm-eval); run `make install`.")
    return package / "tasks"


def _inside(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _function_module(fn: _Function, package: Path | None) -> tuple[str, str, Path | None]:
    """(module name, function name, module file) for a `!function`, or a ConfigError if it is not a
    function of the installed lm_eval package. Only lm-eval's own task YAMLs may name a module relative
    to their folder (`utils.process_docs`), which is then lm-eval's own module."""
    module, _, name = str(fn).rpartition(".")
    if not module or not name.isidentifier() or not all(part.isidentifier() for part in module.split(".")):
        raise ConfigError(f"`!function {fn}` is not a module.function name.", file=fn.file, line=fn.line,
                          hint=_FUNCTION_HINT)
    if package is not None and _inside(fn.file, package):
        local = (fn.file.parent / (module.replace(".", "/") + ".py")).resolve()
        if local.is_file() and _inside(local, package):
            dotted = ".".join(local.relative_to(package.parent).with_suffix("").parts)
            return dotted, name, local
    if module != "lm_eval" and not module.startswith("lm_eval."):
        raise ConfigError(f"`!function {fn}` would run code from the project; suites are data, not code.",
                          file=fn.file, line=fn.line, hint=_FUNCTION_HINT)
    if package is None:
        return module, name, None
    relative = Path(*module.split(".")[1:])
    for candidate in (package / relative.with_suffix(".py") if relative.parts else None,
                      package / relative / "__init__.py"):
        if candidate is not None and candidate.is_file():
            return module, name, candidate.resolve()
    raise ConfigError(f"`!function {fn}`: the installed lm-eval package has no module {module}.", file=fn.file,
                      line=fn.line, hint=_FUNCTION_HINT)


def _resolve_function(fn: _Function) -> Callable[..., Any]:
    import importlib

    package = lm_eval_package_dir()
    module_name, name, module_file = _function_module(fn, package)
    module = importlib.import_module(module_name)
    origin = getattr(module, "__file__", None)
    if package is None or origin is None or not _inside(Path(origin), package):
        raise ConfigError(f"`!function {fn}` does not resolve to the installed lm-eval package ({package}).",
                          file=fn.file, line=fn.line, hint=_FUNCTION_HINT)
    target = getattr(module, name, None)
    if not callable(target):
        raise ConfigError(f"`!function {fn}`: lm-eval's module {module_name} has no function {name}.", file=fn.file,
                          line=fn.line, hint=_FUNCTION_HINT)
    return target


def _parse_task_yaml(path: Path) -> Any:
    """One task YAML file through `_TaskLoader`; a refused tag or a syntax error names file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"task YAML is not UTF-8 text (byte {exc.start}).", file=path,
                          hint="Save the file as UTF-8.") from None
    except OSError as exc:
        raise ConfigError(f"cannot read task YAML: {exc.strerror or exc}.", file=path) from None
    loader = _TaskLoader(text)
    loader.task_file = path
    try:
        return loader.get_single_data()
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark or exc.context_mark
        tag = None
        if exc.problem and "for the tag" in exc.problem:
            tag = exc.problem.split("for the tag", 1)[1].strip().strip("'\"")
        message = (f"YAML tag '{tag}' is not allowed in a task file (only `!function` naming a function of the "
                   "installed lm-eval package)." if tag else f"task YAML is not plain data: {exc.problem or exc}.")
        raise ConfigError(message, file=path, line=mark.line + 1 if mark else None, hint=_FUNCTION_HINT) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(f"task YAML is not valid YAML: {getattr(exc, 'problem', None) or exc}.", file=path,
                          line=mark.line + 1 if mark else None,
                          hint="Task YAMLs are plain YAML (plus `!function lm_eval.<module>.<function>`).") from None
    finally:
        loader.dispose()


def _check_values(value: Any, path: Path, key: str, package: Path | None, resolve: bool) -> Any:
    """Vet every value of a parsed task YAML; with `resolve`, `!function`s become lm-eval's functions."""
    if isinstance(value, _Function):
        _function_module(value, package)
        return _resolve_function(value) if resolve else f"!function {value}"
    if isinstance(value, str):
        if "__" in value and ("{{" in value or "{%" in value):
            raise ConfigError("a template reaches into Python internals ('__'); refused.", file=path, key=key or None)
        return value
    if isinstance(value, dict):
        for k in value:
            if isinstance(k, _Function):
                raise ConfigError("`!function` may not be a key.", file=path, line=k.line, hint=_FUNCTION_HINT)
        return {k: _check_values(v, path, f"{key}.{k}" if key else str(k), package, resolve) for k, v in value.items()}
    if isinstance(value, list):
        return [_check_values(v, path, f"{key}.{i}", package, resolve) for i, v in enumerate(value)]
    return value


def load_task_yaml(path: Path, *, resolve: bool = False, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A task YAML as lm-eval reads it (`include:` files merged under the file's own keys, `task_list` of
    included files dropped), but through `_TaskLoader`: with `resolve`, `!function`s are lm-eval's own
    functions; without, the text "!function <name>". Every included file is vetted the same way."""
    path = path.expanduser().resolve()
    if path in _seen:
        raise ConfigError(f"task YAML includes itself (through {' -> '.join(p.name for p in _seen)}).", file=path)
    package = lm_eval_package_dir()
    cfg = _parse_task_yaml(path)
    if not isinstance(cfg, dict):
        raise ConfigError(f"a task YAML must be a mapping (task:, dataset_path:, ...), got {type(cfg).__name__}.",
                          file=path)
    cfg = _check_values(cfg, path, "", package, resolve)
    if "include" not in cfg:
        return cfg
    includes = cfg.pop("include")
    merged: dict[str, Any] = {}
    for include in includes if isinstance(includes, list) else [includes]:
        if not isinstance(include, str):
            raise ConfigError(f"include must name a YAML file, got {include!r}.", file=path, key="include")
        target = Path(include).expanduser()
        target = target if target.is_absolute() else path.parent / target
        if not target.is_file():
            raise ConfigError(f"included task YAML not found: {target}.", file=path, key="include",
                              hint="include: paths are relative to the including YAML's folder.")
        included = load_task_yaml(target, resolve=resolve, _seen=(*_seen, path))
        included.pop("task_list", None)
        merged.update(included)
    merged.update(cfg)
    return merged


def _folder_yamls(folder: Path) -> list[Path]:
    """The task YAMLs lm-eval would index in a folder (`**/*.yaml`); in a project folder, not those of an
    lm-eval package installed inside it."""
    package = None if _inside(folder, lm_eval_package_dir()) else lm_eval_package_dir()
    return sorted((p for p in folder.glob("**/*.yaml") if not any(part in _SKIP_DIRS for part in p.parts)
                   and not _inside(p, package)), key=lambda p: p.as_posix())


def vet_reachable(files: list[Path], folders: list[Path]) -> None:
    """Suite load: read every task YAML the suite can reach (the listed files, every YAML of the listed
    and include_path folders, everything they include) through `_TaskLoader`, without running anything.
    Files the suite names must parse; a folder's other YAMLs that are not YAML at all are skipped (as
    lm-eval's index skips them), but a refused tag or `!function` anywhere is an error."""
    package = lm_eval_package_dir()
    for path in files:
        if not _inside(path, package):
            load_task_yaml(path)
    for folder in folders:
        for path in _folder_yamls(folder):
            try:
                load_task_yaml(path)
            except ConfigError as exc:
                if exc.message.startswith("task YAML is not valid YAML") and exc.file == str(path.resolve()):
                    continue
                raise


def vet_task_yaml(path: Path) -> None:
    """Check one task YAML (and its includes) without running anything: a ConfigError if it is not data."""
    load_task_yaml(path)


def _kind_of(cfg: dict[str, Any]) -> str | None:
    """lm-eval's classification of a task config (TaskIndex._kind_of): PY_TASK, GROUP, TASK or None."""
    if "class" in cfg:
        return "PY_TASK"
    if "group" in cfg:
        return "GROUP"
    if "task" in cfg:
        return "TASK"
    return None


@dataclass
class ProjectEntry:
    """A task, group or tag defined by the project's own task YAMLs (read by `load_task_yaml`)."""

    name: str
    kind: str
    """TASK, PY_TASK, GROUP or TAG (lm-eval's kinds, by name)."""
    yaml_path: Path | None
    cfg: dict[str, Any] | None = None
    tags: set[str] = field(default_factory=set)


def project_index(folders: list[Path]) -> dict[str, ProjectEntry]:
    """The project's tasks, groups and tags in `folders`, as lm-eval's TaskIndex would list them (later
    folders win; within a folder the first definition of a name wins), read through `_TaskLoader`."""
    index: dict[str, ProjectEntry] = {}
    for folder in folders:
        found: dict[str, ProjectEntry] = {}
        for path in _folder_yamls(folder):
            try:
                cfg = load_task_yaml(path)
            except ConfigError as exc:
                if exc.message.startswith("task YAML is not valid YAML") and exc.file == str(path.resolve()):
                    continue
                raise
            _index_cfg(cfg, path.resolve(), found)
        index.update(found)
    return index


def _index_cfg(cfg: dict[str, Any], path: Path, found: dict[str, ProjectEntry]) -> ProjectEntry | None:
    kind = _kind_of(cfg)
    if kind is None:
        return None
    name = cfg["group"] if kind == "GROUP" else cfg.get("task")
    if not isinstance(name, str) or name in found:
        return found.get(name) if isinstance(name, str) else None
    tags = cfg.get("tag") or []
    tags = {tags} if isinstance(tags, str) else {t for t in tags if isinstance(t, str)}
    entry = found[name] = ProjectEntry(name=name, kind=kind, yaml_path=path, cfg=cfg, tags=tags)
    if kind != "GROUP":
        for tag in tags:
            found.setdefault(tag, ProjectEntry(name=tag, kind="TAG", yaml_path=None)).tags.add(name)
    return entry


def entry_from_file(path: Path) -> ProjectEntry | None:
    """The task or group one project YAML defines (None if it defines neither)."""
    return _index_cfg(load_task_yaml(path), path.resolve(), {})


@contextlib.contextmanager
def sandboxed_templates():
    """Render lm-eval's Jinja templates (doc_to_text, doc_to_choice, ...) in Jinja's sandbox while the
    harness runs tasks: a template cannot reach Python internals, whatever the task YAML says."""
    import lm_eval.utils as lm_utils
    from jinja2 import BaseLoader, StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    original = lm_utils.env
    sandbox = SandboxedEnvironment(loader=BaseLoader, undefined=StrictUndefined, keep_trailing_newline=True)
    sandbox.filters.update(original.filters)
    lm_utils.env = sandbox
    try:
        yield
    finally:
        lm_utils.env = original



# --------------------------------------------------------------------------- resolving tasks


@dataclass
class TaskInfo:
    name: str
    yaml_path: Path | None
    output_type: str | None
    metrics: list[str]
    higher_is_better: dict[str, bool]
    filters: list[str]
    n_docs: int
    metric: str = ""
    filter: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    """What identifies the task's data: config hash, local data files with their hashes, or the hub id."""


@dataclass
class Prepared:
    """A suite's tasks, resolved and checked once, ready for lm-eval's evaluator per variant."""

    source: LmEvalSource
    task_manager: Any
    specs: list[Any]
    """What simple_evaluate gets: full task config dicts (data paths made absolute) or group names."""
    tasks: dict[str, TaskInfo]
    version: str

    @property
    def data_sha256(self) -> str:
        payload = {name: info.data for name, info in sorted(self.tasks.items())}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()

    def n_cases(self, limit: int | None) -> int:
        return sum(min(t.n_docs, limit) if limit else t.n_docs for t in self.tasks.values())


_MANAGERS: dict[tuple, Any] = {}


def _task_manager(include: tuple[Path, ...], defaults: bool):
    """lm-eval's TaskManager over lm-eval's own task folders only (`include` are folders of lm-eval's
    package; never a project folder: the project's task YAMLs are read by the harness, see
    `load_task_yaml`). Indexing all of lm-eval's tasks takes ~15 s; kept per process."""
    key = (tuple(str(p) for p in include), defaults)
    if key not in _MANAGERS:
        from lm_eval.tasks import TaskManager

        _MANAGERS[key] = TaskManager(include_path=[str(p) for p in include] or None, include_defaults=defaults)
    return _MANAGERS[key]


def _manager_for(names: list[str]):
    """A TaskManager of lm-eval's own tasks that knows `names` if lm-eval has them: the matching folders
    of lm-eval's tasks (fast), else lm-eval's whole registry."""
    if not names:
        return _task_manager((), False)
    tasks_dir = lm_eval_tasks_dir()
    candidates = sorted({tasks_dir / d for n in names for d in (n, n.split("_")[0]) if (tasks_dir / d).is_dir()})
    if candidates:
        manager = _task_manager(tuple(candidates), False)
        if all(n in manager.task_index and manager.task_index[n].kind.name in ("TASK", "PY_TASK") for n in names):
            return manager
    return _task_manager((), True)


def _absolute_data(cfg: dict[str, Any], base: Path, where: dict[str, Any], task: str) -> list[Path]:
    """Make relative data paths absolute against the task YAML's folder; return the local files."""
    files: list[Path] = []
    kwargs = cfg.get("dataset_kwargs") or {}

    def fix(value: str) -> str:
        candidate = Path(value)
        if not candidate.is_absolute():
            if any(ch in value for ch in "*?["):
                matched = sorted(base.glob(value))
                if matched:
                    files.extend(matched)
                    return str(base / value)
            elif (base / value).exists():
                candidate = base / value
        if any(ch in value for ch in "*?[") and candidate.is_absolute():
            matched = sorted(candidate.parent.glob(candidate.name))
            files.extend(matched)
            if matched:
                return str(candidate)
        if not candidate.exists():
            raise ConfigError(f"task '{task}': data file not found: {value} (looked in {base}).", **where,
                              hint="data_files in a task YAML are relative to the YAML's folder.")
        files.append(candidate.resolve())
        return str(candidate.resolve())

    data_files = kwargs.get("data_files")
    if isinstance(data_files, str):
        kwargs["data_files"] = fix(data_files)
    elif isinstance(data_files, list):
        kwargs["data_files"] = [fix(v) for v in data_files]
    elif isinstance(data_files, dict):
        kwargs["data_files"] = {split: (fix(v) if isinstance(v, str) else [fix(x) for x in v])
                                for split, v in data_files.items()}
    if isinstance(kwargs.get("data_dir"), str):
        kwargs["data_dir"] = fix(kwargs["data_dir"])
    dataset_path = cfg.get("dataset_path")
    if isinstance(dataset_path, str) and dataset_path not in LOCAL_BUILDERS and not Path(dataset_path).is_absolute() \
            and (base / dataset_path).exists():
        cfg["dataset_path"] = str((base / dataset_path).resolve())
        files.append(Path(cfg["dataset_path"]))
    if kwargs:
        cfg["dataset_kwargs"] = kwargs
    return files


def _is_local(cfg: dict[str, Any]) -> bool:
    path = cfg.get("dataset_path")
    return (cfg.get("custom_dataset") is not None or path in LOCAL_BUILDERS
            or (isinstance(path, str) and Path(path).is_absolute() and Path(path).exists()))


def _hub_members(entry, index: dict, seen: set[str] | None = None) -> list[tuple[str, str]]:
    """(task, hub dataset) for every member task of one of lm-eval's groups or tags that reads from the Hub."""
    seen = seen if seen is not None else set()
    if entry.name in seen:
        return []
    seen.add(entry.name)
    cfg = entry.cfg or {}
    if entry.kind.name == "TAG":
        members: list[Any] = sorted(entry.tags)
    elif entry.kind.name == "GROUP":
        members = cfg.get("task") or []
        members = members if isinstance(members, list) else [members]
    else:
        local = copy.deepcopy(cfg)
        base = Path(entry.yaml_path).parent if entry.yaml_path else Path.cwd()
        with contextlib.suppress(ConfigError):
            _absolute_data(local, base, {}, entry.name)
        return [] if _is_local(local) or "dataset_path" not in local else [(entry.name, str(local["dataset_path"]))]
    found: list[tuple[str, str]] = []
    for member in members:
        name = member.get("task") if isinstance(member, dict) else member
        if isinstance(member, dict) and "group" in member:
            name = member["group"]
        if isinstance(name, str) and name in index:
            found += _hub_members(index[name], index, seen)
        elif isinstance(member, dict) and member.get("dataset_path"):  # an inline task
            if not _is_local(member):
                found.append((str(name), str(member["dataset_path"])))
    return found


def _sha256_path(path: Path) -> str:
    digest = hashlib.sha256()
    targets = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for target in targets:
        digest.update(target.name.encode())
        with target.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def project_folders(source: LmEvalSource) -> list[Path]:
    """The project folders whose task YAMLs a suite can reach by name: include_path folders, the listed
    folders and the folders of the listed files (as lm-eval's include_path would index them)."""
    folders: list[Path] = list(source.include_paths)
    for path in source.paths:
        if path is not None:
            folder = path if path.is_dir() else path.parent
            if folder not in folders:
                folders.append(folder)
    return folders


def prepare(source: LmEvalSource, *, axis_direction: str = "higher") -> Prepared:
    """Resolve the suite's tasks, check them (safety, local data, metrics) and load each once.

    The project's task YAMLs are read by `load_task_yaml` (data only) and reach lm-eval as config
    dicts; lm-eval's TaskManager knows lm-eval's own tasks only, so it never reads a project file."""
    from harness.versions import check

    check(["lm-eval"], "lm_eval suites")
    import lm_eval

    tasks_dir = lm_eval_tasks_dir()
    folders = project_folders(source)
    vet_reachable([p for p in source.paths if p is not None and p.is_file()], folders)
    local_index = project_index(folders)

    entries: list[tuple[int, Any]] = []
    names: list[tuple[int, str]] = []
    for i, (task, path) in enumerate(zip(source.tasks, source.paths, strict=True)):
        if path is None:
            if task in local_index:
                entries.append((i, local_index[task]))
            else:
                names.append((i, task))
        elif path.is_file():
            entry = entry_from_file(path)
            if entry is None:
                raise ConfigError("not an lm-eval task YAML (no `task:` or `group:` key).", file=path,
                                  hint="A task YAML has `task: <name>` (or `group: <name>` with `task: [...]`).")
            entries.append((i, entry))
        else:
            found = [e for e in project_index([path]).values() if e.kind in ("TASK", "PY_TASK")]
            if not found:
                raise ConfigError(f"no lm-eval task YAML in folder {path}.", **source.where("tasks", i))
            entries.extend((i, e) for e in sorted(found, key=lambda e: e.name))
    manager = _manager_for([n for _, n in names])
    for i, name in names:
        entry = manager.task_index.get(name)
        if entry is None:
            manager = _task_manager((), True)
            entry = manager.task_index.get(name)
        if entry is None:
            close = difflib.get_close_matches(name, [*manager.all_tasks, *local_index], n=3)
            raise ConfigError(f"lm-eval has no task, group or tag named '{name}'.", **source.where("tasks", i),
                              hint=(f"Did you mean {', '.join(repr(c) for c in close)}? " if close else "")
                              + "Name a task of lm-eval's registry or give a path to a task YAML (relative to the suite).")
        entries.append((i, entry))

    def lookup(name: str):
        """A member name: the project's tasks first (as lm-eval's include_path would override), then lm-eval's."""
        nonlocal manager
        if name in local_index:
            return local_index[name]
        if name not in manager.task_index:
            manager = _task_manager((), True)
        return manager.task_index.get(name)

    specs: list[Any] = []
    data_of: dict[str, dict[str, Any]] = {}
    group_fields = {"group", "group_alias", "task", "aggregate_metric_list", "metadata"}

    def add_task(entry, where: dict[str, Any], raw_over: dict[str, Any], full_over: dict[str, Any]) -> None:
        yaml_path = Path(entry.yaml_path)
        raw = {**load_task_yaml(yaml_path), **raw_over}
        name = raw.get("task", entry.name)
        files = _absolute_data(raw, yaml_path.parent, where, name)
        if not _is_local(raw) and not source.hub:
            raise ConfigError(
                f"task '{name}' reads its data from the Hugging Face Hub (dataset_path: {raw.get('dataset_path')}, "
                f"task YAML {entry.yaml_path}), which this suite does not allow.", **where, hint=HUB_HINT)
        cfg = {**load_task_yaml(yaml_path, resolve=True), **full_over}
        _absolute_data(cfg, yaml_path.parent, where, name)
        cfg["task"] = name
        specs.append(cfg)
        data_of[name] = {
            "config_sha256": hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest(),
            "yaml": str(entry.yaml_path),
            "files": {str(f): _sha256_path(f) for f in files},
            **({} if _is_local(raw) else {"hub": raw.get("dataset_path"), "name": raw.get("dataset_name"),
                                          "revision": (raw.get("dataset_kwargs") or {}).get("revision")}),
        }

    def add(entry, where: dict[str, Any], raw_over: dict[str, Any], full_over: dict[str, Any], depth: int = 0) -> None:
        nonlocal manager
        if depth > 20:
            raise ConfigError(f"groups nest too deeply at '{entry.name}'.", **where)
        kind = entry.kind if isinstance(entry, ProjectEntry) else entry.kind.name
        own = not isinstance(entry, ProjectEntry) and (entry.yaml_path is None or _inside(entry.yaml_path, tasks_dir))
        if kind == "TASK" and entry.yaml_path is not None:
            add_task(entry, where, raw_over, full_over)
        elif kind == "PY_TASK" and not own:
            add_task(entry, where, raw_over, full_over)  # its `class` is a function of lm-eval (checked on load)
        elif kind == "TAG":
            for member in sorted(entry.tags):
                target = lookup(member)
                if target is not None:
                    add(target, where, raw_over, full_over, depth + 1)
        elif kind == "GROUP" and not own:
            # A project group runs as its member tasks (per-item records; group aggregates are not used),
            # so that every member's local data paths resolve against its own YAML's folder.
            raw_group = load_task_yaml(Path(entry.yaml_path))
            full_group = load_task_yaml(Path(entry.yaml_path), resolve=True)
            raw_base = {**{k: v for k, v in raw_group.items() if k not in group_fields}, **raw_over}
            full_base = {**{k: v for k, v in full_group.items() if k not in group_fields}, **full_over}
            members = raw_group.get("task") or []
            full_members = full_group.get("task") or []
            for item, full_item in zip(members if isinstance(members, list) else [members],
                                       full_members if isinstance(full_members, list) else [full_members],
                                       strict=True):
                name = item.get("task", item.get("group")) if isinstance(item, dict) else item
                extra = {k: v for k, v in item.items() if k not in ("task", "group")} if isinstance(item, dict) else {}
                full_extra = ({k: v for k, v in full_item.items() if k not in ("task", "group")}
                              if isinstance(full_item, dict) else {})
                target = lookup(name) if isinstance(name, str) else None
                if target is None:
                    raise ConfigError(f"group '{entry.name}' names '{name}', which is not a task of its folder or of "
                                      "lm-eval's registry (inline task definitions in project groups are not "
                                      "supported: give each task its own YAML).", file=entry.yaml_path, key="task")
                add(target, where, {**raw_base, **extra}, {**full_base, **full_extra}, depth + 1)
        else:  # lm-eval's own groups, tags and Python tasks: lm-eval builds them from its own files
            remote = [] if source.hub else _hub_members(entry, manager.task_index)
            if remote:
                member, dataset = remote[0]
                raise ConfigError(
                    f"'{entry.name}' includes task '{member}', which reads its data from the Hugging Face Hub "
                    f"(dataset_path: {dataset}){f' (and {len(remote) - 1} more)' if len(remote) > 1 else ''}; this "
                    "suite does not allow that.", **where, hint=HUB_HINT)
            if entry.name not in manager.task_index:
                manager = _task_manager((), True)
            specs.append(entry.name)

    for i, entry in entries:
        add(entry, source.where("tasks", i), {}, {})

    try:
        with sandboxed_templates():
            loaded = manager.load(copy.deepcopy(specs))
    except HarnessError:
        raise
    except Exception as exc:
        text = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:400].rstrip(".")
        data_problem = isinstance(exc, (OSError, ConnectionError)) or any(
            word in f"{type(exc).__name__} {exc}" for word in ("Hub", "Offline", "Dataset", "data_files"))
        hint = (LOCAL_HINT if source.hub else HUB_HINT) if data_problem else \
            "Check the task YAML against lm-eval's task guide (this is lm-eval's own error)."
        raise ConfigError(f"lm-eval could not load the tasks {', '.join(source.tasks)}: {text}.",
                          **source.where("tasks"), hint=hint) from None

    infos: dict[str, TaskInfo] = {}
    for name, task in loaded["tasks"].items():
        metrics = list(getattr(task, "_metric_fn_list", {}) or {})
        filters = [f.name for f in getattr(task, "_filters", [])] or ["none"]
        try:
            n_docs = len(task.eval_docs)
        except Exception:  # noqa: BLE001 - a count for the manifest only
            n_docs = 0
        info = TaskInfo(name=name, yaml_path=None, output_type=getattr(task, "OUTPUT_TYPE", None), metrics=metrics,
                        higher_is_better=dict(getattr(task, "_higher_is_better", {}) or {}), filters=filters,
                        n_docs=n_docs, data=data_of.get(name, {"group_member": True}))
        info.metric, info.filter = _choose_metric(source, info)
        if info.output_type == "loglikelihood_rolling":
            raise ConfigError(f"task '{name}' is a perplexity task (loglikelihood_rolling), which the harness's "
                              "backends cannot score.", **source.where("tasks"))
        better = info.higher_is_better.get(info.metric, True)
        if better != (axis_direction == "higher"):
            raise ConfigError(
                f"task '{name}': metric {info.metric} is {'higher' if better else 'lower'}-is-better in lm-eval, but axis "
                f"'{source.axis}' is {axis_direction}-is-better.", **source.where("metric"),
                hint=f"Pick another metric or declare axes: {{{source.axis}: {'higher' if better else 'lower'}}}.")
        infos[name] = info
    if isinstance(source.metric, tuple):
        for task_name, _ in source.metric:
            if task_name not in infos:
                close = difflib.get_close_matches(task_name, infos, n=1)
                raise ConfigError(f"lm_eval.metric names task '{task_name}', which the suite does not run.",
                                  **source.where("metric"),
                                  hint=f"Did you mean '{close[0]}'?" if close else f"Tasks: {', '.join(infos)}.")
    return Prepared(source=source, task_manager=manager, specs=specs, tasks=infos,
                    version=getattr(lm_eval, "__version__", "unknown"))


def _choose_metric(source: LmEvalSource, info: TaskInfo) -> tuple[str, str]:
    wanted = source.metric_for(info.name)
    if wanted is None:
        metric = next((m for m in DEFAULT_METRICS if m in info.metrics), info.metrics[0] if info.metrics else "")
        if not metric:
            raise ConfigError(f"task '{info.name}' declares no metric.", **source.where("tasks"))
        return metric, info.filters[0]
    metric, _, filter_name = wanted.partition(",")
    metric, filter_name = metric.strip(), filter_name.strip()
    if metric not in info.metrics:
        raise ConfigError(f"task '{info.name}' has no metric '{metric}' (it has: {', '.join(info.metrics)}).",
                          **source.where("metric"))
    if filter_name and filter_name not in info.filters:
        raise ConfigError(f"task '{info.name}' has no filter '{filter_name}' (it has: {', '.join(info.filters)}).",
                          **source.where("metric"), hint="Write 'metric,filter', e.g. 'exact_match,strict-match'.")
    return metric, filter_name or info.filters[0]


# --------------------------------------------------------------------------- the lm-eval model


def _make_harness_lm_class():
    from lm_eval.api.model import LM

    from harness.backends import GenerateRequest, LoglikelihoodRequest

    class HarnessLM(LM):
        """lm-eval's model interface over a harness backend: requests go through the harness's cache
        (`Runner._through_cache`: same keys, same batching, committed batch by batch) and its engine
        pool; `adapter` rides along per request.

        `HarnessLM(backend, adapter, cache, fingerprint)` wraps one backend (an instance, or a
        zero-argument callable that loads it on first use); inside a run, `runner=` and `spec=` share
        the run's cache, counters and engine pool instead.
        """

        def __init__(self, backend=None, adapter=None, cache=None, fingerprint: str | None = None, *,
                     runner=None, spec=None, progress=None, label: str = "lm-eval") -> None:
            super().__init__()
            if runner is None:
                from harness.engine.runner import BackendPool, Runner, engine_fingerprint

                if backend is None or cache is None:
                    raise HarnessError("HarnessLM needs a backend and a GenerationCache (or runner= and spec=).")
                from harness.backends import Backend

                loaded = backend if isinstance(backend, Backend) else None
                spec = spec or (loaded.spec if loaded is not None else getattr(backend, "spec", None))
                if spec is None:
                    raise HarnessError("HarnessLM(backend=...) needs a Backend, or a zero-argument callable and spec=.")
                runner = Runner(models=None, cache=cache,
                                pool=BackendPool(factory=lambda s: loaded if loaded is not None else backend()))
                runner._fingerprints[spec] = fingerprint or engine_fingerprint(spec)
            self.runner = runner
            self.spec = spec
            self.adapter = adapter
            self.progress = progress
            self.label = label
            self.cached: dict[tuple[str | None, int | None], bool] = {}

        def _through(self, requests: list, kind: str, instances: list):
            if self.progress is not None:
                with self.progress.task(f"{self.label} ({kind})", len(requests)) as tick:
                    values, flags = self.runner._through_cache(self.spec, requests, kind, tick)
            else:
                values, flags = self.runner._through_cache(self.spec, requests, kind, lambda n: None)
            for instance, flag in zip(instances, flags, strict=True):
                key = (instance.task_name, instance.doc_id)
                self.cached[key] = self.cached.get(key, True) and bool(flag)
            return values

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            batch = []
            for instance in requests:
                context, continuation = instance.args
                # lm-eval's convention (HFLM._encode_pair): trailing whitespace of the context is
                # scored as the start of the continuation.
                stripped = context.rstrip()
                if stripped and stripped != context:
                    context, continuation = stripped, context[len(stripped):] + continuation
                batch.append(LoglikelihoodRequest(context=context, continuation=continuation, adapter=self.adapter))
            values = self._through(batch, "loglikelihood", requests)
            return [(float(v["logprob"]), bool(v["is_greedy"])) for v in values]

        def generate_until(self, requests, disable_tqdm: bool = False):
            batch = []
            for instance in requests:
                context, gen_kwargs = instance.args
                kwargs = dict(gen_kwargs or {})
                until = kwargs.get("until") or []
                until = [until] if isinstance(until, str) else list(until)
                max_tokens = int(kwargs.get("max_gen_toks", kwargs.get("max_new_tokens", 256)))
                temperature = float(kwargs.get("temperature", 0.0) or 0.0) if kwargs.get("do_sample") else 0.0
                top_p = float(kwargs.get("top_p", 1.0) or 1.0)
                batch.append(GenerateRequest.chat([{"role": "user", "content": context}], adapter=self.adapter,
                                                  max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                                                  stop=tuple(until)))
            values = self._through(batch, "generate", requests)
            return [v["text"] for v in values]

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            raise HarnessError("perplexity tasks (loglikelihood_rolling) are not supported: the harness's backends "
                               "score continuations of a context only.")

        def get_model_info(self) -> dict[str, Any]:
            return {"harness_model": self.spec.model, "harness_backend": self.spec.backend,
                    "harness_adapter": str(self.adapter.path) if self.adapter else None}

    return HarnessLM


_CLASSES: dict[str, type] = {}


def __getattr__(name: str):
    if name == "HarnessLM":
        if name not in _CLASSES:
            _CLASSES[name] = _make_harness_lm_class()
        return _CLASSES[name]
    raise AttributeError(name)


# --------------------------------------------------------------------------- running a suite


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    try:  # numpy scalars
        import numpy as np

        if isinstance(value, np.generic) and np.issubdtype(type(value), np.number):
            return float(value)
    except ImportError:  # pragma: no cover
        pass
    return None


def _gen_kwargs(generation: dict[str, Any]) -> dict[str, Any] | None:
    """A suite's `generation:` as lm-eval gen_kwargs for generate_until tasks."""
    out: dict[str, Any] = {}
    if "max_tokens" in generation:
        out["max_gen_toks"] = generation["max_tokens"]
    if "temperature" in generation:
        out["temperature"] = generation["temperature"]
        out["do_sample"] = generation["temperature"] > 0
    if "top_p" in generation:
        out["top_p"] = generation["top_p"]
    if generation.get("stop"):
        out["until"] = list(generation["stop"]) if not isinstance(generation["stop"], str) else [generation["stop"]]
    return out or None


def _records(suite, variant_name: str, prepared: Prepared, results: dict[str, Any], cached: dict) -> list[dict]:
    axis = prepared.source.axis
    records = []
    samples = results.get("samples") or {}
    for task_name, info in prepared.tasks.items():
        by_doc: dict[int, dict[str, dict]] = {}
        for sample in samples.get(task_name, []):
            by_doc.setdefault(sample["doc_id"], {})[sample.get("filter", "none")] = sample
        for doc_id in sorted(by_doc):
            per_filter = by_doc[doc_id]
            chosen = per_filter.get(info.filter) or next(iter(per_filter.values()))
            value = _number(chosen.get(info.metric))
            if value is None:
                raise ConfigError(
                    f"task '{task_name}': metric {info.metric} has no per-item value in lm-eval (it is computed over the "
                    "whole corpus), so items cannot be paired.", **prepared.source.where("metric"),
                    hint=f"Pick a per-item metric of the task: {', '.join(info.metrics)}.")
            checks: dict[str, dict[str, Any]] = {}
            for filter_name, sample in per_filter.items():
                for metric in sample.get("metrics", []):
                    number = _number(sample.get(metric))
                    if number is None:
                        continue
                    key = metric if len(per_filter) == 1 else f"{metric},{filter_name}"
                    checks[key] = {"score": number}
            arguments = chosen.get("arguments") or []
            context = arguments[0][0] if arguments and isinstance(arguments[0][0], str) else ""
            target = chosen.get("target")
            record: dict[str, Any] = {
                "suite": suite.name,
                "variant": variant_name,
                "case_id": f"{task_name}/{doc_id}",
                "task": task_name,
                "prompt": [{"role": "user", "content": context}],
                "output": None,
                "reference": None,
                "scores": {axis: value},
                "checks": {},
                "cached": bool(cached.get((task_name, doc_id), True)),
            }
            main_key = info.metric if len(per_filter) == 1 else f"{info.metric},{info.filter}"
            main = checks.setdefault(main_key, {"score": value})
            main["details"] = {"lm_eval_task": task_name, "metric": info.metric, "filter": info.filter,
                               "doc_id": doc_id}
            if info.output_type == "multiple_choice":
                choices = [a[1] for a in arguments]
                lls = [r[0] if isinstance(r, (list, tuple)) else r for r in chosen.get("filtered_resps", [])]
                record["choices"] = [c[1:] if c.startswith(" ") else c for c in choices]
                record["choice_logprobs"] = [float(x) if math.isfinite(float(x)) else None for x in lls]
                if isinstance(target, int) and not isinstance(target, bool):
                    record["answer"] = target
                    if 0 <= target < len(record["choices"]):
                        record["reference"] = record["choices"][target]
                elif isinstance(target, list):
                    main_targets = [t for t in target if isinstance(t, int)]
                    record["reference"] = json.dumps([record["choices"][t] for t in main_targets
                                                      if 0 <= t < len(record["choices"])], ensure_ascii=False)
                if lls and value == 0.0 and info.metric in ("acc", "acc_norm", "acc_bytes"):
                    if info.metric == "acc":
                        scaled = lls
                    else:
                        texts = record["choices"]
                        lengths = [len(c) if info.metric == "acc_norm" else len(c.encode("utf-8")) for c in texts]
                        scaled = [ll / max(1, n) for ll, n in zip(lls, lengths, strict=False)]
                    picked = max(range(len(scaled)), key=lambda k: scaled[k])
                    main["reason"] = f"picked choice {picked} ({info.metric})"
            else:
                resps = chosen.get("filtered_resps") or []
                first = resps[0] if resps else None
                record["output"] = first if isinstance(first, str) else (None if first is None else json.dumps(first))
                record["reference"] = target if isinstance(target, str) else json.dumps(target, default=str)
                if value < 1 and info.metric == "exact_match":
                    main["reason"] = "differs from the reference"
            record["checks"] = {axis: checks}
            records.append(record)
    return records


def run_variant(suite, prepared: Prepared, runner, variant, limit: int | None, progress) -> tuple[list[dict], dict]:
    """One variant over the suite's lm-eval tasks: lm-eval's evaluator with HarnessLM; records + run info."""
    from harness.backends import Adapter
    from harness.config.files import sha256_dir
    from harness.engine.runner import engine_spec

    if variant.is_recorded:
        raise HarnessError(f"variant '{variant.name}' has recorded outputs, which cannot run lm-eval tasks "
                           "(they need log-likelihoods or live generation).")
    spec = engine_spec(variant)
    from harness.backends import implementation_info

    info: dict[str, Any] = {"engine_fingerprint": runner.fingerprint(spec), "backend": spec.backend,
                            "implementation": implementation_info(spec.backend), "suite_data": prepared.data_sha256}
    adapter = None
    if variant.adapter is not None:
        adapter = Adapter(name=variant.name, path=variant.adapter, sha256=sha256_dir(variant.adapter))
        info["adapter_sha256"] = adapter.sha256
        info["adapter_guard"] = runner.check_adapter(spec, adapter)
    num_fewshot = variant.fewshot or prepared.source.num_fewshot
    lm = _CLASSES.get("HarnessLM") or __getattr__("HarnessLM")
    model = lm(runner=runner, spec=spec, adapter=adapter, progress=progress, label=f"{suite.name} / {variant.name}")
    from lm_eval.evaluator import simple_evaluate

    try:
        with sandboxed_templates():
            results = simple_evaluate(
                model=model, tasks=copy.deepcopy(prepared.specs), task_manager=prepared.task_manager,
                num_fewshot=num_fewshot, limit=limit, log_samples=True, bootstrap_iters=0,
                system_instruction=variant.system_prompt, gen_kwargs=_gen_kwargs(suite.generation or {}),
            )
    except HarnessError:
        raise
    except Exception as exc:
        raise HarnessError(f"lm-eval failed on suite '{suite.name}' / variant '{variant.name}': "
                           f"{type(exc).__name__}: {str(exc)[:400]}") from exc
    records = _records(suite, variant.name, prepared, results, model.cached)
    info["lm_eval"] = {
        "version": prepared.version,
        "num_fewshot": num_fewshot,
        "limit": limit,
        "system_instruction": variant.system_prompt,
        "tasks": {name: {"metric": t.metric, "filter": t.filter, "n": sum(r["task"] == name for r in records),
                         "results": {k: v for k, v in (results.get("results", {}).get(name) or {}).items()
                                     if _number(v) is not None}}
                  for name, t in prepared.tasks.items()},
    }
    return records, info


def suite_manifest(suite, prepared: Prepared, variants: list[str], limit: int | None) -> dict[str, Any]:
    source = prepared.source
    return {
        "path": str(suite.path),
        "sha256": suite.sha256,
        "data": {"lm_eval": {name: t.data for name, t in prepared.tasks.items()}, "sha256": prepared.data_sha256},
        "holdout": None,
        "seed": None,
        "n_cases": prepared.n_cases(limit),
        "n_fewshot_pool": 0,
        "variants": variants,
        "baseline": suite.baseline,
        "axes": {source.axis: {"direction": suite.axis_direction(source.axis), "binary": True, "checks": ["lm_eval"]}},
        "gates": [g.text for g in suite.gates],
        "alpha": suite.alpha,
        "gate_mode": suite.gate_mode,
        "inconclusive": suite.inconclusive,
        "holm": suite.holm,
        "marks": suite.marks,
        "warnings": [],
        "lm_eval": {"version": prepared.version, "tasks": list(source.tasks), "num_fewshot": source.num_fewshot,
                    "limit": limit, "metrics": {n: t.metric + ("" if t.filter in ("none", "") else f",{t.filter}")
                                                for n, t in prepared.tasks.items()}},
    }


def run_suite(suite, runner, models, options, manifest: dict[str, Any], writer, progress,
              log: Callable[[str], None]) -> list[dict[str, Any]]:
    """`run_suites`' step for a suite with `lm_eval:`: every variant through lm-eval's evaluator, sharing
    the run's cache, counters and engine pool. Writes records and manifest entries like native suites."""
    from harness.engine.runner import variant_manifest

    source: LmEvalSource = suite.lm_eval
    limits = [v for v in (source.limit, options.limit) if v is not None]
    limit = min(limits) if limits else None
    prepared = prepare(source, axis_direction=suite.axis_direction(source.axis))
    names = [v for v in suite.variants if options.variants is None or v in options.variants]
    manifest["suites"][suite.name] = suite_manifest(suite, prepared, names, limit)
    writer.write_manifest(manifest)
    out: list[dict[str, Any]] = []
    for name in names:
        variant = models.get(name, where=str(suite.path))
        manifest["variants"].setdefault(name, variant_manifest(variant))
        from harness.engine.cache import exclusive, lock_dir, lock_name

        try:
            with exclusive(lock_dir(runner.cache), [lock_name(suite.path, name)],
                           on_wait=lambda _, v=name: log(f"{suite.name} / {v}: another harness run is on it; "
                                                         "waiting to reuse its results")):
                records, info = run_variant(suite, prepared, runner, variant, limit, progress)
        except ConfigError:
            raise
        except HarnessError as exc:
            manifest["errors"].append({"suite": suite.name, "variant": name, "error": str(exc),
                                       "type": type(exc).__name__})
            log(f"error: {suite.name} / {name}: {exc}")
            continue
        manifest["runs"][f"{suite.name}/{name}"] = info
        writer.write_records(records)
        out.extend(records)
        n_cached = sum(r["cached"] for r in records)
        log(f"{suite.name} / {name}: {len(records)} cases from lm-eval tasks "
            f"({', '.join(prepared.tasks)}), {n_cached} cached")
    values = [r["scores"].get(source.axis) for r in out]
    manifest["suites"][suite.name]["axes"][source.axis]["binary"] = all(v in (0.0, 1.0) for v in values)
    return out
