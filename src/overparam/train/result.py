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


def finished(module: torch.nn.Module, metrics: dict[str, Any], curve: list[tuple[int, dict[str, float]]]
             ) -> TrainResult:
    """A ``done`` result of a trained ``module``: its ‖θ‖ (float64 sum, as every trainer reports
    it), the late-instability flag, and its state dict on the CPU for the checkpoint."""
    from overparam.train.health import flag

    params = [p for p in module.parameters() if p.requires_grad]
    metrics["param_norm"] = float(torch.sqrt(sum((p.detach().double() ** 2).sum() for p in params)))
    flag(metrics, curve)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    return TrainResult("done", metrics, curve, state)
