"""The size advisor: compute-optimal params and tokens for a budget, or for a target loss.

Both answers come from an Approach 3 fit (``chinchilla.py``); intervals are the 2.5/97.5 percentiles of
the same quantity computed from every bootstrap fit.

- ``compute=C``: N_opt = G (C/6)^a, D_opt = (C/6)^b / G (Hoffmann et al. 2022, Appendix D.2).
- ``target_loss=L``: the compute-optimal (N, D) whose loss is L, i.e. the model that reaches L with
  the least compute, and ``min_params`` = (A / (L - E))^(1/α), the smallest model that reaches L at all
  (with unlimited tokens). L <= E is unreachable.
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
    loss = p["E"] + p["A"] * n ** -p["alpha"] + p["B"] * d ** -p["beta"]
    return {"params": float(n), "tokens": float(d), "tokens_per_param": float(d / n), "loss": float(loss)}


def _for_loss(p: dict[str, float], loss: float) -> dict[str, float]:
    n, d = allocation_for_loss(p, loss)
    gap = loss - p["E"]
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
    data = prepare_points(points)
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
