"""Engine settings are declared per backend and checked at load_models (issue 19, finding 7)."""

from __future__ import annotations

import importlib.util

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.config.engine_settings import TRANSFORMERS, VLLM_FALLBACK, check_engine, vllm_engine_keys
from harness.config.variants import load_models
from harness.errors import ConfigError
from tests.helpers import write


def test_transformers_declaration_is_what_the_backend_reads():
    from harness.backends.transformers.backend import ENGINE_KEYS

    assert set(TRANSFORMERS) == ENGINE_KEYS


def test_vllm_keys_come_from_the_installed_vllm_without_importing_it():
    import sys

    imported_before = "vllm" in sys.modules
    vllm_engine_keys.cache_clear()
    names, source = vllm_engine_keys()
    if not imported_before:
        assert "vllm" not in sys.modules  # read from source: importing vLLM takes ~20 s
    if importlib.util.find_spec("vllm") is None:
        assert names == frozenset(VLLM_FALLBACK)
    else:
        import dataclasses

        from vllm import EngineArgs

        assert "EngineArgs" in source
        assert {f.name for f in dataclasses.fields(EngineArgs)} - {"model"} <= names
    for key in ("tensor_parallel_size", "gpu_memory_utilization", "max_model_len", "enable_lora"):
        assert key in names


@pytest.mark.parametrize("backend, engine, bad", [
    ("transformers", {"batch_sise": 4}, "batch_sise"),
    ("transformers", {"batch_size": 0}, "batch_size"),
    ("transformers", {"dtype": 32}, "dtype"),
    ("vllm", {"tensor_paralel_size": 2}, "tensor_paralel_size"),
    ("vllm", {"batch_size": "big"}, "batch_size"),
    ("openai", {"batch_sise": 2}, "batch_sise"),
    ("fake", {"nonsense": 1}, "nonsense"),
])
def test_bad_engine_settings(backend, engine, bad):
    problem = check_engine(backend, engine)
    assert problem is not None and problem[0] == bad


@pytest.mark.parametrize("backend, engine", [
    ("transformers", {"batch_size": 4, "dtype": "float32", "merge_adapters": False, "max_length": 512}),
    ("vllm", {"batch_size": 8, "tensor_parallel_size": 1, "enable_prefix_caching": False}),
    ("openai", {"batch_size": 4, "dtype": "float32"}),  # [defaults] engine settings of local backends: unused
    ("fake", {"dtype": "float32", "max_model_len": 256}),
])
def test_good_engine_settings(backend, engine):
    assert check_engine(backend, engine) is None


def test_models_command_shows_the_typo_with_its_line(tmp_path):
    path = write(tmp_path / "models.toml", """
        [defaults]
        backend = "fake"

        [variants.a]

        [variants.b]
        backend = "transformers"
        engine = {batch_sise = 4}
    """)
    with pytest.raises(ConfigError) as exc:
        load_models(path)
    assert exc.value.line == 8 and exc.value.key == "variants.b.engine.batch_sise"
    assert "Did you mean 'batch_size'?" in str(exc.value)
    result = CliRunner().invoke(app, ["models", "--models", str(path)])
    assert result.exit_code == 2 and "models.toml:8" in result.output and "Traceback" not in result.output


def test_recorded_variants_ignore_engine_defaults(tmp_path):
    write(tmp_path / "out.jsonl", '{"case_id": "a", "output": "x"}\n')
    path = write(tmp_path / "models.toml", """
        [defaults]
        engine = {dtype = "float32"}

        [variants.human]
        outputs = "out.jsonl"
    """)
    assert load_models(path).variants["human"].is_recorded
