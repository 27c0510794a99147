"""Epoch-wise double descent: test error over (size × training steps) as a heatmap.

The picture of Nakkiran et al. 2019 ("Deep double descent", Fig. 2): size on the y axis,
training steps (log) on the x axis, seed-mean test error as colour. A model-wise peak is a
bright horizontal band near the interpolation threshold at late steps; an epoch-wise peak is a
bright spot in a row that darkens again to its right. Sentences come from
``overparam.analysis.epochwise.epochwise_peaks`` on the stored curves.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from overparam.report import plots
from overparam.report.sections import Section, SweepContext

MIN_STEPS = 4  # evaluated steps a curve needs before a heatmap says anything over time


def _edges(values: np.ndarray, log: bool) -> np.ndarray:
    """Cell edges around sorted centres: geometric midpoints on a log axis, arithmetic otherwise."""
    v = values.astype(float)
    if len(v) == 1:
        return np.array([v[0] / 1.5, v[0] * 1.5]) if log else np.array([v[0] - 0.5, v[0] + 0.5])
    mid = np.sqrt(v[:-1] * v[1:]) if log else (v[:-1] + v[1:]) / 2
    first = v[0] ** 2 / mid[0] if log else 2 * v[0] - mid[0]
    last = v[-1] ** 2 / mid[-1] if log else 2 * v[-1] - mid[-1]
    return np.concatenate([[first], mid, [last]])


def heatmap_figure(table: pd.DataFrame, axis: str, metric: str, title: str) -> bytes:
    """``table``: sizes × steps (``heatmap_table``); step 0 is dropped from the log axis."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    table = table.loc[:, [c for c in table.columns if c > 0]]
    steps = np.array(table.columns, dtype=float)
    sizes = np.array(table.index, dtype=float)
    values = table.to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(7.2, 4.4))
    log_y = sizes.min() > 0 and sizes.max() / sizes.min() > 8
    finite = values[np.isfinite(values)]
    # log colours: the late-time structure (a few % of error) would vanish next to the init's ~90 %
    norm = LogNorm(vmin=finite.min(), vmax=finite.max()) if finite.min() > 0 else None
    mesh = ax.pcolormesh(_edges(steps, True), _edges(sizes, log_y), np.ma.masked_invalid(values),
                         cmap="magma", norm=norm, shading="flat")
    fig.colorbar(mesh, ax=ax, label=f"{metric.replace('_', ' ')} (mean over seeds)")
    ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(axis)
    ax.set_title(title, fontsize=11)
    return plots.to_png(fig)


def _sentences(doc: dict[str, Any], axis: str) -> list[str]:
    rows = doc["sizes"]
    metric = doc["metric"].replace("_", " ")
    bumps = [r for r in rows if r["second_descent"]]
    out = []
    if not bumps:
        out.append(f"No size shows an epoch-wise peak: along training, no seed-mean {metric} curve rises by "
                   f"{doc['rise']:.0%} and falls back again ({len(rows)} curves read).")
    else:
        top = max(bumps, key=lambda r: r["prominence"] / max(r["min_after"], 1e-300))
        fixed = ", ".join(f"{k} = {v}" for k, v in top["fixed"].items())
        where = f"{axis} = {top['size']}" + (f" ({fixed})" if fixed else "")
        out.append(f"{len(bumps)} of {len(rows)} sizes show epoch-wise double descent: the {metric} falls, "
                   f"rises and falls again over training.")
        out.append(f"The clearest is {where}: {top['min_before']:.3g} at step {top['min_before_step']}, up to "
                   f"{top['peak_value']:.3g} at step {top['peak_step']}, down to {top['min_after']:.3g} at step "
                   f"{top['min_after_step']}.")
    late = [r for r in rows if r["best_value"] is not None and r["final_value"] is not None
            and r["final_value"] > r["best_value"] * (1 + doc["rise"])]
    if late:
        worst = max(late, key=lambda r: r["final_value"] / max(r["best_value"], 1e-300))
        out.append(f"{len(late)} size(s) end training above their best {metric} by more than {doc['rise']:.0%} "
                   f"(most at {axis} = {worst['size']}: best {worst['best_value']:.3g} at step "
                   f"{worst['best_step']}, final {worst['final_value']:.3g}): early stopping would help there.")
    return out


def epochwise_section(ctx: SweepContext) -> Section | None:
    """Heatmap of test error over size × steps, when curves were stored at enough steps."""
    from overparam.analysis.epochwise import curve_metric, epochwise_peaks, heatmap_table, size_axis

    runs, curves = ctx.runs, ctx.curves
    if runs.empty or curves.empty or ctx.first("task.kind") in ("text", "markov", "icl-markov", "fewshot"):
        return None
    done = runs[runs["status"] == "done"]
    if done.empty or curves.groupby("run_id")["step"].nunique().max() < MIN_STEPS:
        return None
    axis = size_axis(done)
    if axis == "params" or done[axis].nunique() < 2:
        return None
    metric = curve_metric(curves)
    doc = epochwise_peaks((runs, curves), metric)
    section = Section(title="Epoch-wise double descent")
    others = [c for c in ("train.weight_decay", "train.ridge", "train.dropout", "task.train_size",
                          "task.label_noise") if c in done and done[c].astype(str).nunique() > 1]
    frames = [((), done)] if not others else list(done.groupby(others, sort=True))
    for i, (key, frame) in enumerate(frames[:6]):  # one heatmap per setting, at most six
        table = heatmap_table(frame, curves, metric, axis)
        if table.empty or table.shape[1] < MIN_STEPS:
            continue
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{c} = {v}" for c, v in zip(others, key))
        section.figures.append((f"epochwise_{i}.png", heatmap_figure(table, axis, metric,
                                                                     ctx.name + (f" ({label})" if label else "")),
                                f"{metric.replace('_', ' ').capitalize()} over {axis} (rows) and training steps "
                                f"(columns, log), mean over seeds (Nakkiran et al. 2019, Fig. 2)."))
    if not section.figures:
        return None
    section.sentences = _sentences(doc, axis)
    section.summary = {"metric": doc["metric"], "rise": doc["rise"], "axis": axis, "sizes": doc["sizes"],
                       "n_with_second_descent": doc["n_with_second_descent"], "sentences": section.sentences}
    return section
