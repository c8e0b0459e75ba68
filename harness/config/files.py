"""Reading user files safely: YAML with line numbers, TOML with key lines, content hashes."""

from __future__ import annotations

import hashlib
import json
import os
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


def _duplicate_key(node: yaml.Node) -> tuple[str, int, int] | None:
    """The first mapping key written twice (key, first line, second line): YAML keeps the last silently,
    which would drop a suite's first `gates:` list or scorer without a word."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if isinstance(key_node, yaml.ScalarNode) and key != "<<":
                if key in seen:
                    return str(key), seen[key], key_node.start_mark.line + 1
                seen[key] = key_node.start_mark.line + 1
            found = _duplicate_key(value_node)
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            found = _duplicate_key(item)
            if found:
                return found
    return None


def read_text_utf8(path: Path, error=ConfigError, *, bom: bool = False) -> str:
    """A user file's text; not UTF-8 -> `error` naming the file, the line of the first bad byte and the fix."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig" if bom else "utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise error(f"file is not UTF-8 text (byte 0x{raw[exc.start]:02x} at byte offset {exc.start}).",
                    file=path, line=line,
                    hint="Save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8 FILE > NEW`).") from None


# Errors inside an opened construct (a flow [ ] / { } or a quoted string) are found where the parser
# gives up, often the next line; the construct's opening line is where the fix goes.
_OPENED = ("while parsing a flow", "while scanning a quoted scalar", "while scanning a double-quoted scalar",
           "while scanning a single-quoted scalar")


def load_yaml(path: Path) -> tuple[Any, dict[KeyPath, int]]:
    """Parse a YAML file with safe_load semantics; return the data and a key-path -> line map."""
    try:
        text = read_text_utf8(path)
    except FileNotFoundError:
        raise ConfigError("file not found.", file=path) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a YAML file.", file=path) from None
    try:
        loader = _LineLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        problem_mark = getattr(exc, "problem_mark", None)
        context_mark = getattr(exc, "context_mark", None)
        context = getattr(exc, "context", None) or ""
        problem = getattr(exc, "problem", None) or str(exc)
        mark = problem_mark or context_mark
        message = f"invalid YAML: {problem}"
        if problem_mark is not None:
            message += f" (line {problem_mark.line + 1}, column {problem_mark.column + 1})"
        if context_mark is not None and context.startswith(_OPENED) and context_mark.line != getattr(mark, "line", None):
            message += f", {context} opened at line {context_mark.line + 1}"
            mark = context_mark
        raise ConfigError(message + ".", file=path, line=mark.line + 1 if mark else None,
                          hint="Check the brackets, quotes and indentation there.") from None
    lines: dict[KeyPath, int] = {}
    if node is not None:
        duplicate = _duplicate_key(node)
        if duplicate:
            key, first, second = duplicate
            raise ConfigError(f"key '{key}' is written twice (lines {first} and {second}); YAML would keep only "
                              "the second.", file=path, line=second, hint="Merge the two into one key.")
        _walk_lines(node, (), lines)
    return data, lines


def load_toml(path: Path) -> tuple[dict[str, Any], str]:
    """Parse a TOML file; return the data and its text (for locating keys in errors)."""
    try:
        text = read_text_utf8(path, bom=True)  # a byte-order mark from a Windows editor is not an error
    except FileNotFoundError:
        raise ConfigError("file not found.", file=path, hint="Create it or pass --models PATH.") from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a TOML file.", file=path) from None
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

    def norm(name: str | None) -> str | None:
        return None if name is None else name.replace('"', "").replace("'", "").replace(" ", "")

    table = norm(table)
    first_below = None  # `[table.sub]` when `[table]` itself has no header line
    for number, raw in enumerate(text.splitlines(), start=1):
        match = header.match(raw)
        if match:
            current = norm(match.group(1))
            if key is None and current == table:
                return number
            if key is None and table and first_below is None and current.startswith(table + "."):
                first_below = number
            continue
        if key is not None and current == table and re.match(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=", raw):
            return number
    return first_below


def sha256_file(path: Path, *, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


MEMO_MIN_BYTES = 1 << 20
"""Files at least this large have their hash memoised (smaller ones are cheaper to re-read)."""
MEMO_MAX_ENTRIES = 4096
MEMO_FILE = "hashes.json"


def _identity(stat: os.stat_result) -> str:
    return f"{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ctime_ns}:{stat.st_ino}:{stat.st_dev}"


def memo_sha256(path: Path) -> str:
    """The full-content sha256 of a (large) file, memoised under the cache dir (`hashes.json`) by its
    resolved path, size, mtime_ns, ctime_ns, inode and device: a file rewritten in place (even at the same
    size, even with its mtime set back) changes its ctime and is hashed again; an unchanged file is not
    re-read. A file that changes while it is hashed is hashed again and not memoised."""
    from harness.engine.cache import cache_dir

    path = Path(path).resolve()
    memo = cache_dir() / MEMO_FILE
    for _ in range(3):
        before = path.stat()
        key = f"{path}|{_identity(before)}"
        table = _read_memo(memo)
        if key in table:
            return table[key]
        digest = sha256_file(path)
        if _identity(path.stat()) == _identity(before):
            _write_memo(memo, key, digest)
            return digest
    return digest  # still changing: the last full read, not memoised


def _read_memo(memo: Path) -> dict[str, str]:
    try:
        table = json.loads(memo.read_text())
    except (OSError, ValueError):
        return {}
    return table if isinstance(table, dict) else {}


def _write_memo(memo: Path, key: str, digest: str) -> None:
    table = _read_memo(memo)  # re-read: another process may have added entries meanwhile
    table.pop(key, None)
    table[key] = digest
    while len(table) > MEMO_MAX_ENTRIES:
        table.pop(next(iter(table)))  # the oldest entry
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f"{memo.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(table))
        tmp.replace(memo)
    except OSError:  # a read-only cache dir: hashing still works, only slower next time
        pass


def content_sha256(path: Path) -> str:
    """Full-content sha256 of a file: memoised when it is large (`memo_sha256`)."""
    return memo_sha256(path) if path.stat().st_size >= MEMO_MIN_BYTES else sha256_file(path)


def sha256_dir(path: Path) -> str:
    """Content hash of every file below `path` (names and full bytes), stable across machines; large files'
    hashes are memoised (`memo_sha256`)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        if rel.startswith(".") or "__pycache__" in rel:
            continue
        digest.update(rel.encode() + b"\0" + content_sha256(file).encode() + b"\0")
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
