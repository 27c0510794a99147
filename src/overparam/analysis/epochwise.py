"""Epoch-wise double descent, read off the stored test curves of each run.

Nakkiran et al. 2019 ("Deep double descent", §6, Fig. 2) find that, at a fixed model size near
the interpolation threshold, test error over training time falls, rises, and falls again.
Each stored curve (``train.eval_every`` / ``train.eval_log_points``) is a sequence of test
values vᵢ at steps sᵢ. Its *epoch-wise peak* is the point with the largest prominence

    prom(i) = min(vᵢ − min_{j<i} vⱼ,  vᵢ − min_{j>i} vⱼ)

(the height of the bump above the lower of the two sides, the topographer's prominence); the
curve shows a second descent over time when prom(i) ≥ ``rise`` · vᵢ, i.e. the test metric first
went down, climbed by a relative ``rise``, and came back down by at least as much. A monotone
curve, or one that only rises at the end (classical overfitting, no second descent), has no
such point: its peak fields are None.

For each run this reports the peak step and value, the best value before it (the first
descent's minimum) and after it (the second descent's), and the early-stopped (minimum) value.
The same reading is applied per size to the seed-mean curve, and there the bump is weighed against
the noise exactly as the model-wise reading weighs its peak (``overparam.analysis.noise``):

- **bump** = v(peak) − v(min before) and **descent** = v(peak) − v(min after), each ``compare``d with
  the per-run values at those two steps: with ≥ 2 seeds a bootstrap over seeds (paired: the same runs
  at two steps are resampled together) plus the test set's binomial noise for an error rate; with one
  seed the binomial standard error √(p(1−p)/n_test) alone (n_test: the runs' stored ``n_test``).
- **shape**: ``epoch-wise double descent`` when both exceed the noise (clear or weak evidence;
  ``evidence`` the weaker of the two), ``within noise`` when either does not, ``noise unknown`` with
  one seed and a loss (or no test-set size), ``no peak`` when no point meets the prominence rule.
  ``peak_found`` is the prominence rule alone; ``second_descent`` is true for the first shape only.

Per-run rows carry the prominence reading alone (one run has no spread over seeds to weigh it by).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from overparam.errors import OverparamError

RISE = 0.05  # a bump must rise, and fall again, by 5 % of its height to count (seed noise is smaller)


def curve_metric(curves: pd.DataFrame) -> str:
    """test_error for classification curves, test_loss otherwise."""
    named = curves.loc[curves["name"] == "test_error", "value"]
    return "test_error" if named.notna().any() else "test_loss"


def curve_peak(steps: np.ndarray, values: np.ndarray, rise: float = RISE) -> dict[str, Any]:
    """The epoch-wise reading of one curve (``steps`` increasing); see the module docstring."""
    ok = np.isfinite(values)
    steps, values = np.asarray(steps)[ok], np.asarray(values, dtype=float)[ok]
    out: dict[str, Any] = {"peak_step": None, "peak_value": None, "min_before_step": None, "min_before": None,
                           "min_after_step": None, "min_after": None, "prominence": None,
                           "second_descent": False, "best_step": None, "best_value": None,
                           "final_value": None, "n_points": int(len(values))}
    if len(values) == 0:
        return out
    b = int(np.argmin(values))
    out.update({"best_step": int(steps[b]), "best_value": float(values[b]), "final_value": float(values[-1])})
    if len(values) < 3:
        return out
    before = np.minimum.accumulate(values)  # before[i] = min over j <= i
    after = np.minimum.accumulate(values[::-1])[::-1]
    prom = np.full(len(values), -np.inf)
    prom[1:-1] = np.minimum(values[1:-1] - before[:-2], values[1:-1] - after[2:])
    p = int(np.argmax(prom))
    if not (prom[p] > 0 and prom[p] >= rise * abs(values[p])):
        return out
    i_before = int(np.argmin(values[:p]))
    i_after = p + 1 + int(np.argmin(values[p + 1:]))
    out.update({"peak_step": int(steps[p]), "peak_value": float(values[p]),
                "min_before_step": int(steps[i_before]), "min_before": float(values[i_before]),
                "min_after_step": int(steps[i_after]), "min_after": float(values[i_after]),
                "prominence": float(prom[p]), "second_descent": True})
    return out


def size_axis(runs: pd.DataFrame) -> str:
    from overparam.analysis.double_descent import SIZE_COLUMNS

    for col in SIZE_COLUMNS:
        if col in runs and runs[col].astype(str).nunique() > 1:
            return col
    return "params"


def other_settings(runs: pd.DataFrame, axis: str) -> list[str]:
    """Settings that split curves besides size and replicate seeds (as in the double-descent analysis)."""
    from overparam.analysis.double_descent import IGNORED, SIZE_COLUMNS

    skip = IGNORED | set(SIZE_COLUMNS) | {"task.seed", "task.noise_seed", axis}
    return [c for c in runs.columns if ("." in c) and c not in skip and runs[c].astype(str).nunique() > 1]


def epochwise_peaks(source: str | Path | tuple[pd.DataFrame, pd.DataFrame], metric: str | None = None,
                    rise: float = RISE) -> dict[str, Any]:
    """Epoch-wise peaks of a sweep: per run and per (setting, size) on the seed-mean curve.

    ``source``: a sweep directory or (runs, curves) DataFrames. ``metric``: a curve name
    (default test_error, or test_loss for regression). Returns a JSON-ready document
    ``{"metric", "rise", "axis", "runs": [...], "sizes": [...], "n_with_second_descent"}``;
    each size row carries ``fixed`` (the other varying settings) and the fields of ``curve_peak``.
    """
    if not (isinstance(rise, (int, float)) and rise >= 0):
        raise OverparamError(f"rise: expected a number >= 0, got {rise!r}")
    from overparam.store import runs_and_curves

    runs, curves = runs_and_curves(source)
    if runs.empty:
        raise OverparamError("no runs to analyze")
    metric = metric or curve_metric(curves)
    runs = runs[runs["status"] == "done"]
    axis = size_axis(runs)
    others = other_settings(runs, axis)
    data = curves[(curves["name"] == metric) & curves["run_id"].isin(set(runs["id"]))]
    data = data.dropna(subset=["value"]).sort_values(["run_id", "step"])
    info = runs.set_index("id")
    per_run = []
    for run_id, frame in data.groupby("run_id", sort=False):
        row = {"run_id": run_id, "size": _plain(info.at[run_id, axis]) if axis in info else None,
               "params": int(info.at[run_id, "params"])}
        row.update(curve_peak(frame["step"].to_numpy(), frame["value"].to_numpy(), rise))
        per_run.append(row)
    sizes = []
    merged = data.merge(runs[["id", axis, *(c for c in ["params", *others] if c != axis)]],
                        left_on="run_id", right_on="id")
    keys = [*others, axis]
    if not merged.empty:
        for key, frame in merged.groupby(keys, sort=True):
            key = key if isinstance(key, tuple) else (key,)
            mean = frame.groupby("step")["value"].mean()
            row = {"fixed": {c: _plain(v) for c, v in zip(others, key[:-1])}, "size": _plain(key[-1]),
                   "params": int(frame["params"].median()), "n_runs": int(frame["run_id"].nunique())}
            row.update(curve_peak(mean.index.to_numpy(), mean.to_numpy(), rise))
            own = runs[runs["id"].isin(set(frame["run_id"]))]
            row.update(_verdict(row, frame, metric, own))
            row["late"] = _late(row, frame, metric, own)
            sizes.append(row)
    sizes.sort(key=lambda r: (str(r["fixed"]), r["params"]))
    return {"metric": metric, "rise": float(rise), "axis": axis, "statistic": "mean over seeds", "runs": per_run,
            "sizes": sizes, "n_sizes": len(sizes), "n_with_peak": int(sum(r["peak_found"] for r in sizes)),
            "n_end_above_best": int(sum(ends_above_best(r, rise) for r in sizes)),
            "n_end_above_best_within_noise": int(sum(ends_above_best({k: v for k, v in r.items() if k != "late"}, rise)
                                                     and not ends_above_best(r, rise) for r in sizes)),
            "n_with_second_descent": int(sum(r["second_descent"] for r in sizes))}


def ends_above_best(row: dict[str, Any], rise: float) -> bool:
    """Whether a curve ends more than ``rise`` (relative) above its best value, and (where the document
    weighed it, ``row["late"]``) by more than the noise: early stopping would help."""
    from overparam.analysis.noise import beyond_noise

    above = (row["best_value"] is not None and row["final_value"] is not None
             and row["final_value"] > row["best_value"] * (1 + rise))
    return above and ("late" not in row or beyond_noise(row["late"]))


def _late(row: dict[str, Any], frame: pd.DataFrame, metric: str, runs: pd.DataFrame) -> dict[str, Any] | None:
    """The final value against the best one over training (same runs at two steps: paired), against the
    noise as the bump is. The best step is picked on this very curve, so the difference is an upper bound
    on what early stopping on held-out data would gain."""
    from overparam.analysis.double_descent import _count
    from overparam.analysis.noise import compare

    if row["best_value"] is None or row["final_value"] is None or row["final_value"] <= row["best_value"]:
        return None
    final_step = int(frame["step"].max())
    if final_step == row["best_step"]:
        return None
    by_step = frame.pivot_table(index="run_id", columns="step", values="value", aggfunc="mean")
    both = by_step[[final_step, row["best_step"]]].dropna()
    out = compare(row["final_value"], row["best_value"], both.iloc[:, 0].tolist(), both.iloc[:, 1].tolist(),
                  n_test=_count(runs, "n_test", "task.test_size"), rate=metric == "test_error", paired=True)
    return {**out, "final_step": final_step}


def _verdict(row: dict[str, Any], frame: pd.DataFrame, metric: str, runs: pd.DataFrame) -> dict[str, Any]:
    """The bump and the descent of a (setting, size) curve against the noise (see the module docstring)."""
    from overparam.analysis.double_descent import _count
    from overparam.analysis.noise import beyond_noise, compare

    n_test = _count(runs, "n_test", "task.test_size")
    out: dict[str, Any] = {"peak_found": row["second_descent"], "n_test": n_test, "bump": None, "descent": None,
                           "shape": "no peak", "evidence": None, "second_descent": False}
    if not row["second_descent"]:
        return out
    by_step = frame.pivot_table(index="run_id", columns="step", values="value", aggfunc="mean")

    def cmp(a: str, b: str) -> dict[str, Any]:
        both = by_step[[row[f"{a}_step"], row[f"{b}_step"]]].dropna()  # runs evaluated at both steps: paired
        return compare(row[f"{a}_value" if a == "peak" else a], row[b], both.iloc[:, 0].tolist(),
                       both.iloc[:, 1].tolist(), n_test=n_test, rate=metric == "test_error", paired=True)

    out["bump"], out["descent"] = cmp("peak", "min_before"), cmp("peak", "min_after")
    if out["bump"]["evidence"] == "unknown":
        out["shape"] = "noise unknown"
    elif beyond_noise(out["bump"]) and beyond_noise(out["descent"]):
        out["shape"], out["second_descent"] = "epoch-wise double descent", True
        out["evidence"] = "weak" if "weak" in (out["bump"]["evidence"], out["descent"]["evidence"]) else "clear"
    else:
        out["shape"] = "within noise"
    return out


def _plain(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    return v.item() if hasattr(v, "item") else v


def heatmap_table(runs: pd.DataFrame, curves: pd.DataFrame, metric: str, axis: str) -> pd.DataFrame:
    """Seed-mean ``metric`` as a (size × step) table: rows sorted by size, columns by step; a step
    some runs did not evaluate is NaN (sweeps mixing ``train.steps`` give a ragged grid)."""
    data = curves[curves["name"] == metric].merge(runs[["id", axis]], left_on="run_id", right_on="id")
    if data.empty:
        return pd.DataFrame()
    return data.pivot_table(index=axis, columns="step", values="value", aggfunc="mean").sort_index()
