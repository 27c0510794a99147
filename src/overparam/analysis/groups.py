"""Runs of a sweep grouped by setting and size, and the seed statistic with its noise.

The in-context, few-shot, position and specialization readings all aggregate the finished runs
that differ only in their seed: one row per combination of the other varying settings (``fixed``)
and the size (the first varying key of ``double_descent.SIZE_COLUMNS``, else the parameter count).

Statistic and noise: the mean over seeds; its noise is the standard error of that mean over seeds
(std/√n, n ≥ 2), or with one seed the run's own standard error over test windows or sequences
(``train.lm_measures``). A difference is stated as a shape (a gain, a gap, a match) only when it
exceeds ``Z`` times its noise.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

Z = 2.0  # standard errors a difference must exceed to be stated
STATISTIC = "mean over seeds"
IGNORED = ("seed", "task.seed")  # replicates, never split into rows


def load_store(directory: Any) -> tuple[list[dict[str, Any]], list[tuple[str, int, str, float | None]]]:
    """Every run (with its full metrics, lists included) and every curve point of a sweep directory."""
    from overparam.store import open_store

    with open_store(directory) as store:
        return store.runs(), store.curves()


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def size_groups(runs: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """(size axis, rows): each row ``{"fixed", "size", "params", "runs"}`` holds the done runs that
    differ only by seed, rows sorted by their other settings, then by parameters."""
    from overparam.analysis.double_descent import SIZE_COLUMNS
    from overparam.store import flatten_config

    done = [r for r in runs if r["status"] == "done"]
    flat = [flatten_config(r["config"]) for r in done]
    keys = sorted({k for f in flat for k in f})
    varying = [k for k in keys if k not in IGNORED and len({_key(f.get(k)) for f in flat}) > 1]
    axis = next((c for c in SIZE_COLUMNS if c in varying), "params")
    others = [k for k in varying if k != axis]
    rows: dict[str, dict[str, Any]] = {}
    for run, f in zip(done, flat, strict=True):
        fixed = {k: f.get(k) for k in others}
        size = run["params"] if axis == "params" else f.get(axis)
        row = rows.setdefault(_key([fixed, size]), {"fixed": fixed, "size": size, "params": run["params"], "runs": []})
        row["runs"].append(run)
    ordered = sorted(rows.values(), key=lambda r: ([_order(r["fixed"][k]) for k in others], r["params"] or 0))
    return axis, ordered


def _order(value: Any) -> tuple[int, float, str]:
    """Numbers in numeric order, before anything else (in JSON text order)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, _key(value))


def seed_stat(values: list[float], ses: list[float | None]) -> tuple[float, float]:
    """(mean over seeds, its noise): std/√n over seeds, or the single run's own standard error."""
    arr = np.asarray(values, dtype=float)
    if len(arr) >= 2:
        return float(arr.mean()), float(arr.std(ddof=1) / math.sqrt(len(arr)))
    se = ses[0] if ses and ses[0] is not None else 0.0
    return float(arr.mean()), float(se)


def mean_lists(lists: list[list[float]]) -> list[float]:
    """Elementwise mean of equal-length lists (the seed mean of a per-position curve)."""
    return np.mean(np.asarray(lists, dtype=float), axis=0).tolist()


def exceeds(difference: float | None, noise: float | None) -> bool:
    """Whether |difference| is larger than ``Z`` times its noise (a stated shape)."""
    return difference is not None and noise is not None and abs(difference) > Z * noise


def curve_of(curves: list[tuple[str, int, str, float | None]], run_ids: set[str], name: str) -> list[list[float]]:
    """[[step, mean over ``run_ids``], …] of curve ``name``, steps where every run has a value."""
    by_step: dict[int, list[float]] = {}
    for run_id, step, metric, value in curves:
        if metric == name and run_id in run_ids and value is not None:
            by_step.setdefault(int(step), []).append(float(value))
    return [[step, float(np.mean(v))] for step, v in sorted(by_step.items()) if len(v) == len(run_ids)]


def plain_row(row: dict[str, Any], axis: str) -> dict[str, Any]:
    """The JSON fields every row shares: settings, size, parameters, runs."""
    runs = row["runs"]
    return {"fixed": row["fixed"], "axis": axis, "size": row["size"], "params": row["params"],
            "n_runs": len(runs), "run_ids": [r["id"] for r in runs],
            "tokens": runs[0]["metrics"].get("tokens"), "flops": runs[0]["flops"]}
