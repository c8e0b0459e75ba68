"""Guard for the implementation versions in the cache identity: the code of every module whose changes can
change a backend's outputs is hashed (its syntax tree without docstrings, comments or the IMPLEMENTATION
line itself), and the digest is recorded with the module's IMPLEMENTATION in tests/implementation.json.
Changed code with an unchanged IMPLEMENTATION fails: bump it (the cache and blessed baselines then stop
serving the old code's outputs), then record the new digest with

    PYTHONPATH=. python tests/test_implementation.py
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RECORD = Path(__file__).with_name("implementation.json")
GUARDED = {  # source file -> the module holding its IMPLEMENTATION
    "harness/backends/base.py": "harness.backends.base",
    "harness/backends/transformers/backend.py": "harness.backends.transformers.backend",
    "harness/backends/transformers/fast.py": "harness.backends.transformers.backend",
    "harness/backends/vllm.py": "harness.backends.vllm",
    "harness/backends/openai.py": "harness.backends.openai",
    "harness/backends/fake.py": "harness.backends.fake",
    "harness/backends/identity.py": "harness.backends.identity",
}
UPDATE = "PYTHONPATH=. python tests/test_implementation.py"


def code_digest(path: Path) -> str:
    """sha256 of the module's code: docstrings, comments, formatting and the IMPLEMENTATION assignment do
    not count (they cannot change an output)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            body[:] = [
                child for i, child in enumerate(body)
                if not (isinstance(child, ast.Expr) and isinstance(child.value, ast.Constant)
                        and isinstance(child.value.value, str))  # docstrings (and bare strings)
                and not (isinstance(child, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "IMPLEMENTATION"
                                                               for t in child.targets))
            ] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree, annotate_fields=False).encode()).hexdigest()


PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
"""ast.dump's form differs between Python versions: digests are recorded for one."""


def current() -> dict[str, dict[str, str]]:
    return {file: {"implementation": importlib.import_module(module).IMPLEMENTATION,
                   "digest": code_digest(REPO / file)} for file, module in GUARDED.items()}


@pytest.mark.parametrize("file", sorted(GUARDED))
def test_changed_output_code_bumps_its_implementation_version(file):
    record = json.loads(RECORD.read_text(encoding="utf-8"))
    if record.get("python") != PYTHON:
        pytest.skip(f"digests were recorded under Python {record.get('python')}, this is {PYTHON}")
    recorded = record["modules"].get(file)
    now = current()[file]
    assert recorded is not None, f"{file} has no recorded digest; run `{UPDATE}`."
    if now["digest"] != recorded["digest"]:
        assert now["implementation"] != recorded["implementation"], (
            f"{file} changed since its digest was recorded but IMPLEMENTATION is still "
            f"'{now['implementation']}': bump IMPLEMENTATION in {file} if the change can change any output "
            f"(cached outputs and blessed baselines of the old code are then not reused), then run `{UPDATE}`."
        )
    assert now == recorded, (f"{file}: IMPLEMENTATION is '{now['implementation']}' but the record says "
                             f"'{recorded['implementation']}'; run `{UPDATE}` to record the bump.")


def test_the_digest_ignores_docstrings_comments_and_the_version_line(tmp_path):
    one = tmp_path / "one.py"
    one.write_text('"""Doc."""\nIMPLEMENTATION = "x/1"\n\ndef f(a):\n    """Doc."""\n    return a + 1  # note\n')
    two = tmp_path / "two.py"
    two.write_text('IMPLEMENTATION = "x/2"\n\n\ndef f(a):\n    return a + 1\n')
    three = tmp_path / "three.py"
    three.write_text('IMPLEMENTATION = "x/2"\n\n\ndef f(a):\n    return a + 2\n')
    assert code_digest(one) == code_digest(two) != code_digest(three)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    RECORD.write_text(json.dumps({"python": PYTHON, "modules": current()}, indent=2, sort_keys=True) + "\n",
                      encoding="utf-8")
    print(f"recorded {RECORD.relative_to(REPO)}")
