"""Reading user files safely: YAML with line numbers, TOML with key lines, content hashes."""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

from harness.errors import ConfigError

KeyPath = tuple[Any, ...]


class _LineLoader(yaml.SafeLoader):
    """SafeLoader (no tags that run code) that remembers the line of every mapping key."""


def _no_custom_tags(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    raise yaml.constructor.ConstructorError(
        None, None, f"tag '!{suffix}' is not allowed: suites are data, not code", node.start_mark
    )


_LineLoader.add_multi_constructor("!", _no_custom_tags)
_LineLoader.add_multi_constructor("tag:yaml.org,2002:python/", _no_custom_tags)


def _walk_lines(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[path + (key,)] = key_node.start_mark.line + 1
            _walk_lines(value_node, path + (key,), lines)
            lines[path + (key,)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk_lines(item, path + (i,), lines)


def load_yaml(path: Path) -> tuple[Any, dict[KeyPath, int]]:
    """Parse a YAML file with safe_load semantics; return the data and a key-path -> line map."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found.", file=path) from None
    try:
        loader = _LineLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"invalid YAML: {problem}.", file=path, line=line) from None
    lines: dict[KeyPath, int] = {}
    if node is not None:
        _walk_lines(node, (), lines)
    return data, lines


def load_toml(path: Path) -> tuple[dict[str, Any], str]:
    """Parse a TOML file; return the data and its text (for locating keys in errors)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found.", file=path, hint="Create it or pass --models PATH.") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        line = None
        match = re.search(r"line (\d+)", str(exc))
        if match:
            line = int(match.group(1))
        raise ConfigError(f"invalid TOML: {exc}.", file=path, line=line) from None


def toml_key_line(text: str, table: str | None, key: str | None) -> int | None:
    """Best-effort line of `key` inside `[table]` (or of the table header when key is None)."""
    current: str | None = None
    header = re.compile(r"^\s*\[+\s*([^\]]+?)\s*\]+\s*(#.*)?$")
    for number, raw in enumerate(text.splitlines(), start=1):
        match = header.match(raw)
        if match:
            current = match.group(1).replace('"', "").replace("'", "").replace(" ", "")
            if key is None and current == table:
                return number
            continue
        if key is not None and current == table and re.match(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=", raw):
            return number
    return None


def sha256_file(path: Path, *, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_dir(path: Path) -> str:
    """Content hash of every file below `path` (names and bytes), stable across machines."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        if rel.startswith(".") or "__pycache__" in rel:
            continue
        digest.update(rel.encode() + b"\0" + sha256_file(file).encode() + b"\0")
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- where the harness may write

SLUG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
"""A name the harness uses as one path component (suite names): letters, digits, '_', '-', '.', no '..'."""


def is_slug(name: object) -> bool:
    return isinstance(name, str) and bool(SLUG_RE.match(name)) and ".." not in name


def contained(path: Path, root: Path, what: str) -> Path:
    """`path` resolved (symlinks followed), or a HarnessError when it does not lie under `root`: every
    path the harness writes or deletes goes through this check against the folder it was given."""
    from harness.errors import HarnessError

    resolved, base = Path(path).resolve(), Path(root).resolve()
    if resolved != base and base not in resolved.parents:
        raise HarnessError(f"refusing to write {what} at {resolved}: it lies outside {base}, the folder the harness "
                           "writes it to (a suite or variant name that is a path?).")
    return resolved
