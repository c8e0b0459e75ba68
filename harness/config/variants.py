"""`models.toml` -> validated Variant objects. `[defaults]` is inherited by every variant."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config.files import load_toml, toml_key_line
from harness.errors import AdapterError, ConfigError, did_you_mean

BUILTIN_MODELS = {"smollm2-135m-instruct"}
BACKENDS = ("auto", "transformers", "vllm", "openai", "fake")
QUANTIZATIONS = ("nf4",)
GENERATION_KEYS = ("max_tokens", "temperature", "top_p", "seed", "stop")
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings; layered: built-in < models.toml < suite."""

    max_tokens: int = 256
    """Most new tokens per answer."""
    temperature: float = 0.0
    """0 means greedy decoding."""
    top_p: float = 1.0
    """Nucleus sampling mass (ignored when greedy)."""
    seed: int = 0
    """Sampling seed, so sampled runs reproduce."""
    stop: tuple[str, ...] = ()
    """Strings that end generation (not included in the output)."""

    def merged(self, overrides: dict[str, Any]) -> GenerationSettings:
        values = {**self.as_dict(), **overrides}
        values["stop"] = tuple(values.get("stop") or ())
        return GenerationSettings(**values)

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "stop": list(self.stop),
        }


@dataclass(frozen=True)
class Variant:
    """One way to answer a prompt: base model + adapter + quantisation + prompt strategy + backend."""

    name: str
    model: str = "smollm2-135m-instruct"
    """Built-in alias, hub id, or local model directory."""
    backend: str = "auto"
    """auto | transformers | vllm | openai | fake."""
    adapter: Path | None = None
    """PEFT adapter directory (LoRA / QLoRA), resolved against models.toml."""
    quantization: str | None = None
    """'nf4': bitsandbytes 4-bit base (QLoRA)."""
    fewshot: int = 0
    """k examples drawn from the suite's train split, prepended as chat turns."""
    system_prompt: str | None = None
    """Replaces (or adds) the system turn of every prompt."""
    generation: dict[str, Any] = field(default_factory=dict)
    """Generation defaults for this variant; a suite's own settings take precedence."""
    engine: dict[str, Any] = field(default_factory=dict)
    """Backend engine arguments passed through (e.g. vLLM's tensor_parallel_size, dtype)."""
    outputs: Path | None = None
    """Recorded outputs (JSONL of case_id/prompt + output) scored instead of running a model."""
    missing: str = "fail"
    """Recorded outputs: a case without an output fails on every axis ('fail') or is left out ('drop')."""
    allow_extra: bool = False
    """Recorded outputs: ids or prompts that match no case of the suite are a warning, not an error."""
    trust_remote_code: bool = False
    """Allow model repositories to run their own code (off unless asked for)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Backend-specific settings (e.g. the fake backend's script, an API's base_url)."""

    @property
    def is_recorded(self) -> bool:
        return self.outputs is not None


@dataclass(frozen=True)
class ModelsConfig:
    path: Path | None
    variants: dict[str, Variant]
    alerts: dict[str, Any] = field(default_factory=dict)
    text: str = ""

    def get(self, name: str, *, where: str | None = None) -> Variant:
        if name not in self.variants:
            hint = did_you_mean(name, self.variants)
            raise ConfigError(
                f"variant '{name}' is not declared in {self.path or 'models.toml'}.",
                file=where,
                hint=f"Add [variants.{name}] to models.toml or fix the name. {hint}".strip(),
            )
        return self.variants[name]


VARIANT_KEYS = {
    "model", "backend", "adapter", "quantization", "fewshot", "system_prompt",
    "generation", "engine", "outputs", "missing", "allow_extra", "trust_remote_code",
    # backend-specific
    "fake", "base_url", "api_key_env", "headers", "timeout", "max_concurrency",
    "max_attempts", "retry_base_delay", "retry_max_delay",
}
OPTION_KEYS = {"fake", "base_url", "api_key_env", "headers", "timeout", "max_concurrency",
               "max_attempts", "retry_base_delay", "retry_max_delay"}
TOP_KEYS = {"defaults", "variants", "alerts"}


def _error(path: Path, text: str, table: str | None, key: str | None, message: str, hint: str = ""):
    line = toml_key_line(text, table, key) if text else None
    full_key = ".".join(p for p in (table, key) if p)
    return ConfigError(message, file=path, key=full_key or None, line=line, hint=hint or None)


def _validate_table(path: Path, text: str, table: str, values: dict[str, Any]) -> Variant:
    name = table.split(".", 1)[1] if "." in table else "defaults"

    def fail(key: str | None, message: str, hint: str = "") -> ConfigError:
        return _error(path, text, table, key, message, hint)

    for key in values:
        if key not in VARIANT_KEYS:
            raise fail(key, "unknown key.", did_you_mean(key, VARIANT_KEYS))

    def typed(key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        if key not in values:
            return default
        value = values[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise fail(key, f"must be {' or '.join(k.__name__ for k in kinds)}, got {value!r}.")
        if float in kinds and isinstance(value, int):
            value = float(value)
        if not isinstance(value, kinds):
            raise fail(key, f"must be {' or '.join(k.__name__ for k in kinds)}, got {value!r}.")
        return value

    backend = typed("backend", str, "auto")
    if backend not in BACKENDS:
        raise fail("backend", f"unknown backend '{backend}'.", did_you_mean(backend, BACKENDS))
    quantization = typed("quantization", str, None)
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise fail("quantization", f"unsupported quantization '{quantization}'.", "Supported: nf4.")
    fewshot = typed("fewshot", int, 0)
    if fewshot < 0:
        raise fail("fewshot", "must be 0 or more.")
    generation = typed("generation", dict, {})
    for key, _value in generation.items():
        if key not in GENERATION_KEYS:
            raise fail("generation", f"unknown generation setting '{key}'.", did_you_mean(key, GENERATION_KEYS))
    validate_generation(generation, lambda key, msg: fail("generation", f"{key}: {msg}"))
    base_dir = path.parent if path else Path.cwd()

    def resolve(key: str) -> Path | None:
        value = typed(key, str, None)
        if value is None:
            return None
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else (base_dir / candidate)

    options = {key: values[key] for key in OPTION_KEYS if key in values}
    missing = typed("missing", str, "fail")
    if missing not in ("fail", "drop"):
        raise fail("missing", f"must be 'fail' or 'drop', got {missing!r}.",
                   "'fail': a case without a recorded output fails on every axis; 'drop': it is left out.")
    return Variant(
        name=name,
        model=typed("model", str, "smollm2-135m-instruct"),
        backend=backend,
        adapter=resolve("adapter"),
        quantization=quantization,
        fewshot=fewshot,
        system_prompt=typed("system_prompt", str, None),
        generation=generation,
        engine=typed("engine", dict, {}),
        outputs=resolve("outputs"),
        missing=missing,
        allow_extra=typed("allow_extra", bool, False),
        trust_remote_code=typed("trust_remote_code", bool, False),
        options=options,
    )


def validate_generation(values: dict[str, Any], fail) -> None:
    """Type and range checks for generation settings; `fail(key, message)` builds the error."""
    checks = {
        "max_tokens": (int, lambda v: v >= 1, "must be a positive integer"),
        "temperature": ((int, float), lambda v: v >= 0, "must be a number >= 0"),
        "top_p": ((int, float), lambda v: 0 < v <= 1, "must be in (0, 1]"),
        "seed": (int, lambda v: True, "must be an integer"),
        "stop": (list, lambda v: all(isinstance(s, str) for s in v), "must be a list of strings"),
    }
    for key, value in values.items():
        kind, ok, message = checks[key]
        if isinstance(value, bool) or not isinstance(value, kind) or not ok(value):
            raise fail(key, f"{message}, got {value!r}.")


def _adapter_base(adapter: Path) -> str | None:
    import json

    config = adapter / "adapter_config.json"
    try:
        return json.loads(config.read_text()).get("base_model_name_or_path")
    except (OSError, ValueError):
        return None


def _same_model(model: str, adapter_base: str) -> bool:
    def leaf(name: str) -> str:
        return name.rstrip("/").split("/")[-1].lower()

    names = {leaf(model)}
    if model in BUILTIN_MODELS:
        names |= {"smollm2-135m-instruct"}
    return leaf(adapter_base) in names or Path(adapter_base) == Path(model)


def check_variant_files(variant: Variant, path: Path | None, text: str) -> None:
    """Adapter and recorded-output files exist and fit the base model."""
    table = f"variants.{variant.name}"
    if variant.adapter is not None:
        if not variant.adapter.is_dir():
            raise AdapterError(
                str(_error(path, text, table, "adapter", f"adapter directory not found: {variant.adapter}.",
                           "Point it at a PEFT adapter directory (with adapter_config.json)."))
            )
        if not (variant.adapter / "adapter_config.json").is_file():
            raise AdapterError(
                str(_error(path, text, table, "adapter", f"{variant.adapter} has no adapter_config.json.",
                           "Is this a PEFT adapter directory? Save it with model.save_pretrained()."))
            )
        base = _adapter_base(variant.adapter)
        if base and not _same_model(variant.model, base):
            raise AdapterError(
                str(_error(path, text, table, "adapter",
                           f"adapter was trained on '{base}' but the variant's model is '{variant.model}'.",
                           "Set model to the adapter's base model, or use the matching adapter."))
            )
    if variant.outputs is not None and not variant.outputs.is_file():
        raise ConfigError(
            str(_error(path, text, table, "outputs", f"recorded outputs file not found: {variant.outputs}."))
        )


def _check_engine_keys(variant: Variant, path: Path, text: str, table: dict) -> None:
    """Engine keys the variant's backend does not declare (harness/config/engine_settings.py) fail here."""
    from harness.backends import resolve_backend_name
    from harness.config.engine_settings import check_engine

    if variant.is_recorded or not variant.engine:
        return
    problem = check_engine(resolve_backend_name(variant.backend, variant.quantization), variant.engine)
    if problem is None:
        return
    key, message, hint = problem
    own = isinstance(table.get("engine"), dict) and key in table["engine"]
    where = f"variants.{variant.name}" if own else "defaults"
    line = toml_key_line(text, f"{where}.engine", key) or toml_key_line(text, where, "engine")
    raise ConfigError(message, file=path, key=f"{where}.engine.{key}", line=line, hint=hint or None)


def load_models(path: Path | str) -> ModelsConfig:
    """Read and validate `models.toml`."""
    path = Path(path)
    data, text = load_toml(path)
    for key in data:
        if key not in TOP_KEYS:
            raise _error(path, text, key if isinstance(data[key], dict) else None,
                         None if isinstance(data[key], dict) else key,
                         f"unknown top-level key '{key}'.", did_you_mean(key, TOP_KEYS))
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise _error(path, text, None, "defaults", "[defaults] must be a table.")
    _validate_table(path, text, "defaults", defaults)
    tables = data.get("variants", {})
    if not isinstance(tables, dict) or not tables:
        raise ConfigError("no variants declared.", file=path, hint="Add at least one [variants.NAME] table.")
    variants: dict[str, Variant] = {}
    for name, table in tables.items():
        if not NAME_RE.match(name):
            raise _error(path, text, f"variants.{name}", None,
                         f"variant name '{name}' may only use letters, digits, '_' and '-'.")
        if not isinstance(table, dict):
            raise _error(path, text, None, f"variants.{name}", "must be a table ([variants.NAME]).")
        merged = {**defaults, **table}
        for key in ("generation", "engine", "fake", "headers"):
            if isinstance(defaults.get(key), dict) and isinstance(table.get(key), dict):
                merged[key] = {**defaults[key], **table[key]}
        variant = _validate_table(path, text, f"variants.{name}", merged)
        if variant.backend == "openai" and variant.adapter is not None:
            raise _error(path, text, f"variants.{name}", "adapter",
                         "an openai variant cannot load a local adapter.",
                         "Serve it from the server (vLLM: --enable-lora --lora-modules NAME=PATH) and set "
                         "model = \"NAME\" on this variant instead.")
        if variant.adapter is not None and variant.outputs is not None:
            raise _error(path, text, f"variants.{name}", "outputs", "a variant has either outputs or a model/adapter, not both.")
        check_variant_files(variant, path, text)
        _check_engine_keys(variant, path, text, table)
        variants[name] = variant
    alerts = data.get("alerts", {})
    if not isinstance(alerts, dict):
        raise _error(path, text, None, "alerts", "[alerts] must be a table.")
    for key in alerts:
        if key not in {"webhook", "dir"}:
            raise _error(path, text, "alerts", key, "unknown key.", did_you_mean(key, {"webhook", "dir"}))
    return ModelsConfig(path=path, variants=variants, alerts=alerts, text=text)
