"""Forgetting alerts: records on disk, a real HTTP webhook on 127.0.0.1, and a dead one."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from harness.analysis.alerts import list_alerts, raise_alerts
from harness.analysis.gates import evaluate_run
from tests.analysis.test_gates import bernoulli, make_run


def forgetting_run():
    base = bernoulli(0.6, 600, 1)
    dropped = [0.0 if (b and i % 4 == 0) else b for i, b in enumerate(base)]
    run = make_run({"base": base, "ft": dropped}, ["ft.retention >= base.retention - 0.02"], axis="retention")
    run.manifest["run_id"] = "run-1"
    return run


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_failed_retention_gate_writes_alert_and_posts_slack_json(tmp_path):
    run = forgetting_run()
    gates = evaluate_run(run.records, run.manifest)
    assert gates[0].verdict == "FAIL"
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        (outcome,) = raise_alerts(gates, run.records, run.manifest, alerts_dir=tmp_path, webhook=url)
    finally:
        server.shutdown()
    assert outcome.delivered is True
    (payload,) = _Hook.received
    assert "Catastrophic forgetting" in payload["text"] and "*ft* vs *base*" in payload["text"]
    saved = json.loads(outcome.path.read_text())
    assert saved["variant"] == "ft" and saved["baseline"] == "base" and saved["margin"] == 0.02
    assert saved["diff"] < -0.1 and saved["diff_ci"][1] < -0.02 and saved["run_id"] == "run-1"
    assert saved["tasks"][0]["cases_lost"] > 50
    assert list_alerts(tmp_path)[0]["variant"] == "ft"


def test_dead_webhook_is_reported_not_raised(tmp_path):
    run = forgetting_run()
    gates = evaluate_run(run.records, run.manifest)
    (outcome,) = raise_alerts(gates, run.records, run.manifest, alerts_dir=tmp_path,
                              webhook="http://127.0.0.1:9/unreachable")
    assert outcome.delivered is False and outcome.delivery_error
    assert json.loads(outcome.path.read_text())["delivery"]["delivered"] is False


def test_passing_or_non_retention_gates_raise_nothing(tmp_path):
    base = bernoulli(0.6, 300, 2)
    run = make_run({"base": base, "ft": list(base)}, ["ft.retention >= base.retention - 0.02"], axis="retention")
    assert raise_alerts(evaluate_run(run.records, run.manifest), run.records, run.manifest, alerts_dir=tmp_path) == []
    run = make_run({"base": base, "ft": [0.0] * 300}, ["ft.accuracy >= base.accuracy - 0.02"])
    assert raise_alerts(evaluate_run(run.records, run.manifest), run.records, run.manifest, alerts_dir=tmp_path) == []
