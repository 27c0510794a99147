"""``train.autocast``: training steps under ``torch.autocast``, the same rule for every trainer.

``off`` (the default): everything in ``train.dtype``. ``bf16``: the forward pass of each
training step runs under ``torch.autocast(device, bfloat16)`` (matmuls, convolutions and
attention in bfloat16, reductions in float32), the loss is taken in ``train.dtype``, and the
parameters, gradients and optimizer state stay in ``train.dtype``. Evaluations run without
autocast, so curves of bf16 and fp32 runs are measured the same way.

It applies on CUDA and on CPU alike (torch's CPU autocast; slow on CPUs without bf16 units, but
the same arithmetic), so the loop, the LM trainer and the fused engines all train one spec the
same way on one device. Parameters must be float32 (``spec`` refuses ``train.dtype: float64``:
autocast leaves float64 untouched, so the option would silently do nothing).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import torch

CHOICES = ("off", "bf16")


def autocast_dtype(choice: str | None) -> torch.dtype | None:
    """The autocast dtype of a ``train.autocast`` value (None: off)."""
    if choice in (None, "off"):
        return None
    if choice in ("bf16", "bfloat16"):
        return torch.bfloat16
    raise ValueError(f"autocast: expected one of {', '.join(CHOICES)}, got {choice!r}")


def run_autocast(train: dict[str, Any], override: str | None = None) -> torch.dtype | None:
    """A run's autocast dtype: ``override`` (benchmarks) when given, else ``train.autocast``."""
    return autocast_dtype(override if override is not None else train.get("autocast", "off"))


def autocast_region(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    """``torch.autocast`` on ``device`` when ``dtype`` is set, else a context that does nothing."""
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None,
                          cache_enabled=False)
