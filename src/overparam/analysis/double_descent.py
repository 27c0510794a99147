"""Model-wise double descent, read off stored runs: threshold, peak, the two minima and a verdict.

For each curve (one per combination of the settings that vary besides size and seed), sizes are
sorted by parameter count and the test metric is aggregated over seeds with the page's statistic
(``stat``: mean or median; the same one everywhere a number is quoted). Then:

- **interpolation threshold** t: the smallest size whose mean train error is ≤ ``eps`` (default
  0.01): the size where the effective model complexity of Nakkiran et al. (2019, §2) reaches n,
  their "≈ 0 train error" read with an explicit tolerance (``eps = 0`` demands every label).
  For regression tasks, and for least-squares fits solved in closed form (whose zero-one train
  error reaches 0 well before the fit is exact), it is train *loss* ≤ ``eps_loss``: the size where
  the model interpolates its targets exactly (Belkin et al. 2019).
- **best under / best over**: the lowest test metric strictly before / at-or-after t (u, o).
- **peak** p: the highest test metric among the sizes from u up to and including the first size
  past t (a finite training budget can leave the peak one size past where train error first
  reaches ε). When nothing in that window rises above u the curve has no peak (a monotone
  decrease). Without a threshold, or with t at the smallest size, there is no peak either.
- **bump** = test(p) − test(u) and **descent** = test(p) − test(d), d the lowest point past both
  p and t: each is compared with the noise (``overparam.analysis.noise``: a bootstrap over seeds,
  the test set's binomial standard error, or both) and classified clear / weak / within noise /
  unknown. **over_vs_under** = test(u) − test(o) the same way.
- **shape**: ``double descent`` when bump and descent both exceed the noise (``evidence`` is the
  weaker of the two), ``peak without second descent``, ``no peak`` (bump within the noise, or none),
  ``noise unknown`` (one seed and no test-set size, or a loss), ``no threshold``,
  ``no under-parameterized side``. ``second_descent`` is true for ``double descent`` only.
- **sample-wise** sweeps (``task.train_size`` varies, size fixed) are read with n decreasing, so
  "over-parameterized" means fewer samples than the threshold n (Nakkiran et al. 2019, §5).

Unstable runs (see ``overparam.train.health``) are left out of the aggregates by default and
listed, so a broken point is never read as the peak. ``answer`` (``overparam.analysis.answer``)
is the smallest size within a tolerance of the best test metric.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from overparam.analysis.defaults import EPS as EPS  # re-exported: the threshold's default tolerance
from overparam.analysis.defaults import TOLERANCE as TOLERANCE  # re-exported: the answer's default
from overparam.analysis.noise import beyond_noise, compare
from overparam.errors import OverparamError

SIZE_COLUMNS = ("model.width", "model.depth", "model.n_layer", "model.d_model", "model.n_head")
REPLICATES = ("seed", "task.seed", "task.noise_seed")
# Replicates, not settings: runs differing only here are averaged over, never split into curves.
IGNORED = {"id", "status", "params", "flops", "seconds", "error", *REPLICATES}
SAMPLE_AXIS = "task.train_size"
EPS_LOSS = 1e-6  # train MSE of an exact interpolant, float64 closed form


class DoubleDescentAnalyzer:
    """scikit-learn-style: ``DoubleDescentAnalyzer(eps=0.01).fit(runs).curves_``.

    ``eps``: train-error tolerance of the threshold (0: every training label fitted).
    ``eps_loss``: the same for regression tasks, on train MSE. ``stat``: "mean" or "median"
    over seeds for the test metric. ``include_unstable``: keep runs flagged unstable.
    ``tolerance``: how close to the best test metric the answer's size must come.
    """

    def __init__(self, eps: float = EPS, eps_loss: float = EPS_LOSS, stat: str = "mean",
                 include_unstable: bool = False, threshold_on: str = "auto", tolerance: float = TOLERANCE):
        self.threshold_on = threshold_on
        self.eps = eps
        self.eps_loss = eps_loss
        self.stat = stat
        self.include_unstable = include_unstable
        self.tolerance = tolerance

    def fit(self, runs: pd.DataFrame | str | Path, size_axes: list[str] | None = None) -> DoubleDescentAnalyzer:
        if self.threshold_on not in ("auto", "error", "loss"):
            raise OverparamError(f"threshold_on: expected auto, error or loss, got {self.threshold_on!r}")
        if self.stat not in ("mean", "median"):
            raise OverparamError(f"stat: expected mean or median, got {self.stat!r}")
        for name in ("eps", "tolerance"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise OverparamError(f"{name}: expected a number >= 0, got {value!r}")
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
        from overparam.analysis.answer import dense_answer

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
        n_test, n_train = _count(done, "n_test", "task.test_size"), _count(done, "n_train", "task.train_size")
        out: dict[str, Any] = {"axis": axis, "fixed": fixed, "metric": f"test_{metric}", "stat": self.stat,
                               "threshold_on": f"train_{on}", "eps": self.eps if on == "error" else self.eps_loss,
                               "n_runs": int(len(frame)), "n_sizes": len(points),
                               "n_seeds": max((p["n"] for p in points), default=0), "n_test": n_test,
                               "n_train": n_train, "points": points, "unstable_runs": unstable,
                               "diverged_runs": diverged}
        out.update(locate(points, metric, out["eps"], on, stat=self.stat, n_test=n_test))
        family = done["model.family"].iloc[0] if "model.family" in done and len(done) else None
        if family in ("rff", "linear") and axis == "model.width" and n_train and out["threshold_size"] is not None:
            out["threshold_size_over_n_train"] = float(out["threshold_size"]) / n_train  # N/n (Belkin et al.)
            out["rank_below_n"] = rank_below_n(points, n_train, out["threshold_size"])
        out["answer"] = dense_answer(out, self.tolerance)
        return out


def rank_below_n(points: list[dict[str, Any]], n_train: int, threshold_size: float) -> dict[str, Any] | None:
    """Why a feature model interpolates only past N = n: the sizes N ≥ n below the threshold whose feature
    matrix on the training set has rank < n (stored ``rank``, every seed), or None when there are none.

    A least-squares fit of n targets with N features interpolates exactly when the n × N feature matrix
    has rank n; N ≥ n features can still span fewer directions when some are zero or linearly dependent
    on the training inputs (a random ReLU feature inactive on every training point), and then the
    threshold moves past N = n."""
    sizes = [{"size": p["size"], "params": p["params"], "rank_min": p["rank_min"], "rank_max": p["rank_max"]}
             for p in points if p.get("rank_max") is not None and isinstance(p["size"], (int, float))
             and n_train <= p["size"] < threshold_size and p["rank_max"] < n_train]
    if not sizes:
        return None
    return {"n_train": n_train, "threshold_size": threshold_size, "sizes": sizes,
            "rank_max": max(s["rank_max"] for s in sizes)}


def _count(done: pd.DataFrame, metric: str, config: str) -> int | None:
    """n_test / n_train of a curve: the stored metric (the task's actual split), else the spec's setting."""
    for col in (metric, config):
        if col in done:
            vals = pd.to_numeric(done[col], errors="coerce").dropna()
            if len(vals) and vals.nunique() == 1:
                return int(vals.iloc[0])
    return None


def split_curves(runs: pd.DataFrame, size_axes: list[str] | None = None):
    """Yield (axis, fixed settings, runs) per curve: one per combination of non-size settings.

    When several size columns vary (e.g. ``model.n_layer`` and ``model.d_model``) the curve runs
    over parameter count, so that two shapes never share a point.
    """
    if runs.empty:
        raise OverparamError("no runs to analyze")
    config_cols = [c for c in runs.columns if "." in c or c == "seed"]
    varying = [c for c in config_cols if c not in IGNORED and runs[c].astype(str).nunique() > 1]
    sizes = [c for c in (size_axes or SIZE_COLUMNS) if c in varying]
    if sizes:
        axis = sizes[0] if len(sizes) == 1 else "params"
        others = [c for c in varying if c not in sizes]
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


def replicate_columns(frame: pd.DataFrame) -> list[str]:
    """The replicate columns that vary: ``seed``, and ``task.seed`` when data draws vary too."""
    return [c for c in REPLICATES if c in frame and frame[c].astype(str).nunique() > 1]


def replicate_labels(frame: pd.DataFrame, cols: list[str]) -> list[str]:
    """One label per run of one size naming its replicate ("0", or "0/3" for seed/task.seed)."""
    labels = ["/".join(str(_plain(v)) for v in row) for row in frame[cols].itertuples(index=False)] if cols \
        else ["0"] * len(frame)
    seen: dict[str, int] = {}
    out = []
    for label in labels:  # the same replicate twice (a setting outside the curve's keys): keep both
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label}#{seen[label]}")
    return out


def aggregate(done: pd.DataFrame, axis: str, stat: str) -> list[dict[str, Any]]:
    """One point per size: params, seeds, and mean/median/std/min/max of each metric.

    ``test_error_by_seed`` / ``test_loss_by_seed`` keep the per-replicate values (label → value):
    the bootstrap over seeds and the per-seed answers read them.
    """
    if done.empty:
        return []
    key = axis if axis in done else "params"
    cols = replicate_columns(done)
    points = []
    for size, frame in done.groupby(key, sort=True):
        frame = frame.assign(_replicate=replicate_labels(frame, cols))
        point: dict[str, Any] = {"size": _plain(size), "params": int(frame["params"].median()),
                                 "n": int(len(frame))}
        for name in ("train_error", "test_error", "train_loss", "test_loss"):
            if name in frame and frame[name].notna().any():
                ok = frame[frame[name].notna()]
                vals = ok[name].astype(float).to_numpy()
                point[name] = float(np.median(vals) if stat == "median" else vals.mean())
                point[f"{name}_mean"] = float(vals.mean())
                point[f"{name}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
                point[f"{name}_min"], point[f"{name}_max"] = float(vals.min()), float(vals.max())
                if name.startswith("test_"):
                    point[f"{name}_by_seed"] = {str(r): float(v) for r, v in zip(ok["_replicate"], vals)}
            else:
                point[name] = None
        if "rank" in frame and frame["rank"].notna().any():  # closed form: rank of the training feature matrix
            ranks = frame["rank"].dropna().astype(int)
            point["rank_min"], point["rank_max"] = int(ranks.min()), int(ranks.max())
        points.append(point)
    points.sort(key=lambda p: (p["params"], float(p["size"]) if isinstance(p["size"], (int, float)) else 0))
    return points


def locate(points: list[dict[str, Any]], metric: str, eps: float, threshold_on: str | None = None,
           stat: str = "mean", n_test: int | None = None) -> dict[str, Any]:
    """Threshold (on train ``threshold_on``), peak, both minima and the verdict of test ``metric``.

    ``points`` are in curve order (params ascending; n descending for a sample-wise sweep).
    See the module docstring for the definitions.
    """
    threshold_on = threshold_on or metric
    out: dict[str, Any] = {f"{w}_{k}": None for w in ("threshold", "peak", "best_under", "best_over", "descent_to",
                                                      "closest") for k in ("params", "size")}
    for w in ("peak", "best_under", "best_over", "descent_to"):
        out[f"{w}_test_error"] = out[f"{w}_test_loss"] = None
    out.update({"threshold_train": None, "closest_train": None, "peak_position": None, "bump": None,
                "descent": None, "over_vs_under": None, "shape": "no finished runs", "evidence": None,
                "second_descent": False, "peak_over_best_over": None, "peak_over_best_under": None,
                "peak_over_descent_to": None})
    if not points:
        return out
    test = np.array([_num(p.get(f"test_{metric}")) for p in points])
    train = np.array([_num(p.get(f"train_{threshold_on}_mean", p.get(f"train_{threshold_on}"))) for p in points])
    below = np.flatnonzero(train <= eps)
    t = int(below[0]) if len(below) else None

    def mark(prefix: str, i: int | None) -> None:
        if i is None:
            return
        out[f"{prefix}_params"], out[f"{prefix}_size"] = points[i]["params"], points[i]["size"]
        if prefix in ("threshold", "closest"):
            out[f"{prefix}_train"] = float(train[i])
        else:
            out[f"{prefix}_test_error"] = points[i].get("test_error")
            out[f"{prefix}_test_loss"] = points[i].get("test_loss")

    def cmp(i: int, j: int) -> dict[str, Any]:
        by_seed = f"test_{metric}_by_seed"
        return compare(float(test[i]), float(test[j]), list(points[i].get(by_seed, {}).values()),
                       list(points[j].get(by_seed, {}).values()), stat=stat, n_test=n_test, rate=metric == "error")

    mark("threshold", t)
    u = _argbest(test, range(0, t if t is not None else len(points)), np.nanargmin)
    mark("best_under", u)
    if t is None:
        finite = [i for i in range(len(points)) if not math.isnan(train[i])]
        mark("closest", min(finite, key=lambda i: train[i]) if finite else None)
        out["shape"] = "no threshold"
        return out
    o = _argbest(test, range(t, len(points)), np.nanargmin)
    mark("best_over", o)
    if u is not None and o is not None:
        out["over_vs_under"] = cmp(u, o)
    if u is None:
        out["shape"] = "no under-parameterized side"
        return out
    p = _argbest(test, range(u, min(t + 1, len(points) - 1) + 1), np.nanargmax)
    if p is None or p == u or not test[p] > test[u]:
        out["shape"] = "no peak"
        return out
    mark("peak", p)
    out["peak_position"] = "before threshold" if p < t else "at threshold" if p == t else "past threshold"
    out["bump"] = cmp(p, u)
    out["peak_over_best_under"] = _ratio(test[p], test[u])
    if o is not None:
        out["peak_over_best_over"] = _ratio(test[p], test[o])
    d = _argbest(test, range(max(t, p + 1), len(points)), np.nanargmin)
    if d is not None:
        mark("descent_to", d)
        out["descent"] = cmp(p, d)
        out["peak_over_descent_to"] = _ratio(test[p], test[d])
    bump, descent = out["bump"], out["descent"]
    if bump["evidence"] == "unknown":
        out["shape"] = "noise unknown"
    elif not beyond_noise(bump):
        out["shape"] = "no peak"
    elif beyond_noise(descent):
        out["shape"] = "double descent"
        out["second_descent"] = True
        out["evidence"] = "weak" if "weak" in (bump["evidence"], descent["evidence"]) else "clear"
    else:
        out["shape"] = "peak without second descent"
        out["evidence"] = bump["evidence"]
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


def require_finished(runs: pd.DataFrame, where: str | Path) -> None:
    """Refuse a sweep with no finished run (one line, exit code 2 from the CLI): there is nothing to read."""
    if not runs.empty and (runs["status"] == "done").any():
        return
    if runs.empty:
        raise OverparamError(f"{where}: no runs in this sweep directory yet; run overparam sweep SPEC --out {where}")
    counts = ", ".join(f"{n} {status}" for status, n in sorted(runs["status"].value_counts().items()))
    raise OverparamError(f"{where}: no finished runs to read ({counts}); run or resume the sweep with "
                         f"overparam sweep SPEC --out {where}")


def analyze_double_descent(runs: pd.DataFrame | str | Path, eps: float = EPS, stat: str = "mean",
                           include_unstable: bool = False, threshold_on: str = "auto",
                           tolerance: float = TOLERANCE, compress: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{"curves": [...], "answer": {...}}`` for a sweep directory or a runs DataFrame.

    See the module docstring for each curve; ``answer`` is ``overparam.analysis.answer``'s, with the
    smallest compressed model that stays within the tolerance when ``compress`` (the document
    ``overparam compress`` writes; read from ``DIR/analyses/compress.json`` for a directory) is given.
    """
    from overparam.analysis.answer import sweep_answer

    size_axes, saved = None, None
    if not isinstance(runs, pd.DataFrame):
        from overparam.store import open_store

        directory = Path(runs)
        with open_store(directory) as store:
            size_axes = store.meta("size_axes")
        if compress is None:
            saved = directory / "analyses" / "compress.json"
            compress = _read_json(saved)
    analyzer = DoubleDescentAnalyzer(eps=eps, stat=stat, include_unstable=include_unstable,
                                     threshold_on=threshold_on, tolerance=tolerance)
    doc = analyzer.fit(runs, size_axes=size_axes).to_dict()
    try:
        doc["answer"] = sweep_answer(doc["curves"], compress)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        if saved is None or compress is None:
            raise  # the caller's own document, or no document at all: a bug
        from overparam.store_damage import skip_analysis  # a damaged file: the dense answer, and a warning

        skip_analysis(saved, "unexpected shape (" + " ".join(f"{type(exc).__name__}: {exc}".split())[:120] + ")",
                      "the answer leaves its compressed models out")
        doc["answer"] = sweep_answer(doc["curves"], None)
    return doc


def _read_json(path: Path) -> dict[str, Any] | None:
    import json

    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None
