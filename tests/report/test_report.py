"""Go/no-go report: one model, three renderers (HTML, Markdown, JSON) and the per-case export.

The main run is a real one (runner + fake backend) whose outputs carry script/img/markdown payloads.
The page is opened in headless Chromium: nothing injected may run, the banner and the plotly forest
plot must render, and a screenshot is kept. Chromium is required (CI installs it): without it the
browser test fails with the install command instead of skipping.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.analysis.alerts import raise_alerts
from harness.analysis.compare import compare_run
from harness.analysis.gates import evaluate_run, overall
from harness.config.suite import load_suite
from harness.config.variants import load_models
from harness.engine.cache import GenerationCache
from harness.engine.records import RunWriter, load_run
from harness.engine.runner import RunOptions, run_suites
from harness.report import build_report, export_cases, write_report
from harness.report.html import script_json
from tests.helpers import write, write_jsonl

SCRIPT_PAYLOAD = "<script>document.documentElement.setAttribute('data-pwned','script');alert(1)</script>"
IMG_PAYLOAD = "<img src=x onerror=\"document.documentElement.setAttribute('data-pwned','img')\">"
BREAKOUT_PAYLOAD = "</script><!--<script>document.title='PWNED'</script>"
MARKDOWN_PAYLOAD = "**Refund** for [order](javascript:alert(1))\n\n# Heading\n\n| a | b |\n|---|---|\n| `x` | <b>y</b> |"
INPUT_PAYLOAD = "<svg onload=\"document.documentElement.setAttribute('data-pwned','input')\"></svg>"


# -- a real run with hostile outputs ---------------------------------------------------------

def _ticket(i: int) -> dict:
    return {"category": ["refund", "replacement", "question"][i % 3], "order": 1000 + i}


def _lora(request) -> str:
    user = request.chat_messages[-1]["content"]
    arith = re.search(r"What is (\d+) \+ (\d+)\?", user)
    if arith:
        a = int(arith.group(1))
        return "5" if a % 3 == 0 else str(2 * a)  # forgets a third of general arithmetic
    i = int(re.search(r"Ticket (\d+)", user).group(1))
    right = json.dumps(_ticket(i))
    return {  # hostile or broken answers on cases the base model gets right
        0: IMG_PAYLOAD,
        2: json.dumps({"category": "refund", "order": BREAKOUT_PAYLOAD}),
        4: "A very long answer. " * 120,
        6: MARKDOWN_PAYLOAD,
        8: SCRIPT_PAYLOAD + right,
    }.get(i % 10, right)


def _base(request) -> str:
    user = request.chat_messages[-1]["content"]
    arith = re.search(r"What is (\d+) \+ (\d+)\?", user)
    if arith:
        return str(2 * int(arith.group(1)))
    i = int(re.search(r"Ticket (\d+)", user).group(1))
    if i % 2 == 0:  # the base model gets half of the tickets right,
        return json.dumps(_ticket(i))
    if i % 4 == 1:  # invents an e-mail address in a quarter,
        return json.dumps({**_ticket(i), "email": "x@example.com"})
    return "Sorry, I can't help with tickets."  # and declines the rest


def _register():
    from harness.backends.fake import register_responder

    register_responder("report-lora", _lora)
    register_responder("report-base", _base)


_register()

SCHEMA = {"type": "object", "required": ["category", "order"], "additionalProperties": False,
          "properties": {"category": {"enum": ["refund", "replacement", "question"]}, "order": {"type": "integer"}}}


def make_project(root: Path, n: int = 60) -> Path:
    rows = []
    for i in range(n):
        text = f"Ticket {i}: order {1000 + i} needs a {_ticket(i)['category']}."
        if i % 10 == 5:
            text += " " + INPUT_PAYLOAD
        rows.append({"id": f"t{i:03d}", "messages": [{"role": "user", "content": text},
                                                     {"role": "assistant", "content": json.dumps(_ticket(i))}]})
    write_jsonl(root / "suites" / "data" / "tickets.jsonl", rows)
    write_jsonl(root / "suites" / "data" / "general.jsonl", [
        {"id": f"g{i:03d}", "messages": [{"role": "user", "content": f"What is {i} + {i}?"},
                                         {"role": "assistant", "content": str(2 * i)}]} for i in range(n)])
    (root / "suites" / "ticket.schema.json").write_text(json.dumps(SCHEMA))
    write(root / "models.toml", """
        [defaults]
        backend = "fake"
        model = "fake-model"

        [variants.base]
        fake = {responder = "report-base"}

        [variants.fewshot]
        fewshot = 2
        fake = {default = '{"category": "refund"}'}

        [variants.json-lora]
        fake = {responder = "report-lora"}
    """)
    write(root / "suites" / "tickets.yaml", """
        suite: tickets
        data: {path: data/tickets.jsonl, holdout: 0.85, seed: 3}
        variants: [base, fewshot, json-lora]
        generation: {max_tokens: 400}
        scorers:
          format: {json_schema: ticket.schema.json}
          accuracy: json_fields
          hallucination: {unsupported_values: user}
        gates:
          - json-lora.format >= 0.9
          - json-lora.accuracy > fewshot.accuracy
          - json-lora.hallucination <= base.hallucination + 0.05
    """)
    write(root / "suites" / "general.yaml", """
        suite: general
        data: {path: data/general.jsonl}
        variants: [base, json-lora]
        generation: {max_tokens: 8}
        scorers:
          retention: exact_match
        gates:
          - json-lora.retention >= base.retention - 0.02
    """)
    return root


def run_project(root: Path) -> Path:
    """What `harness run` does: run, evaluate gates, raise alerts, rewrite the manifest."""
    models = load_models(root / "models.toml")
    suites = [load_suite(root / "suites" / f"{name}.yaml", known_variants=set(models.variants))
              for name in ("tickets", "general")]
    result = run_suites(suites, models, RunOptions(out_root=root / "reports" / "runs", progress=False),
                        cache=GenerationCache(root / "cache.sqlite"), log=lambda s: None)
    gates = evaluate_run(result.records, result.manifest)
    result.manifest["gates"] = [g.as_dict() for g in gates]
    result.manifest["verdict"] = overall(gates)
    outcomes = raise_alerts(gates, result.records, result.manifest, alerts_dir=root / "reports" / "alerts")
    result.manifest["alerts"] = [str(o.path) for o in outcomes]
    RunWriter(result.run_dir).write_manifest(result.manifest)
    return result.run_dir


@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("report-project"))
    run_dir = run_project(root)
    paths = write_report(run_dir)
    return run_dir, paths


# -- the model and the numbers ---------------------------------------------------------------

def test_writes_three_files_from_one_model(report_run):
    run_dir, paths = report_run
    assert set(paths) == {"html", "markdown", "json"}
    assert paths == {"html": run_dir / "report.html", "markdown": run_dir / "report.md", "json": run_dir / "report.json"}
    model = json.loads(paths["json"].read_text())
    assert model["schema"] == "harness.report/1" and model["verdict"] == "NO-GO"
    assert model == json.loads(json.dumps(build_report(load_run(run_dir))))  # deterministic, one model


def test_numbers_equal_harness_compare_json(report_run):
    run_dir, paths = report_run
    run = load_run(run_dir)
    rows, warnings = compare_run(run)
    gates = evaluate_run(run.records, run.manifest)
    model = json.loads(paths["json"].read_text())
    # What `harness compare --json` prints, through the same JSON round trip.
    assert model["comparisons"] == json.loads(json.dumps(rows))
    assert model["gates"] == [{**json.loads(json.dumps(g.as_dict())), "blocking": g.blocking} for g in gates]
    assert model["verdict"] == overall(gates) and model["warnings"] == warnings
    page = paths["html"].read_text()
    assert len(rows) == 7  # tickets: 2 variants x 3 axes, general: 1
    for row in rows:
        assert f"{row['diff']:+.3f}" in page and f"{row['estimate']:.3f}" in page
        assert f"[{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]" in page
    for g in gates:
        assert html.escape(g.gate) in page and html.escape(g.reason) in page
    # The scorecard cell for each row carries exactly the compare numbers.
    for cell in model["scorecard"]:
        match = [r for r in rows if (r["suite"], r["variant"], r["axis"]) == (cell["suite"], cell["variant"], cell["axis"])]
        if match:
            assert (cell["estimate"], cell["diff"], cell["p_adjusted"]) == (match[0]["estimate"], match[0]["diff"],
                                                                           match[0]["p_adjusted"])


def test_model_has_flips_checks_retention_alerts_and_manifest(report_run):
    run_dir, paths = report_run
    model = json.loads(paths["json"].read_text())
    fmt = next(g for g in model["flips"] if (g["suite"], g["variant"], g["axis"]) == ("tickets", "json-lora", "format"))
    regressed = [c for c in fmt["cases"] if c["direction"] == "regressed"]
    assert regressed and any(c["variant_output"] == IMG_PAYLOAD for c in regressed)
    schema_error = next(c for c in regressed if BREAKOUT_PAYLOAD in (c["variant_output"] or ""))
    (check,) = schema_error["variant_checks"]
    assert check["check"] == "json_schema" and check["score"] == 0 and "$.order" in check["reason"]
    # A gate between two non-baseline variants (json-lora vs fewshot) gets its own flips and forest row.
    assert any((g["variant"], g["baseline"], g["source"]) == ("json-lora", "fewshot", "gate") for g in model["flips"])
    assert any((f["variant"], f["baseline"], f["source"]) == ("json-lora", "fewshot", "gate") for f in model["forest"])
    # Non-inferiority margins sit on the forest rows: -m for higher-is-better, +m for lower-is-better.
    margins = {(f["suite"], f["axis"]): f["margins"] for f in model["forest"] if f["margins"]}
    assert margins[("general", "retention")][0]["boundary"] == -0.02
    assert margins[("tickets", "hallucination")][0]["boundary"] == 0.05
    (retention,) = model["retention"]
    assert retention["variant"] == "json-lora" and retention["tasks"][0]["cases_lost"] > 0
    (alert,) = model["alerts"]
    assert alert["found"] and alert["alert"]["kind"] == "catastrophic-forgetting"
    man = model["manifest"]
    assert man["counts"]["engine_loads"] >= 1 and "cache_hit_rate" in man["counts"]
    assert man["suites"]["tickets"]["data"]["sha256"] and man["runs"]["tickets/json-lora"]["generation"]["max_tokens"] == 400


def test_markdown_is_short_and_escaped(report_run):
    _, paths = report_run
    text = paths["markdown"].read_text()
    assert text.startswith("## ❌ NO-GO") and "json-lora.format >= 0.9" in html.unescape(text.replace("\\", ""))
    assert "catastrophic forgetting" in text and "report.html" in text
    assert len(text.splitlines()) < 60
    for payload in ("<script", "<img", "javascript:"):
        assert payload not in text


# -- the page: escaping, no network, a real browser ------------------------------------------

class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in = tag if tag in ("script", "style") else None
        if tag == "script":
            self.scripts.append("")
        if tag == "style":
            self.styles.append("")

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in == "script":
            self.scripts[-1] += data
        elif self._in == "style":
            self.styles[-1] += data


def test_every_output_is_escaped_in_the_html(report_run):
    _, paths = report_run
    page = paths["html"].read_text()
    parser = _Tags()
    parser.feed(page)
    # Only the page's own three scripts; no element came from record text.
    assert len(parser.scripts) == 3
    assert [t for t, _ in parser.tags if t in ("img", "svg", "iframe", "object", "embed", "math")] == []
    assert not any(k.startswith("on") for _, attrs in parser.tags for k in attrs)
    for payload in (SCRIPT_PAYLOAD, IMG_PAYLOAD, INPUT_PAYLOAD, "<b>y</b>"):
        assert payload not in page
        assert html.escape(payload) in page
    assert 'href="javascript' not in page.lower()
    # The long output is truncated in the table, with the full text one click away.
    run = load_run(paths["html"].parent)
    long = next(r["output"] for r in run.records if (r["output"] or "").startswith("A very long answer."))
    assert len(long) > 1000 and "<details class=\"more\">" in page and html.escape(long) in page
    assert html.escape(long[:280]) + "…</div>" in page
    # JSON for the plot cannot close the script or open a comment.
    js = script_json({"x": BREAKOUT_PAYLOAD, "y": "<!-- \u2028"})
    assert "</" not in js and "<!--" not in js and "\u2028" not in js and json.loads(js)["x"] == BREAKOUT_PAYLOAD


def test_opening_the_page_needs_no_network(report_run):
    _, paths = report_run
    page = paths["html"].read_text()
    from plotly.offline import get_plotlyjs

    plotly_js = get_plotlyjs()
    parser = _Tags()
    parser.feed(page)
    for tag, attrs in parser.tags:
        assert not (tag == "script" and "src" in attrs), attrs
        assert not (tag == "link" and "href" in attrs), attrs
        for key in ("src", "href", "srcset", "poster", "data"):
            value = attrs.get(key) or ""
            assert not re.match(r"\s*(https?:)?//", value, re.I), (tag, attrs)
    # plotly.js is inlined verbatim (its source mentions map-tile URLs it never loads for a scatter plot).
    assert plotly_js in parser.scripts
    own = [s for s in parser.scripts if s != plotly_js] + parser.styles
    for text in own + [re.sub(r"<script>.*?</script>", "", page, flags=re.S)]:
        for pattern in (r"url\(\s*['\"]?\s*(https?:)?//", r"@import", r"@font-face", r"https?://[^\s\"'<]*\.(woff2?|ttf|otf|css|js)\b",
                        r"<script[^>]+src\s*=", r"<link[^>]+href\s*="):
            assert not re.search(pattern, text, re.I), pattern
    # And the page forbids the browser any network access of its own.
    csp = next(a["content"] for t, a in parser.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]


CHROMIUM_INSTALL = ("headless Chromium is needed for the report test and was not found. Install it: "
                    "`apt-get update && apt-get install -y chromium` (Debian/Ubuntu), or point HARNESS_CHROMIUM "
                    "at a Chrome/Chromium binary.")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage", "--hide-scrollbars"]


def chromium_binary() -> str:
    import os

    for candidate in (os.environ.get("HARNESS_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.fail(CHROMIUM_INSTALL, pytrace=False)


def chromium(page: Path, tmp_path: Path, *args: str, name: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"chromium-profile-{name}"
    profile.mkdir()
    command = [chromium_binary(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_browser_runs_no_injected_script_and_renders_banner_and_plot(report_run, tmp_path):
    _, paths = report_run
    dom = chromium(paths["html"], tmp_path, "--virtual-time-budget=5000", "--dump-dom", name="dom").stdout
    root = re.search(r"<html[^>]*>", dom).group(0)
    # Nothing injected ran: no marker attribute, the title is the page's own, no policy violation
    # (a violation would mean markup slipped through and was only stopped by the CSP).
    assert "data-pwned" not in root and "PWNED" not in re.search(r"<title>(.*?)</title>", dom, re.S).group(1)
    assert "data-csp-violations" not in root, root
    assert 'data-report-ready="1"' in root, "the plot's promise never resolved"
    # The payloads are on the page as text.
    assert html.escape(IMG_PAYLOAD, quote=False) in dom
    assert "&lt;script&gt;document.documentElement.setAttribute" in dom
    # The banner and the plotly forest plot (an svg inside the plot div, after JS ran).
    assert re.search(r'<header class="banner nogo"[^>]*><div class="verdict">NO-GO</div>', dom)
    plot = dom[dom.index('id="forest-plot"'):]
    assert "<svg" in plot[:20000] and "main-svg" in plot[:20000]
    screenshot = tmp_path / "report.png"
    chromium(paths["html"], tmp_path, "--virtual-time-budget=5000", "--window-size=1400,2000",
             f"--screenshot={screenshot}", name="shot")
    assert screenshot.is_file() and screenshot.stat().st_size > 20_000
    print(f"screenshot: {screenshot}")


def test_filter_script_hides_rows_without_inner_html(report_run):
    _, paths = report_run
    page = paths["html"].read_text()
    assert "innerHTML" not in page.replace(__import__("plotly.offline").offline.get_plotlyjs(), "")
    assert 'id="flip-filter"' in page and 'data-direction="regressed"' in page


# -- export -------------------------------------------------------------------------------

def test_export_cases_parquet_and_csv(report_run, tmp_path):
    import pandas as pd

    run_dir, _ = report_run
    run = load_run(run_dir)
    parquet = export_cases(run_dir)
    assert parquet == run_dir / "cases.parquet"
    frame = pd.read_parquet(parquet)
    assert len(frame) == len(run.records)
    assert {"suite", "variant", "case_id", "output", "reference", "cached", "input", "score_format", "score_accuracy",
            "score_hallucination", "score_retention"} <= set(frame.columns)
    first = run.records[0]
    row = frame[(frame.suite == first["suite"]) & (frame.variant == first["variant"]) & (frame.case_id == first["case_id"])]
    assert row.iloc[0]["output"] == first["output"]
    general = frame[frame.suite == "general"]
    assert general["score_format"].isna().all() and general["score_retention"].notna().all()
    csv = export_cases(run_dir, format="csv", out=tmp_path / "out" / "cases.csv")
    assert len(pd.read_csv(csv)) == len(run.records)
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match="unknown export format"):
        export_cases(run_dir, format="xlsx")


# -- scale: 5 variants x 4 axes x 1,000 cases ------------------------------------------------

def write_synthetic_run(run_dir: Path, n: int = 1000, variants=("base", "fewshot", "lora", "qlora", "full")) -> Path:
    import random

    rng = random.Random(1)
    axes = {"format": "higher", "accuracy": "higher", "hallucination": "lower", "retention": "higher"}
    rates = {"base": 0.6, "fewshot": 0.65, "lora": 0.8, "qlora": 0.78, "full": 0.6}
    records = []
    for v in variants:
        for i in range(n):
            scores = {a: float(rng.random() < (rates[v] if d == "higher" else 1 - rates[v])) for a, d in axes.items()}
            records.append({"suite": "big", "variant": v, "case_id": f"c{i:04d}", "task": f"task{i % 7}",
                            "prompt": [{"role": "user", "content": f"case {i} <b>bold</b>"}],
                            "output": f"answer {i} from {v} " + "x" * (i % 500), "reference": f"ref {i}",
                            "scores": scores, "checks": {a: {"check": {"score": s, "reason": "r"}} for a, s in scores.items()},
                            "cached": False})
    run_dir.mkdir(parents=True)
    (run_dir / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    manifest = {"run_id": "big", "status": "complete", "suites": {"big": {
        "variants": list(variants), "baseline": "base", "n_cases": n, "alpha": 0.05,
        "axes": {a: {"direction": d, "binary": True} for a, d in axes.items()},
        "gates": ["lora.accuracy > base.accuracy", "lora.retention >= base.retention - 0.02",
                  "full.hallucination <= base.hallucination + 0.02", "lora.format >= 0.7"]}}}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    return run_dir


def test_large_run_caps_flipped_cases_and_stays_fast(tmp_path):
    run_dir = write_synthetic_run(tmp_path / "big")
    started = time.perf_counter()
    paths = write_report(run_dir)
    seconds = time.perf_counter() - started
    model = json.loads(paths["json"].read_text())
    assert len(model["comparisons"]) == 16
    for group in model["flips"]:
        for direction in ("regressed", "improved"):
            assert group["shown"][direction] == min(group["total"][direction], 50)
    assert any(g["total"]["regressed"] > 50 for g in model["flips"])
    assert "listing at most 50 per direction" in paths["html"].read_text()
    assert {t["task"] for t in model["retention"][0]["tasks"]} == {f"task{i}" for i in range(7)}
    size_mb = paths["html"].stat().st_size / 1e6
    assert size_mb < 15, size_mb
    assert seconds < 60, seconds
