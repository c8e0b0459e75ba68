"""Engine settings per backend: the `engine = {...}` keys of a variant, declared once and checked at load.

Each backend declares the settings it reads (name, type, default, doc). `load_models` refuses a key a
variant's backend does not know (`batch_sise`), naming the file, line and the closest valid key, so
`harness models` shows the error before anything runs.

- transformers: the table below.
- vllm: engine arguments pass through to `vllm.LLM` (vLLM's `EngineArgs` fields and `LLM.__init__`
  parameters) plus the harness's `batch_size`. When vLLM is installed its source is read (not
  imported: importing vLLM takes ~20 s) for the exact field names of the installed version;
  otherwise `VLLM_FALLBACK` below, the common arguments, is the documented list.
- openai and fake: `batch_size`. Settings of the local backends (transformers, vllm) are accepted
  and have no effect, because `[defaults] engine = {...}` applies to every variant, remote or
  scripted ones included; any other key is refused.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Setting:
    name: str
    kind: type | tuple[type, ...] | None
    """Expected TOML type (None: passed through unchecked)."""
    default: Any
    doc: str


TRANSFORMERS = {s.name: s for s in (
    Setting("dtype", str, "bfloat16 on CPUs with native bf16, else float32", "torch dtype of the weights"),
    Setting("device", str, "cuda when available, else cpu", "torch device"),
    Setting("batch_size", int, 16, "requests per forward batch"),
    Setting("attn_implementation", str, None, "transformers attention implementation (eager, sdpa, ...)"),
    Setting("max_length", int, None, "prompt + generation token limit"),
    Setting("merge_adapters", bool, True, "merge a LoRA adapter into the weights while its requests run"),
    Setting("add_bos_token", bool, None, "raw-text scoring: force the tokenizer's BOS on or off (lm-eval's add_bos_token)"),
)}
BATCH_ONLY = {"batch_size": Setting("batch_size", int, None, "requests handed to the backend at once")}
VLLM = {**BATCH_ONLY, "add_bos_token": TRANSFORMERS["add_bos_token"]}
VLLM_FALLBACK = (
    "dtype", "tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size", "gpu_memory_utilization",
    "max_model_len", "max_num_seqs", "max_num_batched_tokens", "enforce_eager", "enable_prefix_caching",
    "enable_lora", "max_loras", "max_lora_rank", "max_cpu_loras", "swap_space", "cpu_offload_gb",
    "kv_cache_dtype", "seed", "tokenizer", "tokenizer_mode", "revision", "quantization", "block_size",
    "enable_chunked_prefill", "distributed_executor_backend", "disable_custom_all_reduce", "hf_overrides",
    "compilation_config", "kv_cache_memory_bytes", "lora_target_modules", "served_model_name",
)
"""vLLM engine arguments accepted when vLLM's own source cannot be read (vLLM not installed)."""


@functools.cache
def vllm_engine_keys() -> tuple[frozenset[str], str]:
    """(valid vLLM engine argument names, where they came from), without importing vLLM."""
    try:
        spec = importlib.util.find_spec("vllm")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin:
        root = Path(spec.origin).parent
        try:
            names: set[str] = set()
            tree = ast.parse((root / "engine" / "arg_utils.py").read_text(encoding="utf-8"))
            for node in tree.body:
                if isinstance(node, ast.ClassDef) and node.name == "EngineArgs":
                    names |= {n.target.id for n in node.body
                              if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
            tree = ast.parse((root / "entrypoints" / "llm.py").read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name == "LLM":
                    for fn in node.body:
                        if isinstance(fn, ast.FunctionDef) and fn.name == "__init__":
                            names |= {a.arg for a in fn.args.args + fn.args.kwonlyargs}
            names -= {"self", "model", "kwargs"}
            if len(names) > 20:
                return frozenset(names | {"lora_target_modules"}), f"vLLM's EngineArgs ({root})"
        except (OSError, SyntaxError, UnicodeDecodeError):
            pass
    return frozenset(VLLM_FALLBACK), "the documented list harness.config.engine_settings.VLLM_FALLBACK"


def declared(backend: str) -> tuple[dict[str, Setting], frozenset[str], str]:
    """(typed settings, other accepted names, a sentence on where the names come from)."""
    if backend == "transformers":
        return TRANSFORMERS, frozenset(), "the transformers backend's settings"
    if backend == "vllm":
        names, source = vllm_engine_keys()
        return VLLM, names, source + " plus batch_size and add_bos_token"
    local = frozenset(TRANSFORMERS) | vllm_engine_keys()[0]
    return BATCH_ONLY, local, f"batch_size (settings of the local backends are accepted and unused by {backend})"


def check_engine(backend: str, engine: dict[str, Any]) -> tuple[str, str, str] | None:
    """None when every key is valid for `backend`, else (key, message, hint) for the first bad one."""
    from harness.errors import did_you_mean

    typed, others, source = declared(backend)
    valid = set(typed) | set(others)
    for key, value in engine.items():
        if key not in valid:
            close = did_you_mean(str(key), valid)
            hint = close if close.startswith("Did you mean") else ""
            return key, f"unknown engine setting '{key}' for the {backend} backend (valid: {source}).", \
                (hint + " Valid settings are listed in docs/data-integrity.md.").strip()
        setting = typed.get(key)
        if setting is not None and setting.kind is not None:
            kinds = setting.kind if isinstance(setting.kind, tuple) else (setting.kind,)
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                names = " or ".join(k.__name__ for k in kinds)
                return key, f"engine setting '{key}' must be {names}, got {value!r}.", f"{setting.name}: {setting.doc}."
            if key == "batch_size" and value < 1:
                return key, f"engine setting 'batch_size' must be at least 1, got {value}.", ""
    return None
