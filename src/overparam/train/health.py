"""Late instabilities: a point that broke must never be read as a feature of the curve.

Seen in practice (Adam, label-noise CNN sweep): one width's train error went from ~0 back to
42 %. A run is flagged ``unstable`` when, at its final evaluation, its train error is more than
``ERROR_RISE`` above its running minimum, or its train loss is more than ``LOSS_FACTOR`` times
its minimum and above it by at least ``LOSS_GAP`` nats.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from overparam.train.result import TrainResult

ERROR_RISE = 0.10  # absolute train-error rise over the best seen (10 points)
LOSS_FACTOR = 10.0
LOSS_GAP = 0.1


def instability(curve: list[tuple[int, dict[str, float]]]) -> str | None:
    """A one-line reason when the run ended far worse than its best point, else None."""
    if len(curve) < 3:
        return None
    final_step, final = curve[-1]
    for key, rule in (("train_error", "error"), ("train_loss", "loss")):
        seen = [m[key] for _, m in curve if m.get(key) is not None and math.isfinite(m[key])]
        if len(seen) < 3 or final.get(key) is None:
            continue
        best, last = min(seen), final[key]
        if rule == "error" and last - best > ERROR_RISE:
            return f"train error rose from {best:.3f} to {last:.3f} by step {final_step}"
        if rule == "loss" and last > LOSS_FACTOR * best and last - best > LOSS_GAP:
            return f"train loss rose from {best:.3g} to {last:.3g} by step {final_step}"
    return None


def flag(metrics: dict[str, Any], curve: list[tuple[int, dict[str, float]]]) -> dict[str, Any]:
    reason = instability(curve)
    metrics["unstable"] = reason is not None
    if reason:
        metrics["unstable_reason"] = reason
    return metrics


def clip_and_check(loss: torch.Tensor, params: list, clip: float | None) -> bool:
    """Clip the global gradient norm (when ``clip`` is set) and say whether the step is finite.

    A non-finite loss or gradient norm means the run diverged: the caller stops before
    ``opt.step()`` so the weights of the last finite step are what remains.
    """
    norm = torch.nn.utils.clip_grad_norm_(params, clip) if clip is not None else None
    return math.isfinite(float(loss.detach())) and (norm is None or math.isfinite(float(norm)))


def diverged(curve: list[tuple[int, dict[str, float]]], step: int, why: str) -> TrainResult:
    """The result of a run stopped at ``step``: the last finite evaluation, marked ``diverged``."""
    last = dict(curve[-1][1]) if curve else {}
    last["diverged_at"] = step
    return TrainResult("diverged", last, curve, None, why)
