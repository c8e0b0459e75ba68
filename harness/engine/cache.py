"""SQLite generation cache. WAL mode: several processes (pytest-xdist workers, a CLI run) can read
and write at once, and a killed run keeps every batch it committed."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

SCHEMA_VERSION = 1


def cache_dir() -> Path:
    """Root of the harness's caches: $HARNESS_CACHE_DIR, else ~/.cache/harness."""
    root = os.environ.get("HARNESS_CACHE_DIR")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "harness"


CORRUPT_HINT = ("Move the file aside (it only holds cached generations; a run re-creates it) or pass "
                "--cache OTHER_FILE.")


def check_cache_file(path: Path) -> None:
    """An existing cache file must be this harness's SQLite cache; else a ConfigError naming it and the fix."""
    try:
        with path.open("rb") as handle:
            head = handle.read(16)
    except OSError as exc:
        raise ConfigError(f"the generation cache cannot be read: {exc}.", file=path, hint=CORRUPT_HINT) from None
    if head and head != b"SQLite format 3\x00":
        raise ConfigError("the generation cache is not an SQLite database (corrupt, or another file).", file=path,
                          hint=CORRUPT_HINT)
    if not head:
        return  # an empty file: SQLite makes a database of it
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=60)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and "generations" not in tables:
                raise ConfigError("this SQLite file is not a harness generation cache (no 'generations' table).",
                                  file=path, hint=CORRUPT_HINT)
            if "generations" in tables:
                columns = [r[1] for r in conn.execute("PRAGMA table_info(generations)")]
                if columns[:3] != ["key", "value", "created"]:
                    raise ConfigError(f"the generation cache has an unexpected layout ({columns}).", file=path,
                                      hint=CORRUPT_HINT)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"the generation cache cannot be read: {exc}.", file=path, hint=CORRUPT_HINT) from None


def request_key(fingerprint: str, payload: dict[str, Any]) -> str:
    """Cache key: the engine's model fingerprint + the exact request (prompt, settings, adapter hash)."""
    text = json.dumps({"v": SCHEMA_VERSION, "model": fingerprint, **payload}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class GenerationCache:
    """key -> JSON value, committed per batch."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path else cache_dir() / "generations.sqlite"
        if self.path.is_dir():
            raise ConfigError("the cache path is a directory, not a cache file.", file=self.path,
                              hint="Pass --cache FILE (e.g. --cache .harness/cache.sqlite).")
        if self.path.exists():
            check_cache_file(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=60000")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS generations (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)"
            )
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"the generation cache cannot be opened: {exc}.", file=self.path,
                              hint=CORRUPT_HINT) from None

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(dict.fromkeys(keys))
        found: dict[str, Any] = {}
        try:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(f"SELECT key, value FROM generations WHERE key IN ({marks})", chunk)
                found.update((key, json.loads(value)) for key, value in rows)
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from None
        except ValueError as exc:  # a stored value that is not JSON
            raise self._damaged(exc) from None
        return found

    def _damaged(self, exc: Exception) -> ConfigError:
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            return ConfigError("the generation cache stayed locked by another process for 60 s.", file=self.path,
                               hint="Wait for the other run to finish, or pass --cache OTHER_FILE.")
        return ConfigError(f"the generation cache cannot be read: {exc}.", file=self.path, hint=CORRUPT_HINT)

    def put_many(self, items: dict[str, Any]) -> None:
        now = time.time()
        rows = [(key, json.dumps(value, ensure_ascii=False), now) for key, value in items.items()]
        try:
            with self._conn:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executemany("INSERT OR REPLACE INTO generations VALUES (?, ?, ?)", rows)
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from None

    def __len__(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0]

    def close(self) -> None:
        self._conn.close()


def lock_dir(cache: GenerationCache) -> Path:
    """Where the locks of runs sharing this cache live: next to it."""
    return cache.path.parent / "locks"


def lock_name(suite_path: Path | str, variant: str) -> str:
    """The lock of one (suite, variant): the same file for a CLI run and the pytest plugin's workers."""
    return f"{Path(suite_path).resolve()}\0{variant}"


_HELD: set[str] = set()
"""Locks this process holds (flock is per open file: taking one twice in a process would wait forever)."""


@contextmanager
def exclusive(folder: Path, names: Iterable[str], on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold an exclusive `fcntl.flock` on one lock file per name (sorted, so two holders never
    deadlock) across processes: a second run of the same work waits, then finds it in the cache.
    Released when the files close (also when the process dies). Without fcntl (Windows) there is no
    lock: the cache stays consistent, work may repeat."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        for name in sorted(set(names)):
            key = f"{folder.resolve()}/{name}"
            if key in _HELD:  # this process holds it already (the pytest plugin, then the runner): re-entrant
                continue
            _HELD.add(key)
            stack.callback(_HELD.discard, key)
            digest = hashlib.sha256(name.encode()).hexdigest()[:24]
            handle = stack.enter_context(open(folder / f"{digest}.lock", "ab"))
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait(name)
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield
