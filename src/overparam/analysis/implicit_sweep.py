"""The sweep-wide reading of recorded implicit-regularization diagnostics (``train.diagnostics``).

Each run stored its own numbers (``overparam.train.diagnostics``); this only arranges them:

- **against size**: median over replicate seeds (``seed``, ``task.seed``, ``task.noise_seed``) and
  the range, of ‖θ‖, ‖θ − θ₀‖, the distance to the min-norm solution, the final sharpness λ_max,
  2/lr and the Hessian trace, one series per setting of the other varying keys; and of two ratios
  taken per run, ‖θ − θ₀‖ / ‖θ₀‖ (how far training moved relative to where it started: small in the
  lazy, linearized regime; Chizat et al. 2019) and ‖w − w*‖ / ‖w*‖;
- **over training**: per run with a ``sharpness`` curve, its *late* sharpness, the median over
  the evaluations in the second half of training (step ≥ half the last step), against the run's
  2/lr; the ratio late / (2/lr) is ≈ 1 at the edge of stability (Cohen et al. 2021: full-batch
  GD sharpens progressively until λ_max reaches 2/η, then hovers there), well below 1 before it;
- **across learning rate and batch size** (when the sweep varies ``train.lr`` or, for minibatch
  optimizers, ``train.batch_size``): the final sharpness per value at fixed other settings. Larger
  steps and smaller batches typically end in flatter regions (Keskar et al. 2017; Jastrzębski et
  al. 2018; Cohen et al. 2021, where λ_max ≈ 2/η makes the dependence on η explicit).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from overparam.errors import OverparamError

METRICS = ("param_norm", "init_norm", "distance_from_init", "distance_to_min_norm", "min_norm_norm",
           "sharpness", "stability_threshold", "hessian_trace", "hessian_trace_se")
RATIOS = {"relative_distance": ("distance_from_init", "init_norm"),  # per run: numerator / denominator
          "relative_distance_to_min_norm": ("distance_to_min_norm", "min_norm_norm")}
RECORDED = ("distance_from_init", "sharpness", "hessian_trace")  # only written when train.diagnostics asks
REPLICATES = ("seed", "task.seed", "task.noise_seed")
EDGE = 0.1  # |late / (2/lr) − 1| ≤ EDGE: at the edge of stability
MAX_SHOWN = 6  # sharpness-over-training runs shown (one per learning rate / batch size, or sizes spread)


def has_diagnostics(runs: pd.DataFrame) -> bool:
    done = runs[runs["status"] == "done"] if "status" in runs else runs
    return any(c in done and done[c].notna().any() for c in RECORDED)


def implicit_summary(source: str | Path | tuple[pd.DataFrame, pd.DataFrame]) -> dict[str, Any]:
    """The document the report's "Implicit regularization" section reads (JSON-ready).

    ``source``: a sweep directory or (runs, curves) DataFrames. Returns ``{"axis", "metrics",
    "by_size": [{"fixed", "sizes": [{"size", "params", "n_runs", metric: {"median", "min", "max"}}]}],
    "runs": [per-run sharpness reading], "shown": [run ids], "lr": [...], "batch": [...]}``.
    """
    from overparam.analysis.epochwise import size_axis
    from overparam.store import runs_and_curves

    runs, curves = runs_and_curves(source)
    if runs.empty or not has_diagnostics(runs):
        raise OverparamError("no finished run recorded implicit-regularization diagnostics "
                             "(set train.diagnostics: [norms, sharpness, trace] in the spec)")
    done = runs[runs["status"] == "done"].copy()
    axis = size_axis(done)
    for ratio, (top, bottom) in RATIOS.items():
        if top in done and bottom in done:
            below = pd.to_numeric(done[bottom], errors="coerce")
            done[ratio] = pd.to_numeric(done[top], errors="coerce") / below.where(below > 0)
    present = [m for m in (*METRICS, *RATIOS) if m in done and done[m].notna().any()]
    varying = [c for c in done.columns if ("." in c or c == "seed") and c not in REPLICATES
               and done[c].astype(str).nunique() > 1]
    per_run = _per_run(done, curves)
    doc: dict[str, Any] = {"axis": axis, "metrics": present, "edge_band": EDGE, "runs": per_run,
                           "by_size": _by_size(done, axis, [c for c in varying if c != axis], present)}
    doc["lr"] = _across(done, "train.lr", [c for c in varying if c != "train.lr"], per_run)
    minibatch = done[~done["train.optimizer"].isin(["gd", "min_norm", "ridge"])] if "train.optimizer" in done \
        else done
    doc["batch"] = _across(minibatch, "train.batch_size", [c for c in varying if c != "train.batch_size"], per_run)
    doc["shown"] = _shown(done, axis, varying, per_run)
    return doc


def late_reading(steps: np.ndarray, values: np.ndarray, threshold: float | None,
                 thresholds: np.ndarray | None = None) -> dict[str, Any]:
    """Initial, peak, final and late (median over step ≥ last/2) sharpness of one curve, vs 2/lr;
    ``rising`` when the last measurement is the highest (still sharpening when training stopped).

    ``thresholds``: 2/lr at each measured step (the ``stability_threshold`` curve), when the step
    size changed during training (warmup, decay): the late ratio is then the median of
    λ_max(t) / (2/lr(t)) over the late steps, not the late λ_max over the peak-lr line.
    """
    ok = np.isfinite(values)
    per_step = None
    if thresholds is not None:
        per_step = np.asarray(thresholds, dtype=float)
        ok &= np.isfinite(per_step) & (per_step > 0)
        per_step = per_step[ok]
    steps, values = np.asarray(steps)[ok], np.asarray(values, dtype=float)[ok]
    out: dict[str, Any] = {"n_points": int(len(values)), "initial": None, "peak": None, "peak_step": None,
                           "final": None, "late": None, "ratio": None, "regime": None, "rising": False,
                           "threshold_moves": False}
    if len(values) == 0:
        return out
    order = np.argsort(steps)
    steps, values = steps[order], values[order]
    p = int(np.argmax(values))
    late = values[steps >= steps[-1] / 2]
    out.update({"initial": float(values[0]) if steps[0] == 0 else None, "peak": float(values[p]),
                "peak_step": int(steps[p]), "final": float(values[-1]), "late": float(np.median(late)),
                "rising": bool(len(values) >= 3 and p == len(values) - 1 and values[-1] > values[-2])})
    if per_step is not None and len(per_step) and not np.allclose(per_step, per_step[0], rtol=1e-12):
        late_ratios = (values / per_step[order])[steps >= steps[-1] / 2]
        out["ratio"] = float(np.median(late_ratios))
        out["threshold_moves"] = True
    elif threshold is not None and math.isfinite(threshold) and threshold > 0:
        out["ratio"] = out["late"] / threshold
    if out["ratio"] is not None:
        out["regime"] = ("edge" if abs(out["ratio"] - 1) <= EDGE else "above" if out["ratio"] > 1 else "below")
    return out


def _per_run(done: pd.DataFrame, curves: pd.DataFrame) -> list[dict[str, Any]]:
    if "sharpness" not in done or curves.empty:
        return []
    data = curves[(curves["name"] == "sharpness") & curves["run_id"].isin(set(done["id"]))]
    lines = curves[curves["name"] == "stability_threshold"].set_index(["run_id", "step"])["value"]
    info = done.set_index("id")
    rows = []
    for run_id, frame in data.groupby("run_id", sort=False):
        keys = list(zip([run_id] * len(frame), frame["step"]))
        moving = lines.reindex(keys).to_numpy(dtype=float) if len(lines) else None
        threshold = _num(info.at[run_id, "stability_threshold"]) if "stability_threshold" in info else None
        row = {"run_id": run_id, "params": int(info.at[run_id, "params"]), "threshold": threshold,
               "lr": _num(info.at[run_id, "train.lr"]) if "train.lr" in info else None,
               "batch_size": _plain(info.at[run_id, "train.batch_size"]) if "train.batch_size" in info else None}
        row.update(late_reading(frame["step"].to_numpy(), frame["value"].to_numpy(dtype=float), threshold,
                                moving if moving is not None and np.isfinite(moving).any() else None))
        rows.append(row)
    return rows


def _split(frame: pd.DataFrame, keys: list[str]) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """Rows grouped by the string form of ``keys`` (list-valued settings are fine), in a stable order."""
    if not keys:
        return [({}, frame)]
    label = frame[keys].apply(lambda r: json.dumps([str(v) for v in r]), axis=1)
    out = []
    for _, sub in frame.groupby(label, sort=True):
        first = sub.iloc[0]
        out.append(({k: _plain(first[k]) for k in keys}, sub))
    return out


def _stats(values: pd.Series) -> dict[str, float] | None:
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return None
    return {"median": float(v.median()), "min": float(v.min()), "max": float(v.max()), "n": int(len(v))}


def _by_size(done: pd.DataFrame, axis: str, others: list[str], metrics: list[str]) -> list[dict[str, Any]]:
    groups = []
    for fixed, frame in _split(done, others):
        sizes = []
        for _, sub in frame.groupby(axis if axis in frame else "params", sort=True):
            row = {"size": _plain(sub[axis].iloc[0]) if axis in sub else None,
                   "params": int(sub["params"].median()), "n_runs": int(len(sub))}
            row.update({m: _stats(sub[m]) for m in metrics if m in sub})
            sizes.append(row)
        sizes.sort(key=lambda r: r["params"])
        groups.append({"fixed": fixed, "sizes": sizes})
    return groups


def _across(done: pd.DataFrame, column: str, others: list[str], per_run: list[dict[str, Any]]) -> list[dict]:
    """Final sharpness per value of ``column`` at fixed other settings, where ``column`` varies."""
    if column not in done or "sharpness" not in done or done[column].astype(str).nunique() < 2:
        return []
    late = {r["run_id"]: r["late"] for r in per_run}
    out = []
    for fixed, frame in _split(done, others):
        rows = []
        for value, sub in frame.groupby(column, sort=True):
            sharp = _stats(sub["sharpness"])
            if sharp is None:
                continue
            threshold = _stats(sub["stability_threshold"]) if "stability_threshold" in sub else None
            lates = [late[i] for i in sub["id"] if late.get(i) is not None]
            row = {"value": _plain(value), "sharpness": sharp, "n_runs": int(len(sub)),
                   "threshold": threshold["median"] if threshold else None,
                   "late": float(np.median(lates)) if lates else None}
            row["ratio"] = sharp["median"] / row["threshold"] if row["threshold"] else None
            rows.append(row)
        if len(rows) >= 2:
            out.append({"fixed": fixed, "column": column, "rows": rows})
    return out


def _shown(done: pd.DataFrame, axis: str, varying: list[str], per_run: list[dict[str, Any]]) -> list[str]:
    """A few runs to draw over training: one per learning rate / batch size (largest size, first
    seed), else the smallest, middle and largest size."""
    with_curve = {r["run_id"] for r in per_run if r["n_points"] >= 3}
    frame = done[done["id"].isin(with_curve)]
    if frame.empty:
        return []
    first_seed = np.ones(len(frame), dtype=bool)  # the replicate of the first run in plan order
    for c in (c for c in REPLICATES if c in frame):  # map(str), not astype(str): pandas 3 keeps None as NaN there
        first_seed &= (frame[c].map(str) == str(frame[c].iloc[0])).to_numpy()
    frame = frame[first_seed].sort_values("params", kind="stable")
    knobs = [c for c in ("train.lr", "train.batch_size") if c in varying]
    if knobs:
        picked = frame.groupby([frame[c].astype(str) for c in knobs], sort=False).tail(1)
        picked = picked.sort_values(knobs)
    else:
        first = frame.drop_duplicates(subset=[axis] if axis in frame else ["params"])
        idx = sorted({0, len(first) // 2, len(first) - 1})
        picked = first.iloc[idx]
    return [str(i) for i in picked["id"].head(MAX_SHOWN)]


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _plain(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    return v.item() if hasattr(v, "item") else v
