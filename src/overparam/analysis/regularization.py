"""Explicit regularization against double descent: per-λ curves and the optimally tuned envelope.

Nakkiran, Venkat, Kakade & Ma 2020 ("Optimal regularization can mitigate double descent")
prove that for isotropic linear regression the test risk of ridge at its best λ is monotone in
both sample size and model size, and show the same empirically for networks with tuned weight
decay. Here that is measured: for a sweep that varies a regularization strength (ridge λ,
weight decay, dropout) together with a size axis,

- each λ gives one curve of the seed-mean test metric against size;
- the **envelope** is, at each size, the minimum over λ (the oracle-tuned model);
- **early stopping** is the best point of each run's stored test curve, min_t test(t): an
  oracle, since it selects on the test metric (an optimistic estimate, the way Nakkiran et al.
  2020 and Heckel & Yilmaz 2021 treat optimal early stopping).

A curve's bump is summarised by its **peak ratio**

    peak ratio = max_i  vᵢ / max(min_{j<i} vⱼ, min_{j>i} vⱼ)

over interior sizes: the height of the highest bump over the higher of the two minima on its
sides (1 for a monotone or U-shaped curve: no double-descent peak). Tuning "removed the peak"
when the unregularized curve's ratio is ≥ 1 + ``tol`` and the envelope's is < 1 + ``tol``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from overparam.errors import OverparamError

REG_AXES = ("train.ridge", "train.weight_decay", "train.dropout")
PEAK_TOL = 0.05  # a bump under 5 % is within seed noise on the sweeps we run


def peak_ratio(values: list[float] | np.ndarray) -> tuple[float, int | None]:
    """(ratio, index of the bump) as defined in the module docstring; (1.0, None) without a bump."""
    v = np.asarray(values, dtype=float)
    best, where = 1.0, None
    for i in range(1, len(v) - 1):
        left, right = np.nanmin(v[:i]), np.nanmin(v[i + 1:])
        side = max(left, right)
        if math.isfinite(v[i]) and side > 0 and v[i] / side > best:
            best, where = float(v[i] / side), i
    return best, where


def early_stopped(runs: pd.DataFrame, curves: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per run: the best stored ``metric`` (``early_value``) and its step, and the final value.

    Runs with a single stored point (closed form, or no ``eval_every``) get their final value."""
    data = curves[(curves["name"] == metric) & curves["run_id"].isin(set(runs["id"]))].dropna(subset=["value"])
    if data.empty:
        return pd.DataFrame(columns=["id", "early_step", "early_value", "n_points"])
    data = data.sort_values(["run_id", "step"])
    best = data.loc[data.groupby("run_id", sort=False)["value"].idxmin()]
    counts = data.groupby("run_id")["step"].count()
    return pd.DataFrame({"id": best["run_id"].to_numpy(), "early_step": best["step"].astype(int).to_numpy(),
                         "early_value": best["value"].astype(float).to_numpy(),
                         "n_points": counts.reindex(best["run_id"]).astype(int).to_numpy()})


def _axes(runs: pd.DataFrame, reg_axis: str | None, size_axis: str | None) -> tuple[str, str, list[str]]:
    from overparam.analysis.double_descent import IGNORED, SIZE_COLUMNS

    varying = [c for c in runs.columns if "." in c and runs[c].astype(str).nunique() > 1]
    if reg_axis is None:
        found = [a for a in REG_AXES if a in varying]
        if not found:
            raise OverparamError(f"no regularization axis varies (one of {', '.join(REG_AXES)})")
        reg_axis = found[0]
    elif reg_axis not in varying:
        raise OverparamError(f"{reg_axis} does not vary in this sweep")
    if size_axis is None:
        sizes = [c for c in (*SIZE_COLUMNS, "task.train_size") if c in varying]
        if not sizes:
            raise OverparamError("no size axis varies (model.width, ..., or task.train_size)")
        size_axis = sizes[0]
    skip = IGNORED | {"task.seed", "task.noise_seed", reg_axis, size_axis}
    others = [c for c in varying if c not in skip]  # another varying regularizer splits the curves
    return reg_axis, size_axis, others


def regularization_curves(source: str | Path | tuple[pd.DataFrame, pd.DataFrame], reg_axis: str | None = None,
                          size_axis: str | None = None, metric: str | None = None,
                          tol: float = PEAK_TOL) -> dict[str, Any]:
    """Per-λ curves, the λ-envelope, early stopping and peak ratios, per combination of other settings.

    ``source``: a sweep directory or (runs, curves) DataFrames. ``reg_axis``: default the first
    varying of train.ridge, train.weight_decay, train.dropout; ``size_axis``: default the model
    size key that varies, else task.train_size (sample-wise). ``metric``: test_error if stored,
    else test_loss. Returns a JSON-ready ``{"reg_axis", "size_axis", "metric", "groups": [...]}``;
    each group has ``fixed``, ``sizes``, ``curves`` ({λ: [mean per size]}), ``envelope``,
    ``envelope_lambda``, ``early`` and ``early_envelope`` (early-stopped means, when curves have
    more than one point), and the peak ratios ``ratio_unregularized``, ``ratio_envelope``,
    ``ratio_early``, ``ratio_early_envelope`` with ``removed`` (see the module docstring).
    """
    from overparam.store import runs_and_curves

    runs, curves = runs_and_curves(source)
    if runs.empty:
        raise OverparamError("no runs to analyze")
    done = runs[runs["status"] == "done"].copy()
    if "unstable" in done:
        done = done[~done["unstable"].fillna(False).astype(bool)]
    reg_axis, size_axis, others = _axes(done, reg_axis, size_axis)
    if metric is None:
        metric = "test_error" if ("test_error" in done and done["test_error"].notna().any()) else "test_loss"
    early = early_stopped(done, curves, metric)
    done = done.merge(early, on="id", how="left")
    has_early = bool(len(early)) and int(early["n_points"].max()) > 1
    groups = []
    keyed = done.assign(_key=done[others].astype(str).agg("|".join, axis=1) if others else "")
    for _, frame in keyed.groupby("_key", sort=False):
        groups.append(_group(frame, reg_axis, size_axis, others, metric, has_early, tol))
    return {"reg_axis": reg_axis, "size_axis": size_axis, "metric": metric, "tol": tol, "groups": groups}


def _group(frame: pd.DataFrame, reg_axis: str, size_axis: str, others: list[str], metric: str,
           has_early: bool, tol: float) -> dict[str, Any]:
    order = frame.groupby(size_axis)["params"].median().reset_index()
    sort_key = "params" if order["params"].nunique() > 1 else size_axis
    sizes = order.sort_values([sort_key, size_axis])[size_axis].tolist()
    params = [int(order.set_index(size_axis).at[s, "params"]) for s in sizes]
    lams = sorted(frame[reg_axis].unique())
    def table(values: str, how: str) -> pd.DataFrame:  # sizes × λ; a cell with no value is NaN, never dropped
        return frame.pivot_table(index=size_axis, columns=reg_axis, values=values, aggfunc=how,
                                 dropna=False).reindex(index=sizes, columns=lams)

    mean, std, counts = table(metric, "mean"), table(metric, "std"), table(metric, "count")
    curves = {_key(lam): _list(mean[lam]) for lam in lams}
    env_vals = mean.min(axis=1, skipna=True)
    env_lam = mean.idxmin(axis=1, skipna=True)
    out: dict[str, Any] = {
        "fixed": {c: _plain(frame[c].iloc[0]) for c in others}, "lambdas": [_plain(x) for x in lams],
        "sizes": [_plain(s) for s in sizes], "params": params, "curves": curves,
        "std": {_key(lam): _list(std[lam]) for lam in lams},
        "n": {_key(lam): [int(x) if not math.isnan(x) else 0 for x in counts[lam]] for lam in lams},
        "envelope": _list(env_vals), "envelope_lambda": [_plain(x) for x in env_lam],
    }
    base = lams[0]
    out["unregularized_lambda"] = _plain(base)
    out["ratio_unregularized"], pu = peak_ratio(mean[base].to_numpy())
    out["ratio_envelope"], pe = peak_ratio(env_vals.to_numpy())
    out["peak_size_unregularized"] = _plain(sizes[pu]) if pu is not None else None
    out["peak_size_envelope"] = _plain(sizes[pe]) if pe is not None else None
    out["early"] = out["early_envelope"] = None
    out["ratio_early"] = out["ratio_early_envelope"] = None
    if has_early:
        emean = table("early_value", "mean")
        out["early"] = _list(emean[base])
        out["early_envelope"] = _list(emean.min(axis=1, skipna=True))
        out["ratio_early"], _ = peak_ratio(emean[base].to_numpy())
        out["ratio_early_envelope"], _ = peak_ratio(emean.min(axis=1, skipna=True).to_numpy())
    out["had_peak"] = bool(out["ratio_unregularized"] >= 1 + tol)
    out["removed"] = bool(out["had_peak"] and out["ratio_envelope"] < 1 + tol)
    return out


def _key(lam: Any) -> str:
    return f"{float(lam):g}" if isinstance(lam, (int, float, np.number)) else str(lam)


def _list(series: pd.Series) -> list[float | None]:
    return [None if (x is None or (isinstance(x, float) and math.isnan(x))) else float(x) for x in series]


def _plain(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    return v.item() if hasattr(v, "item") else v
