"""The run directory: `records.jsonl` (one line per suite x variant x case) and `manifest.json`.
Every number the harness reports is computed from these two files alone."""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

RECORDS = "records.jsonl"
MANIFEST = "manifest.json"


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


class RunWriter:
    """Appends records as each suite x variant finishes; rewrites the manifest atomically."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self._records = (run_dir / RECORDS).open("a", encoding="utf-8")

    def write_records(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            self._records.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._records.flush()

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        _atomic_write(self.run_dir / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False, default=str))

    def close(self) -> None:
        self._records.close()


@dataclass
class Run:
    """A run read back from disk."""

    path: Path
    records: list[dict[str, Any]]
    manifest: dict[str, Any]

    def suites(self) -> list[str]:
        return list(self.manifest.get("suites", {}))


def load_run(run_dir: Path | str) -> Run:
    """Read a run directory; clear errors when it is not one."""
    path = Path(run_dir)
    manifest_path, records_path = path / MANIFEST, path / RECORDS
    if not manifest_path.is_file() or not records_path.is_file():
        raise HarnessError(f"{path} is not a run directory (needs {MANIFEST} and {RECORDS}); "
                           "pass the directory `harness run` printed.")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise HarnessError(f"{manifest_path} is not valid JSON: {exc}.") from None
    records = []
    with records_path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    raise HarnessError(f"{records_path}:{number} is not valid JSON (a truncated run?).") from None
    expected = (manifest.get("counts") or {}).get("records")
    if manifest.get("status") == "complete" and isinstance(expected, int) and expected != len(records):
        raise HarnessError(f"{records_path} has {len(records)} records but the run's manifest says it wrote {expected}: "
                           "the file was cut or edited, so no verdict can be computed from it. Re-run the suites.")
    return Run(path=path, records=records, manifest=manifest)
