"""Report section "Loss landscape vs width": how fast each width fits, and what lies on the line from init.

Steps to a train-loss threshold come from the stored curves on every build, so the section
appears for any sweep that evaluated at a few steps. The loss along the straight line from the
initial to the trained weights comes from ``DIR/analyses/landscape.json`` (``overparam
landscape``) and is shown only while that file describes exactly the sweep's finished runs.
Sentences are ``overparam.analysis.landscape_report``'s reading, the same the command prints.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd

from overparam.report import plots
from overparam.report.sections import Section, SweepContext, language_sweep

MAX_LINES = 8  # path lines drawn over α: more widths than this turn into an unreadable rainbow


def _size_colors(sizes: list[Any]):
    """One viridis colour per size, spaced in log size (widths are usually geometric)."""
    from matplotlib.colors import ListedColormap, LogNorm, Normalize

    values = np.array([float(s) for s in sizes])
    log = values.min() > 0 and values.max() / values.min() > 8
    norm = (LogNorm if log else Normalize)(vmin=values.min(), vmax=max(values.max(), values.min() * (1 + 1e-9)))
    cmap = ListedColormap(plots.plt.get_cmap("viridis")(np.linspace(0.05, 0.85, 256)))  # no pale yellow on white
    return (lambda s: cmap(norm(float(s)))), norm, cmap


def _finish(*axes) -> None:
    """Grids; log axes ticked at 1, 2, 5 × 10^k (short ranges) or 10^k, in plain numbers, and without
    minor ticks, whose creation and math text were most of the figure's second."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    for ax in axes:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() == "log":
                lo, hi = sorted(axis.get_view_interval())
                decades = np.log10(hi / lo) if lo > 0 else np.inf
                axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades <= 2.5 else (1.0,)))
                axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                axis.set_minor_locator(NullLocator())
        ax.grid(alpha=0.3, lw=0.5)


def steps_figure(runs: pd.DataFrame, curves: pd.DataFrame, steps: dict[str, Any], axis: str) -> bytes:
    """Left: the metric over steps per size (median over seeds) and the threshold. Right: steps to it
    against parameters; sizes that never reached it sit at the top as hollow triangles."""
    plt = plots.plt
    metric, threshold = steps["metric"], steps["threshold"]
    done = runs[runs["status"] == "done"]
    data = curves[(curves["name"] == metric) & curves["value"].notna() & (curves["step"] > 0)]
    data = data.merge(done[["id", axis]].rename(columns={"id": "run_id"}), on="run_id")
    sizes = sorted(done[axis].unique().tolist())
    color, norm, cmap = _size_colors(sizes)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.5, 4.2))
    for size in sizes:
        line = data[data[axis] == size].groupby("step")["value"].median()
        left.plot(line.index, line.to_numpy(), "-", color=color(size), lw=1.4)
    left.axhline(threshold, color="#c0392b", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    left.set_xscale("log")
    if metric.endswith("loss") and (data["value"] > 0).all():
        left.set_yscale("log")
    left.set_xlabel("training step")
    left.set_ylabel(f"{metric.replace('_', ' ')} (median over seeds)")
    left.legend(fontsize=8)
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=left, label=axis)
    reached = [s for s in steps["sizes"] if s["median_step"] is not None]
    never = [s for s in steps["sizes"] if s["median_step"] is None]
    per_run = [r for r in steps["runs"] if r["step"] is not None]
    right.scatter([r["params"] for r in per_run], [max(r["step"], 1) for r in per_run], s=10, color="#888",
                  alpha=0.6, zorder=2, label="single runs")
    right.plot([s["params"] for s in reached], [max(s["median_step"], 1) for s in reached], "-o", color="#2c7fb8",
               ms=4, zorder=3, label="median over seeds")
    if never:
        top = max([r["last_step"] for r in steps["runs"]] + [1]) * 1.3
        right.scatter([s["params"] for s in never], [top] * len(never), marker="^", s=40, facecolors="none",
                      edgecolors="#c0392b", zorder=3, label="never reached (by the last step)")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("trainable parameters")
    right.set_ylabel(f"first evaluated step with {metric.replace('_', ' ')} ≤ {threshold:.3g}")
    right.legend(fontsize=8)
    _finish(left, right)
    fig.subplots_adjust(wspace=0.3)  # to_png trims the margins; tight_layout costs a second
    return plots.to_png(fig)


def path_figure(doc: dict[str, Any]) -> bytes:
    """Left: train (solid) and test (dotted) loss over α for up to MAX_LINES sizes, colour by size.
    Right: the barrier (train loss above the chord) against parameters, every run as a dot."""
    plt = plots.plt
    paths = doc["paths"]
    first: dict[Any, dict[str, Any]] = {}
    for p in paths:
        first.setdefault(p["size"], p)  # the lowest seed of each size (paths are in size, then seed, order)
    shown = list(first.values())
    if len(shown) > MAX_LINES:
        shown = [shown[round(i * (len(shown) - 1) / (MAX_LINES - 1))] for i in range(MAX_LINES)]
    color, norm, cmap = _size_colors([p["size"] for p in paths])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.5, 4.2))
    alphas = doc["alphas"]
    for p in shown:
        left.plot(alphas, p["train_loss"], "-", color=color(p["size"]), lw=1.5)
        left.plot(alphas, p["test_loss"], ":", color=color(p["size"]), lw=1.1)
    for x in (0.0, 1.0):
        left.axvline(x, color="#999", lw=0.7)
    left.set_xlabel("α  (0 = initial weights, 1 = trained weights)")
    left.set_ylabel("loss (solid: train, dotted: test)")
    if all(v > 0 for p in shown for v in p["train_loss"] + p["test_loss"] if v is not None):
        left.set_yscale("log")
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=left, label=doc["axis"])
    right.scatter([p["params"] for p in paths], [p["barrier"] for p in paths],
                  c=[color(p["size"]) for p in paths], s=22, zorder=3)
    bump = [p for p in paths if not p["monotonic"]]
    if bump:
        right.scatter([p["params"] for p in bump], [p["barrier"] for p in bump], s=70, facecolors="none",
                      edgecolors="#c0392b", zorder=4, label="loss not monotonic along the line")
        right.legend(fontsize=8)
    right.axhline(0, color="#555", lw=0.8)
    right.set_xscale("log")
    right.set_xlabel("trainable parameters")
    right.set_ylabel("barrier: max train loss above the chord")
    _finish(left, right)
    fig.subplots_adjust(wspace=0.3)  # to_png trims the margins; tight_layout costs a second
    return plots.to_png(fig)


def _table(steps: dict[str, Any], doc: dict[str, Any] | None, word: str, pooled: bool = False) -> str:
    paths: dict[Any, list[dict[str, Any]]] = {}
    for p in (doc or {}).get("paths", []):
        paths.setdefault(p["size"], []).append(p)
    cols = [word, "params", f"{'runs' if pooled else 'seeds'} that reached it", "median step"]
    if doc:
        cols += ["barrier (max over runs)", "monotonic along the line"]
    rows = []
    for s in steps["sizes"]:
        cells = [str(s["size"]), f"{s['params']:,}", f"{s['n_reached']} of {s['n_runs']}",
                 "never" if s["median_step"] is None else f"{s['median_step']:,.0f}"]
        if doc:
            mine = paths.get(s["size"], [])
            cells += [f"{max(p['barrier'] for p in mine):.3g}" if mine else "–",
                      f"{sum(p['monotonic'] for p in mine)} of {len(mine)}" if mine else "–"]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def landscape_section(ctx: SweepContext) -> Section | None:
    """Steps to a threshold vs size (stored curves) and, when fresh, the linear path per size."""
    from overparam.analysis import landscape_report as lr
    from overparam.analysis.epochwise import size_axis
    from overparam.analysis.landscape import steps_to_threshold

    runs, curves = ctx.runs, ctx.curves
    if runs.empty or language_sweep(ctx):
        return None
    done = runs[runs["status"] == "done"]
    if done.empty:
        return None
    axis = size_axis(done)
    if axis == "params" or done[axis].nunique() < 2:
        return None
    doc = lr.load_fresh(ctx.dir, runs)
    metric = doc["metric"] if doc else "train_loss"
    points = lr.evaluated_steps(runs, curves, metric)
    if points < lr.MIN_POINTS and not doc:
        return None
    section = Section(title="Loss landscape vs width")
    word = lr.size_word(axis)
    steps = None
    if points >= lr.MIN_POINTS:
        rule = doc["threshold_rule"] if doc else lr.threshold_rule(runs, curves, metric, None, None, axis)
        steps = steps_to_threshold((runs, curves), rule["threshold"], metric)
        reading = {"steps": steps, "axis": axis, "threshold_rule": rule, "evaluated_steps": points,
                   "pooled": lr.pooled_settings(runs, axis)}
        section.sentences += lr.read_steps(reading)
        section.figures.append(("landscape_steps.png", steps_figure(runs, curves, steps, axis),
                                f"Left: {metric.replace('_', ' ')} over training, one line per {word} (median over "
                                f"seeds), and the threshold. Right: the first evaluated step at or below it, "
                                f"against trainable parameters."))
    if doc:
        section.sentences += lr.read_paths(doc) + lr.read_skipped(doc)
        section.figures.append(("landscape_path.png", path_figure(doc),
                                "Left: loss along the straight line (1 − α)·init + α·trained, one line per "
                                f"{word} (lowest seed). Right: the barrier, how far the train loss rises above "
                                "the straight chord between its endpoints (0: none), per run."))
    elif (ctx.dir / "analyses" / "landscape.json").is_file():
        section.sentences.append("analyses/landscape.json describes another set of finished runs (the sweep "
                                 "changed since): rerun `overparam landscape DIR` for the loss along the straight "
                                 "line from init.")
    else:
        section.sentences.append("`overparam landscape DIR` adds the loss along the straight line from the initial "
                                 "to the trained weights, per width.")
    if steps:
        section.tables.append(_table(steps, doc, word, bool(lr.pooled_settings(runs, axis))))
    section.summary = {"axis": axis, "metric": metric, "sentences": section.sentences,
                       "landscape_json": "fresh" if doc else "absent or stale"}
    if steps:
        section.summary.update(threshold=steps["threshold"], threshold_rule=rule["kind"], sizes=steps["sizes"])
    if doc:
        section.summary["paths"] = [{k: p[k] for k in ("run_id", "size", "params", "seed", "barrier", "has_barrier",
                                                       "monotonic")} for p in doc["paths"]]
        section.summary["skipped"] = [{k: v for k, v in s.items() if k != "detail"} for s in doc.get("skipped", [])]
    return section
