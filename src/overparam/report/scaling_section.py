"""The report's scaling-law section for language-model sweeps (``text``, ``markov``, ``hf`` with a text_column).

Everything drawn or said comes from ``DIR/analyses/scaling.json`` (``analysis/scaling_report.py``),
computed here when absent or stale, so ``overparam report`` works on any LM sweep directory. Figures,
all log-log: loss vs parameters N (one line per token budget, with the fitted law), loss vs tokens D
(one line per size), loss vs compute C = 6ND with the fitted compute-optimal frontier and the
allocation N_opt(C), D_opt(C), and IsoFLOP profiles where runs share a compute budget. Shaded bands
are pointwise 95 % intervals over the bootstrap fits.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd

from overparam.analysis.claims import Sentence
from overparam.analysis.scaling_report import band, law_loss, load_or_analyze, num, optimum, samples, sweep_points
from overparam.report.plots import plt, to_png
from overparam.report.sections import Section, SweepContext, language_sweep

REPORT_BOOTSTRAP = 1000  # resamples when the report computes the analysis itself (`overparam fit`'s default)
SPAN = 1.6  # fitted curves reach this factor past the smallest and largest measured value
MIN_RUNS = 3  # finished runs a scaling law needs (analyze_scaling_sweep refuses fewer)


def scaling_section(ctx: SweepContext) -> Section | None:
    """The section, or None when the sweep is not a language-model sweep with finished runs."""
    runs = ctx.runs
    if not language_sweep(ctx) or "tokens" not in runs or not (runs["status"] == "done").any():
        return None
    points = sweep_points(ctx.dir)
    if len(points) < MIN_RUNS:  # nothing to fit: one line, not a heading over an error
        say = Sentence()
        claim = say.claim(f"not fitted: {say.int(len(points))} finished {'run' if len(points) == 1 else 'runs'} "
                          f"with a token count; a scaling law needs at least {say.int(MIN_RUNS)}.")
        return Section(title="Scaling law", sentences=[claim["text"]], claims=[claim], brief=True,
                       summary={"n_runs": len(points), "min_runs": MIN_RUNS, "sentences": [claim["text"]],
                                "claims": [claim]})
    doc = load_or_analyze(ctx.dir, bootstrap=REPORT_BOOTSTRAP)
    section = Section(title="Scaling law", sentences=list(doc["sentences"]), claims=list(doc.get("claims") or []))
    if doc.get("settings") is None:
        _figures(ctx, section, doc, "", "")
    else:
        fitted = [sub for sub in doc["settings"] if "skipped" not in sub]
        if fitted:
            section.figures.append(("scaling_settings.png", settings_figure(fitted),
                                    "Test loss vs parameters N at each setting's largest token budget, one colour "
                                    "per setting, each on its own test split; lines: the law fitted to that setting "
                                    "alone."))
        for i, sub in enumerate(fitted):  # a setting with several budgets also gets the figures over D and C
            if len(sub["grid"]["tokens"]) > 1:
                _figures(ctx, section, sub, sub["label"], f"_{i}")
    section.summary = _summary(doc)
    return section


def _figures(ctx: SweepContext, section: Section, doc: dict[str, Any], label: str, suffix: str) -> None:
    """The figures (and the frontier table) of one scaling document: the sweep's, or one setting's."""
    pts = pd.DataFrame(doc["points"])
    pts["label"] = _size_labels(ctx, pts)
    boot = samples(doc)
    fit = doc.get("fit")
    p = fit["params"] if fit else None
    where = f"{label}: " if label else ""
    section.figures.append((f"scaling_loss_vs_params{suffix}.png", loss_vs_params(doc, pts, p, boot, label),
                            where + _caption("Test loss vs parameters N, one colour per token budget D", doc)
                            + _backtest_caption(doc)))
    if len(doc["grid"]["tokens"]) < 2:  # one token budget: loss vs D is a column of dots, and C = 6ND is N again
        return
    section.figures.append((f"scaling_loss_vs_tokens{suffix}.png", loss_vs_tokens(doc, pts, p, boot, label),
                            where + _caption("Test loss vs training tokens D, one colour per model size", doc,
                                             law_drawn=doc.get("law") == "chinchilla")))
    section.figures.append((f"scaling_loss_vs_compute{suffix}.png", loss_vs_compute(doc, pts, p, boot, label),
                            where + ("Left: test loss vs compute C = 6ND per run, and the fitted compute-optimal "
                                     "frontier L(N_opt(C), D_opt(C)). Right: the fitted N_opt(C) and D_opt(C), with "
                                     "the runs' own N and D for reference. Bands: 95 % bootstrap intervals."
                                     if doc.get("law") == "chinchilla" else
                                     "Test loss vs compute C = 6ND per run, one line per model size (no joint law, "
                                     "so no compute-optimal frontier).")))
    iso = isoflop_profiles(doc, pts, p, boot, label)
    if iso:
        section.figures.append((f"scaling_isoflop{suffix}.png", iso,
                                where + f"IsoFLOP profiles: runs whose compute lies within "
                                f"{10 ** doc['isoflop']['tolerance_decades']:.2g}× of each other, loss vs N"
                                + ("; lines: the fitted law along 6ND = C at each group's mean compute, band: "
                                   "its 95 % bootstrap interval, star: its minimum, the fitted compute-optimal "
                                   "size." if doc.get("law") == "chinchilla" else ".")))
    if doc.get("frontier"):
        section.tables.append(frontier_table(doc["frontier"], label))


def settings_figure(settings: list[dict[str, Any]]) -> bytes:
    """One line of points per setting (its largest token budget) and the law fitted to it, on shared axes."""
    fig, ax = plt.subplots(figsize=(7.4, 4.4))
    everything = []
    for sub, color in zip(settings, _colors(len(settings)), strict=True):
        pts = pd.DataFrame(sub["points"])
        top = pts[pts["tokens"] == pts["tokens"].max()].groupby("params")["loss"].mean()
        everything.append(pts)
        ax.plot(top.index, top.values, "o", color=color, ms=5, label=f"{sub['label']} · D = {num(pts['tokens'].max())}")
        law = sub.get("law")
        if law == "chinchilla" or (law == "power-params" and not (sub.get("fit") or {}).get("exact")):
            xs = np.geomspace(top.index.min() / SPAN, top.index.max() * SPAN, 80)
            d = pts["tokens"].max() if law == "chinchilla" else None
            ax.plot(xs, law_loss(sub["fit"]["params"], xs, d), "-", color=color, lw=1.2)
    _log_axes(ax, "parameters N (total, embeddings included)")
    _limits(ax, pd.concat(everything))
    ax.set_title("Loss vs model size, one law per setting", fontsize=11)
    _legend(ax)
    return to_png(fig)


def _summary(doc: dict[str, Any]) -> dict[str, Any]:
    """What summary.json keeps of a scaling document: all but its points and bootstrap draws (which stay in
    analyses/scaling.json); every number the section's sentences quote is here."""
    out = {k: v for k, v in doc.items() if k not in ("points", "fit", "settings", "run_ids")}
    out["fit"] = {k: v for k, v in (doc.get("fit") or {}).items() if k != "samples"} or None
    if doc.get("settings") is not None:
        out["settings"] = [_summary(sub) for sub in doc["settings"]]
    return out


def _caption(lead: str, doc: dict[str, Any], law_drawn: bool = True) -> str:
    if not law_drawn:
        return f"{lead}. Lines join each size's runs (no joint law L(N, D) to draw)."
    if doc.get("law") == "chinchilla":
        return (f"{lead}. Lines: the fitted L(N, D) = E + A/N^α + B/D^β at each measured value, bands its "
                "95 % bootstrap interval; dashed, where it falls in range: the same law with the other "
                "resource unlimited.")
    if doc.get("law") == "power-params" and (doc.get("fit") or {}).get("exact"):
        return f"{lead}. No law drawn: at the largest token budget L(N) = E + A/N^α has as many constants as points."
    if doc.get("law") == "power-params":
        return f"{lead}. Line: L(N) = E + A/N^α fitted at the largest token budget only (no joint law)."
    return f"{lead}. No law fitted."


def _backtest_caption(doc: dict[str, Any]) -> str:
    if not (doc.get("backtest") or {}).get("predictions"):
        return ""
    return (" Hollow diamonds: the extrapolation backtest's predictions for the largest model, from a fit "
            "without it.")


def _size_labels(ctx: SweepContext, pts: pd.DataFrame) -> list[str]:
    """'d_model 64 · 111k params' from the sweep's size axes; parameters alone without them."""
    axes = [a for a in (ctx.meta.get("size_axes") or []) if a in ctx.runs]
    by_id = ctx.runs.set_index("id")
    out = []
    for rid, n in zip(pts["run_id"], pts["params"], strict=True):
        parts = [f"{a.split('.')[-1]} {by_id.at[rid, a]}" for a in axes if rid in by_id.index]
        out.append(" · ".join([*parts, f"{num(n)} params"]))
    return out


def _titled(title: str, label: str) -> str:
    return f"{title}\n{label}" if label else title


def _colors(count: int) -> list[Any]:
    cmap = plt.get_cmap("viridis")
    return [cmap(0.85 * i / max(count - 1, 1)) for i in range(count)]


def _log_axes(ax, xlabel: str, ylabel: str = "test loss (nats/token)") -> None:
    from matplotlib.ticker import ScalarFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ScalarFormatter())
    _x_labels(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both", lw=0.5)


def _x_labels(ax) -> None:
    """x tick labels as 30k, 1e12 (``num``); 2× and 5× minor ticks labelled when the axis spans
    less than 2 decades, where a log axis would otherwise show one label or none."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    def tick(v, _pos) -> str:
        return num(v, 2).replace(".0e", "e")

    lo, hi = ax.get_xlim()
    ax.xaxis.set_major_formatter(FuncFormatter(tick))
    if np.log10(hi / lo) < 2:
        ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        ax.xaxis.set_minor_formatter(FuncFormatter(tick))
        ax.tick_params(axis="x", which="minor", labelsize=8)
    else:
        ax.xaxis.set_minor_formatter(NullFormatter())


def _limits(ax, pts: pd.DataFrame, extra: list[float] | None = None) -> None:
    """y range from the measured losses (and ``extra`` values that must show): bootstrap bands far
    from the data must not squash it. Linear ticks: a log axis over less than a decade labels only 2, 3."""
    from matplotlib.ticker import MaxNLocator, NullFormatter, NullLocator

    values = np.concatenate([pts["loss"].to_numpy(float), np.asarray(extra or [], float)])
    lo, hi = 0.93 * values.min(), 1.06 * values.max()
    ax.set_ylim(lo, hi)
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_yticks([t for t in MaxNLocator(7).tick_values(lo, hi) if lo <= t <= hi])


def _legend(ax) -> None:
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def _limit_line(ax, x, y, label: str) -> None:
    """The law with one resource unlimited, dashed, only where it falls inside the plotted range."""
    lo, hi = ax.get_ylim()
    if np.any((y >= lo) & (y <= hi)):
        ax.plot(x, y, "--", color="#555", lw=1, label=label)


def _curve(ax, x, mid, boot_curves, color, dashed: bool = False, label: str | None = None) -> None:
    if boot_curves is not None and len(boot_curves):
        lo, hi = band(boot_curves)
        ax.fill_between(x, lo, hi, color=color, alpha=0.13, linewidth=0)
    ax.plot(x, mid, ls="--" if dashed else "-", color=color, lw=1.3, label=label)


def loss_vs_params(doc: dict[str, Any], pts: pd.DataFrame, p: dict | None, boot: list[dict],
                   label: str = "") -> bytes:
    """Loss vs N per token budget with the fitted law at that budget, the D → ∞ limit and the backtest."""
    fig, ax = plt.subplots(figsize=(7.4, 4.4))
    budgets = sorted(pts["tokens"].unique())
    xs = np.geomspace(pts["params"].min() / SPAN, pts["params"].max() * SPAN, 80)
    for d, color in zip(budgets, _colors(len(budgets)), strict=True):
        sub = pts[pts["tokens"] == d].groupby("params")["loss"].mean()
        ax.plot(sub.index, sub.values, "o", color=color, ms=5, label=f"D = {num(d)} tokens")
        if doc.get("law") == "chinchilla" or (doc.get("law") == "power-params" and d == budgets[-1]
                                               and not (doc.get("fit") or {}).get("exact")):
            _curve(ax, xs, law_loss(p, xs, d), [law_loss(q, xs, d) for q in boot], color)
    _backtest_markers(ax, doc)
    _log_axes(ax, "parameters N (total, embeddings included)")
    bt = [r["predicted"] for r in (doc.get("backtest") or {}).get("predictions") or []]
    _limits(ax, pts, bt)
    if doc.get("law") == "chinchilla":
        _limit_line(ax, xs, law_loss(p, xs), "fit, D unlimited: E + A/N^α")
    ax.set_title(_titled("Loss vs model size", label), fontsize=11)
    _legend(ax)
    return to_png(fig)


def _backtest_markers(ax, doc: dict[str, Any]) -> None:
    bt = doc.get("backtest") or {}
    preds = bt.get("predictions") or []
    for i, row in enumerate(preds):
        ax.plot([row["params"]] * 2, [row["loss"], row["predicted"]], color="#c0392b", lw=0.8, alpha=0.7)
        ax.plot(row["params"], row["predicted"], "D", mfc="none", mec="#c0392b", ms=6,
                label=(f"backtest: predicted without N = {num(bt['held_out_from'])} "
                       f"(mean |error| {100 * bt['mean_abs_rel_error']:.2g} %)") if i == 0 else None)


def loss_vs_tokens(doc: dict[str, Any], pts: pd.DataFrame, p: dict | None, boot: list[dict],
                   label: str = "") -> bytes:
    """Loss vs D per model size with the fitted law at that size and the N → ∞ limit."""
    fig, ax = plt.subplots(figsize=(7.4, 4.4))
    sizes = sorted(pts["params"].unique())
    xs = np.geomspace(pts["tokens"].min() / SPAN, pts["tokens"].max() * SPAN, 80)
    joint = doc.get("law") == "chinchilla"
    for n, color in zip(sizes, _colors(len(sizes)), strict=True):
        sub = pts[pts["params"] == n]
        mean = sub.groupby("tokens")["loss"].mean()
        ax.plot(mean.index, mean.values, "o" if joint else "o-", color=color, ms=5, lw=1,
                label=sub["label"].iloc[0])
        if joint:
            _curve(ax, xs, law_loss(p, n, xs), [law_loss(q, n, xs) for q in boot], color)
    _log_axes(ax, "training tokens D")
    _limits(ax, pts)
    if joint:
        _limit_line(ax, xs, p["E"] + p["B"] * xs ** -p["beta"], "fit, N unlimited: E + B/D^β")
    ax.set_title(_titled("Loss vs training tokens", label), fontsize=11)
    _legend(ax)
    return to_png(fig)


def loss_vs_compute(doc: dict[str, Any], pts: pd.DataFrame, p: dict | None, boot: list[dict],
                    label: str = "") -> bytes:
    """Left: runs and the fitted frontier L*(C). Right: N_opt(C), D_opt(C) with the runs' N, D."""
    joint = doc.get("law") == "chinchilla"
    fig, axes = plt.subplots(1, 2 if joint else 1, figsize=(12, 4.4) if joint else (7.4, 4.4), squeeze=False)
    ax = axes[0][0]
    sizes = sorted(pts["params"].unique())
    for n, color in zip(sizes, _colors(len(sizes)), strict=True):
        sub = pts[pts["params"] == n].sort_values("flops")
        ax.plot(sub["flops"], sub["loss"], "o-", color=color, ms=5, lw=0.8, label=sub["label"].iloc[0])
    _log_axes(ax, "compute C = 6ND (FLOPs)")
    _limits(ax, pts)
    ax.set_title(_titled("Loss vs compute", label), fontsize=11)
    if joint:
        cs = np.geomspace(pts["flops"].min() / SPAN, pts["flops"].max() * 4, 80)
        opt = [optimum(q, cs) for q in boot]
        _curve(ax, cs, optimum(p, cs)[2], [o[2] for o in opt], "#c0392b", label="fitted frontier L(N_opt, D_opt)")
        right = axes[0][1]
        for k, (name, color) in enumerate((("N_opt (params)", "#2c7fb8"), ("D_opt (tokens)", "#e67e22"))):
            _curve(right, cs, optimum(p, cs)[k], [o[k] for o in opt], color, label=f"fitted {name}")
        right.plot(pts["flops"], pts["params"], "o", color="#2c7fb8", ms=3, alpha=0.5, label="runs: N")
        right.plot(pts["flops"], pts["tokens"], "s", color="#e67e22", ms=3, alpha=0.5, label="runs: D")
        right.set_xscale("log")
        right.set_yscale("log")
        _x_labels(right)
        right.set_xlabel("compute C = 6ND (FLOPs)")
        right.set_ylabel("parameters / tokens")
        right.set_title("Fitted compute-optimal allocation", fontsize=11)
        right.grid(alpha=0.3, which="both", lw=0.5)
        right.legend(fontsize=7.5, loc="lower right")
        measured = np.concatenate([pts["params"], pts["tokens"]])
        right.set_ylim(measured.min() / 10, measured.max() * 30)
    ax.legend(fontsize=7.5, loc="lower left")
    fig.tight_layout()
    return to_png(fig)


def isoflop_profiles(doc: dict[str, Any], pts: pd.DataFrame, p: dict | None, boot: list[dict],
                     label: str = "") -> bytes | None:
    """Loss vs N within each compute group of ≥ 3 runs (≥ 2 when no group has 3); None without any."""
    groups = (doc.get("isoflop") or {}).get("groups", [])
    wide = [g for g in groups if len(g["run_ids"]) >= 3]
    groups = wide or groups
    if not groups:
        return None
    fig, ax = plt.subplots(figsize=(7.4, 4.4))
    joint = doc.get("law") == "chinchilla"
    stars = []
    for g, color in zip(groups, _colors(len(groups)), strict=True):
        sub = pts[pts["run_id"].isin(g["run_ids"])].sort_values("params")
        ax.plot(sub["params"], sub["loss"], "o", color=color, ms=6, label=f"C ≈ {num(g['flops'])} FLOPs")
        if joint:
            c = g["flops"]
            n_opt, _, l_opt = optimum(p, c)
            xs = np.geomspace(min(sub["params"].min() / 2, n_opt / 1.5), max(sub["params"].max() * 2, n_opt * 1.5), 60)
            _curve(ax, xs, law_loss(p, xs, c / (6 * xs)), [law_loss(q, xs, c / (6 * xs)) for q in boot], color)
            ax.plot(n_opt, l_opt, "*", color=color, ms=13, mec="black", mew=0.6)
            stars.append(float(l_opt))
        else:
            ax.plot(sub["params"], sub["loss"], "-", color=color, lw=1)
    _log_axes(ax, "parameters N")
    _limits(ax, pts[pts["run_id"].isin([i for g in groups for i in g["run_ids"]])], stars)
    ax.set_title(_titled("IsoFLOP profiles", label), fontsize=11)
    _legend(ax)
    return to_png(fig)


def frontier_table(rows: list[dict[str, Any]], label: str = "") -> str:
    """The compute-optimal allocation per budget over the sweep's compute range, with intervals."""
    def cell(row, key):
        ci = (row.get("ci") or {}).get(key)
        extra = f" [{num(ci[0], 2)}, {num(ci[1], 2)}]" if ci and None not in ci else ""
        return f"<td>{html.escape(num(row[key]) + extra)}</td>"

    head = "".join(f"<th>{h}</th>" for h in ("compute C = 6ND", "N_opt (params)", "D_opt (tokens)",
                                               "tokens / param", "predicted loss"))
    body = "".join("<tr>" + f"<td>{html.escape(num(r['flops']))}</td>" + "".join(
        cell(r, k) for k in ("params", "tokens", "tokens_per_param", "loss")) + "</tr>" for r in rows)
    lead = f"{html.escape(label)}: fitted" if label else "Fitted"
    return (f"<p class=\"meta\">{lead} compute-optimal allocation over the sweep's compute range "
            f"(95 % bootstrap intervals)</p><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
