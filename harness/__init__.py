"""An evaluation and regression-testing harness for fine-tuned LLMs.

The public names are imported lazily, so `import harness` (and the pytest plugin) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "HarnessError": "harness.errors",
    "ConfigError": "harness.errors",
    "DataError": "harness.errors",
    "BackendError": "harness.errors",
    "AdapterError": "harness.errors",
    "GateError": "harness.errors",
    "load_models": "harness.config.variants",
    "load_suite": "harness.config.suite",
    "run_suites": "harness.engine.runner",
    "RunOptions": "harness.engine.runner",
    "GenerationCache": "harness.engine.cache",
    "load_run": "harness.engine.records",
    "evaluate_run": "harness.analysis.gates",
    "compare_run": "harness.analysis.compare",
    "scorer": "harness.scorers",
    "Score": "harness.scorers",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
