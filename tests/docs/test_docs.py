"""The docs are a map that stays true: every link resolves, and the CLI reference matches the CLI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def _markdown_files() -> list[Path]:
    return [REPO / "README.md", REPO / "reports" / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_every_relative_link_in_the_docs_resolves():
    broken = []
    for page in _markdown_files():
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert not broken, broken


def test_the_readme_links_every_docs_page():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in sorted((REPO / "docs").glob("*.md")) if f"docs/{p.name}" not in readme]
    assert not missing, f"docs pages the README does not link: {missing}"


def test_the_cli_reference_is_current():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "make_cli_reference.py"), "--check"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr


def test_the_readme_example_is_the_files_it_names():
    """The README's small example shows docs/example/ verbatim (the output it quotes came from those files)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for name in ("models.toml", "suites/tickets-quick.yaml"):
        text = (REPO / "docs" / "example" / name).read_text(encoding="utf-8").rstrip()
        assert text in readme, f"README's example differs from docs/example/{name}"


def test_the_example_loads():
    from harness.config.suite import load_suite
    from harness.config.variants import load_models

    models = load_models(REPO / "docs" / "example" / "models.toml")
    suite = load_suite(REPO / "docs" / "example" / "suites" / "tickets-quick.yaml", known_variants=set(models.variants))
    assert suite.variants == ["base", "tickets-lora"] and len(suite.gates) == 2
