"""Implicit-regularization diagnostics recorded per run, when the spec asks (``train.diagnostics``).

- ``norms``: ‖θ‖ (``param_norm``; every trainer records it), ‖θ₀‖ (``init_norm``) and ‖θ − θ₀‖
  (``distance_from_init``). For a model linear in its parameters trained on the squared loss, also
  ‖w − w*‖ (``distance_to_min_norm``) and ‖w*‖ (``min_norm_norm``), w* the min-norm solution: from
  θ₀ for gradient training (w₀ + Φ⁺(y − Φw₀), where GD converges), Φ⁺y for closed form.
- ``sharpness``: λ_max of the full-batch training-loss Hessian at every evaluation of the loop (the
  ``sharpness`` curve) and at the end (metric ``sharpness``), with ``stability_threshold`` =
  (2 + 2β)/lr for gd/sgd (the edge of stability, Cohen et al. 2021). The metric uses ``train.lr``,
  the peak; the curve records the threshold of the lr each evaluated step was taken with (a
  ``stability_threshold`` curve), so under warmup or decay the line moves as the step size does.
- ``trace``: Hutchinson's estimate of tr H (``hessian_trace``) and its standard error (``hessian_trace_se``).

Costs are bounded: a Hessian-vector product is one double backward over the training set in chunks
(``curvature.CHUNK``); a sharpness measurement is Lanczos with at most ``MAX_RESTARTS`` restarts of
~20 products, warm-started along training from the previous top eigenvector; a trace is
``TRACE_SAMPLES`` products. The final measurements run after training on every path (loop, fused,
closed form), from the run's own weights: ``record_final`` is what ``sweep.work`` calls.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from overparam.data.base import TaskData
from overparam.models import family_module
from overparam.train import curvature
from overparam.train.evaluate import loss_kind
from overparam.train.optim import lr_at
from overparam.train.recipe import CLOSED_FORM
from overparam.train.result import TrainResult

MAX_RESTARTS = 30  # Lanczos restarts per sharpness measurement (ARPACK maxiter); typical need: 1-3
TOL = {torch.float64: 1e-8, torch.float32: 1e-5}  # relative; float32 products carry ~1e-7 rounding
TRACE_SAMPLES = 32  # Hutchinson probes: standard error ≈ √(2 Σ_{i≠j} H_ij² / 32)


def requested(train: dict[str, Any], name: str) -> bool:
    return name in (train.get("diagnostics") or ())


class SharpnessProbe:
    """λ_max of the training-loss Hessian of ``model`` as it trains, one measurement per call.

    Each call starts Lanczos from the previous top eigenvector: the sharpest direction moves
    slowly between evaluations, so a measurement costs a restart or two.
    """

    def __init__(self, model: nn.Module, task: TaskData, kind: str, device: torch.device, seed: int,
                 train: dict[str, Any] | None = None):
        self.op = curvature.HessianOperator(model, task, kind, device=device)
        self.seed = seed
        self.train = train
        self.vector: np.ndarray | None = None

    def threshold(self, step: int) -> float | None:
        """(2 + 2β)/lr with the lr of the step that led to ``step`` (step 0: the first step's)."""
        peak = curvature.stability_threshold(self.train) if self.train is not None else None
        lr = lr_at(max(step - 1, 0), self.train) if peak is not None else 0.0
        return peak * self.train["lr"] / lr if lr > 0 else None

    def __call__(self, point: dict[str, Any], step: int = 0) -> dict[str, float]:
        """``point``: the evaluation just made at ``step``; a non-finite train loss has no Hessian worth
        measuring."""
        if not math.isfinite(point.get("train_loss", math.nan)):
            return {"sharpness": math.nan}
        vals, vecs = curvature.top_eigenvalues(self.op, 1, tol=TOL.get(self.op.dtype, 1e-5), max_iter=MAX_RESTARTS,
                                               seed=self.seed, v0=self.vector, return_vectors=True)
        self.vector = vecs[:, 0]
        out = {"sharpness": float(vals[0])}
        threshold = self.threshold(step)
        if threshold is not None:
            out["stability_threshold"] = threshold
        return out


def sharpness_probe(model: nn.Module, task: TaskData, train: dict[str, Any], seed: int,
                    device: torch.device) -> Callable[[dict[str, Any]], dict[str, float]]:
    """What the loop adds to each evaluation: ``{"sharpness": λ_max}``, or nothing when not asked."""
    if not requested(train, "sharpness"):
        return lambda point, step=0: {}
    return SharpnessProbe(model, task, loss_kind(task, train), device, seed, train)


def norms(init: nn.Module, final: nn.Module, task: TaskData, config: dict[str, Any]) -> dict[str, Any]:
    """``init_norm``, ``distance_from_init`` and, where it applies, the min-norm distance (else None)."""
    out: dict[str, Any] = {"param_norm": curvature.param_norm(final), "init_norm": curvature.param_norm(init),
                           "distance_from_init": curvature.distance_from_init(final, init),
                           "distance_to_min_norm": None, "min_norm_norm": None}
    train = config["train"]
    linear = family_module(config["model"]["family"]).LINEAR_IN_PARAMS
    if linear and task.x_train is not None and loss_kind(task, train) == "mse":
        start = None if train["optimizer"] in CLOSED_FORM else init
        w_star = curvature.min_norm_solution(final, task, start)
        out["distance_to_min_norm"] = float(torch.linalg.norm(curvature.readout_weights(final) - w_star))
        out["min_norm_norm"] = float(torch.linalg.norm(w_star))
    return out


def final_diagnostics(config: dict[str, Any], task: TaskData, result: TrainResult,
                      device: torch.device) -> dict[str, Any]:
    """The end-of-training numbers ``config.train.diagnostics`` asks for, from ``result.state``.

    The init is rebuilt as the trainer built it (``family.build(model, shape, seed)``, the run's
    dtype). A sharpness the loop already measured at the last step is not measured twice.
    """
    from overparam.train.run import run_dtype, shape_of

    train = config["train"]
    family = family_module(config["model"]["family"])
    init = family.build(config["model"], shape_of(task), config["seed"], dropout=train["dropout"])
    init = init.to(dtype=run_dtype(train)).eval()
    final = copy.deepcopy(init)
    final.load_state_dict(result.state)
    out: dict[str, Any] = {}
    if requested(train, "norms"):
        out.update(norms(init, final, task, config))
    if task.x_train is None:  # a language model: norms only (the spec refuses the rest)
        return out
    final = final.to(device)
    op = curvature.HessianOperator(final, task, loss_kind(task, train), device=device)
    if requested(train, "sharpness"):
        if result.metrics.get("sharpness") is None:
            top = curvature.top_eigenvalues(op, 1, tol=TOL.get(op.dtype, 1e-5), max_iter=MAX_RESTARTS,
                                            seed=config["seed"])
            out["sharpness"] = float(top[0])
        out["stability_threshold"] = curvature.stability_threshold(train)
    if requested(train, "trace"):
        out["hessian_trace"], out["hessian_trace_se"] = curvature.trace_estimate(op, TRACE_SAMPLES, config["seed"])
    return out


def record_final(config: dict[str, Any], task: TaskData, result: TrainResult, device: torch.device) -> None:
    """Add the final diagnostics to a finished run's metrics, and its final sharpness to the last
    curve point (where the loop did not measure it). A failure here is recorded in the metrics as
    ``diagnostics_error``: it never costs the trained run."""
    if not (config["train"].get("diagnostics") and result.status == "done" and result.state is not None):
        return
    try:
        extra = final_diagnostics(config, task, result, device)
    except (RuntimeError, ValueError, ArithmeticError, MemoryError) as exc:
        result.metrics["diagnostics_error"] = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
        return
    if "param_norm" in result.metrics:
        extra.pop("param_norm", None)  # the trainer's own number stays
    result.metrics.update(extra)
    if "sharpness" in extra and result.curve and "sharpness" not in result.curve[-1][1]:
        result.curve[-1][1]["sharpness"] = extra["sharpness"]
