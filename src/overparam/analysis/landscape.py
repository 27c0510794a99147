"""The loss landscape against width: how fast training fits, and what lies between init and solution.

- **Steps to a train-loss threshold** (read off stored curves): wider networks reach a given train
  loss in fewer steps (Nakkiran et al. 2019 show it epoch by epoch; in the NTK limit training is
  a linear model whose condition improves with width, Jacot et al. 2018, Du et al. 2019). The
  resolution is that of the stored curve (``train.eval_every`` / ``eval_log_points``): the step
  reported is the first *evaluated* step at or below the threshold.
- **Loss along the straight line** θ(α) = (1 − α)·θ₀ + α·θ₁ from the init θ₀ to the trained
  θ₁ (Goodfellow, Vinyals & Saxe 2015, "Qualitatively characterizing neural network
  optimization problems"). The *barrier* is max_α [L(θ(α)) − ((1 − α)L(θ₀) + αL(θ₁))]: 0 or
  less when the path is convex-like; Lucas et al. 2021 ("Analyzing monotonic linear
  interpolation") report that the loss usually decreases monotonically along it, more so for
  wider networks. For a model linear in its parameters with MSE the loss is a convex quadratic
  in α, so the barrier is ≤ 0 exactly (a check the tests use).

The init is rebuilt from the family's ``build(cfg, shape, seed)`` (deterministic in the run's
seed), the trained weights read from the run's safetensors checkpoint. Only trainable
parameters are interpolated; fixed buffers (random features) are the same at both ends.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from overparam.analysis.epochwise import size_axis
from overparam.data.base import TaskData
from overparam.errors import OverparamError, StoreError

DEFAULT_ALPHAS = tuple(np.round(np.linspace(0.0, 1.0, 21), 4))


def _frames(source: str | Path | tuple[pd.DataFrame, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    if isinstance(source, tuple):
        return source
    from overparam.store import load_curves, load_runs

    return load_runs(source), load_curves(source)


def steps_to_threshold(source: str | Path | tuple[pd.DataFrame, pd.DataFrame], threshold: float,
                       metric: str = "train_loss") -> dict[str, Any]:
    """First stored step where ``metric`` ≤ ``threshold``, per run and per size.

    ``source``: a sweep directory or a (runs, curves) pair of DataFrames (``load_runs``,
    ``load_curves``). Per size: the median over seeds of the runs that reached it, how many
    did, and the fraction reached. A run that never reached it has ``step`` None: it is not a
    large number, so medians never mix "slow" with "never".
    Returns ``{"metric", "threshold", "axis", "runs": [...], "sizes": [...]}``.
    """
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold)):
        raise OverparamError(f"threshold: expected a finite number, got {threshold!r}")
    runs, curves = _frames(source)
    if runs.empty:
        raise OverparamError("no runs to analyze")
    runs = runs[runs["status"] == "done"]
    axis = size_axis(runs)
    data = curves[curves["name"] == metric].sort_values(["run_id", "step"])
    per_run = []
    for run_id, frame in data.groupby("run_id", sort=False):
        hit = frame[frame["value"] <= threshold]
        per_run.append({"run_id": run_id, "step": int(hit["step"].iloc[0]) if len(hit) else None,
                        "last_step": int(frame["step"].max()), "final": float(frame["value"].iloc[-1])})
    table = pd.DataFrame(per_run, columns=["run_id", "step", "last_step", "final"])
    columns = ["id", "params"] + ([axis] if axis != "params" else [])  # one size: params is the axis
    table = table.merge(runs[columns].rename(columns={"id": "run_id"}), on="run_id")
    sizes = []
    for size, frame in table.groupby(axis, sort=True):
        reached = frame["step"].dropna()
        sizes.append({"size": _plain(size), "params": int(frame["params"].median()), "n_runs": int(len(frame)),
                      "n_reached": int(len(reached)),
                      "median_step": float(reached.median()) if len(reached) else None})
    sizes.sort(key=lambda s: s["params"])
    rows = [{k: _plain(v) for k, v in r.items()} for r in table.to_dict("records")]
    return {"metric": metric, "threshold": float(threshold), "axis": axis, "runs": rows, "sizes": sizes}


def _plain(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    return v.item() if hasattr(v, "item") else v


# ---------------------------------------------------------------- the straight line from init


def load_run_models(directory: str | Path, run_id: str) -> tuple[nn.Module, nn.Module, TaskData, dict[str, Any]]:
    """(init model, trained model, task data, resolved config) of one finished run.

    The init is ``family.build(config.model, shape, config.seed)`` in the run's dtype; the trained
    weights come from ``DIR/checkpoints/<id>.safetensors`` (refused if it belongs to another config).
    """
    from overparam.data import load_sweep_task
    from overparam.models import family_module
    from overparam.provenance import check_rebuild
    from overparam.store import open_store
    from overparam.sweep.checkpoints import load_checkpoint, load_weights
    from overparam.train.run import run_dtype, shape_of

    with open_store(directory) as store:
        found = [r for r in store.runs() if r["id"] == run_id]
        if not found:
            raise StoreError(f"{directory}: no run {run_id!r}")
        run = found[0]
        if run["status"] != "done":
            raise StoreError(f"run {run_id} is {run['status']}, not done: there are no trained weights")
        path = store.checkpoint_path(run_id)
    config = run["config"]
    check_rebuild(directory, config)  # the model file and the task's inputs must be the ones it trained from
    state = load_checkpoint(path, run_id, config)
    task = load_sweep_task(directory, config["task"])
    family = family_module(config["model"]["family"])
    init = family.build(config["model"], shape_of(task), config["seed"], dropout=config["train"]["dropout"])
    init = init.to(dtype=run_dtype(config["train"]))
    final = copy.deepcopy(init)
    load_weights(final, state, run_id)
    return init.eval(), final.eval(), task, config


def linear_path(init: nn.Module, final: nn.Module, task: TaskData, alphas: tuple[float, ...] = DEFAULT_ALPHAS,
                loss: str = "auto") -> dict[str, Any]:
    """Train and test loss at θ(α) = (1 − α)θ₀ + αθ₁ for each α (α outside [0, 1] extrapolates).

    Returns ``{"alpha", "train_loss", "test_loss", "barrier", "monotonic"}``: ``barrier`` is the
    largest train-loss excess over the chord between the endpoints (≤ 0: no barrier), and
    ``monotonic`` whether the train loss never increases along α ∈ [0, 1] (up to 1e-9 relative).
    """
    from overparam.train.evaluate import evaluate, to_tensors

    if task.x_train is None:
        raise OverparamError("the linear path needs a task with inputs (not a language model)")
    kind = loss if loss != "auto" else ("cross_entropy" if task.kind == "classification" else "mse")
    dtype = next(final.parameters()).dtype
    data = to_tensors(task, torch.device("cpu"), dtype)
    names = [n for n, p in final.named_parameters() if p.requires_grad]
    start = dict(init.named_parameters())
    end = dict(final.named_parameters())
    probe = copy.deepcopy(final).eval()
    out: dict[str, Any] = {"alpha": [float(a) for a in alphas], "train_loss": [], "test_loss": []}
    with torch.no_grad():
        for a in alphas:
            for name, p in probe.named_parameters():
                if name in names:
                    p.copy_((1 - a) * start[name].to(dtype) + a * end[name])
            m = evaluate(probe, data, task, kind)
            out["train_loss"].append(m["train_loss"])
            out["test_loss"].append(m["test_loss"])
    tr = np.array(out["train_loss"])
    al = np.array(out["alpha"])
    i0, i1 = int(np.argmin(np.abs(al))), int(np.argmin(np.abs(al - 1)))
    chord = tr[i0] + (tr[i1] - tr[i0]) * al
    inside = (al >= 0) & (al <= 1)
    out["barrier"] = float(np.max(tr[inside] - chord[inside]))
    seg = tr[inside][np.argsort(al[inside])]
    out["monotonic"] = bool(np.all(np.diff(seg) <= 1e-9 * np.maximum(np.abs(seg[:-1]), 1e-12)))
    return out


def linear_path_from_store(directory: str | Path, run_id: str,
                           alphas: tuple[float, ...] = DEFAULT_ALPHAS) -> dict[str, Any]:
    """``linear_path`` of one stored run, rebuilt with ``load_run_models``."""
    from overparam.options import resolve_section
    from overparam.train import recipe
    from overparam.train.evaluate import loss_kind

    init, final, task, config = load_run_models(directory, run_id)
    kind = loss_kind(task, resolve_section("train", recipe.OPTIONS, config["train"]))
    out = linear_path(init, final, task, alphas, kind)
    out["run_id"] = run_id
    return out


def path_vs_width(directory: str | Path, alphas: tuple[float, ...] = DEFAULT_ALPHAS,
                  max_runs: int | None = None, run_ids: list[str] | None = None) -> dict[str, Any]:
    """``linear_path_from_store`` for every finished run with a checkpoint, with its size:
    ``{"axis", "runs": [{"run_id", "size", "params", "barrier", "monotonic", "train_loss", ...}]}``
    sorted by parameter count. ``run_ids`` restricts it to those runs; ``max_runs`` keeps the first
    runs per size order (cost control)."""
    from overparam.store import load_runs, open_store

    runs = load_runs(directory)
    runs = runs[runs["status"] == "done"].sort_values("params", kind="stable")
    axis = size_axis(runs)
    with open_store(directory) as store:
        runs = runs[[store.checkpoint_path(i).is_file() for i in runs["id"]]]
    if run_ids is not None:
        runs = runs[runs["id"].isin(run_ids)]
    if max_runs is not None:
        runs = runs.head(max_runs)
    rows = []
    for _, row in runs.iterrows():
        path = linear_path_from_store(directory, row["id"], alphas)
        path.update({"size": _plain(row[axis]) if axis in row else None, "params": int(row["params"]),
                     "seed": _plain(row.get("seed"))})
        rows.append(path)
    return {"axis": axis, "runs": rows}
