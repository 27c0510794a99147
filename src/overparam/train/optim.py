"""Optimizers and the learning-rate schedule of the recipe."""

from __future__ import annotations

import math
from typing import Any

import torch


def lr_at(step: int, train: dict[str, Any]) -> float:
    """Peak lr × linear warmup × decay (constant, cosine to 0, or linear to 0) at ``step`` (0-based)."""
    peak, warmup, steps = train["lr"], train["warmup_steps"], train["steps"]
    if warmup and step < warmup:
        return peak * (step + 1) / warmup
    if train["schedule"] == "constant" or steps <= warmup:
        return peak
    t = (step - warmup) / max(steps - warmup, 1)
    if train["schedule"] == "cosine":
        return peak * 0.5 * (1.0 + math.cos(math.pi * t))
    return peak * (1.0 - t)


def build_optimizer(params: list[torch.nn.Parameter], train: dict[str, Any]) -> torch.optim.Optimizer:
    """torch's own optimizers, single-tensor (foreach=False): the reference the fused engine matches."""
    name, lr, wd = train["optimizer"], train["lr"], train["weight_decay"]
    if name in ("sgd", "gd"):
        return torch.optim.SGD(params, lr=lr, momentum=train["momentum"], weight_decay=wd, foreach=False)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, foreach=False)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, foreach=False)
    raise ValueError(f"not a gradient optimizer: {name}")
