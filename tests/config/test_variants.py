import pytest

from harness.config.variants import load_models
from harness.errors import AdapterError, ConfigError
from tests.helpers import write


def test_defaults_are_inherited_and_variants_override(tmp_path):
    path = write(tmp_path / "models.toml", """
        [defaults]
        model = "smollm2-135m-instruct"
        generation = {max_tokens = 64, temperature = 0.0}
        [variants.base]
        [variants.fewshot]
        fewshot = 5
        system_prompt = "Be brief."
        generation = {max_tokens = 32}
    """)
    config = load_models(path)
    assert set(config.variants) == {"base", "fewshot"}
    assert config.variants["base"].model == "smollm2-135m-instruct"
    assert config.variants["base"].generation == {"max_tokens": 64, "temperature": 0.0}
    fewshot = config.variants["fewshot"]
    assert fewshot.fewshot == 5 and fewshot.system_prompt == "Be brief."
    assert fewshot.generation == {"max_tokens": 32, "temperature": 0.0}


def test_unknown_key_names_file_line_and_suggests(tmp_path):
    path = write(tmp_path / "models.toml", """
        [variants.base]
        modle = "x/y"
    """)
    with pytest.raises(ConfigError) as err:
        load_models(path)
    text = str(err.value)
    assert "models.toml:2" in text and "variants.base.modle" in text and "Did you mean 'model'?" in text


def test_bad_values_are_rejected(tmp_path):
    for body, needle in [
        ('[variants.a]\nbackend = "tgi"', "unknown backend 'tgi'"),
        ('[variants.a]\nquantization = "int3"', "unsupported quantization"),
        ('[variants.a]\nfewshot = -1', "must be 0 or more"),
        ('[variants.a]\nfewshot = "five"', "must be int"),
        ('[variants.a]\ngeneration = {temprature = 0.5}', "Did you mean 'temperature'?"),
        ('[variants.a]\ngeneration = {max_tokens = 0}', "positive integer"),
        ('[variants."bad name"]', "may only use letters"),
        ('[variant.a]', "unknown top-level key 'variant'"),
        ('[defaults]\nmodel = "x"', "no variants declared"),
    ]:
        path = tmp_path / "models.toml"
        path.write_text(body)
        with pytest.raises(ConfigError, match=None) as err:
            load_models(path)
        assert needle in str(err.value), (body, str(err.value))


def test_missing_adapter_directory(tmp_path):
    path = write(tmp_path / "models.toml", """
        [variants.ft]
        adapter = "adapters/nowhere"
    """)
    with pytest.raises(AdapterError) as err:
        load_models(path)
    assert "adapter directory not found" in str(err.value) and "variants.ft.adapter" in str(err.value)


def test_adapter_for_another_base_model_is_refused(tmp_path):
    adapter = tmp_path / "adapters" / "ft"
    write(adapter / "adapter_config.json", '{"base_model_name_or_path": "meta-llama/Llama-3.1-8B", "peft_type": "LORA"}')
    path = write(tmp_path / "models.toml", """
        [variants.ft]
        model = "smollm2-135m-instruct"
        adapter = "adapters/ft"
    """)
    with pytest.raises(AdapterError) as err:
        load_models(path)
    assert "trained on 'meta-llama/Llama-3.1-8B'" in str(err.value)


def test_adapter_matching_base_is_accepted(tmp_path):
    adapter = tmp_path / "adapters" / "ft"
    write(adapter / "adapter_config.json", '{"base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct"}')
    write(tmp_path / "models.toml", '[variants.ft]\nadapter = "adapters/ft"\n')
    variant = load_models(tmp_path / "models.toml").variants["ft"]
    assert variant.adapter == tmp_path / "adapters" / "ft"


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_models(tmp_path / "nope.toml")
    (tmp_path / "m.toml").write_text("[variants.a\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_models(tmp_path / "m.toml")
