"""report.html: one self-contained page a release review can decide from.

Order: verdict banner, scorecard, forest plot, per-suite gates and flipped cases, retention,
manifest. Everything comes from the report model (`harness.report.data`); this module only formats.

Safety: every string that reaches the page goes through `_e` (html.escape, quotes included); JSON
inside <script> has `<`, `>` and `&` written as \\u escapes so no `</script>` or `<!--` can occur;
the inline JS never uses innerHTML. A Content-Security-Policy allows only this page's own scripts
(by hash) and no network at all, so even a rendering bug cannot run injected markup or fetch
anything; a listener records any policy violation on <html data-csp-violations> for tests.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from typing import Any

PREVIEW_CHARS = 280
PREVIEW_LINES = 8

_VERDICT_CLASS = {"PASS": "pass", "FAIL": "fail", "ERROR": "fail", "INCONCLUSIVE": "inc"}
_SIG_LABEL = {"better": "better", "worse": "worse", "ns": "not significant", "na": "n/a", "baseline": "baseline"}
_SIG_COLOR = {"better": "#1a7f37", "worse": "#cf222e", "ns": "#6e7781", "na": "#8c959f",
              "pass": "#1a7f37", "fail": "#cf222e"}


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _f3(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def _s3(x: float | None) -> str:
    return "–" if x is None else f"{x:+.3f}"


def _p(x: float | None) -> str:
    return "–" if x is None else f"{x:.3g}"


def _ci(ci: list | None, signed: bool = False) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return ""
    fmt = _s3 if signed else _f3
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def script_json(value: Any) -> str:
    """JSON safe inside <script>: `<`, `>`, `&` (and with ensure_ascii U+2028/9) as \\u escapes."""
    text = json.dumps(value, ensure_ascii=True, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _badge(verdict: str, text: str | None = None) -> str:
    return f'<span class="badge {_VERDICT_CLASS.get(verdict, "na")}">{_e(text or verdict)}</span>'


def _arrow(direction: str) -> str:
    return "↓" if direction == "lower" else "↑"


def _text(text: str | None, empty: str = "(no output)") -> str:
    """Case text, escaped; long text shows a preview with the full text one click away."""
    if text is None:
        return f'<span class="none">{_e(empty)}</span>'
    if text == "":
        return '<span class="none">(empty)</span>'
    lines = text.split("\n")
    if len(text) <= PREVIEW_CHARS and len(lines) <= PREVIEW_LINES:
        return f'<div class="txt">{_e(text)}</div>'
    preview = "\n".join(lines[:PREVIEW_LINES])[:PREVIEW_CHARS]
    return (f'<details class="more"><summary><div class="txt">{_e(preview)}…</div>'
            f'<span class="expand">show all ({len(text):,} chars)</span></summary>'
            f'<div class="txt">{_e(text)}</div></details>')


# -- sections --------------------------------------------------------------------------------

def _banner(m: dict[str, Any]) -> str:
    verdict = m["verdict"]
    run = m["manifest"]["run"]
    gates = m["gates"]
    blocking = [g for g in gates if g.get("blocking")]
    non_blocking = [g for g in gates if not g.get("blocking") and g["verdict"] != "PASS"]
    counts = " ".join(_badge(v, f"{n} {v}") for v, n in sorted(m["gate_counts"].items(),
                                                              key=lambda kv: ["FAIL", "ERROR", "INCONCLUSIVE", "PASS"].index(kv[0])
                                                              if kv[0] in ("FAIL", "ERROR", "INCONCLUSIVE", "PASS") else 9))
    shown = f"PARTIAL RUN ({run.get('status')}) · {verdict}" if m.get("partial") else verdict
    parts = [f'<header class="banner {"go" if verdict == "GO" else "nogo"}" id="verdict">',
             f'<div class="verdict">{_e(shown)}</div><div class="bsum">']
    for problem in m.get("evidence_problems") or []:
        parts.append(f'<div class="line"><b>No evidence for GO:</b> {_e(problem)}</div>')
    n_suites, n_variants = len(m["suites"]), len({v for s in m["suites"] for v in s["variants"]})
    parts.append(f'<div class="sub">run <code>{_e(m["run_id"])}</code> · {n_suites} suite(s) · {n_variants} variant(s)'
                 f' · {_e(run.get("finished_at") or run.get("started_at") or "")}</div>')
    if not gates:
        parts.append('<div class="line">No gates declared: nothing blocks, but nothing was asserted either.</div>')
    else:
        parts.append(f'<div class="line">{len(gates)} gate(s): {counts}</div>')
    if blocking:
        parts.append('<div class="line"><b>Blocking:</b></div><ul class="blocking">')
        for g in blocking:
            parts.append(f'<li>{_badge(g["verdict"])} <b>{_e(g["suite"])}</b>: <code>{_e(g["gate"])}</code> — {_e(g["reason"])}</li>')
        parts.append("</ul>")
    elif gates:
        parts.append('<div class="line">Every gate passes.</div>')
    if non_blocking:
        parts.append('<div class="line">Not blocking (the suite lets inconclusive gates pass):</div><ul class="blocking">')
        for g in non_blocking:
            parts.append(f'<li>{_badge(g["verdict"])} <b>{_e(g["suite"])}</b>: <code>{_e(g["gate"])}</code> — {_e(g["reason"])}</li>')
        parts.append("</ul>")
    alerts = [a for a in m["alerts"] if a.get("alert")]
    if alerts:
        parts.append(f'<div class="line">⚠ {len(alerts)} catastrophic-forgetting alert(s): see <a href="#retention">Retention</a>.</div>')
    for problem in m["problems"]:
        parts.append(f'<div class="line problem">⚠ {_e(problem)}</div>')
    for warning in m["warnings"]:
        parts.append(f'<div class="line warn">⚠ {_e(warning)}</div>')
    parts.append("</div></header>")
    return "".join(parts)


def _nav(m: dict[str, Any]) -> str:
    links = [("scorecard", "Scorecard"), ("forest", "Forest plot")]
    links += [(f"suite-{i}", f"Suite {s['name']}") for i, s in enumerate(m["suites"])]
    links += [("retention", "Retention"), ("manifest", "Manifest")]
    return '<nav>' + " ".join(f'<a href="#{_e(a)}">{_e(t)}</a>' for a, t in links) + "</nav>"


def _gate_pill(g: dict[str, Any], variant: str, axis: str) -> str:
    text = g["gate"]
    prefix = f"{variant}.{axis}"
    short = text[len(prefix):].strip() if text.startswith(prefix) else text
    return (f'<span class="pill {_VERDICT_CLASS.get(g["verdict"], "na")}" title="{_e(text)}">'
            f'{_e(short)} {_e(g["verdict"])}</span>')


def _scorecard(m: dict[str, Any]) -> str:
    out = ['<section id="scorecard"><h2>Scorecard</h2>',
           '<p class="legend">Each cell: the variant\'s rate with its 95% CI; below it Δ, the paired difference '
           'variant − baseline on the same cases with its 95% CI and the BH-adjusted p. Colour shows significance '
           'in the axis\'s good direction, not the raw value: '
           '<span class="key better">better</span> <span class="key worse">worse</span> '
           '<span class="key ns">not significant</span> <span class="key baseline">baseline</span>. '
           '↑ higher is better, ↓ lower is better. Pills are gates on that cell.</p>']
    for s in m["suites"]:
        cells = {(c["variant"], c["axis"]): c for c in m["scorecard"] if c["suite"] == s["name"]}
        out.append(f'<h3>{_e(s["name"])} <span class="muted">n={_e(s["n_cases"])} · baseline '
                   f'{_e(s["baseline"] or "–")}</span></h3><div class="scroll"><table class="score"><thead><tr><th>variant</th>')
        for axis, direction in s["axes"].items():
            out.append(f'<th>{_e(axis)} {_arrow(direction)}</th>')
        out.append("</tr></thead><tbody>")
        for variant in s["variants"]:
            out.append(f'<tr><th class="rowh">{_e(variant)}</th>')
            for axis in s["axes"]:
                c = cells.get((variant, axis))
                if c is None:
                    out.append('<td class="cell na">–</td>')
                    continue
                sig = c.get("significance", "na")
                body = []
                if c.get("estimate") is None:
                    body.append(f'<div class="est">–</div><div class="small">{_e(c.get("note") or "")}</div>')
                else:
                    body.append(f'<div class="est">{_f3(c["estimate"])} <span class="ci">{_ci(c.get("ci"))}</span></div>')
                if c.get("diff") is not None:
                    body.append(f'<div class="diff">Δ {_s3(c["diff"])} <span class="ci">{_ci(c.get("diff_ci"), True)}</span></div>'
                                f'<div class="small">p_adj {_p(c.get("p_adjusted"))} · {_e(_SIG_LABEL.get(sig, sig))}'
                                f'{" · MDE " + _f3(c.get("mde")) if sig == "ns" and c.get("mde") is not None else ""}</div>')
                elif sig == "baseline":
                    body.append(f'<div class="small">baseline · n={_e(c.get("n"))}</div>')
                if c.get("gates"):
                    body.append('<div class="pills">' + "".join(_gate_pill(g, variant, axis) for g in c["gates"]) + "</div>")
                out.append(f'<td class="cell {_e(sig)}">{"".join(body)}</td>')
            out.append("</tr>")
        out.append("</tbody></table></div>")
    out.append("</section>")
    return "".join(out)


def forest_figure(m: dict[str, Any]) -> dict[str, Any] | None:
    """The plotly figure (plain dicts) of paired differences with CIs and gate margins."""
    rows = m["forest"]
    if not rows:
        return None
    labels = []
    one_suite = len({r["suite"] for r in rows}) == 1
    for r in rows:
        label = ("" if one_suite else f'{r["suite"]} · ') + f'{r["axis"]} {_arrow(r["direction"])} · {r["variant"]} − {r["baseline"]}'
        if r["source"] == "gate":
            label += f' (gate, {r["confidence"]:.0%} CI)'
        labels.append(_e(label))  # plotly reads its text as HTML-ish markup: escape it
    traces = []
    names = {"better": "significantly better", "worse": "significantly worse", "ns": "not significant", "na": "n/a",
             "pass": "gate PASS", "fail": "gate FAIL"}
    for sig in ("better", "worse", "ns", "na", "pass", "fail"):
        idx = [i for i, r in enumerate(rows) if r["significance"] == sig]
        if not idx:
            continue
        traces.append({
            "type": "scatter", "mode": "markers", "name": names[sig],
            "x": [rows[i]["diff"] for i in idx], "y": [labels[i] for i in idx],
            "error_x": {"type": "data", "symmetric": False, "thickness": 2, "width": 5, "color": _SIG_COLOR[sig],
                        "array": [rows[i]["ci_high"] - rows[i]["diff"] for i in idx],
                        "arrayminus": [rows[i]["diff"] - rows[i]["ci_low"] for i in idx]},
            "marker": {"size": 10, "color": _SIG_COLOR[sig], "symbol": "diamond" if sig in ("pass", "fail") else "circle"},
            "customdata": [[_f3(rows[i]["ci_low"]), _f3(rows[i]["ci_high"]), _p(rows[i]["p_adjusted"]),
                            _e(rows[i]["verdict"])] for i in idx],
            "hovertemplate": "%{y}<br>diff %{x:+.3f} [%{customdata[0]}, %{customdata[1]}]<br>"
                             "p_adj %{customdata[2]} · %{customdata[3]}<extra></extra>",
        })
    shapes = [{"type": "line", "xref": "x", "yref": "paper", "x0": 0, "x1": 0, "y0": 0, "y1": 1,
               "line": {"color": "#24292f", "width": 1}}]
    has_margin = False
    for i, r in enumerate(rows):
        for margin in r["margins"]:
            has_margin = True
            shapes.append({"type": "line", "xref": "x", "yref": "y", "x0": margin["boundary"], "x1": margin["boundary"],
                           "y0": i - 0.42, "y1": i + 0.42, "line": {"color": "#bf8700", "width": 3, "dash": "dot"}})
    if has_margin:
        traces.append({"type": "scatter", "mode": "lines", "name": "non-inferiority margin (gate)", "x": [None],
                       "y": [None], "line": {"color": "#bf8700", "width": 3, "dash": "dot"}, "hoverinfo": "skip"})
    layout = {
        "height": 140 + 34 * len(rows),
        "margin": {"l": 10, "r": 20, "t": 10, "b": 50},
        "xaxis": {"title": {"text": "paired difference (variant − baseline)"}, "zeroline": False,
                  "tickformat": "+.2f", "gridcolor": "#eaeef2"},
        "yaxis": {"type": "category", "categoryorder": "array", "categoryarray": labels, "autorange": "reversed",
                  "automargin": True, "gridcolor": "#f3f4f6"},
        "shapes": shapes,
        "legend": {"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0},
        "plot_bgcolor": "#ffffff", "paper_bgcolor": "#ffffff",
        "font": {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12},
    }
    return {"data": traces, "layout": layout,
            "config": {"displaylogo": False, "responsive": True, "showLink": False, "showSendToCloud": False}}


def _forest(m: dict[str, Any]) -> str:
    note = ('<p class="legend">Each row: variant − baseline with its CI (95% for comparisons with the suite '
            'baseline; gates between other pairs use their own 1−2α interval). Solid line: no difference. Dotted '
            'orange: a non-inferiority gate\'s margin — the CI must stay on the good side of it. '
            'On ↓ axes (lower is better) a negative difference is an improvement.</p>')
    body = '<div id="forest-plot" class="plot"></div>' if m["forest"] else '<p class="muted">No paired comparisons in this run.</p>'
    return f'<section id="forest"><h2>Forest plot: paired differences</h2>{note}{body}</section>'


def _gate_table(gates: list[dict[str, Any]]) -> str:
    if not gates:
        return '<p class="muted">No gates in this suite.</p>'
    out = ['<div class="scroll"><table class="gates"><thead><tr><th>verdict</th><th>gate</th><th>kind</th><th>n</th>'
           '<th>estimate</th><th>diff [CI]</th><th>test</th><th>p</th><th>p_adj</th><th>MDE</th><th>reason</th>'
           '</tr></thead><tbody>']
    for g in gates:
        est = _f3(g.get("estimate"))
        if g.get("ci"):
            est += f' <span class="ci">{_ci(g["ci"])}</span>'
        if g.get("baseline_estimate") is not None:
            est += f' <span class="muted">vs {_f3(g["baseline_estimate"])}</span>'
        diff = "–" if g.get("diff") is None else f'{_s3(g["diff"])} <span class="ci">{_ci(g.get("diff_ci"), True)}</span>'
        tail = "" if g.get("blocking") or g["verdict"] == "PASS" else ' <span class="muted">(not blocking)</span>'
        out.append(f'<tr class="{_VERDICT_CLASS.get(g["verdict"], "na")}"><td>{_badge(g["verdict"])}{tail}</td>'
                   f'<td><code>{_e(g["gate"])}</code></td><td>{_e(g["kind"])}</td><td>{_e(g.get("n"))}</td>'
                   f'<td class="num">{est}</td><td class="num">{diff}</td><td>{_e(g.get("test") or "–")}</td>'
                   f'<td class="num">{_p(g.get("p_value"))}</td><td class="num">{_p(g.get("p_adjusted"))}</td>'
                   f'<td class="num">{_f3(g.get("mde"))}</td><td class="reason">{_e(g.get("reason"))}</td></tr>')
    out.append("</tbody></table></div>")
    return "".join(out)


def _checks(checks: list[dict[str, Any]], direction: str) -> str:
    if not checks:
        return ""
    best, worst = (0, 1) if direction == "lower" else (1, 0)
    items = []
    for c in checks:
        score = c.get("score")
        cls, mark = ("ok", "✓") if score == best else ("bad", "✗") if score == worst else ("mid", "·")
        value = "" if score in (0, 1) else _f3(score)
        reason = (" — " + str(c["reason"])) if c.get("reason") else ""
        detail = ""
        if c.get("details"):
            text = json.dumps(c["details"], ensure_ascii=False, default=str, indent=1)
            detail = (f'<details class="det"><summary>details</summary>'
                      f'<div class="txt">{_e(text[:4000] + ("…" if len(text) > 4000 else ""))}</div></details>')
        items.append(f'<li class="{cls}">{mark} <b>{_e(c["check"])}</b> {_e(value)}'
                     f'<span class="reason">{_e(reason)}</span>{detail}</li>')
    return '<ul class="checks">' + "".join(items) + "</ul>"


FLIPS_VISIBLE = 10
"""Flipped cases shown per comparison before a "show more" click."""


def _case_row(c: dict[str, Any], direction: str) -> str:
    return (f'<tbody class="case {_e(c["direction"])}" data-direction="{_e(c["direction"])}"><tr>'
            f'<td class="cid"><span class="dir {_e(c["direction"])}">{_e(c["direction"])}</span>'
            f'<div class="mono">{_e(c["case_id"])}</div>'
            f'{"<div class=muted>task " + _e(c["task"]) + "</div>" if c.get("task") else ""}'
            f'<div class="muted">{_f3(c["baseline_score"])} → {_f3(c["variant_score"])}</div></td>'
            f'<td>{_text(c["input"], "(no input)")}</td><td>{_text(c["reference"], "(no reference)")}</td>'
            f'<td>{_text(c["baseline_output"])}{_checks(c["baseline_checks"], direction)}</td>'
            f'<td>{_text(c["variant_output"])}{_checks(c["variant_checks"], direction)}</td>'
            "</tr></tbody>")


def _flip_table(cases: list[dict[str, Any]], g: dict[str, Any]) -> str:
    return ('<div class="scroll"><table class="flips"><colgroup><col class="c-id"><col><col><col><col></colgroup>'
            f'<thead><tr><th>case</th><th>input</th><th>reference</th><th>{_e(g["baseline"])} (baseline)</th>'
            f'<th>{_e(g["variant"])}</th></tr></thead>'
            + "".join(_case_row(c, g["direction"]) for c in cases) + "</table></div>")


def _flip_groups(m: dict[str, Any], suite: str) -> str:
    groups = [g for g in m["flips"] if g["suite"] == suite]
    if not groups:
        return '<p class="muted">No case changed its score between the variants compared.</p>'
    worse = {(r["variant"], r["baseline"], r["axis"]) for r in m["comparisons"]
             if r["suite"] == suite and r["verdict"] == "worse"}
    gated = [g for g in m["gates"] if g["suite"] == suite and g["verdict"] != "PASS"]

    def at_stake(g: dict[str, Any]) -> bool:
        """A non-passing gate is about this variant and axis (and this pair, for comparison gates)."""
        return any(x.get("axis") == g["axis"] and x.get("variant") in (g["variant"], g["baseline"])
                   and (x.get("baseline") is None or {x["variant"], x["baseline"]} == {g["variant"], g["baseline"]})
                   for x in gated)

    groups.sort(key=lambda g: (not at_stake(g), (g["variant"], g["baseline"], g["axis"]) not in worse))
    out = []
    for g in groups:
        stake, is_worse = at_stake(g), (g["variant"], g["baseline"], g["axis"]) in worse
        total, shown = g["total"], g["shown"]
        capped = any(shown[d] < total[d] for d in total)
        tags = ('<span class="badge fail">gate at stake</span> ' if stake else "") + \
               ('<span class="badge worse">significantly worse</span> ' if is_worse else "")
        summary = (f'{tags}<b>{_e(g["variant"])}</b> vs {_e(g["baseline"])} · {_e(g["axis"])} {_arrow(g["direction"])} — '
                   f'<span class="worse-t">{total["regressed"]} regressed</span>, '
                   f'<span class="better-t">{total["improved"]} improved</span> of {g["paired"]} paired cases'
                   + (f' <span class="muted">(listing at most {m["max_flips"]} per direction)</span>' if capped else ""))
        out.append(f'<details class="flipgroup" data-suite="{_e(g["suite"])}" data-variant="{_e(g["variant"])}" '
                   f'data-axis="{_e(g["axis"])}"{" open" if stake else ""}><summary>{summary}</summary>')
        cases = g["cases"]
        out.append(_flip_table(cases[:FLIPS_VISIBLE], g))
        if len(cases) > FLIPS_VISIBLE:
            out.append(f'<details class="rest"><summary>show {len(cases) - FLIPS_VISIBLE} more</summary>'
                       f'{_flip_table(cases[FLIPS_VISIBLE:], g)}</details>')
        if capped:
            out.append(f'<p class="muted small">Listing {shown["regressed"]} of {total["regressed"]} regressed and '
                       f'{shown["improved"]} of {total["improved"]} improved cases (largest changes first). '
                       'The full per-case table: <code>harness export RUN_DIR</code>.</p>')
        out.append("</details>")
    return "".join(out)


def _filter_bar(m: dict[str, Any]) -> str:
    def select(name: str, label: str, values: list[str]) -> str:
        options = '<option value="">all</option>' + "".join(f'<option value="{_e(v)}">{_e(v)}</option>' for v in values)
        return f'<label>{_e(label)} <select name="{_e(name)}">{options}</select></label>'

    flips = m["flips"]
    suites = list(dict.fromkeys(g["suite"] for g in flips))
    variants = list(dict.fromkeys(g["variant"] for g in flips))
    axes = list(dict.fromkeys(g["axis"] for g in flips))
    return ('<form id="flip-filter" class="filter"><b>Flipped cases</b> '
            + select("suite", "suite", suites) + select("variant", "variant", variants) + select("axis", "axis", axes)
            + select("direction", "direction", ["regressed", "improved"])
            + '<span id="flip-count" class="muted"></span></form>')


def _suites(m: dict[str, Any]) -> str:
    out = [_filter_bar(m)] if m["flips"] else []
    for i, s in enumerate(m["suites"]):
        gates = [g for g in m["gates"] if g["suite"] == s["name"]]
        out.append(f'<section id="suite-{i}" class="suite"><h2>Suite: {_e(s["name"])}</h2>'
                   f'<p class="muted">{_e(s["n_cases"])} cases · baseline {_e(s["baseline"] or "–")} · variants '
                   f'{_e(", ".join(s["variants"]))} · α={_e(s["alpha"])}</p>')
        for w in s["warnings"]:
            out.append(f'<p class="warn">⚠ {_e(w)}</p>')
        out.append(f'<h3>Gates</h3>{_gate_table(gates)}<h3>Flipped cases</h3>{_flip_groups(m, s["name"])}</section>')
    return "".join(out)


def _retention(m: dict[str, Any]) -> str:
    out = ['<section id="retention"><h2>Retention</h2>']
    alerts = m["alerts"]
    if alerts:
        out.append('<div class="alerts">')
        for a in alerts:
            al = a.get("alert")
            if al is None:
                out.append(f'<p class="warn">⚠ alert record {_e(a.get("path"))} not found{": " + _e(a["error"]) if a.get("error") else ""}.</p>')
                continue
            tasks = ", ".join(f'{t.get("task")} (−{t.get("cases_lost")})' for t in al.get("tasks") or []) or "–"
            source = f'record <code>{_e(a["path"])}</code>' if a.get("path") else "failed retention gate (no alert record)"
            out.append(f'<div class="alert"><span class="badge fail">ALERT</span> <b>Catastrophic forgetting</b>: <b>{_e(al.get("variant"))}</b> vs '
                       f'{_e(al.get("baseline"))} on {_e(al.get("suite"))} ({_e(al.get("axis"))}): diff '
                       f'{_s3(al.get("diff"))} {_ci(al.get("diff_ci"), True)}, allowed margin −{_e(al.get("margin"))}. '
                       f'Tasks that fell: {_e(tasks)}. <span class="muted">{source}</span></div>')
        out.append("</div>")
    if not m["retention"]:
        out.append('<p class="muted">No retention axis in this run.</p>')
    for r in m["retention"]:
        row = r.get("comparison") or {}
        gates = " ".join(_badge(g["verdict"], f'{g["gate"]}: {g["verdict"]}') for g in r["gates"])
        out.append(f'<h3>{_e(r["suite"])}: {_e(r["variant"])} vs {_e(r["baseline"])}</h3>'
                   f'<p>{_e(r["axis"])}: {_f3(row.get("estimate"))} vs {_f3(row.get("baseline_estimate"))}, '
                   f'diff {_s3(row.get("diff"))} {_ci([row.get("ci_low"), row.get("ci_high")], True)} · '
                   f'{_e(row.get("verdict") or "")} {gates}</p>')
        out.append('<div class="scroll"><table class="tasks"><thead><tr><th>task</th><th>n</th>'
                   f'<th>{_e(r["baseline"])} (base)</th><th>{_e(r["variant"])}</th><th>diff</th><th>cases lost</th>'
                   '<th>cases gained</th></tr></thead><tbody>')
        for t in r["tasks"]:
            cls = "worse" if t["cases_lost"] > t["cases_gained"] else "better" if t["cases_gained"] > t["cases_lost"] else ""
            out.append(f'<tr class="{cls}"><td>{_e(t["task"])}</td><td class="num">{t["n"]}</td>'
                       f'<td class="num">{_f3(t["baseline_estimate"])}</td><td class="num">{_f3(t["estimate"])}</td>'
                       f'<td class="num">{_s3(t["diff"])}</td><td class="num">{t["cases_lost"]}</td>'
                       f'<td class="num">{t["cases_gained"]}</td></tr>')
        out.append("</tbody></table></div>")
    out.append("</section>")
    return "".join(out)


def _short(value: Any) -> str:
    text = "" if value is None else str(value)
    if len(text) == 64 and all(ch in "0123456789abcdef" for ch in text):
        return f'<code title="{_e(text)}">{_e(text[:12])}…</code>'
    return _e(text)


def _kv(d: dict[str, Any]) -> str:
    rows = []
    for k, v in d.items():
        if isinstance(v, (dict, list)):
            v = json.dumps(v, ensure_ascii=False, default=str)
            cell = f'<code class="wrap">{_e(v)}</code>'
        else:
            cell = _short(v)
        rows.append(f"<tr><th>{_e(k)}</th><td>{cell}</td></tr>")
    return '<table class="kv">' + "".join(rows) + "</table>"


def _grid(rows: dict[str, dict[str, Any]], columns: list[str], first: str) -> str:
    if not rows:
        return '<p class="muted">–</p>'
    head = f"<tr><th>{_e(first)}</th>" + "".join(f"<th>{_e(c)}</th>" for c in columns) + "</tr>"
    body = []
    for name, row in rows.items():
        cells = []
        for c in columns:
            v = row.get(c)
            if isinstance(v, (dict, list)):
                cells.append(f'<td><code class="wrap">{_e(json.dumps(v, ensure_ascii=False, default=str))}</code></td>')
            else:
                cells.append(f"<td>{_short(v)}</td>")
        body.append(f"<tr><th>{_e(name)}</th>{''.join(cells)}</tr>")
    return f'<div class="scroll"><table class="grid"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table></div>'


def _manifest(m: dict[str, Any]) -> str:
    man = m["manifest"]
    counts = man["counts"]
    out = ['<section id="manifest"><h2>Manifest</h2><div class="cols">']
    out.append("<div><h3>Run</h3>" + _kv({**man["run"], "run_dir": m["run_dir"],
                                         "models.toml": (man.get("models_toml") or {}).get("sha256")}) + "</div>")
    if "cache_hit_rate" in counts:
        counts = {**counts, "cache_hit_rate": f'{counts["cache_hit_rate"]:.1%}'}
    out.append("<div><h3>Counts: cache and engines</h3>" + _kv(counts) + "</div></div>")
    variant_cols = ["model", "backend", "quantization", "adapter", "adapter_sha256", "fewshot", "system_prompt",
                    "outputs", "model_fingerprint", "engine"]
    variants = {n: v for n, v in man["variants"].items()}
    used = [c for c in variant_cols if any(v.get(c) not in (None, {}, "", 0) for v in variants.values())]
    out.append("<h3>Variants: models, adapters, quantisation</h3>" + _grid(variants, used or ["model"], "variant"))
    suites = {n: {**s, "data_path": (s.get("data") or {}).get("path"), "data_sha256": (s.get("data") or {}).get("sha256"),
                  "train_sha256": (s.get("data") or {}).get("train_sha256")} for n, s in man["suites"].items()}
    suite_cols = ["path", "sha256", "data_path", "data_sha256", "train_sha256", "n_cases", "holdout", "seed", "baseline",
                  "alpha", "gate_mode", "inconclusive"]
    out.append("<h3>Suites and data hashes</h3>" + _grid(suites, [c for c in suite_cols if any(
        s.get(c) is not None for s in suites.values())], "suite"))
    runs = {k: {**v, "fewshot_ids": len(v["fewshot_ids"]) if isinstance(v.get("fewshot_ids"), list) else None,
                "missing_outputs": len(v["missing_outputs"]) if isinstance(v.get("missing_outputs"), list) else None}
            for k, v in man["runs"].items()}
    run_cols = ["backend", "generation", "engine_fingerprint", "adapter_sha256", "fewshot_ids", "blessed",
                "missing_outputs", "outputs_sha256", "adapter_guard"]
    out.append("<h3>Generation settings per suite × variant</h3>" + _grid(runs, [c for c in run_cols if any(
        r.get(c) is not None for r in runs.values())], "suite/variant"))
    out.append("<h3>Backends and versions</h3>" + _grid(
        {k: (v if isinstance(v, dict) else {"info": v}) for k, v in man["backends"].items()},
        sorted({c for v in man["backends"].values() if isinstance(v, dict) for c in v}) or ["info"], "engine"))
    if man["errors"]:
        out.append("<h3>Errors</h3><ul>" + "".join(f'<li class="problem">{_e(e.get("suite"))} / {_e(e.get("variant"))}: '
                                                   f'{_e(e.get("error"))}</li>' for e in man["errors"]) + "</ul>")
    out.append("</section>")
    return "".join(out)


_CSS = """
:root{--go:#1a7f37;--nogo:#b42318;--better:#dafbe1;--worse:#ffebe9;--ns:#f6f8fa;--base:#eef4ff;--b:#d0d7de}
*{box-sizing:border-box}[hidden]{display:none!important}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;background:#f6f8fa}
main{max-width:1500px;margin:0 auto;padding:0 20px 40px}
code,.mono,.txt{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
h2{margin:28px 0 8px;padding-top:8px;border-top:1px solid var(--b);font-size:20px}h3{margin:18px 0 6px;font-size:15px}
section{background:#fff;border:1px solid var(--b);border-radius:8px;padding:4px 18px 14px;margin:16px 0}
section>h2:first-child{border-top:0}
.banner{display:flex;gap:28px;align-items:flex-start;padding:22px 28px;color:#fff;border-radius:0 0 10px 10px}
.banner.go{background:var(--go)}.banner.nogo{background:var(--nogo)}
.verdict{font-size:56px;font-weight:800;letter-spacing:1px;line-height:1;white-space:nowrap}
.bsum{flex:1}.banner a{color:#fff;text-decoration:underline}.bsum .sub{opacity:.9}.bsum .line{margin-top:6px}.bsum code{color:#fff}
.banner ul.blocking{margin:4px 0 0;padding-left:18px}.banner ul.blocking li{margin:3px 0}
.banner ul.blocking code{background:rgba(255,255,255,.16);padding:1px 4px;border-radius:4px}
.banner .badge{border:1px solid rgba(255,255,255,.7)}
nav{position:sticky;top:0;z-index:5;background:#fff;border-bottom:1px solid var(--b);padding:8px 20px;margin:0 -20px}
nav a{margin-right:14px;color:#0969da;text-decoration:none}
.badge{display:inline-block;padding:1px 7px;border-radius:10px;font-size:12px;font-weight:600;color:#fff;background:#8c959f}
.badge.pass{background:var(--go)}.badge.worse{background:#cf222e;opacity:.75}.badge.fail{background:#cf222e}.badge.inc{background:#9a6700}
.muted{color:#656d76}.small{font-size:12px}.warn,.problem{color:#9a6700}.banner .warn,.banner .problem{color:#fff3bf}
.legend{color:#57606a;font-size:13px;max-width:1100px}
.key{padding:1px 6px;border-radius:4px;border:1px solid var(--b)}
.key.better{background:var(--better)}.key.worse{background:var(--worse)}.key.ns{background:var(--ns)}.key.baseline{background:var(--base)}
.scroll{overflow-x:auto}
table{border-collapse:collapse}th,td{border:1px solid var(--b);padding:5px 8px;vertical-align:top;text-align:left}
thead th{background:#f6f8fa;font-weight:600}
table.score td.cell{min-width:190px}
.cell.better{background:var(--better);box-shadow:inset 4px 0 0 #1a7f37}
.cell.worse{background:var(--worse);box-shadow:inset 4px 0 0 #cf222e}
.cell.ns{background:var(--ns)}.cell.baseline{background:var(--base)}.cell.na{background:#fff;color:#8c959f}
.est{font-size:17px;font-weight:600}.diff{font-weight:600}.ci{font-weight:400;color:#57606a;font-size:12px}
.pills{margin-top:4px}.pill{display:inline-block;margin:2px 3px 0 0;padding:0 6px;border-radius:8px;font-size:11px;border:1px solid}
.pill.pass{color:#1a7f37;border-color:#1a7f37}.pill.fail{color:#cf222e;border-color:#cf222e}.pill.inc{color:#9a6700;border-color:#9a6700}
.plot{width:100%;min-height:200px}
table.gates td.reason{min-width:320px;max-width:560px}table.gates td:nth-child(7){max-width:200px}.num{text-align:right;white-space:nowrap}
tr.fail td:first-child{box-shadow:inset 4px 0 0 #cf222e}tr.inc td:first-child{box-shadow:inset 4px 0 0 #9a6700}
.filter{position:sticky;top:37px;z-index:4;background:#fff8c5;border:1px solid #d4a72c;border-radius:8px;padding:8px 14px;margin:16px 0}
.filter label{margin-left:14px}.filter select{margin-left:4px}#flip-count{margin-left:14px}
details.flipgroup{border:1px solid var(--b);border-radius:6px;margin:8px 0;padding:4px 8px}
details.flipgroup>summary{cursor:pointer;padding:4px 0}
.worse-t{color:#cf222e;font-weight:600}.better-t{color:#1a7f37;font-weight:600}
table.flips{width:100%;table-layout:fixed;margin-top:6px}table.flips col.c-id{width:150px}
table.flips td{word-break:break-word}
tbody.case.regressed td.cid{box-shadow:inset 4px 0 0 #cf222e}tbody.case.improved td.cid{box-shadow:inset 4px 0 0 #1a7f37}
.dir{font-size:11px;font-weight:700;text-transform:uppercase}.dir.regressed{color:#cf222e}.dir.improved{color:#1a7f37}
.txt{white-space:pre-wrap;word-break:break-word;max-height:none}
details.more>summary{cursor:pointer;list-style:none}details.more>summary::-webkit-details-marker{display:none}
details.more[open]>summary .txt{display:none}.expand{color:#0969da;font-size:12px}
details.more[open]>summary .expand::after{content:" (hide)"}
ul.checks{margin:6px 0 0;padding:0;list-style:none;font-size:12px}
details.det{display:inline}details.det>summary{display:inline;cursor:pointer;color:#0969da;margin-left:6px}
details.det[open]{display:block}details.rest>summary{cursor:pointer;color:#0969da;margin:6px 0}
ul.checks li.ok{color:#1a7f37}ul.checks li.bad{color:#cf222e}ul.checks .reason{color:#57606a}
.none{color:#8c959f;font-style:italic}
tr.worse td{background:var(--worse)}tr.better td{background:var(--better)}
.alert{background:#ffebe9;border:1px solid #cf222e;border-radius:6px;padding:8px 12px;margin:8px 0}
.cols{display:flex;gap:24px;flex-wrap:wrap}.cols>div{flex:1;min-width:320px}
table.kv th{background:#f6f8fa;font-weight:600;width:180px}code.wrap{white-space:pre-wrap;word-break:break-all}
footer{color:#656d76;font-size:12px;margin:20px 0}
"""

# Records any CSP violation (a blocked script, a blocked fetch) on <html> so tests and readers can see it.
_GUARD_JS = ("document.addEventListener('securitypolicyviolation',function(e){var r=document.documentElement;"
             "r.setAttribute('data-csp-violations',(r.getAttribute('data-csp-violations')||'')+"
             "e.violatedDirective+' '+(e.blockedURI||'inline')+';');});")

_FILTER_JS = """
(function(){
  var form=document.getElementById('flip-filter');
  if(!form)return;
  var selects=form.querySelectorAll('select');
  function apply(){
    var want={};
    selects.forEach(function(s){want[s.name]=s.value;});
    var shown=0;
    document.querySelectorAll('details.flipgroup').forEach(function(g){
      var ok=['suite','variant','axis'].every(function(k){return !want[k]||g.dataset[k]===want[k];});
      var visible=0;
      g.querySelectorAll('tbody.case').forEach(function(c){
        var show=ok&&(!want.direction||c.dataset.direction===want.direction);
        c.hidden=!show;if(show)visible++;
      });
      g.hidden=!ok||visible===0;
      if(!g.hidden&&(want.suite||want.variant||want.axis||want.direction))g.open=true;
      shown+=visible;
    });
    document.getElementById('flip-count').textContent=shown+' case(s) match';
  }
  form.addEventListener('change',apply);
  apply();
})();
"""


def _plot_js(figure: dict[str, Any] | None) -> str:
    if figure is None:
        return "document.documentElement.setAttribute('data-report-ready','1');"
    return ("(function(){var fig=" + script_json(figure) + ";"
            "var el=document.getElementById('forest-plot');"
            "Plotly.newPlot(el,fig.data,fig.layout,fig.config).then(function(){"
            "document.documentElement.setAttribute('data-report-ready','1');});})();")


def _sha(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode() + "'"


def render_html(m: dict[str, Any]) -> str:
    """The whole page as one string."""
    figure = forest_figure(m)
    scripts_body = []
    if figure is not None:
        from plotly.offline import get_plotlyjs

        plotly_js = get_plotlyjs()
        if "</script" in plotly_js.lower():  # never seen; would end the inline script early
            plotly_js = plotly_js.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT")
        scripts_body.append(plotly_js)
    scripts_body.append(_plot_js(figure) + _FILTER_JS)
    csp = ("default-src 'none'; script-src " + " ".join(_sha(s) for s in [_GUARD_JS, *scripts_body])
           + "; style-src 'unsafe-inline'; img-src data:; font-src data:; base-uri 'none'; form-action 'none'")
    title = f'{m["verdict"]} · harness report · {m["run_id"] or ""}'
    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f'<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<script>{_GUARD_JS}</script>",
        f"<style>{_CSS}</style></head><body>",
        _banner(m),
        "<main>",
        _nav(m),
        _scorecard(m),
        _forest(m),
        _suites(m),
        _retention(m),
        _manifest(m),
        f'<footer>Generated by harness {_e(m["harness_version"])} from <code>records.jsonl</code> and '
        f'<code>manifest.json</code> in <code>{_e(m["run_dir"])}</code>. Every number equals '
        f'<code>harness compare --json</code> for this run; the same data is in <code>report.json</code>.</footer>',
        "</main>",
    ]
    parts += [f"<script>{s}</script>" for s in scripts_body]
    parts.append("</body></html>\n")
    return "\n".join(parts)
