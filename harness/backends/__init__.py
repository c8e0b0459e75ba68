"""Backends behind one interface; each is imported only when a variant needs it."""

from __future__ import annotations

import importlib
import importlib.util

from harness.backends.base import (
    Adapter,
    Backend,
    EngineSpec,
    Generation,
    GenerateRequest,
    Loglikelihood,
    LoglikelihoodRequest,
    freeze,
)
from harness.errors import BackendError

IMPLEMENTATIONS = {
    "transformers": "harness.backends.transformers:TransformersBackend",
    "fake": "harness.backends.fake:FakeBackend",
}


def resolve_backend_name(requested: str) -> str:
    """`auto` -> the fastest backend available here."""
    if requested != "auto":
        return requested
    return "transformers"


def create_backend(spec: EngineSpec) -> Backend:
    """Instantiate (load) the backend for one engine spec."""
    target = IMPLEMENTATIONS.get(spec.backend)
    if target is None:
        raise BackendError(
            f"backend '{spec.backend}' is not available in this version. Available: {', '.join(IMPLEMENTATIONS)}."
        )
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
    "freeze",
    "resolve_backend_name",
]
