"""Blessed baselines: a reviewed run's outputs for a variant, stored under `reports/baselines/`
and reused by later runs instead of regenerating — only while everything that shaped those
outputs is unchanged. A mismatch is refused with a message naming what changed.

What must match (the baseline's key): the suite's data and split settings (data file hashes,
field map, holdout, seed), the engine (model weights fingerprint, backend, quantisation), the
implementation that computed the outputs (the harness's backend and encoding versions and the library
versions: `backends.implementation_info`), the adapter's content hash, the generation settings, the
few-shot examples and the system prompt.
Scorers and gates may change: blessed outputs are re-scored by the current suite.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.config.files import contained, is_slug, sha256_file, sha256_text
from harness.engine.records import load_run
from harness.errors import HarnessError

KEY_FIELDS = ("suite_data", "engine", "implementation", "adapter_sha256", "outputs_sha256", "generation",
              "fewshot_ids", "system_prompt")
DESCRIPTIONS = {
    "suite_data": "the suite's data or split settings",
    "engine": "the model weights, backend, quantisation or engine settings",
    "implementation": "the implementation that computed the outputs",
    "adapter_sha256": "the adapter weights",
    "outputs_sha256": "the recorded outputs file",
    "generation": "the generation settings",
    "fewshot_ids": "the few-shot examples",
    "system_prompt": "the system prompt",
}


def suite_data_key(suite) -> str:
    """Hash of everything in a suite that decides which prompts exist."""
    from dataclasses import asdict

    payload = {
        "data": suite.data_sha256,
        "train": None if suite.train_path is None else sha256_file(suite.train_path),
        "fields": asdict(suite.fields) if suite.fields else None,
        "holdout": suite.holdout,
        "seed": suite.seed,
    }
    return sha256_text(json.dumps(payload, sort_keys=True))


def variant_key(info: dict[str, Any], system_prompt: str | None) -> dict[str, Any]:
    key = {field: info.get(field) for field in KEY_FIELDS if field != "system_prompt"}
    key["system_prompt"] = system_prompt
    return key


BLESSED_FILES = {"records.jsonl", "manifest.json"}


def _describe(field: str, stored: Any, current: Any) -> str:
    """What changed, in words; for the implementation, which parts and from what to what."""
    if field != "implementation":
        return DESCRIPTIONS[field]
    if not isinstance(stored, dict):
        return f"{DESCRIPTIONS[field]} (the baseline was blessed before implementation versions were recorded)"
    current = current if isinstance(current, dict) else {}
    parts = [f"{name} {stored.get(name)} -> {current.get(name)}" for name in sorted(set(stored) | set(current))
             if stored.get(name) != current.get(name)]
    return f"{DESCRIPTIONS[field]} ({', '.join(parts)})"


def baseline_dir(root: Path, suite: str, variant: str) -> Path:
    """root/suite/variant, refused unless both names are plain names and the folder lies under root."""
    for what, name in (("suite", suite), ("variant", variant)):
        if not is_slug(name):
            raise HarnessError(f"{what} name {name!r} is not a plain name (letters, digits, '_', '-', '.'); a blessed "
                               f"baseline cannot be stored or read under {root} for it.")
    target = Path(root) / suite / variant
    contained(target, root, f"the blessed baseline of {suite}/{variant}")
    return target


def _remove_blessed(target: Path) -> None:
    """Delete a previous blessed baseline, only if it is one the harness wrote: a folder holding nothing
    but records.jsonl and a manifest.json with `blessed_from`. Anything else is left alone and refused."""
    if target.is_symlink() or not target.is_dir():
        raise HarnessError(f"{target} exists and is not a blessed baseline folder; move it away and bless again.")
    names = {p.name for p in target.iterdir()}
    try:
        ours = names <= BLESSED_FILES and "blessed_from" in json.loads((target / "manifest.json").read_text())
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise HarnessError(f"{target} exists but was not written by `harness bless` (it holds "
                           f"{', '.join(sorted(names)) or 'nothing'}); the harness deletes only what it created. "
                           "Move it away and bless again.")
    for name in names:
        (target / name).unlink()
    target.rmdir()


def bless(run_dir: Path, variants: list[str] | None, root: Path = Path("reports/baselines")) -> list[Path]:
    """Store the run's records for `variants` (default: each suite's baseline) as blessed baselines."""
    run = load_run(run_dir)
    if run.manifest.get("status") != "complete":
        from harness.analysis.evidence import unfinished_message

        raise HarnessError(unfinished_message(run_dir, run.manifest).split("; or pass --partial")[0]
                           + "; only a complete run can be blessed.")
    stored = []
    for suite, info in run.manifest.get("suites", {}).items():
        names = variants or [info.get("baseline")]
        for name in names:
            if name not in info.get("variants", []):
                if variants:
                    continue
                raise HarnessError(f"{suite}: baseline '{name}' was not run in {run_dir}.")
            run_info = run.manifest.get("runs", {}).get(f"{suite}/{name}")
            if run_info is None:
                raise HarnessError(f"{suite}/{name} failed or did not run in {run_dir}; nothing to bless.")
            records = [r for r in run.records if r["suite"] == suite and r["variant"] == name]
            variant_info = run.manifest.get("variants", {}).get(name, {})
            target = baseline_dir(root, suite, name)
            if target.exists() or target.is_symlink():
                _remove_blessed(target)
            target.mkdir(parents=True)
            (target / "records.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
            (target / "manifest.json").write_text(json.dumps({
                "blessed_from": str(run_dir), "run_id": run.manifest.get("run_id"), "suite": suite, "variant": name,
                "key": variant_key(run_info, variant_info.get("system_prompt")), "variant_config": variant_info,
                "n_cases": len(records),
            }, indent=2))
            stored.append(target)
    if variants and not stored:
        raise HarnessError(f"none of {', '.join(variants)} ran in {run_dir}.")
    return stored


def load_blessed(root: Path, suite: str, variant: str, current_key: dict[str, Any],
                 case_ids: list[str]) -> dict[str, dict[str, Any]] | None:
    """Blessed records by case id when a baseline exists and matches; None when there is none.

    Raises HarnessError naming what changed when it exists but does not match."""
    target = baseline_dir(root, suite, variant)
    if not (target / "manifest.json").is_file():
        return None
    manifest = json.loads((target / "manifest.json").read_text())
    stored = manifest.get("key", {})
    changed = [_describe(f, stored.get(f), current_key.get(f)) for f in KEY_FIELDS if stored.get(f) != current_key.get(f)]
    hint = (f"Re-bless with `harness bless RUN_DIR --variants {variant}` after a fresh run, or delete {target} "
            "to regenerate.")
    if changed:
        raise HarnessError(f"blessed baseline {target} does not match this run: {', '.join(changed)} changed "
                           f"since it was blessed (run {manifest.get('run_id')}). {hint}")
    records = {}
    for line in (target / "records.jsonl").read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            records[record["case_id"]] = record
    absent = [cid for cid in case_ids if cid not in records]
    if absent:
        raise HarnessError(f"blessed baseline {target} lacks {len(absent)} of this run's cases "
                           f"(e.g. {absent[0]}); it was blessed from a smaller run. {hint}")
    return records
