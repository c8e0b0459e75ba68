"""Guards on the package's shape (issue #21): no import cycle, no private name crossing modules, heavy
libraries only in the rooms that need them.

Everything is read with `ast`, nothing is imported, except the one subprocess check that imports the
entry points and lists the heavy libraries that came with them.

Rules (what the tests below enforce):

- **Cycles.** An edge A -> B exists when module A imports B anywhere in its body: at module level or
  inside a function (a function-level import still makes A depend on B; the design's flow goes one way).
  `from harness.x import y` is an edge to `harness.x.y` when `y` is a submodule, else to `harness.x`.
  Imports under `if TYPE_CHECKING:` are left out: they never run. Package `__init__` modules are
  nodes like any other; importing `harness.x.y` is not counted as importing `harness.x` (Python runs
  a package's `__init__` first, but an `__init__` that re-exports its submodules would otherwise make
  every package a cycle).
- **Private names.** A module in harness/ may not import another module's `_name` (`from m import _x`,
  or `m._x` / `Imported._x` on a name bound by an import from another harness module). Dunder names
  are public. A module named `_x` (none today) would be private to its own package.
  Tests: a test in tests/<room>/ may use the private names of harness/<room> (white-box tests of that
  room's internals: the conformance matrix calls kernels), never those of another room; tests outside
  a room folder (tests/*.py, tests/bad_inputs/, tests/docs/) use public names only; and no test imports
  a `_name` from a test helper module in another folder. `obj._x` counts too where `_x` is defined only
  in another module (found by name: `self.runner._through_cache` in lmeval.py is a reach into the runner).
- **Heavy libraries** (torch, transformers, vllm, lm_eval, peft, bitsandbytes, plotly, ray) are imported
  only in harness/backends/, harness/sources/lmeval* (lm-eval and what it needs) and harness/report/
  (plotly), and never at module level of harness/__init__.py, cli.py, pytest_plugin*, session.py or
  config/: `harness --help` and `pytest --collect-only` must stay fast.

KNOWN_* below list the violations that other engineers are removing in parallel (issue #21); each
entry names the file and the symbol. The lead empties them after merging: an entry that no longer
matches anything fails the test, so the lists cannot silently go stale.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tests.helpers import REPO

PACKAGE = REPO / "harness"
TESTS = REPO / "tests"
HEAVY = ("torch", "transformers", "vllm", "lm_eval", "peft", "bitsandbytes", "plotly", "ray")
# Where each heavy library may be imported (paths relative to the repo, prefix match).
HEAVY_ALLOWED = {
    "torch": ("harness/backends/",),
    "transformers": ("harness/backends/",),
    "vllm": ("harness/backends/",),
    "peft": ("harness/backends/",),
    "bitsandbytes": ("harness/backends/",),
    "ray": ("harness/backends/",),
    "lm_eval": ("harness/backends/", "harness/sources/lmeval"),
    "plotly": ("harness/report/",),
}
# Modules that `harness --help`, `import harness` and pytest collection load: no heavy import at module level.
LIGHT_ENTRY_POINTS = ("harness/__init__.py", "harness/cli.py", "harness/pytest_plugin", "harness/session.py",
                      "harness/config/")

# ----------------------------------------------------------------------------------------------
# Known violations owned by other engineers of issue #21 (the lead clears these after merging).
# Each entry: (file, symbol). A stale entry (nothing matches it any more) fails the test.

KNOWN_CYCLE_EDGES: set[tuple[str, str]] = {
    # (importing file, imported module): the edge is left out of the graph.
    # t21a: lm-eval suites run through a second copy of the run loop that reaches back into the runner
    # (lmeval.py's HarnessLM, built in `_make_harness_lm_class`, imports BackendPool, Runner and
    # engine_fingerprint from harness.engine.runner inside __init__). With config/suite.py `load_suite` ->
    # sources.lmeval.parse_source (function level), engine/runner.py -> config.suite (module level) and
    # runner.run_suites -> sources.lmeval.run_suite (function level) this is the cycle
    # config.suite -> sources.lmeval -> engine.runner -> config.suite. One Source protocol removes it.
    ("harness/sources/lmeval.py", "harness.engine.runner"),
}
KNOWN_PRIVATE_IMPORTS: set[tuple[str, str]] = {
    # (file using it, the private name with the module [and class] defining it)
    # t21c: report writes files through the records module's private atomic writer.
    ("harness/report/__init__.py", "harness.engine.records._atomic_write"),
    # t21a: the lm-eval loop reaches into the runner's fingerprint memo and cache path.
    ("harness/sources/lmeval.py", "harness.engine.runner.Runner._fingerprints"),
    ("harness/sources/lmeval.py", "harness.engine.runner.Runner._through_cache"),
    # t21b/t21c: an analysis test builds the plugin's private outcome types.
    ("tests/analysis/test_multiplicity.py", "harness.pytest_plugin._Evidence"),
    ("tests/analysis/test_multiplicity.py", "harness.pytest_plugin._SuiteOutcome"),
    # t21d: an engine test patches the backends' library-version lookup (the cache identity's input).
    ("tests/engine/test_cache_identity.py", "harness.backends._library_version"),
    # t21d: transformers backend unit tests still live in tests/engine/test_runner.py (move to tests/backends/).
    ("tests/engine/test_runner.py", "harness.backends.transformers.backend.TransformersBackend._rows_within_budget"),
    ("tests/engine/test_runner.py", "harness.backends.transformers.backend.TransformersBackend._generation_batches"),
    ("tests/engine/test_runner.py", "harness.backends.transformers.backend._check_prefix_reads"),
    ("tests/engine/test_runner.py", "harness.backends.transformers.backend._native_bf16_flags"),
    ("tests/engine/test_runner.py", "harness.backends.transformers.backend._shared_prefix"),
    ("tests/engine/test_runner.py", "harness.backends.transformers.backend._isa_cap_allows_bf16"),
    # t21a: a sources test checkpoints the cache's WAL through its private SQLite connection.
    ("tests/sources/test_data_integrity.py", "harness.engine.cache.GenerationCache._conn"),
}
KNOWN_HEAVY_IMPORTS: set[tuple[str, str]] = {
    # (importing file, library)
    # t21b: `harness doctor` imports torch (inside the command) to name the GPU; ask the backends room instead.
    ("harness/cli.py", "torch"),
}


# ----------------------------------------------------------------------------------------------
# Reading the imports


@dataclass(frozen=True)
class Import:
    file: str
    """Path relative to the repo."""
    line: int
    module: str
    """The module imported, resolved to a submodule where `from m import sub` names one."""
    names: tuple[str, ...]
    """Names imported from `module` (`from m import a, b`); empty for `import m`."""
    level: str
    """"module" (runs on import) or "function" (inside a def/class body)."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def harness_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, level: str):
    """(import node, level) for every import that can run; TYPE_CHECKING blocks skipped."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield from _walk_one(other, level)
            continue
        yield from _walk_one(child, level)


def _walk_one(node: ast.AST, level: str):
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node, level
        return
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
        level = "function"
    yield from _walk(node, level)


@cache
def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _absolute(node: ast.ImportFrom, path: Path, name: str | None = None) -> str:
    """The absolute module a `from ... import` names (relative imports resolved against `name`, the
    importing module, by default the one at `path`)."""
    if not node.level:
        return node.module or ""
    package = (name or module_name(path)).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: Path, name: str | None = None) -> list[Import]:
    """Every import in a file, with `from pkg import submodule` resolved to the submodule (`name`: the
    module the file stands for, when it is not in the repo)."""
    rel = _rel(path)
    known = harness_modules()
    out = []
    for node, level in _walk(parse(path), "module"):
        if isinstance(node, ast.Import):
            out += [Import(rel, node.lineno, alias.name, (), level) for alias in node.names]
            continue
        base = _absolute(node, path, name)
        plain = []
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            if sub in known:
                out.append(Import(rel, node.lineno, sub, (), level))
            else:
                plain.append(alias.name)
        if plain:
            out.append(Import(rel, node.lineno, base, tuple(plain), level))
    return out


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


# ----------------------------------------------------------------------------------------------
# (a) no import cycle


def import_graph() -> dict[str, dict[str, Import]]:
    """module -> {imported harness module: the first import statement making the edge}."""
    known = harness_modules()
    graph: dict[str, dict[str, Import]] = {name: {} for name in known}
    for name, path in known.items():
        for imp in imports_of(path):
            if imp.module in known and imp.module != name and (imp.file, imp.module) not in KNOWN_CYCLE_EDGES:
                graph[name].setdefault(imp.module, imp)
    return graph


def find_cycles(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """One concrete cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def connect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_cycle_in(graph, set(c), c[0]) for c in sorted(components)]


def _cycle_in(graph: dict[str, dict[str, Import]], members: set[str], start: str) -> list[str]:
    """The shortest path start -> ... -> start inside one component (breadth first)."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w not in members:
                    continue
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, v, start]
                if w not in previous:
                    previous[w] = v
                    following.append(w)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def describe_cycle(graph: dict[str, dict[str, Import]], cycle: list[str]) -> str:
    """The cycle's edges with file:line, then every other edge among the same modules (all of them need looking at)."""
    steps = []
    for a, b in zip(cycle, cycle[1:], strict=False):
        imp = graph[a][b]
        steps.append(f"  {a} -> {b}   ({imp.file}:{imp.line}, {imp.level} level)")
    members = set(cycle)
    shown = set(zip(cycle, cycle[1:], strict=False))
    others = [f"  {a} -> {b}   ({imp.file}:{imp.line}, {imp.level} level)" for a in sorted(members)
              for b, imp in sorted(graph[a].items()) if b in members and (a, b) not in shown]
    return "\n".join(steps + (["  also among these modules:", *others] if others else []))


def test_cycle_finder_names_a_planted_cycle():
    def edge(a: str, b: str) -> Import:
        return Import(a.replace(".", "/") + ".py", 1, b, (), "module")

    graph = {"a": {"b": edge("a", "b")}, "b": {"c": edge("b", "c")}, "c": {"a": edge("c", "a")}, "d": {"a": edge("d", "a")}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert "c -> a   (c.py:1, module level)" in describe_cycle(graph, ["a", "b", "c", "a"])
    assert find_cycles({"a": {"b": edge("a", "b")}, "b": {}}) == []


def test_imports_resolve_submodules_relative_and_function_level():
    known = harness_modules()
    assert "harness.engine.runner" in known and "harness.scorers" in known
    source = PACKAGE / "backends" / "__init__.py"  # `from harness.backends import base` inside a function
    found = {(i.module, i.level) for i in imports_of(source)}
    assert ("harness.backends.base", "function") in found
    assert ("harness.backends.base", "module") in found  # `from harness.backends.base import (...)`
    relative = ast.parse("from ..errors import DataError\nfrom . import findings").body
    assert _absolute(relative[0], PACKAGE / "lint" / "checks.py") == "harness.errors"
    assert _absolute(relative[1], PACKAGE / "lint" / "__init__.py") == "harness.lint"
    guarded = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\nelse:\n    import json\n")
    assert [getattr(n, "module", None) or n.names[0].name for n, _ in _walk(guarded, "module")] == ["typing", "json"]


def test_no_import_cycle_among_harness_modules():
    graph = import_graph()
    cycles = find_cycles(graph)
    message = "\n\n".join(f"import cycle {' -> '.join(c)}:\n{describe_cycle(graph, c)}" for c in cycles)
    assert not cycles, (f"{message}\n\nBreak it: move the shared piece to the earlier room, or pass it in as an "
                        "argument. The flow goes config -> sources -> engine -> backends -> scorers -> analysis -> report.")


def test_known_cycle_edges_still_exist():
    known = harness_modules()
    existing = {(imp.file, imp.module) for path in known.values() for imp in imports_of(path)}
    stale = sorted(KNOWN_CYCLE_EDGES - existing)
    assert not stale, f"allowlisted edges no longer in the code, remove them from KNOWN_CYCLE_EDGES: {stale}"


# ----------------------------------------------------------------------------------------------
# (b) no private names across modules


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _bound_by_import(path: Path, home: str) -> dict[str, str]:
    """Names bound by an import from another harness module -> "module" or "module.name" they refer to."""
    bound = {}
    for node, _ in _walk(parse(path), "module"):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "harness" and alias.name != home:
                    bound[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else "harness"
        else:
            base = _absolute(node, path, home or None)
            if base.split(".")[0] != "harness":
                continue
            for alias in node.names:
                target = f"{base}.{alias.name}"  # a submodule, or a name defined in `base`
                if target != home and base != home:
                    bound[alias.asname or alias.name] = target
    return bound


def private_uses(path: Path, name: str | None = None) -> list[tuple[int, str]]:
    """(line, "module._name") for every private name of another harness module this file uses (`name`: the
    harness module the file stands for, when it is not in the package)."""
    home = name or (module_name(path) if path.is_relative_to(PACKAGE) else "")
    out = []
    for imp in imports_of(path, home or None):
        if imp.module.split(".")[0] != "harness" or imp.module == home:
            continue
        out += [(imp.line, f"{imp.module}.{n}") for n in imp.names if _private(n)]
        last = imp.module.rsplit(".", 1)[-1]
        if not imp.names and _private(last):  # a private module imported from outside its package
            package = imp.module.rsplit(".", 1)[0]
            if not home.startswith(package + "."):
                out.append((imp.line, imp.module))
    bound = _bound_by_import(path, home)
    if bound:
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                value = node.value
                chain = []
                while isinstance(value, ast.Attribute):
                    chain.append(value.attr)
                    value = value.value
                if isinstance(value, ast.Name) and value.id in bound:
                    target = ".".join([bound[value.id], *reversed(chain)])
                    if target != home:
                        out.append((node.lineno, f"{target}.{node.attr}"))
    seen = {(line, name.rsplit(".", 1)[-1]) for line, name in out}
    out += [(line, name) for line, name in _foreign_private_attributes(path, home)
            if (line, name.rsplit(".", 1)[-1]) not in seen]
    return sorted(set(out))


@cache
def defined_privates(path: Path, name: str) -> dict[str, str]:
    """Private names a file defines (function, class, method, module or class attribute, `self._x`) ->
    where, e.g. "harness.engine.runner.Runner._through_cache"."""
    defined: dict[str, str] = {}

    def note(attr: str, owner: str) -> None:
        if _private(attr):
            defined.setdefault(attr, f"{owner}.{attr}")

    def visit(node: ast.AST, owner: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                note(child.name, owner)
                visit(child, f"{owner}.{child.name}" if owner == name else owner)
                continue
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                note(child.name, owner)
            elif isinstance(child, ast.Assign | ast.AnnAssign):
                targets = child.targets if isinstance(child, ast.Assign) else [child.target]
                for target in targets:
                    for leaf in ast.walk(target):
                        if isinstance(leaf, ast.Name):
                            note(leaf.id, owner)
                        elif isinstance(leaf, ast.Attribute) and isinstance(leaf.value, ast.Name) \
                                and leaf.value.id in ("self", "cls"):
                            note(leaf.attr, owner)
            visit(child, owner)

    visit(parse(path), name)
    return defined


def _foreign_private_attributes(path: Path, home: str) -> list[tuple[int, str]]:
    """`obj._x` where `obj` is not self/cls/super() and `_x` is defined only in other harness modules: an
    object of another room reached into (e.g. `self.runner._through_cache(...)` in lmeval.py)."""
    own = defined_privates(path, home or module_name(path))
    owners: dict[str, str] = {}
    for module, module_path in harness_modules().items():
        if module != home:
            for attr, where in defined_privates(module_path, module).items():
                owners.setdefault(attr, where)
    out = []
    for node in ast.walk(parse(path)):
        if not (isinstance(node, ast.Attribute) and _private(node.attr)) or node.attr in own:
            continue
        value = node.value
        if isinstance(value, ast.Name) and value.id in ("self", "cls"):
            continue
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super":
            continue
        if node.attr in owners:
            out.append((node.lineno, owners[node.attr]))
    return out


def test_private_use_finder_sees_imports_and_attributes(tmp_path):
    probe = tmp_path / "probe.py"  # stands for harness/lint/probe.py; written outside the package
    probe.write_text("from harness.errors import _hidden\nfrom harness.engine import runner\nfrom ..sources import native\n"
                     "def f(pool):\n    from harness.backends.base import Backend\n"
                     "    return runner._fingerprints, Backend._encode_pair, runner.__name__, native._chat_case\n"
                     "def g(self):\n    return self.runner._through_cache, self._own, super()._x\n")
    assert private_uses(probe, "harness.lint.probe") == [
        (1, "harness.errors._hidden"), (6, "harness.backends.base.Backend._encode_pair"),
        (6, "harness.engine.runner._fingerprints"), (6, "harness.sources.native._chat_case"),
        (8, "harness.engine.runner.Runner._through_cache")]


def test_no_harness_module_uses_another_modules_private_names():
    found = []
    for path in harness_modules().values():
        rel = _rel(path)
        found += [f"{rel}:{line}: {name}" for line, name in private_uses(path) if (rel, name) not in KNOWN_PRIVATE_IMPORTS]
    assert not found, ("private names used across modules (make them public with a docstring, or move the "
                       "code to the module that owns them):\n" + "\n".join(found))


def room_of_test(path: Path) -> str | None:
    """tests/<room>/... tests harness/<room>: "analysis", "backends", "pytest_plugin", ...; None at the top."""
    parts = path.relative_to(TESTS).parts
    return parts[0] if len(parts) > 1 else None


def room_of_module(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_tests_use_private_names_of_their_own_room_only():
    """A test in tests/<room>/ may reach the private names of harness/<room> (white-box tests of the room's
    internals, e.g. the conformance matrix calling a kernel), never those of another room; tests outside a
    room folder use public names only. No test imports a private name from another test folder."""
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        rel, room = _rel(path), room_of_test(path)
        for line, name in private_uses(path):
            if room_of_module(name) != room and (rel, name) not in KNOWN_PRIVATE_IMPORTS:
                found.append(f"{rel}:{line}: {name}")
        for imp in imports_of(path):
            if imp.module.split(".")[0] == "tests":
                owner = REPO / Path(*imp.module.split("."))
                found += [f"{rel}:{imp.line}: {imp.module}.{n}" for n in imp.names
                          if _private(n) and owner.parent != path.parent]
    assert not found, ("tests use private names of another room (test through the public names, or make the "
                       "name public with a reason):\n" + "\n".join(found))


def test_known_private_imports_still_exist():
    existing = set()
    for path in [*harness_modules().values(), *sorted(TESTS.rglob("*.py"))]:
        existing |= {(_rel(path), name) for _, name in private_uses(path)}
    stale = sorted(KNOWN_PRIVATE_IMPORTS - existing)
    assert not stale, f"allowlisted private uses no longer in the code, remove them from KNOWN_PRIVATE_IMPORTS: {stale}"


# ----------------------------------------------------------------------------------------------
# (c) heavy libraries only where they are needed


def heavy_imports() -> list[tuple[str, Import]]:
    out = []
    for path in harness_modules().values():
        for imp in imports_of(path):
            top = imp.module.split(".")[0]
            if top in HEAVY:
                out.append((top, imp))
    return out


def test_heavy_import_finder_sees_function_level_and_from_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import numpy\nfrom plotly.offline import get_plotlyjs\ndef f():\n    import torch.nn as nn\n")
    found = [(imp.module.split(".")[0], imp.level) for imp in imports_of(probe, "harness.probe")
             if imp.module.split(".")[0] in HEAVY]
    assert found == [("plotly", "module"), ("torch", "function")]


def test_heavy_libraries_only_in_their_rooms():
    misplaced = [f"{imp.file}:{imp.line}: {lib} ({imp.level} level)" for lib, imp in heavy_imports()
                 if not imp.file.startswith(HEAVY_ALLOWED[lib]) and (imp.file, lib) not in KNOWN_HEAVY_IMPORTS]
    assert not misplaced, ("heavy libraries imported outside backends/, sources/lmeval* and report/ (plotly):\n"
                           + "\n".join(misplaced) + "\nMove the code into the backend (or report) room and call it.")


def test_no_heavy_import_at_module_level_of_entry_points():
    eager = [f"{imp.file}:{imp.line}: {lib}" for lib, imp in heavy_imports()
             if imp.level == "module" and imp.file.startswith(LIGHT_ENTRY_POINTS)]
    assert not eager, "heavy libraries imported at module level of an entry point:\n" + "\n".join(eager)


def test_known_heavy_imports_still_exist():
    existing = {(imp.file, lib) for lib, imp in heavy_imports()}
    stale = sorted(KNOWN_HEAVY_IMPORTS - existing)
    assert not stale, f"allowlisted heavy imports no longer in the code, remove them from KNOWN_HEAVY_IMPORTS: {stale}"


def test_entry_points_load_no_heavy_library():
    """What actually happens: import the CLI, the pytest plugin and the other light entry modules (config/,
    session), list the heavy libraries that came along."""
    entry = sorted(name for name, path in harness_modules().items() if _rel(path).startswith(LIGHT_ENTRY_POINTS))
    assert {"harness", "harness.cli", "harness.pytest_plugin"} <= set(entry)
    code = (f"import sys, json; import {', '.join(entry)}; "
            f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {set(HEAVY)!r})))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == [], f"importing harness.cli and harness.pytest_plugin loaded heavy libraries: {loaded}"


def test_tests_import_helpers_not_conftest():
    """Shared test helpers live in tests/helpers.py; a conftest holds fixtures and is never imported."""
    found = [f"{imp.file}:{imp.line}: {imp.module}" for path in sorted(TESTS.rglob("*.py")) for imp in imports_of(path)
             if imp.module.split(".")[-1] == "conftest" or "conftest" in imp.names]
    assert not found, "tests importing a conftest (import from tests.helpers instead):\n" + "\n".join(found)
