"""Model-wise double descent, read off stored runs: threshold, peak, and the two minima.

For each curve (one per combination of the settings that vary besides size and seed), sizes
are sorted by parameter count and the test metric is aggregated over seeds. Then:

- **interpolation threshold**: the smallest size whose mean train error is ≤ ``eps``
  (Belkin et al. 2019 call it the interpolation threshold; Nakkiran et al. 2019's "effective
  model complexity" reaches n there). For regression tasks, and for least-squares fits solved
  in closed form (whose zero-one train error reaches 0 well before the fit is exact), it is
  train *loss* ≤ ``eps_loss``: the size where the model interpolates its targets exactly.
- **best under / best over**: the lowest test metric strictly below / at-or-above the threshold;
- **peak**: the highest test metric between those two minima;
- **sample-wise** sweeps (``task.train_size`` varies, size fixed) are read with n decreasing, so
  "over-parameterized" means fewer samples than the threshold n (Nakkiran et al. 2019, §5);
- **second descent**: the peak is a real bump (higher than a smaller size's value) and the
  best over-parameterized model beats it.

Unstable runs (see ``overparam.train.health``) are left out of the aggregates by default and
listed, so a broken point is never read as the peak.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from overparam.errors import OverparamError

SIZE_COLUMNS = ("model.width", "model.depth", "model.n_layer", "model.d_model", "model.n_head")
# Replicates, not settings: runs differing only here are averaged over, never split into curves.
IGNORED = {"id", "status", "params", "flops", "seconds", "error", "seed", "task.seed", "task.noise_seed"}
SAMPLE_AXIS = "task.train_size"


class DoubleDescentAnalyzer:
    """scikit-learn-style: ``DoubleDescentAnalyzer(eps=0.0).fit(runs).curves_``.

    ``eps``: train-error tolerance of the threshold (0: every training label fitted).
    ``eps_loss``: the same for regression tasks, on train MSE. ``stat``: "mean" or "median"
    over seeds for the test metric. ``include_unstable``: keep runs flagged unstable.
    """

    def __init__(self, eps: float = 0.0, eps_loss: float = 1e-6, stat: str = "mean",
                 include_unstable: bool = False, threshold_on: str = "auto"):
        self.threshold_on = threshold_on
        self.eps = eps
        self.eps_loss = eps_loss
        self.stat = stat
        self.include_unstable = include_unstable

    def fit(self, runs: pd.DataFrame | str | Path, size_axes: list[str] | None = None) -> DoubleDescentAnalyzer:
        if self.threshold_on not in ("auto", "error", "loss"):
            raise OverparamError(f"threshold_on: expected auto, error or loss, got {self.threshold_on!r}")
        if self.stat not in ("mean", "median"):
            raise OverparamError(f"stat: expected mean or median, got {self.stat!r}")
        if not (isinstance(self.eps, (int, float)) and self.eps >= 0):
            raise OverparamError(f"eps: expected a number >= 0, got {self.eps!r}")
        if not isinstance(runs, pd.DataFrame):
            from overparam.store import load_runs

            runs = load_runs(runs)
        self.curves_ = [self._curve(axis, fixed, frame) for axis, fixed, frame in split_curves(runs, size_axes)]
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "curves_"):
            raise OverparamError("DoubleDescentAnalyzer: call fit(runs) first")

    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {"curves": self.curves_}

    def _curve(self, axis: str, fixed: dict[str, Any], frame: pd.DataFrame) -> dict[str, Any]:
        diverged = frame.loc[frame["status"] == "diverged", "id"].tolist()
        done = frame[frame["status"] == "done"]
        unstable_mask = done.get("unstable", pd.Series(False, index=done.index)).fillna(False).astype(bool)
        unstable = done.loc[unstable_mask, "id"].tolist()
        if not self.include_unstable:
            done = done[~unstable_mask]
        classification = "test_error" in done and done["test_error"].notna().any()
        metric = "error" if classification else "loss"
        closed_form = "train.optimizer" in done and done["train.optimizer"].isin(["min_norm", "ridge"]).all()
        on = self.threshold_on if self.threshold_on != "auto" else (
            "loss" if (closed_form or not classification) else "error")
        points = aggregate(done, axis, self.stat)
        if axis == SAMPLE_AXIS:
            # sample-wise: fewer samples = more parameters per sample, so walk n from large to small
            points.sort(key=lambda p: -float(p["size"]))
        out: dict[str, Any] = {"axis": axis, "fixed": fixed, "metric": f"test_{metric}", "stat": self.stat,
                               "threshold_on": f"train_{on}", "eps": self.eps if on == "error" else self.eps_loss,
                               "n_runs": int(len(frame)), "n_sizes": len(points), "points": points,
                               "unstable_runs": unstable, "diverged_runs": diverged}
        out.update(locate(points, metric, out["eps"], on))
        return out


def split_curves(runs: pd.DataFrame, size_axes: list[str] | None = None):
    """Yield (axis, fixed settings, runs) per curve: one per combination of non-size settings."""
    if runs.empty:
        raise OverparamError("no runs to analyze")
    config_cols = [c for c in runs.columns if "." in c or c == "seed"]
    varying = [c for c in config_cols if c not in IGNORED and runs[c].astype(str).nunique() > 1]
    sizes = [c for c in (size_axes or SIZE_COLUMNS) if c in varying]
    if sizes:
        axis = sizes[0]
        others = [c for c in varying if c != axis and c not in sizes[1:]]
    elif varying:
        axis, others = varying[0], varying[1:]
    else:
        axis, others = "params", []
    if not others:
        yield axis, {}, runs
        return
    keyed = runs.assign(_key=runs[others].astype(str).agg("|".join, axis=1))
    for _, frame in keyed.groupby("_key", sort=False):
        fixed = {c: _plain(frame[c].iloc[0]) for c in others}
        yield axis, fixed, frame.drop(columns="_key")


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def aggregate(done: pd.DataFrame, axis: str, stat: str) -> list[dict[str, Any]]:
    """One point per size: params, seeds, and mean/median/std/min/max of each metric."""
    if done.empty:
        return []
    key = axis if axis in done else "params"
    points = []
    for size, frame in done.groupby(key, sort=True):
        point: dict[str, Any] = {"size": _plain(size), "params": int(frame["params"].median()),
                                 "n": int(len(frame))}
        for name in ("train_error", "test_error", "train_loss", "test_loss"):
            if name in frame and frame[name].notna().any():
                vals = frame[name].dropna().astype(float).to_numpy()
                point[name] = float(np.median(vals) if stat == "median" else vals.mean())
                point[f"{name}_mean"] = float(vals.mean())
                point[f"{name}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
                point[f"{name}_min"], point[f"{name}_max"] = float(vals.min()), float(vals.max())
            else:
                point[name] = None
        points.append(point)
    points.sort(key=lambda p: (p["params"], float(p["size"]) if isinstance(p["size"], (int, float)) else 0))
    return points


def locate(points: list[dict[str, Any]], metric: str, eps: float, threshold_on: str | None = None) -> dict[str, Any]:
    """Threshold (on train ``threshold_on``), peak and both minima of test ``metric`` (points sorted by params)."""
    threshold_on = threshold_on or metric
    empty = {f"{w}_{k}": None for w in ("threshold", "peak", "best_under", "best_over")
             for k in ("params", "size")}
    empty.update({"peak_test_error": None, "peak_test_loss": None, "best_under_test_error": None,
                  "best_under_test_loss": None, "best_over_test_error": None, "best_over_test_loss": None,
                  "second_descent": False, "peak_over_best_over": None, "peak_over_best_under": None})
    if not points:
        return empty
    test = np.array([_num(p.get(f"test_{metric}")) for p in points])
    train = np.array([_num(p.get(f"train_{threshold_on}_mean", p.get(f"train_{threshold_on}"))) for p in points])
    out = dict(empty)
    below = np.flatnonzero(train <= eps)
    t = int(below[0]) if len(below) else None

    def mark(prefix: str, i: int | None) -> None:
        if i is None:
            return
        out[f"{prefix}_params"], out[f"{prefix}_size"] = points[i]["params"], points[i]["size"]
        if prefix != "threshold":
            out[f"{prefix}_test_error"] = points[i].get("test_error")
            out[f"{prefix}_test_loss"] = points[i].get("test_loss")

    mark("threshold", t)
    under = range(0, t if t is not None else len(points))
    u = _argbest(test, under, np.nanargmin)
    mark("best_under", u)
    if t is None:
        return out
    o = _argbest(test, range(t, len(points)), np.nanargmin)
    mark("best_over", o)
    p = _argbest(test, range(u if u is not None else 0, o + 1), np.nanargmax)
    mark("peak", p)
    if p is not None and o is not None:
        bump = any(test[i] < test[p] for i in range(p))
        out["second_descent"] = bool(bump and p < o and test[o] < test[p])
        out["peak_over_best_over"] = _ratio(test[p], test[o])
        if u is not None:
            out["peak_over_best_under"] = _ratio(test[p], test[u])
    return out


def _num(v: Any) -> float:
    return float(v) if v is not None and not (isinstance(v, float) and math.isnan(v)) else math.nan


def _argbest(values: np.ndarray, indices: range, pick) -> int | None:
    idx = [i for i in indices if not math.isnan(values[i])]
    if not idx:
        return None
    return idx[int(pick(values[idx]))]


def _ratio(a: float, b: float) -> float | None:
    return float(a / b) if b > 0 else None


def analyze_double_descent(runs: pd.DataFrame | str | Path, eps: float = 0.0, stat: str = "mean",
                           include_unstable: bool = False, threshold_on: str = "auto") -> dict[str, Any]:
    """``{"curves": [...]}`` for a sweep directory or a runs DataFrame (see the module docstring)."""
    size_axes = None
    if not isinstance(runs, pd.DataFrame):
        from overparam.store import open_store

        with open_store(runs) as store:
            size_axes = store.meta("size_axes")
    analyzer = DoubleDescentAnalyzer(eps=eps, stat=stat, include_unstable=include_unstable,
                                     threshold_on=threshold_on)
    return analyzer.fit(runs, size_axes=size_axes).to_dict()
