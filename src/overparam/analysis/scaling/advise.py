"""The size advisor: compute-optimal params and tokens for a budget, or for a target loss.

Both answers come from an Approach 3 fit (``chinchilla.py``); intervals are the 2.5/97.5 percentiles of
the same quantity computed from every bootstrap fit.

- ``compute=C``: N_opt = G (C/6)^a, D_opt = (C/6)^b / G (Hoffmann et al. 2022, Appendix D.2).
- ``target_loss=L``: the compute-optimal (N, D) whose loss is L, i.e. the model that reaches L with
  the least compute, and ``min_params`` = (A / (L - E))^(1/α), the smallest model that reaches L at all
  (with unlimited tokens). L <= E is unreachable.

Both need the joint law, so model size and tokens must both have varied (``axes.py``). When only one
did (a width sweep at one token budget), ``compute`` is refused, naming the token axis: how to split a
budget between N and D is exactly what such a sweep cannot say. ``target_loss`` is then answered from
the power law in the axis that varied, at the other's fixed value: the smallest N (or D) whose fitted
loss is L at the sweep's budget (or size), ``X = (A / (L - E))^(1/α)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from overparam.analysis.scaling.base import percentile_ci
from overparam.analysis.scaling.chinchilla import ChinchillaFitter, allocation_for_loss, optimal_allocation
from overparam.analysis.scaling.points import prepare_points
from overparam.errors import OverparamError


def _for_compute(p: dict[str, float], flops: float) -> dict[str, float]:
    n, d = optimal_allocation(p, flops)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # a degenerate resample: inf/nan
        loss = p["E"] + p["A"] * n ** -p["alpha"] + p["B"] * d ** -p["beta"]
    return {"params": float(n), "tokens": float(d), "tokens_per_param": float(d / n), "loss": float(loss)}


def _for_loss(p: dict[str, float], loss: float) -> dict[str, float]:
    n, d = allocation_for_loss(p, loss)
    gap = loss - p["E"]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        min_n = (p["A"] / gap) ** (1.0 / p["alpha"]) if gap > 0 else float("nan")
    return {"params": float(n), "tokens": float(d), "flops": float(6 * n * d),
            "tokens_per_param": float(d / n), "min_params": float(min_n)}


def advise(points: pd.DataFrame, *, compute: float | None = None, target_loss: float | None = None,
           bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Compute-optimal allocation for ``compute`` FLOPs, or for reaching ``target_loss``."""
    if (compute is None) == (target_loss is None):
        raise OverparamError("give exactly one of compute or target_loss")
    value = compute if compute is not None else target_loss
    if not (np.isfinite(value) and value > 0):
        name = "compute" if compute is not None else "target loss"
        raise OverparamError(f"{name} must be > 0, got {value}")
    from overparam.analysis.scaling import axes

    data = prepare_points(points)
    one_axis = axes.missing(data, ("params", "tokens"))
    if one_axis is not None:
        if compute is not None:
            raise OverparamError(f"advise --compute splits a compute budget between model size N and tokens D, "
                                 f"which needs both to have varied, but {one_axis}; vary the data (e.g. "
                                 f"train.steps) too, or ask --target-loss L for the smallest model at this budget")
        return _one_axis_target(data, float(target_loss), bootstrap, seed)
    fitter = ChinchillaFitter(bootstrap=bootstrap, seed=seed).fit(data)
    p = fitter.params_
    samples = getattr(fitter, "bootstrap_params_", [])
    doc: dict[str, Any] = {"law": "chinchilla"}
    if compute is not None:
        doc |= {"compute": float(compute), **_for_compute(p, compute),
                "extrapolation_factor": float(compute / data["flops"].max())}
        per_sample = [_for_compute(q, compute) for q in samples]
    else:
        if target_loss <= p["E"]:
            raise OverparamError(f"target loss {target_loss:g} is at or below the fitted irreducible loss "
                                 f"E = {p['E']:.4g}: no model reaches it")
        doc |= {"target_loss": float(target_loss), **_for_loss(p, target_loss)}
        per_sample = [_for_loss(q, target_loss) for q in samples if target_loss > q["E"]]
        doc["extrapolation_factor"] = float(doc["flops"] / data["flops"].max())
        if samples:
            doc["reachable_fraction"] = len(per_sample) / len(samples)
    doc["ci"] = percentile_ci(per_sample) if per_sample else {}
    doc["fit"] = {"params": p, "ci": getattr(fitter, "ci_", {}), "n_points": fitter.n_points_,
                  "bootstrap": int(bootstrap)}
    return doc


def _one_axis_target(data: pd.DataFrame, target: float, bootstrap: int, seed: int) -> dict[str, Any]:
    """``target_loss`` from the power law in the one axis that varied, at the other's fixed value."""
    from overparam.analysis.scaling import axes
    from overparam.analysis.scaling.api import fit_scaling_law

    fit = fit_scaling_law(data, "auto", bootstrap=bootstrap, seed=seed, backtest=False)
    x = fit.extras["x"]
    other = "tokens" if x == "params" else "params"
    fixed = axes.budgets(data[other])[-1]
    p = fit.params

    def needed(q: dict[str, float]) -> float:
        gap = target - q["E"]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return float((q["A"] / gap) ** (1.0 / q["alpha"])) if gap > 0 else float("nan")

    if target <= p["E"]:
        raise OverparamError(f"target loss {target:g} is at or below the fitted floor E = {p['E']:.4g} of "
                             f"L({'N' if x == 'params' else 'D'}) at {fixed:.3g} {other}: no "
                             f"{'model size' if x == 'params' else 'token budget'} reaches it there")
    value = needed(p)
    n, d = (value, fixed) if x == "params" else (fixed, value)
    doc: dict[str, Any] = {"law": "power", "x": x, "target_loss": target, "params": n, "tokens": d,
                           "flops": 6 * n * d, "tokens_per_param": d / n,
                           "extrapolation_factor": float(6 * n * d / data["flops"].max()),
                           "fixed": {other: fixed}, "note": fit.extras.get("note")}
    if x == "params":
        doc["min_params"] = n
    samples = getattr(fit.fitter, "bootstrap_params_", [])
    reached = [v for v in (needed(q) for q in samples) if np.isfinite(v)]
    doc["ci"] = {x: [float(v) for v in np.percentile(reached, [2.5, 97.5])]} if reached else {}
    if samples:
        doc["reachable_fraction"] = len(reached) / len(samples)
    doc["fit"] = {"params": p, "ci": fit.ci, "n_points": fit.n_points, "bootstrap": int(bootstrap),
                  "warnings": fit.extras.get("warnings", [])}
    return doc
