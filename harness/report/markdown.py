"""report.md: the short version for a PR comment or a CI step summary ($GITHUB_STEP_SUMMARY).

Verdict, the blocking gates, the significant changes and any forgetting alert; the full evidence
is in report.html. No model output appears here, and every name is escaped for Markdown tables."""

from __future__ import annotations

import html
from typing import Any

_ICON = {"PASS": "✅", "FAIL": "❌", "ERROR": "❌", "INCONCLUSIVE": "⚠️"}
MAX_ROWS = 30


def md(value: Any) -> str:
    """Plain text for Markdown: no markup, links, HTML or table breaks survive."""
    text = html.escape("" if value is None else str(value), quote=False)
    for ch in "\\`*_[]|#!~":
        text = text.replace(ch, "\\" + ch)
    return " ".join(text.split())


def _f3(x):
    return "–" if x is None else f"{x:.3f}"


def _s3(x):
    return "–" if x is None else f"{x:+.3f}"


def _p(x):
    return "–" if x is None else f"{x:.3g}"


def render_markdown(m: dict[str, Any], html_name: str = "report.html") -> str:
    verdict = m["verdict"]
    gates = m["gates"]
    partial = f"PARTIAL RUN ({md(str(m['manifest']['run'].get('status')))}) · " if m.get("partial") else ""
    lines = [f"## {'✅' if verdict == 'GO' else '❌'} {partial}{verdict} — harness run {md(m['run_id'])}", ""]
    lines += [f"- **No evidence for GO:** {md(problem)}" for problem in m.get("evidence_problems") or []]
    if gates:
        counts = ", ".join(f"{n} {v}" for v, n in sorted(m["gate_counts"].items()))
        lines.append(f"**{len(gates)} gate(s):** {counts}.")
    else:
        lines.append("**No gates declared.**")
    blocking = [g for g in gates if g.get("blocking")]
    if blocking:
        lines += ["", "**Blocking:**"]
        lines += [f"- {_ICON.get(g['verdict'], '')} {g['verdict']} {md(g['suite'])}: {md(g['gate'])} — {md(g['reason'])}"
                  for g in blocking]
    for problem in m["problems"]:
        lines.append(f"- ⚠️ {md(problem)}")
    for a in m["alerts"]:
        al = a.get("alert")
        if al:
            tasks = ", ".join(f"{t.get('task')} (-{t.get('cases_lost')})" for t in al.get("tasks") or []) or "n/a"
            lines.append(f"- 🚨 catastrophic forgetting: {md(al.get('variant'))} vs {md(al.get('baseline'))} on "
                         f"{md(al.get('suite'))} ({md(al.get('axis'))}), diff {_s3(al.get('diff'))}; tasks: {md(tasks)}")

    significant = [r for r in m["comparisons"] if r["verdict"] in ("better", "worse")]
    lines += ["", f"### Significant changes vs baseline ({len(significant)} of {len(m['comparisons'])} comparisons)", ""]
    if significant:
        lines += ["| suite | axis | variant | vs | estimate | Δ [95% CI] | p_adj | |", "|---|---|---|---|---:|---:|---:|---|"]
        order = sorted(significant, key=lambda r: (r["verdict"] != "worse", r["suite"], r["axis"], r["variant"]))
        for r in order[:MAX_ROWS]:
            icon = "🔴 worse" if r["verdict"] == "worse" else "🟢 better"
            lines.append(f"| {md(r['suite'])} | {md(r['axis'])} | {md(r['variant'])} | {md(r['baseline'])} | "
                         f"{_f3(r['estimate'])} | {_s3(r['diff'])} [{_s3(r['ci_low'])}, {_s3(r['ci_high'])}] | "
                         f"{_p(r['p_adjusted'])} | {icon} |")
        if len(order) > MAX_ROWS:
            lines.append(f"\n{len(order) - MAX_ROWS} more in {html_name}.")
    else:
        lines.append("No significant difference at α = 0.05 (BH-adjusted).")

    if gates:
        lines += ["", "<details><summary>All gates</summary>", "",
                  "| | suite | gate | diff / estimate | p_adj | MDE |", "|---|---|---|---:|---:|---:|"]
        for g in gates:
            value = _s3(g.get("diff")) if g.get("diff") is not None else _f3(g.get("estimate"))
            lines.append(f"| {_ICON.get(g['verdict'], '')} {g['verdict']} | {md(g['suite'])} | {md(g['gate'])} | "
                         f"{value} | {_p(g.get('p_adjusted'))} | {_f3(g.get('mde'))} |")
        lines += ["", "</details>"]
    lines += ["", f"Full report with flipped cases and the forest plot: {md(m['run_dir'])}/{md(html_name)}", ""]
    return "\n".join(lines)
