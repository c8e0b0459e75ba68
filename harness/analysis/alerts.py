"""Catastrophic-forgetting alerts: a failed non-inferiority gate on a retention axis writes an
alert record and, when a webhook is configured, POSTs a Slack-compatible message. Delivery
failures are reported, never raised: an alert must not crash the run that found the problem."""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.analysis.gates import FAIL, GateResult
from harness.config.files import contained

RETENTION_AXES = {"retention"}
WEBHOOK_ENV = "HARNESS_ALERT_WEBHOOK"


@dataclass
class AlertOutcome:
    path: Path
    alert: dict[str, Any]
    delivered: bool | None
    """None: no webhook configured; False: delivery failed (see `delivery_error`)."""
    delivery_error: str | None = None


def is_forgetting(result: GateResult) -> bool:
    # retention is higher-is-better: only a gate guarding against a drop (A >= B - m) can report forgetting
    return (result.kind == "non-inferiority" and result.axis in RETENTION_AXES and result.verdict == FAIL
            and result.op in (">=", ">"))


def _fell(records: list[dict[str, Any]], result: GateResult) -> list[dict[str, Any]]:
    """Cases (tasks) the fine-tune lost: right for the baseline, wrong for the variant."""
    scores: dict[str, dict[str, float]] = {}
    task_of: dict[str, str] = {}
    for r in records:
        if r["suite"] != result.suite or result.axis not in r.get("scores", {}):
            continue
        scores.setdefault(r["variant"], {})[r["case_id"]] = r["scores"][result.axis]
        task = r.get("task")
        if task:
            task_of[r["case_id"]] = task
    a, b = scores.get(result.variant, {}), scores.get(result.baseline, {})
    lost = [cid for cid in sorted(set(a) & set(b)) if a[cid] < b[cid]]
    by_task: dict[str, int] = {}
    for cid in lost:
        by_task[task_of.get(cid, result.suite)] = by_task.get(task_of.get(cid, result.suite), 0) + 1
    return [{"task": task, "cases_lost": n} for task, n in sorted(by_task.items(), key=lambda kv: -kv[1])]


def slack_message(alert: dict[str, Any]) -> dict[str, Any]:
    diff = alert["diff"]
    low, high = alert["diff_ci"]
    tasks = ", ".join(f"{t['task']} (-{t['cases_lost']})" for t in alert["tasks"][:5]) or "n/a"
    text = (f":rotating_light: Catastrophic forgetting: *{alert['variant']}* vs *{alert['baseline']}* on "
            f"suite *{alert['suite']}* ({alert['axis']}): diff {diff:+.3f} (CI {low:+.3f}..{high:+.3f}), "
            f"allowed margin -{alert['margin']:g}. Tasks that fell: {tasks}. Run {alert['run_id']}.")
    return {"text": text}


def post_webhook(url: str, payload: dict[str, Any], timeout: float = 10.0) -> str | None:
    """POST JSON; returns None on success, else a one-line reason."""
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if response.status >= 300:
                return f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        return str(getattr(exc, "reason", exc))
    return None


def raise_alerts(results: list[GateResult], records: list[dict[str, Any]], manifest: dict[str, Any], *,
                 alerts_dir: Path = Path("reports/alerts"), webhook: str | None = None) -> list[AlertOutcome]:
    """Write one alert per failed retention gate; POST each to the webhook if one is set."""
    webhook = webhook or os.environ.get(WEBHOOK_ENV) or None
    outcomes = []
    for result in results:
        if not is_forgetting(result):
            continue
        alert = {
            "kind": "catastrophic-forgetting",
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "run_id": manifest.get("run_id"),
            "suite": result.suite,
            "axis": result.axis,
            "variant": result.variant,
            "baseline": result.baseline,
            "gate": result.gate,
            "estimate": result.estimate,
            "baseline_estimate": result.baseline_estimate,
            "diff": result.diff,
            "diff_ci": list(result.diff_ci) if result.diff_ci else None,
            "margin": result.margin,
            "p_value": result.p_value,
            "p_adjusted": result.p_adjusted,
            "n": result.n,
            "tasks": _fell(records, result),
        }
        alerts_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        # Suite names are plain names since suite load; a run written before that (or edited) may hold
        # anything, so the file name keeps only safe characters and is checked to lie in alerts_dir.
        label = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{result.suite}-{result.variant}").strip(".") or "alert"
        path = contained(alerts_dir / f"{stamp}-{label}.json", alerts_dir, "an alert record")
        delivered, error = None, None
        if webhook:
            error = post_webhook(webhook, slack_message(alert))
            delivered = error is None
            alert["delivery"] = {"webhook": True, "delivered": delivered, "error": error}
        path.write_text(json.dumps(alert, indent=2))
        outcomes.append(AlertOutcome(path=path, alert=alert, delivered=delivered, delivery_error=error))
    return outcomes


def list_alerts(alerts_dir: Path = Path("reports/alerts"), limit: int = 20) -> list[dict[str, Any]]:
    """The most recent alerts, newest first."""
    if not alerts_dir.is_dir():
        return []
    files = sorted(alerts_dir.glob("*.json"), reverse=True)[:limit]
    out = []
    for file in files:
        try:
            alert = json.loads(file.read_text())
        except ValueError:
            continue
        alert["path"] = str(file)
        out.append(alert)
    return out
