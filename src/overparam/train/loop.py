"""Train one model: the reference every faster path (fused, Ray) must reproduce exactly."""

from __future__ import annotations

import math
from itertools import islice
from typing import Any

import torch

from overparam.data.base import TaskData
from overparam.models.base import generator
from overparam.train.batches import batch_indices, eval_steps
from overparam.train.diagnostics import sharpness_probe
from overparam.train.evaluate import batch_loss, evaluate, loss_kind, to_tensors
from overparam.train.health import clip_and_check, diverged, flag
from overparam.train.optim import build_optimizer, lr_at
from overparam.train.precision import autocast_region, run_autocast
from overparam.train.result import TrainResult
from overparam.train.snapshot import Snapshots, model_state


def train_model(model: torch.nn.Module, task: TaskData, train: dict[str, Any], seed: int,
                device: torch.device, dtype: torch.dtype, snapshots: Snapshots | None = None) -> TrainResult:
    """Gradient training with per-step NaN/inf detection and evaluations on ``eval_steps``.

    A non-finite loss or gradient stops the run as ``diverged``; the metrics are then those of
    the last finite evaluation, with ``diverged_at`` the step where it broke.
    """
    data = to_tensors(task, device, dtype)
    model = model.to(device=device, dtype=dtype)
    kind = loss_kind(task, train)
    n_classes = task.n_classes if task.kind == "classification" else None
    params = [p for p in model.parameters() if p.requires_grad]
    opt = build_optimizer(params, train)
    steps = train["steps"]
    batch = task.n_train if train["optimizer"] == "gd" else train["batch_size"]
    checkpoints = set(eval_steps(steps, train["eval_every"], train["eval_log_points"]))
    curve: list[tuple[int, dict[str, float]]] = []
    sharpness = sharpness_probe(model, task, train, seed, device)  # adds nothing unless train.diagnostics asks

    def point(step: int) -> dict[str, float]:
        metrics = evaluate(model, data, task, kind)
        return {**metrics, **sharpness(metrics, step)}

    if 0 in checkpoints:
        curve.append((0, point(0)))
    torch.manual_seed(seed)  # dropout masks: the only draw from the global stream
    augment = getattr(task, "augment_fn", None)  # (x_batch, generator) -> x_batch; images only
    augment_gen = generator(seed, "augment") if augment is not None else None
    model.train()
    amp = run_autocast(train)  # train.autocast: the forward under bf16 autocast, or nothing
    snap = snapshots or Snapshots.off()
    state = model_state(model, opt, device, augment=augment_gen)
    start, curve = snap.resume(state, curve)  # the last snapshot's step and curve (0 and [] without one)
    step = start
    batches = islice(batch_indices(task.n_train, batch, steps, seed), start, None)  # order: a function of step
    for step, idx in enumerate(batches, start=start + 1):
        idx = idx.to(device)
        for group in opt.param_groups:
            group["lr"] = lr_at(step - 1, train)
        x = data["x_train"][idx]
        if augment is not None:
            x = augment(x, augment_gen)
        with autocast_region(device, amp):
            out = model(x)
        loss = batch_loss(out.to(dtype), data["y_train"][idx], kind, n_classes)  # the loss in train.dtype
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if not clip_and_check(loss, params, train["clip"]):
            return diverged(curve, step, f"non-finite loss at step {step}")
        opt.step()
        if step in checkpoints:
            curve.append((step, point(step)))
        snap.step(step, state, curve)
    metrics = dict(curve[-1][1])
    if not all(math.isfinite(v) for v in (metrics["train_loss"], metrics["test_loss"])):
        metrics["diverged_at"] = step
        return TrainResult("diverged", metrics, curve, None, "non-finite loss at the final evaluation")
    metrics["param_norm"] = float(torch.sqrt(sum((p.detach().double() ** 2).sum() for p in params)))
    flag(metrics, curve)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return TrainResult("done", metrics, curve, state)
