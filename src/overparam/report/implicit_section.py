"""Implicit regularization: norms, the min-norm solution and sharpness, as each run recorded them.

Applies when runs were trained with ``train.diagnostics`` (norms, sharpness, trace). The numbers
are arranged by ``overparam.analysis.implicit_sweep``: against size (median over seeds, with the
range), over training against the 2/lr line (the edge of stability, Cohen et al. 2021), and
across learning rate and batch size when the sweep varies them.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd

from overparam.analysis.claims import Sentence, fmt_pct, fmt_settings, texts
from overparam.report import plots
from overparam.report.reading import fmt_num
from overparam.report.sections import Section, SweepContext

NAMES = {"param_norm": "‖θ‖", "distance_from_init": "‖θ − θ₀‖", "distance_to_min_norm": "‖w − w*‖ (min-norm)",
         "sharpness": "λ_max", "hessian_trace": "tr H"}
MAX_SERIES = 6  # lines per figure (settings of the other varying keys)
MAX_SENTENCE_GROUPS = 3
MAX_TABLE_ROWS = 40


def _size_text(axis: str, row: dict[str, Any]) -> str:
    if axis == "params" or row.get("size") is None:
        return f"{row['params']:,} parameters"
    return f"{axis.split('.')[-1].replace('_', ' ')} {row['size']}"


def _fixed_text(fixed: dict[str, Any]) -> str:
    return fmt_settings(fixed)


def _x(sizes: list[dict[str, Any]]) -> tuple[list[float], str]:
    params = [s["params"] for s in sizes]
    if len(set(params)) > 1:
        return params, "trainable parameters"
    return [float(s["size"]) for s in sizes], "size"


def _series(ax, xs, stats: list[dict | None], color, label: str, style: str = "-o") -> None:
    keep = [i for i, s in enumerate(stats) if s is not None]
    if not keep:
        return
    x = [xs[i] for i in keep]
    ax.fill_between(x, [stats[i]["min"] for i in keep], [stats[i]["max"] for i in keep], color=color, alpha=0.15,
                    linewidth=0)
    ax.plot(x, [stats[i]["median"] for i in keep], style, color=color, ms=3, lw=1.5, label=label)


def _colors(n: int):
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("viridis")
    return [cmap(i / max(n - 1, 1)) for i in range(n)]


def norms_figure(doc: dict[str, Any], title: str) -> bytes:
    """‖θ‖ (solid) and ‖θ − θ₀‖ (dashed) against size; a second panel for ‖w − w*‖ when recorded."""
    import matplotlib.pyplot as plt

    groups = doc["by_size"][:MAX_SERIES]
    min_norm = "distance_to_min_norm" in doc["metrics"]
    fig, axes = plt.subplots(1, 2 if min_norm else 1, figsize=(10.5 if min_norm else 7.2, 4.2), squeeze=False)
    ax = axes[0][0]
    for color, group in zip(_colors(len(groups)), groups):
        xs, xlabel = _x(group["sizes"])
        tag = f" ({_fixed_text(group['fixed'])})" if group["fixed"] else ""
        _series(ax, xs, [s.get("param_norm") for s in group["sizes"]], color, f"‖θ‖{tag}")
        _series(ax, xs, [s.get("distance_from_init") for s in group["sizes"]], color, f"‖θ − θ₀‖{tag}", "--s")
    _log_axes(ax, xlabel, "norm (median over seeds, band = range)", title)
    if min_norm:
        ax = axes[0][1]
        for color, group in zip(_colors(len(groups)), groups):
            xs, xlabel = _x(group["sizes"])
            stats = [s.get("distance_to_min_norm") for s in group["sizes"]]
            floor = [None if s is None else {k: max(v, 1e-300) for k, v in s.items()} for s in stats]
            _series(ax, xs, floor, color, _fixed_text(group["fixed"]) or "‖w − w*‖")
        ax.set_yscale("log")
        _log_axes(ax, xlabel, "distance to the min-norm solution ‖w − w*‖")
    return plots.to_png(fig)


def _log_axes(ax, xlabel: str, ylabel: str, title: str | None = None) -> None:
    """The against-size panels' common frame: log x, labels, grid, legend."""
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3, which="both", lw=0.5)
    ax.legend(fontsize=7, loc="best")


def sharpness_size_figure(doc: dict[str, Any], title: str) -> bytes:
    """Final λ_max against size, with each setting's 2/lr as a dotted line of the same colour."""
    import matplotlib.pyplot as plt

    groups = doc["by_size"][:MAX_SERIES]
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    for color, group in zip(_colors(len(groups)), groups):
        xs, xlabel = _x(group["sizes"])
        tag = _fixed_text(group["fixed"])
        _series(ax, xs, [s.get("sharpness") for s in group["sizes"]], color, f"λ_max {tag}".strip())
        thr = [s["stability_threshold"]["median"] for s in group["sizes"] if s.get("stability_threshold")]
        if thr:
            ax.axhline(float(np.median(thr)), color=color, ls=":", lw=1.2, label=f"2/lr = {fmt_num(np.median(thr))}")
    _log_axes(ax, xlabel, "final sharpness λ_max of the train loss", title)
    return plots.to_png(fig)


def sharpness_time_figure(curves: pd.DataFrame, rows: list[dict[str, Any]], labels: dict[str, str],
                          title: str) -> bytes:
    """λ_max over training steps for the shown runs, each with its 2/lr as a dashed line."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    for color, row in zip(_colors(len(rows)), rows):
        c = curves[(curves["run_id"] == row["run_id"]) & (curves["name"] == "sharpness")].sort_values("step")
        ax.plot(c["step"], c["value"], "-", color=color, lw=1.4, label=labels[row["run_id"]])
        line = curves[(curves["run_id"] == row["run_id"]) & (curves["name"] == "stability_threshold")]
        if row.get("threshold_moves") and len(line):  # warmup or decay: 2/lr(t) at each evaluated step
            line = line.sort_values("step")
            ax.plot(line["step"], line["value"], "--", color=color, lw=1, alpha=0.8)
        elif row["threshold"] is not None:
            ax.axhline(row["threshold"], color=color, ls="--", lw=1, alpha=0.8)
    ax.set_xlabel("training step")
    ax.set_ylabel("sharpness λ_max (dashed: 2/lr)")
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3, lw=0.5)
    ax.legend(fontsize=7, loc="best")
    return plots.to_png(fig)


def across_figure(groups: list[dict[str, Any]], xlabel: str, title: str, two_over: bool) -> bytes:
    """Final λ_max against learning rate (with the 2/lr curve) or batch size, one line per setting."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    groups = groups[:MAX_SERIES]
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    for color, group in zip(_colors(len(groups)), groups):
        xs = [float(r["value"]) for r in group["rows"]]
        _series(ax, xs, [r["sharpness"] for r in group["rows"]], color, _fixed_text(group["fixed"]) or "λ_max")
    if two_over:
        values = sorted({float(r["value"]) for g in groups for r in g["rows"] if r["threshold"] is not None})
        if values:
            grid = np.geomspace(values[0], values[-1], 50)
            thresholds = {float(r["value"]): r["threshold"] for g in groups for r in g["rows"] if r["threshold"]}
            scale = float(np.median([thresholds[v] * v / 2 for v in thresholds]))  # (1 + β) with momentum β
            ax.plot(grid, 2 * scale / grid, "--", color=plots.COLORS["theory"], lw=1.2, label="2/lr")
    ax.set_xscale("log")
    ax.set_yscale("log")
    # a tick at every value the sweep tried (0.04, 0.08, 0.16), round ones on the λ axis, no minor labels
    tried = sorted({float(r["value"]) for g in groups for r in g["rows"]})
    ax.xaxis.set_major_locator(FixedLocator(tried))
    lo, hi = ax.get_ylim()
    ax.yaxis.set_major_locator(FixedLocator(plots.log_ticks(lo, hi)))
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(plain)
        axis.set_minor_locator(NullLocator())
    ax.set_xlabel(xlabel)
    ax.set_ylabel("final sharpness λ_max")
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3, which="both", lw=0.5)
    ax.legend(fontsize=7, loc="best")
    return plots.to_png(fig)


def _ends(group: dict[str, Any], metric: str) -> tuple[dict, dict] | None:
    sizes = [s for s in group["sizes"] if s.get(metric)]
    return (sizes[0], sizes[-1]) if len(sizes) >= 2 else None


def _pcts(say: Sentence, a: float, b: float) -> tuple[str, str]:
    """Two fractions as percents with enough digits that different values read differently."""
    digits = 3
    while a != b and fmt_pct(a, digits) == fmt_pct(b, digits) and digits < 9:
        digits += 1
    return say.pct(a, digits), say.pct(b, digits)


def _norm_claims(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """How far training moved the weights, smallest vs largest size, absolute and relative to ‖θ₀‖."""
    out = []
    for group in doc["by_size"][:MAX_SENTENCE_GROUPS]:
        head = f"{_fixed_text(group['fixed'])}: " if group["fixed"] else ""
        ends = _ends(group, "distance_from_init")
        if ends is None:
            continue
        a, b = ends
        say = Sentence()
        da, db = a["distance_from_init"]["median"], b["distance_from_init"]["median"]
        seeds = max(a["distance_from_init"]["n"], b["distance_from_init"]["n"])
        s = (f"{head}Training moved the weights ‖θ − θ₀‖ = {say.num(da)} at {_size_text(doc['axis'], a)} and "
             f"{say.num(db)} at {_size_text(doc['axis'], b)}" + (f" (median over {seeds} seeds)" if seeds > 1 else ""))
        ra, rb = a.get("relative_distance"), b.get("relative_distance")
        if ra and rb:
            less = rb["median"] < ra["median"]
            say.states(rb["median"], "<" if less else ">=", ra["median"])
            verdict = ("the larger model moved relatively less, closer to the lazy (linearized) regime" if less
                       else "the larger model moved relatively more")
            shown_a, shown_b = _pcts(say, ra["median"], rb["median"])
            s += f"; relative to ‖θ₀‖ that is {shown_a} and {shown_b}: {verdict}"
        elif a.get("param_norm") and b.get("param_norm"):
            s += (f"; ‖θ‖ goes from {say.num(a['param_norm']['median'])} to "
                  f"{say.num(b['param_norm']['median'])}")
        out.append(say.claim(s + "."))
    return out


def _min_norm_claims(doc: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [s for g in doc["by_size"] for s in g["sizes"] if s.get("distance_to_min_norm")]
    if not rows:
        return []
    say = Sentence()
    worst = max(rows, key=lambda s: s["distance_to_min_norm"]["max"])
    dist = worst["distance_to_min_norm"]["max"]
    ref = worst["min_norm_norm"]["median"] if worst.get("min_norm_norm") else None
    n = sum(s["distance_to_min_norm"]["n"] for s in rows)
    if ref and dist <= 1e-6 * ref:
        return [say.claim(f"Every one of the {say.int(n)} linear-in-parameters runs ended within {say.num(dist)} of "
                          f"the minimum-norm solution, where ‖w*‖ = {say.num(ref)}: training found the min-norm "
                          f"interpolant.")]
    rel = worst.get("relative_distance_to_min_norm")
    share = f", up to {say.pct(rel['max'])} of ‖w*‖" if rel else ""
    return [say.claim(f"The largest distance to the minimum-norm solution is {say.num(dist)} at "
                      f"{_size_text(doc['axis'], worst)}{share}: there training stopped short of it, or was pulled "
                      f"away (weight decay, early stopping, a loss other than MSE).")]


def _sharpness_size_sentences(doc: dict[str, Any]) -> list[str]:
    out = []
    for group in doc["by_size"][:MAX_SENTENCE_GROUPS]:
        ends = _ends(group, "sharpness")
        if ends is None:
            continue
        a, b = ends
        head = f"{_fixed_text(group['fixed'])}: " if group["fixed"] else ""
        s = (f"{head}The final sharpness λ_max is {fmt_num(a['sharpness']['median'])} at "
             f"{_size_text(doc['axis'], a)} and {fmt_num(b['sharpness']['median'])} at "
             f"{_size_text(doc['axis'], b)}")
        if b.get("stability_threshold"):
            s += f" (2/lr = {fmt_num(b['stability_threshold']['median'])})"
        out.append(s + ".")
    return out


def _run_sentence(row: dict[str, Any], label: str) -> str:
    rose = f"rose from {fmt_num(row['initial'])} to " if row["initial"] is not None else "reached "
    s = (f"{label}: λ_max {rose}a peak of {fmt_num(row['peak'])} at step {row['peak_step']:,} and ended at "
         f"{fmt_num(row['final'])}" + (", still rising when training stopped" if row["rising"] else ""))
    if row["ratio"] is None:
        return s + " (no 2/lr line applies to this optimizer)."
    if row.get("threshold_moves"):  # warmup or decay: compared step by step with 2/lr(t)
        s += (f"; over the second half of training it sat at a median {row['ratio']:.2f}× the 2/lr line of "
              f"each step's learning rate (the schedule moved it; 2/lr = {fmt_num(row['threshold'])} at the "
              f"peak lr): ")
    else:
        s += (f"; over the second half of training it sat at {fmt_num(row['late'])}, {row['ratio']:.2f}× the "
              f"2/lr = {fmt_num(row['threshold'])} line: ")
    return s + {"edge": "training ran at the edge of stability.",
                "below": "below the edge of stability; the step size did not limit the curvature.",
                "above": "above the line, where gradient descent on a quadratic would diverge (unstable)."
                }[row["regime"]]


def _across_sentences(groups: list[dict[str, Any]], plural: str, unit: str) -> list[str]:
    """A trend only when λ_max moves monotonically with the knob; otherwise the values, as measured."""
    out = []
    for group in groups[:MAX_SENTENCE_GROUPS]:
        rows = group["rows"]
        head = f"{_fixed_text(group['fixed'])}: " if group["fixed"] else ""
        sharp = [r["sharpness"]["median"] for r in rows]
        steps = np.diff(sharp)
        listed = ", ".join(f"{fmt_num(v)} at {unit} {r['value']}" for v, r in zip(sharp, rows))
        if np.all(steps > 0) or np.all(steps < 0):
            trend = "sharper" if steps[0] > 0 else "flatter"
            pair = (f"λ_max {fmt_num(sharp[-1])} at {unit} {rows[-1]['value']} vs {fmt_num(sharp[0])} at {unit} "
                    f"{rows[0]['value']}")
            s = f"{head}Larger {plural} ended {trend}: " + (listed if len(rows) > 2 else pair)
        else:
            s = f"{head}The final λ_max does not move monotonically with {unit}: {listed}"
        ratios = [r["ratio"] for r in rows]
        if all(r is not None for r in ratios):
            s += f"; λ_max / (2/lr) = {', '.join(f'{r:.2f}' for r in ratios)} in the same order"
        out.append(s + ".")
    return out


def _trace_sentence(doc: dict[str, Any]) -> list[str]:
    for group in doc["by_size"][:1]:
        ends = _ends(group, "hessian_trace")
        if ends is None:
            only = [s for s in group["sizes"] if s.get("hessian_trace")]
            if not only:
                return []
            a = only[0]
            se = f" ± {fmt_num(a['hessian_trace_se']['median'])}" if a.get("hessian_trace_se") else ""
            return [f"The Hessian trace (Hutchinson) is {fmt_num(a['hessian_trace']['median'])}{se}."]
        a, b = ends

        def est(s: dict[str, Any]) -> str:
            se = f" ± {fmt_num(s['hessian_trace_se']['median'])}" if s.get("hessian_trace_se") else ""
            return f"{fmt_num(s['hessian_trace']['median'])}{se}"

        return [f"The Hessian trace tr H (Hutchinson, ± standard error) is {est(a)} at "
                f"{_size_text(doc['axis'], a)} and {est(b)} at {_size_text(doc['axis'], b)}."]
    return []


def _labels(doc: dict[str, Any], runs: pd.DataFrame, ids: list[str]) -> dict[str, str]:
    info = runs.set_index("id")
    knobs = [c for c in ("train.lr", "train.batch_size") if c in runs and runs[c].astype(str).nunique() > 1]
    axis = doc["axis"]
    out = {}
    for run_id in ids:
        parts = [f"{c.split('.')[-1].replace('batch_size', 'batch')} {info.at[run_id, c]}" for c in knobs]
        if not parts or (axis in info and info[axis].astype(str).nunique() > 1):
            size = info.at[run_id, axis] if axis in info else info.at[run_id, "params"]
            parts.append(f"{axis.split('.')[-1]} {size}")
        out[run_id] = ", ".join(parts)
    return out


def _table(rows: list[dict[str, Any]], labels: dict[str, str]) -> str:
    cols = ["run", "setting", "initial", "peak", "late", "final", "2/lr", "late / (2/lr)", "regime"]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for r in rows[:MAX_TABLE_ROWS]:
        cells = [r["run_id"], labels.get(r["run_id"], ""), fmt_num(r["initial"], 4), fmt_num(r["peak"], 4),
                 fmt_num(r["late"], 4), fmt_num(r["final"], 4), fmt_num(r["threshold"], 4),
                 "n/a" if r["ratio"] is None else f"{r['ratio']:.3f}", r["regime"] or "n/a"]
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def implicit_section(ctx: SweepContext) -> Section | None:
    """Norms, min-norm distance and sharpness as recorded per run; None when no run recorded them."""
    from overparam.analysis.implicit_sweep import has_diagnostics, implicit_summary

    runs = ctx.runs
    if runs.empty or not has_diagnostics(runs):
        return None
    doc = implicit_summary((runs, ctx.curves))
    section = Section(title="Implicit regularization")
    multi = any(len(g["sizes"]) >= 2 for g in doc["by_size"])
    if multi and "distance_from_init" in doc["metrics"]:
        section.figures.append(("implicit_norms.png", norms_figure(doc, ctx.name),
                                "Parameter norm ‖θ‖ (solid) and distance from init ‖θ − θ₀‖ (dashed) against size: "
                                "median over seeds, band = range" + ("; right: distance to the min-norm solution."
                                                                     if "distance_to_min_norm" in doc["metrics"]
                                                                     else ".")))
    section.claims = _norm_claims(doc) + _min_norm_claims(doc)
    section.sentences += texts(section.claims)
    if multi and "sharpness" in doc["metrics"]:
        section.figures.append(("implicit_sharpness_size.png", sharpness_size_figure(doc, ctx.name),
                                "Final sharpness (top Hessian eigenvalue of the full-batch train loss) against "
                                "size; dotted: 2/lr, the edge of stability (Cohen et al. 2021)."))
    section.sentences += _sharpness_size_sentences(doc)
    by_id = {r["run_id"]: r for r in doc["runs"]}
    shown = [by_id[i] for i in doc["shown"] if i in by_id]
    labels = _labels(doc, runs, [r["run_id"] for r in doc["runs"]])
    if shown:
        section.figures.append(("implicit_sharpness_time.png",
                                sharpness_time_figure(ctx.curves, shown, labels, ctx.name),
                                "Sharpness over training for representative runs, measured at each evaluation; "
                                "dashed: each run's 2/lr. Full-batch GD sharpens until it meets 2/lr, then "
                                "hovers there (edge of stability)."))
        section.sentences += [_run_sentence(r, f"At {labels[r['run_id']]}") for r in shown]
    if doc["lr"]:
        section.figures.append(("implicit_sharpness_lr.png",
                                across_figure(doc["lr"], "learning rate", ctx.name, two_over=True),
                                "Final sharpness against learning rate (median over seeds, band = range); "
                                "dashed: 2/lr."))
        section.sentences += _across_sentences(doc["lr"], "learning rates", "lr")
    if doc["batch"]:
        section.figures.append(("implicit_sharpness_batch.png",
                                across_figure(doc["batch"], "batch size", ctx.name, two_over=False),
                                "Final sharpness against batch size (median over seeds, band = range)."))
        section.sentences += _across_sentences(doc["batch"], "batches", "batch")
    section.sentences += _trace_sentence(doc)
    if doc["runs"]:
        section.tables.append(_table(doc["runs"], labels))
    if not (section.figures or section.sentences):
        return None
    section.summary = {**doc, "sentences": section.sentences, "claims": section.claims}
    return section
