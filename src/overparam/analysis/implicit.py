"""Implicit regularization diagnostics: norms, the min-norm solution, and the loss Hessian.

The measuring machinery (norms, ``HessianOperator``, Lanczos/power iteration, Hutchinson's trace,
2/lr) lives in ``overparam.train.curvature`` so that the trainer can record it per run
(``train.diagnostics``); it is re-exported here under the same names. This module adds what
works on a model or a stored run after the fact: ``sharpness_over_training`` (train and measure)
and ``diagnose_run`` (one finished run, rebuilt from its config and checkpoint). The sweep-wide
reading of recorded diagnostics is ``overparam.analysis.implicit_sweep``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from overparam.data.base import TaskData
from overparam.errors import OverparamError
from overparam.train.curvature import (
    CHUNK,
    HessianOperator,
    _loss_setup,
    distance_from_init,
    distance_to_min_norm,
    flat_params,
    hessian_top_eigenvalues,
    hessian_trace,
    min_norm_solution,
    param_norm,
    stability_threshold,
    top_eigenvalues,
    trace_estimate,
    trainable,
)

__all__ = ["CHUNK", "HessianOperator", "diagnose_run", "distance_from_init", "distance_to_min_norm",
           "flat_params", "hessian_top_eigenvalues", "hessian_trace", "min_norm_solution", "param_norm",
           "sharpness_over_training", "stability_threshold", "top_eigenvalues", "trace_estimate",
           "trainable"]


# ---------------------------------------------------------------- sharpness over training


def sharpness_over_training(model: nn.Module, task: TaskData, train: dict[str, Any], every: int = 10,
                            seed: int = 0, method: str = "power", power_iters: int = 100,
                            tol: float | None = 1e-6) -> dict[str, Any]:
    """Train ``model`` in place with the recipe ``train`` (``train.*`` options; missing keys take
    their defaults) and measure the top Hessian eigenvalue of the full-batch training loss every
    ``every`` steps and at the end (power iteration by default: ``power_iters`` products at most).

    Batches, learning-rate schedule and loss are the trainer's (``overparam.train.loop``), so the
    result describes the same trajectory a sweep trains. Returns ``{"step", "sharpness",
    "train_loss", "lr", "threshold", "late_ratio"}`` with ``threshold`` = ``stability_threshold(train)``
    and ``late_ratio`` the median sharpness over the second half of the measurements divided by
    it: ≈ 1 at the edge of stability, well below 1 when training never got there. Measured on
    an ``mlp`` of width 64 on a ReLU teacher (dim 20, n = 200), full-batch GD: at lr = 0.16
    (2/lr = 12.5) sharpness rose from 10.6 to 13.6, then held at 12.48–12.49 for 1,700 steps
    while the loss went down non-monotonically (late_ratio 0.999); at lr = 0.05 (2/lr = 40) it
    sharpened progressively from 10.6 to 15.4 and stayed far below (0.38).
    """
    from overparam.options import resolve_section
    from overparam.train import recipe
    from overparam.train.batches import batch_indices
    from overparam.train.evaluate import batch_loss
    from overparam.train.optim import build_optimizer, lr_at

    train = resolve_section("train", recipe.OPTIONS, dict(train))
    if train["optimizer"] in recipe.CLOSED_FORM:
        raise OverparamError("sharpness over training needs a gradient optimizer (gd, sgd, adam, adamw)")
    kind, n_classes = _loss_setup(task, train["loss"])
    op = HessianOperator(model, task, kind)
    opt = build_optimizer(op.params, train)
    batch = task.n_train if train["optimizer"] == "gd" else train["batch_size"]
    steps, out = train["steps"], {"step": [], "sharpness": [], "train_loss": []}

    def measure(step: int) -> None:
        top = hessian_top_eigenvalues(model, task, 1, method=method, loss=kind, tol=tol,
                                      max_iter=power_iters, seed=seed + step)
        out["step"].append(step)
        out["sharpness"].append(float(top[0]))
        out["train_loss"].append(op.loss())

    measure(0)
    model.train()
    torch.manual_seed(seed)
    for step, idx in enumerate(batch_indices(task.n_train, batch, steps, seed), start=1):
        for group in opt.param_groups:
            group["lr"] = lr_at(step - 1, train)
        loss = batch_loss(model(op.x[idx]), op.y[idx], kind, n_classes)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if not math.isfinite(float(loss.detach())):
            break
        if step % every == 0 or step == steps:
            measure(step)
    threshold = stability_threshold(train)
    out.update({"lr": train["lr"], "threshold": threshold, "late_ratio": None})
    if threshold is not None:
        late = np.array(out["sharpness"][len(out["sharpness"]) // 2:])
        out["late_ratio"] = float(np.median(late) / threshold)
    return out


# ---------------------------------------------------------------- one stored run


def diagnose_run(directory: str, run_id: str, k: int = 1, trace_samples: int = 0) -> dict[str, Any]:
    """Implicit-regularization numbers of one finished run, rebuilt from its config and checkpoint:
    ‖θ‖, ‖θ₀‖, ‖θ − θ₀‖, the distance to the min-norm solution (models linear in their parameters
    trained on the squared loss; ``overparam.train.diagnostics.norms``), the top-``k`` Hessian
    eigenvalues of the training loss and, for gd/sgd, 2/lr. ``trace_samples`` > 1 adds Hutchinson's
    trace estimate (and its standard error)."""
    from overparam.analysis.landscape import load_run_models
    from overparam.options import resolve_section
    from overparam.train import recipe
    from overparam.train.diagnostics import norms

    init, final, task, config = load_run_models(directory, run_id)
    train = resolve_section("train", recipe.OPTIONS, config["train"])
    out: dict[str, Any] = {"run_id": run_id, **norms(init, final, task, {**config, "train": train})}
    kind = "mse" if train["optimizer"] in recipe.CLOSED_FORM else train["loss"]
    out["hessian_top"] = [float(v) for v in hessian_top_eigenvalues(final, task, k, loss=kind)]
    out["stability_threshold"] = stability_threshold(train)
    if trace_samples > 1:
        out["hessian_trace"], out["hessian_trace_se"] = hessian_trace(final, task, trace_samples, loss=kind)
    out["why_null"] = why_null(out, config["model"]["family"], train)
    return out


def why_null(doc: dict[str, Any], family: str, train: dict[str, Any]) -> dict[str, str]:
    """Why each null number of ``doc`` is null, in words (the command prints these instead of None)."""
    reasons: dict[str, str] = {}
    if doc.get("distance_to_min_norm") is None:
        from overparam.models import family_module

        linear = family_module(family).LINEAR_IN_PARAMS
        why = (f"the {family} family is not linear in its parameters, so it has no min-norm interpolant to compare "
               f"with" if not linear else "the min-norm interpolant is defined for the squared loss; this run "
               f"was trained on {train.get('loss')}")
        reasons["distance_to_min_norm"] = reasons["min_norm_norm"] = why
    if doc.get("stability_threshold") is None:
        from overparam.train import recipe

        how = ("is solved in closed form, with no step size" if train["optimizer"] in recipe.CLOSED_FORM else
               "adapts its step per coordinate (Cohen et al. 2022)")
        reasons["stability_threshold"] = f"2/lr bounds the sharpness only for gd and sgd; {train['optimizer']} {how}"
    return reasons
