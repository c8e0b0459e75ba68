"""The report model: everything the go/no-go page shows, computed once from a run's records and
manifest (through `compare_run` and `evaluate_run`, so the numbers equal `harness compare --json`).
The HTML, Markdown and JSON renderers only format this dict; none of them computes a number."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from harness.analysis.alerts import RETENTION_AXES
from harness.engine.records import Run

SCHEMA = "harness.report/1"
MAX_FLIPS = 50
"""Flipped cases kept per comparison and direction (regressed / improved); the rest are counted."""



# -- small helpers ---------------------------------------------------------------------------

def clean(value: Any) -> Any:
    """JSON-safe: NaN/inf -> None, tuples -> lists, unknown objects -> str."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def significance(verdict: str | None) -> str:
    """compare_run's verdict -> better | worse | ns | na (what the page colours by)."""
    if verdict in ("better", "worse"):
        return verdict
    if verdict and verdict.startswith("no significant"):
        return "ns"
    return "na"


def case_input(record: dict[str, Any]) -> str:
    """The case's input as a reader sees it: the last user turn of the prompt."""
    prompt = record.get("prompt")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        for message in reversed(prompt):
            if isinstance(message, dict) and message.get("role") == "user":
                return str(message.get("content", ""))
        if prompt and isinstance(prompt[-1], dict):
            return str(prompt[-1].get("content", ""))
    return "" if prompt is None else json.dumps(prompt, ensure_ascii=False)


def as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def output_text(record: dict[str, Any] | None) -> str | None:
    """The generated text, or for log-likelihood multiple choice the choice the model ranked first."""
    if record is None:
        return None
    if record.get("output") is not None:
        return as_text(record["output"])
    logprobs, choices = record.get("choice_logprobs"), record.get("choices")
    if logprobs and choices and len(logprobs) == len(choices):
        best = max(range(len(logprobs)), key=lambda i: logprobs[i])
        return f"(log-likelihood choice) {choices[best]}"
    if record.get("missing"):
        return None
    return None


def _gate_boundary(gate: dict[str, Any]) -> float:
    """Where A - B must stay for a comparison gate to hold: -margin (higher is better), +margin (lower)."""
    margin = gate.get("margin") or 0.0
    return -margin if gate.get("op") in (">=", ">") else margin


# -- the model -------------------------------------------------------------------------------

def build_report(run: Run, baseline: str | None = None, *, max_flips: int = MAX_FLIPS,
                 partial: bool = False) -> dict[str, Any]:
    """The report model as a JSON-ready dict (see `SCHEMA`). A run that did not finish is refused
    unless `partial`; then the model says `partial: true` and the verdict is NO-GO."""
    from harness import __version__
    from harness.analysis.compare import compare_run
    from harness.analysis.evidence import run_verdict, unfinished_message
    from harness.analysis.gates import evaluate_run
    from harness.errors import HarnessError

    unfinished = run.manifest.get("status") != "complete"
    if unfinished and not partial:
        raise HarnessError(unfinished_message(run.path, run.manifest))
    rows, warnings = compare_run(run, baseline)
    gate_results = evaluate_run(run.records, run.manifest)
    gates = [clean(g.as_dict()) for g in gate_results]
    for g, result in zip(gates, gate_results, strict=True):
        g["blocking"] = result.blocking
    verdict, evidence = run_verdict(gate_results, run.records, run.manifest)
    manifest = run.manifest

    by_variant: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in run.records:
        by_variant.setdefault((r["suite"], r["variant"]), {})[r["case_id"]] = r

    suites: list[dict[str, Any]] = []
    for name, info in manifest.get("suites", {}).items():
        ran = list(info.get("variants", []))
        base = baseline or info.get("baseline") or (ran[0] if ran else None)
        axes = {axis: (a or {}).get("direction", "higher") for axis, a in info.get("axes", {}).items()}
        suites.append({
            "name": name,
            "baseline": base if base in ran else None,
            "variants": ([base] if base in ran else []) + [v for v in ran if v != base],
            "axes": axes,
            "n_cases": info.get("n_cases"),
            "alpha": info.get("alpha", 0.05),
            "warnings": list(info.get("warnings") or []),
        })

    return clean({
        "schema": SCHEMA,
        "harness_version": __version__,
        "run_id": manifest.get("run_id"),
        "run_dir": str(run.path),
        "verdict": verdict,
        "partial": unfinished,
        "evidence_problems": evidence,
        "baseline_override": baseline,
        "gates": gates,
        "gate_counts": _counts(gates),
        "multiplicity": {
            "gates": "holm: Holm over the paired gates of each suite (p_adjusted in every gate, its reason, "
                     "compare --json and the pytest message)",
            "comparisons": "benjamini-hochberg over the comparison table's rows (exploratory)",
        },
        "comparisons": rows,
        "warnings": warnings,
        "problems": _problems(manifest),
        "suites": suites,
        "scorecard": _scorecard(run, suites, rows, gates),
        "forest": _forest(rows, gates),
        "flips": _flips(by_variant, suites, rows, gates, max_flips),
        "max_flips": max_flips,
        "retention": _retention(run, suites, rows, gates),
        "alerts": _alerts(run, gates),
        "manifest": _manifest_summary(manifest),
    })


def _counts(gates: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for g in gates:
        counts[g["verdict"]] = counts.get(g["verdict"], 0) + 1
    return counts


def _problems(manifest: dict[str, Any]) -> list[str]:
    problems = []
    status = manifest.get("status")
    if status and status != "complete":
        problems.append(f"the run is {status}: its records may be partial")
    for e in manifest.get("errors") or []:
        problems.append(f"{e.get('suite')} / {e.get('variant')}: {e.get('error')}")
    return problems


def _scorecard(run: Run, suites, rows, gates) -> list[dict[str, Any]]:
    """One cell per suite x variant x axis: estimate + CI, and for non-baselines the paired diff."""
    from harness.analysis import stats
    row_of = {(r["suite"], r["variant"], r["axis"]): r for r in rows}
    cells = []
    for s in suites:
        for axis in s["axes"]:
            base_row = next((r for r in rows if r["suite"] == s["name"] and r["axis"] == axis
                             and r.get("baseline_estimate") is not None), None)
            for variant in s["variants"]:
                cell: dict[str, Any] = {"suite": s["name"], "variant": variant, "axis": axis,
                                        "is_baseline": variant == s["baseline"],
                                        "gates": [{"gate": g["gate"], "verdict": g["verdict"]} for g in gates
                                                  if g["suite"] == s["name"] and g.get("axis") == axis
                                                  and g.get("variant") == variant]}
                row = row_of.get((s["name"], variant, axis))
                if variant == s["baseline"] and base_row is not None:
                    cell.update(estimate=base_row["baseline_estimate"], ci=base_row.get("baseline_ci"),
                                n=base_row["n"], significance="baseline", source="compare")
                elif row is not None and row.get("estimate") is not None:
                    cell.update(estimate=row["estimate"], ci=row.get("estimate_ci"), n=row["n"],
                                diff=row["diff"], diff_ci=[row["ci_low"], row["ci_high"]],
                                p_value=row.get("p_value"), p_adjusted=row.get("p_adjusted"), mde=row.get("mde"),
                                test=row.get("test"), verdict=row["verdict"],
                                significance=significance(row["verdict"]), source="compare")
                else:
                    # No paired row (a lone variant, or a baseline the suite did not run): its own rate.
                    values = [float(r["scores"][axis]) for r in run.records
                              if r["suite"] == s["name"] and r["variant"] == variant and axis in r.get("scores", {})]
                    if values:
                        est = stats.estimate(values)
                        cell.update(estimate=est.value, ci=[est.ci_low, est.ci_high], n=len(values),
                                    significance="baseline" if variant == s["baseline"] else "na",
                                    source="estimate")
                    else:
                        cell.update(estimate=None, ci=None, n=0, significance="na", source="none",
                                    note=(row or {}).get("note") or "no scored cases")
                cells.append(cell)
    return cells


def _pairs(rows, gates) -> list[dict[str, Any]]:
    """Every paired comparison the page shows: compare rows (vs the baseline) and comparison gates
    between other pairs (e.g. fine-tune vs few-shot)."""
    pairs = [{"suite": r["suite"], "axis": r["axis"], "variant": r["variant"], "baseline": r["baseline"],
              "direction": r["direction"], "source": "compare", "row": r} for r in rows]
    seen = {(p["suite"], p["axis"], frozenset((p["variant"], p["baseline"]))) for p in pairs}
    for g in gates:
        if g["kind"] == "threshold" or not g.get("baseline"):
            continue
        key = (g["suite"], g["axis"], frozenset((g["variant"], g["baseline"])))
        if key in seen:
            continue
        seen.add(key)
        pairs.append({"suite": g["suite"], "axis": g["axis"], "variant": g["variant"], "baseline": g["baseline"],
                      "direction": "lower" if g.get("op") in ("<=", "<") else "higher", "source": "gate", "gate": g})
    return pairs


def _forest(rows, gates) -> list[dict[str, Any]]:
    """Forest-plot rows: diff = variant - baseline with its CI, and the gate boundaries on that pair."""
    out = []
    for p in _pairs(rows, gates):
        if p["source"] == "compare":
            r = p["row"]
            if r.get("diff") is None:
                continue
            diff, low, high = r["diff"], r["ci_low"], r["ci_high"]
            entry = {"significance": significance(r["verdict"]), "confidence": r.get("confidence", 0.95),
                     "p_adjusted": r.get("p_adjusted"), "p_adjustment": r.get("p_adjustment"), "verdict": r["verdict"]}
        else:
            g = p["gate"]
            if g.get("diff") is None or not g.get("diff_ci"):
                continue
            diff, (low, high) = g["diff"], g["diff_ci"]
            alpha = (g.get("extra") or {}).get("alpha", 0.05)
            entry = {"significance": "pass" if g["verdict"] == "PASS" else "fail" if g["verdict"] in ("FAIL", "ERROR")
                     else "ns", "confidence": 1 - 2 * alpha, "p_adjusted": g.get("p_adjusted"),
                     "p_adjustment": (g.get("extra") or {}).get("p_adjustment"), "verdict": g["verdict"]}
        margins = []
        for g in gates:
            if g["kind"] not in ("non-inferiority", "equivalence") or g["suite"] != p["suite"] \
                    or g.get("axis") != p["axis"]:
                continue
            if (g["variant"], g.get("baseline")) == (p["variant"], p["baseline"]):
                sign = 1
            elif (g["variant"], g.get("baseline")) == (p["baseline"], p["variant"]):
                sign = -1  # the gate reads B - A; the plot shows A - B
            else:
                continue
            if g["kind"] == "equivalence":  # both ends of +-margin
                for boundary in (-(g.get("margin") or 0.0), g.get("margin") or 0.0):
                    margins.append({"gate": g["gate"], "boundary": boundary, "verdict": g["verdict"]})
                continue
            margins.append({"gate": g["gate"], "boundary": sign * _gate_boundary(g), "verdict": g["verdict"]})
        out.append({"suite": p["suite"], "axis": p["axis"], "variant": p["variant"], "baseline": p["baseline"],
                    "direction": p["direction"], "source": p["source"], "diff": diff, "ci_low": low, "ci_high": high,
                    "margins": margins, **entry})
    return out


def _checks(record: dict[str, Any] | None, axis: str) -> list[dict[str, Any]]:
    if record is None:
        return []
    out = []
    for name, check in ((record.get("checks") or {}).get(axis) or {}).items():
        item = {"check": name, "score": check.get("score"), "reason": check.get("reason")}
        if check.get("details"):
            item["details"] = check["details"]
        out.append(item)
    return out


def _flips(by_variant, suites, rows, gates, max_flips: int) -> list[dict[str, Any]]:
    """Per comparison: the cases whose score changed between baseline and variant, worst first."""
    suite_names = {s["name"] for s in suites}
    groups = []
    for p in _pairs(rows, gates):
        if p["suite"] not in suite_names:
            continue
        suite, axis, variant, base = p["suite"], p["axis"], p["variant"], p["baseline"]
        a = {cid: r for cid, r in by_variant.get((suite, variant), {}).items() if axis in r.get("scores", {})}
        b = {cid: r for cid, r in by_variant.get((suite, base), {}).items() if axis in r.get("scores", {})}
        higher = p["direction"] != "lower"
        changed = {"regressed": [], "improved": []}
        for cid in sorted(set(a) & set(b)):
            sa, sb = float(a[cid]["scores"][axis]), float(b[cid]["scores"][axis])
            if sa == sb:
                continue
            better = (sa > sb) == higher
            changed["improved" if better else "regressed"].append((abs(sa - sb), cid, sa, sb))
        group = {"suite": suite, "axis": axis, "variant": variant, "baseline": base, "direction": p["direction"],
                 "source": p["source"], "paired": len(set(a) & set(b)), "total": {}, "shown": {}, "cases": []}
        for direction in ("regressed", "improved"):
            items = sorted(changed[direction], key=lambda t: (-t[0], t[1]))
            group["total"][direction] = len(items)
            group["shown"][direction] = min(len(items), max_flips)
            for _, cid, sa, sb in items[:max_flips]:
                ra, rb = a[cid], b[cid]
                group["cases"].append({
                    "case_id": cid, "direction": direction, "task": ra.get("task") or rb.get("task"),
                    "input": case_input(ra), "reference": as_text(ra.get("reference")),
                    "baseline_output": output_text(rb), "variant_output": output_text(ra),
                    "baseline_score": sb, "variant_score": sa,
                    "baseline_checks": _checks(rb, axis), "variant_checks": _checks(ra, axis),
                })
        if group["total"]["regressed"] or group["total"]["improved"]:
            groups.append(group)
    return groups


def _retention(run: Run, suites, rows, gates) -> list[dict[str, Any]]:
    """Per retention suite x variant: the suite-level paired row and a per-task breakdown."""
    out = []
    for s in suites:
        for axis in s["axes"]:
            if axis not in RETENTION_AXES or s["baseline"] is None:
                continue
            base = s["baseline"]
            scores: dict[str, dict[str, float]] = {}
            task_of: dict[str, str] = {}
            for r in run.records:
                if r["suite"] == s["name"] and axis in r.get("scores", {}):
                    scores.setdefault(r["variant"], {})[r["case_id"]] = float(r["scores"][axis])
                    if r.get("task"):
                        task_of[r["case_id"]] = str(r["task"])
            for variant in s["variants"]:
                if variant == base:
                    continue
                a, b = scores.get(variant, {}), scores.get(base, {})
                tasks: dict[str, dict[str, Any]] = {}
                for cid in sorted(set(a) & set(b)):
                    t = tasks.setdefault(task_of.get(cid, s["name"]), {"n": 0, "a": 0.0, "b": 0.0, "lost": 0, "gained": 0})
                    t["n"] += 1
                    t["a"] += a[cid]
                    t["b"] += b[cid]
                    t["lost"] += a[cid] < b[cid]
                    t["gained"] += a[cid] > b[cid]
                row = next((r for r in rows if r["suite"] == s["name"] and r["axis"] == axis and r["variant"] == variant), None)
                out.append({
                    "suite": s["name"], "axis": axis, "variant": variant, "baseline": base,
                    "comparison": row,
                    "gates": [g for g in gates if g["suite"] == s["name"] and g.get("axis") == axis
                              and variant in (g.get("variant"), g.get("baseline"))],
                    "tasks": [{"task": name, "n": t["n"], "baseline_estimate": t["b"] / t["n"],
                               "estimate": t["a"] / t["n"], "diff": (t["a"] - t["b"]) / t["n"],
                               "cases_lost": t["lost"], "cases_gained": t["gained"]}
                              for name, t in sorted(tasks.items(), key=lambda kv: (kv[1]["gained"] - kv[1]["lost"], kv[0]))],
                })
    return out


def _find(path_text: str, run_dir: Path) -> Path | None:
    path = Path(path_text)
    if path.is_absolute():
        return path if path.is_file() else None
    for root in (Path.cwd(), *run_dir.resolve().parents):
        if (root / path).is_file():
            return root / path
    return None


def _alerts(run: Run, gates) -> list[dict[str, Any]]:
    """Forgetting alerts the run recorded (manifest `alerts`), read back when their files exist, and
    failed retention gates that have no alert file (a run made without `harness run`)."""
    out = []
    for text in run.manifest.get("alerts") or []:
        found = _find(str(text), run.path)
        entry: dict[str, Any] = {"path": str(text), "found": found is not None}
        if found is not None:
            try:
                entry["alert"] = json.loads(found.read_text(encoding="utf-8"))
            except ValueError as exc:
                entry["error"] = f"not valid JSON: {exc}"
        out.append(entry)
    alerted = {(e["alert"].get("suite"), e["alert"].get("variant"), e["alert"].get("gate")) for e in out if "alert" in e}
    for g in gates:
        if (g["kind"] == "non-inferiority" and g.get("axis") in RETENTION_AXES and g["verdict"] == "FAIL"
                and g.get("op") in (">=", ">") and (g["suite"], g["variant"], g["gate"]) not in alerted):
            out.append({"path": None, "found": False, "gate_only": True,
                        "alert": {"suite": g["suite"], "variant": g["variant"], "baseline": g.get("baseline"),
                                  "axis": g["axis"], "gate": g["gate"], "diff": g.get("diff"),
                                  "diff_ci": g.get("diff_ci"), "margin": g.get("margin"), "tasks": []}})
    return out


def _manifest_summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the manifest section shows: provenance, settings, hashes, timings and counts."""
    runs = manifest.get("runs") or {}
    variants = {}
    for name, v in (manifest.get("variants") or {}).items():
        entry = dict(v)
        adapter_hashes = sorted({info.get("adapter_sha256") for key, info in runs.items()
                                 if key.split("/", 1)[-1] == name and info.get("adapter_sha256")})
        if adapter_hashes:
            entry["adapter_sha256"] = adapter_hashes[0] if len(adapter_hashes) == 1 else adapter_hashes
        variants[name] = entry
    counts = dict(manifest.get("counts") or {})
    if counts.get("requests"):
        counts["cache_hit_rate"] = counts.get("cached", 0) / counts["requests"]
    return {
        "run": {k: manifest.get(k) for k in ("run_id", "harness_version", "status", "started_at", "finished_at",
                                             "seconds", "limit", "verdict")},
        "models_toml": manifest.get("models_toml"),
        "counts": counts,
        "variants": variants,
        "suites": {name: {k: info.get(k) for k in ("path", "sha256", "data", "holdout", "seed", "n_cases",
                                                    "n_fewshot_pool", "baseline", "alpha", "gate_mode",
                                                    "inconclusive", "holm")}
                   for name, info in (manifest.get("suites") or {}).items()},
        "runs": runs,
        "backends": manifest.get("backends") or {},
        "errors": manifest.get("errors") or [],
    }
