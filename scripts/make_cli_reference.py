"""Write docs/cli.md, the reference of every `harness` command and option, from the CLI itself.

    .venv/bin/python scripts/make_cli_reference.py          # rewrite docs/cli.md
    .venv/bin/python scripts/make_cli_reference.py --check  # exit 1 if docs/cli.md is stale (a test runs this)
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import typer

REPO = Path(__file__).resolve().parents[1]
TARGET = REPO / "docs" / "cli.md"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _is_flag(param) -> bool:
    return param.param_type_name == "option" and bool(getattr(param, "is_flag", False))


def _default(param) -> str:
    if param.required or param.default is None or param.param_type_name == "argument":
        return ""
    value = param.default
    if callable(value) or value == () or value == []:
        return ""
    if _is_flag(param):
        names = list(param.opts if value else param.secondary_opts) or ([] if value else ["off"])
        return f"`{names[0]}`" if names and names[0].startswith("-") else "off"
    return f"`{value}`"


def _names(param) -> str:
    if param.param_type_name == "argument":
        return f"`{param.name.upper()}`" + (" (required)" if param.required else "")
    names = list(param.opts) + list(param.secondary_opts)
    return ", ".join(f"`{n}`" for n in names) + ("" if _is_flag(param) else " VALUE")


def render() -> str:
    from harness.cli import app

    group = typer.main.get_command(app)
    ctx = group.context_class(group, info_name="harness")
    lines = [
        "# `harness` command reference",
        "",
        "Generated from the CLI by `scripts/make_cli_reference.py` (a test fails when this page is stale).",
        "Exit codes everywhere: 0 success / GO, 1 NO-GO or findings, 2 bad input (the message names the",
        "file, line or key and the fix).",
        "",
    ]
    for name in sorted(group.list_commands(ctx)):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        lines += [f"## `harness {name}`", "", inspect.cleandoc(command.help or "").strip(), ""]
        params = [p for p in command.params if not getattr(p, "hidden", False) and p.name != "help"]
        if params:
            lines += ["| argument / option | default | meaning |", "| --- | --- | --- |"]
            for p in params:
                lines.append(f"| {_names(p)} | {_default(p)} | {_cell(getattr(p, 'help', None) or '')} |")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        if not TARGET.exists() or TARGET.read_text(encoding="utf-8") != text:
            print(f"{TARGET.relative_to(REPO)} is stale: run scripts/make_cli_reference.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
