"""Compression of a trained run, measured in the sweep's own units (``overparam compress``).

Pruning (unstructured, structured, lottery tickets), quantization, distillation, ONNX export and
latency; :func:`compress_run` puts them all on the dense sweep's curve as dense-equivalent sizes.
One file per concern, all sharing :mod:`overparam.compress.base` (the loaded run and its training
loop). Imports are lazy: ``import overparam.compress`` does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "compress_run": "overparam.compress.frontier",
    "dense_curve": "overparam.compress.frontier",
    "dense_equivalent": "overparam.compress.frontier",
    "load_subject": "overparam.compress.base",
    "Subject": "overparam.compress.base",
    "train_steps": "overparam.compress.base",
    "magnitude_masks": "overparam.compress.prune",
    "magnitude_prune": "overparam.compress.prune",
    "prune_and_finetune": "overparam.compress.prune",
    "prune_structured": "overparam.compress.structured",
    "mask_units": "overparam.compress.structured",
    "shrink": "overparam.compress.structured",
    "find_tickets": "overparam.compress.lottery",
    "quantize_tensor": "overparam.compress.quantize",
    "dequantize": "overparam.compress.quantize",
    "quantize_weights": "overparam.compress.quantize",
    "quantize_model": "overparam.compress.quantize",
    "parse_scheme": "overparam.compress.quantize",
    "distillation_loss": "overparam.compress.distill",
    "train_student": "overparam.compress.distill",
    "export_onnx": "overparam.compress.latency",
    "OnnxModel": "overparam.compress.latency",
    "time_forward": "overparam.compress.latency",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'overparam.compress' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
