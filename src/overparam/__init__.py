"""overparam: how many parameters does this task really need?

The public Python API mirrors the CLI (which is a thin layer over it). Imports are lazy so
that ``overparam --help`` and the pure-numpy parts (theory, fits) start without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_spec": "overparam.spec",
    "Spec": "overparam.spec",
    "run_sweep": "overparam.sweep.runner",
    "load_runs": "overparam.store",
    "open_store": "overparam.store",
    "analyze_double_descent": "overparam.analysis.double_descent",
    "DoubleDescentAnalyzer": "overparam.analysis.double_descent",
    "build_report": "overparam.report.html",
    "run_demo": "overparam.demo",
    "theory": "overparam.analysis.theory",
    "fit_scaling_law": "overparam.analysis.scaling",
    "compress_run": "overparam.compress.frontier",
    "OverparamError": "overparam.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'overparam' has no attribute {name!r}")
    module = importlib.import_module(_EXPORTS[name])
    return module if module.__name__.endswith("." + name) else getattr(module, name)
