"""No evidence, no GO: what a run must contain before any verdict can be GO.

A run with no suites, a suite that ran no variant or scored no case, or a run that did not finish
(status other than `complete`) is never GO, whatever its gates say; a declared gate whose variants
did not run is NOT EVALUATED and blocks (harness/analysis/gates.py). `harness run`, `compare`, `report` and the
pytest plugin all decide through `run_verdict`.
"""

from __future__ import annotations

from typing import Any

RESUME_HINT = "Re-run the same `harness run` command: it resumes from the cache (finished requests are not generated again)."


def evidence_problems(records: list[dict[str, Any]], manifest: dict[str, Any]) -> list[str]:
    """Why this run is not evidence enough for GO (empty when it is)."""
    problems: list[str] = []
    status = manifest.get("status")
    if status != "complete":
        problems.append(f"the run did not finish (status {status!r}): its records are partial")
    suites = manifest.get("suites") or {}
    if not suites:
        problems.append("the run has no suites: nothing was tested")
    counts: dict[str, int] = {}
    for record in records:
        counts[record.get("suite")] = counts.get(record.get("suite"), 0) + 1
    for name, info in suites.items():
        variants = info.get("variants") or []
        if not variants:
            problems.append(f"suite '{name}' ran no variant (--variants matched none of its variants)")
        elif not counts.get(name):
            problems.append(f"suite '{name}' scored no case")
    for error in manifest.get("errors") or []:  # a variant that failed is missing evidence, gated or not
        problems.append(f"{error.get('suite')} / {error.get('variant')} failed: {error.get('error')}")
    return problems


def run_verdict(gates: list, records: list[dict[str, Any]], manifest: dict[str, Any]) -> tuple[str, list[str]]:
    """("GO" | "NO-GO", evidence problems): GO only with evidence and no blocking gate."""
    from harness.analysis.gates import overall

    problems = evidence_problems(records, manifest)
    return ("NO-GO" if problems else overall(gates)), problems


def unfinished_message(run_dir: Any, manifest: dict[str, Any]) -> str:
    """The refusal `compare`, `report` and `bless` give for a run that did not finish."""
    status = manifest.get("status")
    resume = manifest.get("resume_command")
    how = f"Resume it with `{resume}`" if resume else RESUME_HINT
    stopped = f" (stopped by {manifest['stopped_by']})" if manifest.get("stopped_by") else ""
    return (f"this run did not finish: {run_dir} has status {status!r}{stopped}, so its records are partial. {how}; or pass "
            "--partial to look at what it has (every output is then marked PARTIAL and the verdict is NO-GO).")
