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

from overparam.analysis.claims import Sentence, fmt_settings, texts
from overparam.analysis.epochwise import ends_above_best
from overparam.report import plots
from overparam.report.reading import evidence_states, noise_phrase
from overparam.report.sections import Section, SweepContext, language_sweep

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
    """``table``: sizes × steps (``heatmap_table``); step 0 is dropped from the log axis.

    One row per size of the sweep, equally tall and labelled with its value: a size axis is a list
    of settings, not a continuum (two widths drawn on a linear axis made bands of made-up sizes,
    from below 0 up). Geometric sweeps look the same as on a log axis.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    table = table.loc[:, [c for c in table.columns if c > 0]]
    steps = np.array(table.columns, dtype=float)
    sizes = list(table.index)
    values = table.to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(7.2, max(2.6, min(4.4, 1.2 + 0.35 * len(sizes)))))
    finite = values[np.isfinite(values)]
    # log colours: the late-time structure (a few % of error) would vanish next to the init's ~90 %
    norm = LogNorm(vmin=finite.min(), vmax=finite.max()) if finite.min() > 0 else None
    rows = np.arange(len(sizes) + 1) - 0.5
    mesh = ax.pcolormesh(_edges(steps, True), rows, np.ma.masked_invalid(values), cmap="magma", norm=norm,
                         shading="flat")
    bar = fig.colorbar(mesh, ax=ax, label=f"{metric.replace('_', ' ')} (mean over seeds)")
    if norm is not None:  # round plain ticks, not 6×10⁻¹ minor labels
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

        bar.ax.yaxis.set_major_locator(FixedLocator(plots.log_ticks(finite.min(), finite.max())))
        bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        bar.ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xscale("log")
    every = max(1, int(np.ceil(len(sizes) / 14)))  # at most ~14 labels
    ax.set_yticks(range(0, len(sizes), every), [f"{v:g}" if isinstance(v, (int, float)) else str(v)
                                                 for v in sizes[::every]])
    ax.set_ylim(-0.5, len(sizes) - 0.5)
    ax.set_xlabel("training step")
    ax.set_ylabel(axis)
    ax.set_title(title, fontsize=11)
    return plots.to_png(fig)


def counted(doc: dict[str, Any], axis: str) -> tuple[str, str]:
    """What a row of the analysis is, counted right: ("sizes", "") when only the size varies, else
    ("curves", "2 sizes × 3 settings of train.lr"): a (setting, size) curve is not a size."""
    rows = doc["sizes"]
    sizes = {str(r["size"]) for r in rows}
    settings = {tuple(sorted(r["fixed"].items())) for r in rows}
    if len(settings) <= 1:
        return "sizes", ""
    names = sorted({k for r in rows for k in r["fixed"]})
    return "curves", (f"{len(sizes)} size{'s' if len(sizes) != 1 else ''} of {axis} × {len(settings)} settings "
                      f"of {', '.join(names)}")


RISE_WORDS = {"clear": "a clear rise", "weak": "weak evidence of a rise",
              "within noise": "within noise, so no rise beyond the noise",
              "unknown": "rerun with more seeds (vary: seed) to tell a rise from noise"}
FALL_WORDS = {"clear": "a clear second descent", "weak": "weak evidence of a second descent",
              "within noise": "within noise, so no second descent beyond the noise",
              "unknown": "whether that exceeds the noise is unknown"}
SHOWN = 3  # bumps described one by one; the JSON lists every one
RANK = {"clear": 0, "weak": 1, "within noise": 2, "unknown": 3}


def _where(s: Sentence, row: dict[str, Any], axis: str) -> str:
    size = row["size"]
    if isinstance(size, (int, float)) and not isinstance(size, bool):
        value = s.shown(size, f"{int(size):,}" if float(size).is_integer() else f"{size:g}")
    else:
        value = str(size)
    fixed = fmt_settings(row["fixed"])
    return f"{axis} = {value}" + (f", {fixed}" if fixed else "")


def _bump_claims(row: dict[str, Any], axis: str, metric: str) -> list[dict[str, Any]]:
    """The rise and the fall of one seed-mean curve over training, each against its noise."""
    s = Sentence()
    bump, fall = row["bump"], row["descent"]
    s.states(row["peak_value"], ">", row["min_before"])
    low_t, peak_t = s.pair(row["min_before"], row["peak_value"])
    rise = (f"At {_where(s, row, axis)} the {metric} rises over training from {low_t} at step "
            f"{s.int(row['min_before_step'])} to {peak_t} at step {s.int(row['peak_step'])}, "
            f"{s.num(bump['difference'])} up, {noise_phrase(s, bump)}: {RISE_WORDS[evidence_states(s, bump)]}.")
    t = Sentence()
    t.states(row["min_after"], "<", row["peak_value"])
    fall_t = (f"It then falls to {t.num(row['min_after'])} at step {t.int(row['min_after_step'])}, "
              f"{t.num(fall['difference'])} below that peak, {noise_phrase(t, fall)}: "
              f"{FALL_WORDS[evidence_states(t, fall)]}.")
    return [s.claim(rise), t.claim(fall_t)]


def _claims(doc: dict[str, Any], axis: str) -> list[dict[str, Any]]:
    """The epoch-wise reading: how many curves bump, which exceed the noise, the strongest ones in detail."""
    rows = doc["sizes"]
    metric = doc["metric"].replace("_", " ")
    noun, detail = counted(doc, axis)
    found = [r for r in rows if r.get("peak_found")]
    out = []
    s = Sentence()
    if not found:
        out.append(s.claim(f"No {noun[:-1]} shows an epoch-wise peak: along training, no seed-mean {metric} curve "
                           f"rises by {s.pct(doc['rise'])} and falls back again ({s.int(doc['n_sizes'])} {noun} read"
                           + (f": {detail})." if detail else ").")))
    else:
        real = [r for r in found if r["second_descent"]]
        head = (f"{s.int(doc['n_with_peak'])} of {s.int(doc['n_sizes'])} {noun}" + (f" ({detail})" if detail else "")
                + f" show an epoch-wise bump in the seed-mean {metric}: it falls, rises by at least "
                f"{s.pct(doc['rise'])} and falls back over training")
        if real:
            head += (f"; in {s.int(doc['n_with_second_descent'])} of them both the rise and the fall exceed the "
                     f"noise: epoch-wise double descent")
        else:
            head += ("; in none of them do both the rise and the fall exceed the noise, so no epoch-wise double "
                     "descent beyond the noise")
        out.append(s.claim(head + "."))
        ranked = sorted(found, key=lambda r: (not r["second_descent"], RANK.get(r["bump"]["evidence"], 3),
                                              -r["prominence"] / max(abs(r["peak_value"]), 1e-300)))
        for row in ranked[:SHOWN]:
            out.extend(_bump_claims(row, axis, metric))
        if len(found) > SHOWN:
            out.append(Sentence().claim("The other bumps are listed with their noise by overparam analyze --json, "
                                        "under epochwise."))
    late = [r for r in rows if ends_above_best(r, doc["rise"])]
    quiet = doc.get("n_end_above_best_within_noise") or 0
    if late:
        worst = max(late, key=lambda r: r["final_value"] / max(r["best_value"], 1e-300))
        t = Sentence()
        t.states(worst["final_value"], ">", worst["best_value"] * (1 + doc["rise"]))
        noise = ""
        if worst.get("late"):
            words = {"clear": "a clear rise", "weak": "weak evidence of a rise"}[evidence_states(t, worst["late"])]
            noise = f", {t.num(worst['late']['difference'])} higher, {noise_phrase(t, worst['late'])}, {words}"
        out.append(t.claim(
            f"{t.int(doc['n_end_above_best'])} of {t.int(doc['n_sizes'])} {noun} end training above their best "
            f"{metric} by more than {t.pct(doc['rise'])}" + (" and by more than the noise" if "late" in worst else "")
            + f"; most at {_where(t, worst, axis)}, best {t.num(worst['best_value'])} at step "
            f"{t.int(worst['best_step'])} and final {t.num(worst['final_value'])}{noise}: early stopping would "
            f"help there (the best step is read off this same test curve, so this is the most it could gain)."))
    if quiet:
        q = Sentence()
        out.append(q.claim(f"{q.int(quiet)} {'more ' if late else ''}{noun[:-1] if quiet == 1 else noun} "
                           f"{'ends' if quiet == 1 else 'end'} above {'its' if quiet == 1 else 'their'} best "
                           f"{metric} by more than {q.pct(doc['rise'])}, but within the noise."))
    return out


def epochwise_section(ctx: SweepContext) -> Section | None:
    """Heatmap of test error over size × steps, when curves were stored at enough steps."""
    from overparam.analysis.epochwise import curve_metric, epochwise_peaks, heatmap_table, other_settings, size_axis

    runs, curves = ctx.runs, ctx.curves
    if runs.empty or curves.empty or language_sweep(ctx):
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
    others = other_settings(done, axis)  # every other setting that varies (lr too): one heatmap each, never averaged
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
                                f"(columns, log), mean over seeds"
                                + (f" at {label}" if label else "")
                                + " (Nakkiran et al. 2019, Fig. 2)."))
    if not section.figures:
        return None
    if len(frames) > 6:
        section.sentences.append(f"The first 6 of {len(frames)} settings of {', '.join(others)} are drawn.")
    claims = _claims(doc, axis)
    section.claims = claims
    section.sentences = texts(claims) + section.sentences
    section.summary = {"metric": doc["metric"], "rise": doc["rise"], "axis": axis, "statistic": doc["statistic"],
                       "sizes": doc["sizes"], "n_sizes": doc["n_sizes"], "n_with_peak": doc["n_with_peak"],
                       "n_end_above_best": doc["n_end_above_best"],
                       "n_end_above_best_within_noise": doc["n_end_above_best_within_noise"],
                       "n_with_second_descent": doc["n_with_second_descent"], "sentences": section.sentences,
                       "claims": claims}
    return section
