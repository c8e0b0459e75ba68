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
    return LmEvalSource(tasks=tuple(tasks), paths=tuple(paths), num_fewshot=num_fewshot, limit=limit, axis=axis,
                        metric=metric, include_paths=tuple(include_paths), hub=hub,
                        suite_path=Path(location["file"]) if location.get("file") else None, lines=lines)


# --------------------------------------------------------------------------- task YAML safety


class _Function(str):
    """A `!function` reference, as the vetting loader reads it."""


class _VetLoader(yaml.SafeLoader):
    pass


_VetLoader.add_constructor("!function", lambda loader, node: _Function(loader.construct_scalar(node)))


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


def lm_eval_tasks_dir() -> Path:
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or spec.origin is None:
        raise HarnessError("lm_eval suites need the lm-eval package (pip install lm-eval); run `make install`.")
    return Path(spec.origin).parent / "tasks"


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def vet_task_yaml(path: Path, *, _seen: set[Path] | None = None) -> None:
    """Refuse project task YAMLs that would run project code: `!function` may name functions of the
    installed lm_eval package only (never a module next to the YAML), and Jinja templates may not
    touch Python internals. lm-eval's own task YAMLs are trusted."""
    path = path.resolve()
    if _inside(path, lm_eval_tasks_dir()):
        return
    seen = _seen if _seen is not None else set()
    if path in seen:
        return
    seen.add(path)
    try:
        cfg = yaml.load(path.read_text(encoding="utf-8"), Loader=_VetLoader)  # noqa: S506 - SafeLoader + one tag
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(f"task YAML is not valid here: {getattr(exc, 'problem', None) or exc}.", file=path,
                          line=mark.line + 1 if mark else None,
                          hint="Task YAMLs are data: plain YAML plus `!function lm_eval.<module>.<function>`.") from None

    def walk(value: Any, key: str) -> None:
        if isinstance(value, _Function):
            module = value.rpartition(".")[0]
            local = path.parent / (module.replace(".", "/") + ".py")
            if not value.startswith("lm_eval.") or local.exists():
                raise ConfigError(
                    f"`!function {value}` would run code from the project; suites are data, not code.",
                    file=path, key=key,
                    hint="Use lm-eval's built-in metrics (acc, acc_norm, exact_match, ...) or a function of the "
                         "installed lm-eval package, e.g. `!function lm_eval.tasks.truthfulqa.utils.process_results_mc2`.")
        elif isinstance(value, str):
            if "__" in value and ("{{" in value or "{%" in value):
                raise ConfigError("a template reaches into Python internals ('__'); refused.", file=path, key=key)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{key}.{k}" if key else str(k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{key}.{i}")

    if not isinstance(cfg, dict):
        raise ConfigError("a task YAML must be a mapping (task:, dataset_path:, ...).", file=path)
    walk(cfg, "")
    includes = cfg.get("include") or []
    for include in includes if isinstance(includes, list) else [includes]:
        target = Path(include) if Path(str(include)).is_absolute() else path.parent / str(include)
        if target.is_file():
            vet_task_yaml(target, _seen=seen)


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
    """lm-eval's TaskManager (indexing all of lm-eval's tasks takes ~15 s; kept per process while the
    project's task YAMLs are unchanged)."""
    files = tuple((str(f), f.stat().st_mtime_ns) for p in include if not _inside(p, lm_eval_tasks_dir())
                  for f in sorted(p.rglob("*.yaml")))  # a project's task YAMLs may change between runs
    key = (tuple(str(p) for p in include), defaults, files)
    if key not in _MANAGERS:
        from lm_eval.tasks import TaskManager

        _MANAGERS[key] = TaskManager(include_path=[str(p) for p in include] or None, include_defaults=defaults)
    return _MANAGERS[key]


def _manager_for(names: list[str], project_dirs: tuple[Path, ...]):
    """A TaskManager that knows `names`: the project's folders, then the matching folders of lm-eval's
    tasks (fast), then lm-eval's whole registry."""
    from lm_eval.tasks._index import Kind, TaskIndex

    manager = _task_manager(project_dirs, False)
    missing = [n for n in names if n not in manager.task_index]
    if not missing:
        return manager
    tasks_dir = lm_eval_tasks_dir()
    candidates = sorted({tasks_dir / d for n in missing for d in (n, n.split("_")[0]) if (tasks_dir / d).is_dir()})
    if candidates:
        index = TaskIndex.build(candidates)
        if all(n in index and index[n].kind in (Kind.TASK, Kind.PY_TASK) for n in missing):
            return _task_manager((*candidates, *project_dirs), False)
    return _task_manager(project_dirs, True)


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
    """(task, hub dataset) for every member task of a group or tag that reads from the Hub."""
    from lm_eval.tasks._index import Kind

    seen = seen if seen is not None else set()
    if entry.name in seen:
        return []
    seen.add(entry.name)
    cfg = entry.cfg or {}
    if entry.kind == Kind.TAG:
        members: list[Any] = sorted(entry.tags)
    elif entry.kind == Kind.GROUP:
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


def prepare(source: LmEvalSource, *, axis_direction: str = "higher") -> Prepared:
    """Resolve the suite's tasks, check them (safety, local data, metrics) and load each once."""
    from harness.versions import check

    check(["lm-eval"], "lm_eval suites")
    import lm_eval
    from lm_eval.tasks._index import Kind, TaskIndex
    from lm_eval.tasks._yaml_loader import load_yaml as lm_load_yaml

    tasks_dir = lm_eval_tasks_dir()
    project_dirs: list[Path] = list(source.include_paths)
    for path in source.paths:
        if path is not None:
            folder = path if path.is_dir() else path.parent
            if folder not in project_dirs:
                project_dirs.append(folder)
    for folder in project_dirs:
        for yaml_path in sorted(folder.rglob("*.yaml")):
            if "__pycache__" not in yaml_path.parts and not _inside(yaml_path, tasks_dir):
                head = yaml_path.read_text(encoding="utf-8", errors="replace")
                if "!function" in head or "{{" in head or "{%" in head:
                    vet_task_yaml(yaml_path)

    # Each spec -> (name, Entry)
    entries: list[tuple[int, Any]] = []
    names: list[tuple[int, str]] = []
    for i, (task, path) in enumerate(zip(source.tasks, source.paths, strict=True)):
        if path is None:
            names.append((i, task))
        elif path.is_file():
            vet_task_yaml(path)
            try:
                entry = TaskIndex.entry_from_path(path)
            except Exception as exc:  # lm-eval's own parse error, said plainly
                raise ConfigError(f"not an lm-eval task YAML: {exc}.", file=path) from None
            if entry is None:
                raise ConfigError("not an lm-eval task YAML (no `task:` or `group:` key).", file=path)
            if entry.kind == Kind.GROUP:  # resolved by its group name through the index (it has its members)
                names.append((i, str(lm_load_yaml(path, resolve_func=False)["group"])))
            else:
                entries.append((i, entry))
        else:
            found = [e for e in TaskIndex.build([path]).values()
                     if e.kind == Kind.TASK and e.yaml_path is not None and _inside(e.yaml_path, path)]
            if not found:
                raise ConfigError(f"no lm-eval task YAML in folder {path}.", **source.where("tasks", i))
            entries.extend((i, e) for e in sorted(found, key=lambda e: e.name))
    manager = _manager_for([n for _, n in names], tuple(project_dirs))
    for i, name in names:
        entry = manager.task_index.get(name)
        if entry is None:
            manager = _task_manager(tuple(project_dirs), True)
            entry = manager.task_index.get(name)
        if entry is None:
            close = difflib.get_close_matches(name, manager.all_tasks, n=3)
            raise ConfigError(f"lm-eval has no task, group or tag named '{name}'.", **source.where("tasks", i),
                              hint=(f"Did you mean {', '.join(repr(c) for c in close)}? " if close else "")
                              + "Name a task of lm-eval's registry or give a path to a task YAML (relative to the suite).")
        entries.append((i, entry))

    specs: list[Any] = []
    data_of: dict[str, dict[str, Any]] = {}
    group_fields = {"group", "group_alias", "task", "aggregate_metric_list", "metadata"}

    def add_task(entry, where: dict[str, Any], raw_over: dict[str, Any], full_over: dict[str, Any]) -> None:
        raw = {**lm_load_yaml(entry.yaml_path, resolve_func=False), **raw_over}
        name = raw.get("task", entry.name)
        files = _absolute_data(raw, Path(entry.yaml_path).parent, where, name)
        if not _is_local(raw) and not source.hub:
            raise ConfigError(
                f"task '{name}' reads its data from the Hugging Face Hub (dataset_path: {raw.get('dataset_path')}, "
                f"task YAML {entry.yaml_path}), which this suite does not allow.", **where, hint=HUB_HINT)
        cfg = {**lm_load_yaml(entry.yaml_path, resolve_func=True), **full_over}
        _absolute_data(cfg, Path(entry.yaml_path).parent, where, name)
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
        if depth > 20:
            raise ConfigError(f"groups nest too deeply at '{entry.name}'.", **where)
        if entry.kind == Kind.TASK and entry.yaml_path is not None:
            add_task(entry, where, raw_over, full_over)
        elif entry.kind == Kind.TAG:
            for member in sorted(entry.tags):
                if member in manager.task_index:
                    add(manager.task_index[member], where, raw_over, full_over, depth + 1)
        elif entry.kind == Kind.GROUP and entry.yaml_path is not None and not _inside(entry.yaml_path, tasks_dir):
            # A project group runs as its member tasks (per-item records; group aggregates are not used),
            # so that every member's local data paths resolve against its own YAML's folder.
            vet_task_yaml(Path(entry.yaml_path))
            raw_group = lm_load_yaml(entry.yaml_path, resolve_func=False)
            full_group = lm_load_yaml(entry.yaml_path, resolve_func=True)
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
                if not isinstance(name, str) or name not in manager.task_index:
                    raise ConfigError(f"group '{entry.name}' names '{name}', which is not a task of its folder or of "
                                      "lm-eval's registry (inline task definitions in project groups are not "
                                      "supported: give each task its own YAML).", file=entry.yaml_path, key="task")
                add(manager.task_index[name], where, {**raw_base, **extra}, {**full_base, **full_extra}, depth + 1)
        else:  # lm-eval's own groups and Python tasks: lm-eval builds them
            remote = [] if source.hub else _hub_members(entry, manager.task_index)
            if remote:
                member, dataset = remote[0]
                raise ConfigError(
                    f"'{entry.name}' includes task '{member}', which reads its data from the Hugging Face Hub "
                    f"(dataset_path: {dataset}){f' (and {len(remote) - 1} more)' if len(remote) > 1 else ''}; this "
                    "suite does not allow that.", **where, hint=HUB_HINT)
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
                from harness.runner import BackendPool, Runner, engine_fingerprint

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
    from harness._files import sha256_dir
    from harness.backends import Adapter
    from harness.runner import engine_spec

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
    from harness.runner import variant_manifest

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
        try:
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
