"""What training one model returns to the executor, which alone writes the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class TrainResult:
    """Outcome of one run.

    ``status`` is ``done`` or ``diverged`` (a NaN/inf loss: training stopped, the last finite
    evaluation is kept in ``metrics``). ``curve`` holds ``(step, {metric: value})`` at each
    evaluation. ``state`` is the final state dict (saved as safetensors), or None.
    """

    status: str
    metrics: dict[str, Any]
    curve: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    state: dict[str, torch.Tensor] | None = None
    error: str | None = None
