"""Report section for LM sweeps of ``gpt`` runs: what the heads do and what the layers encode, by size.

Reads ``DIR/analyses/interpret.json`` (:func:`overparam.interpret.sweep.interpret_sweep`), which
is derived from the stored checkpoints alone and computed on first use (a few seconds per size
on a CPU); every number shown comes from it.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from overparam.report import plots
from overparam.report.sections import Section, SweepContext, language_sweep


def _colors(n: int) -> list[Any]:
    cmap = plots.plt.get_cmap("viridis")
    return [cmap(x) for x in np.linspace(0.1, 0.85, n)]


def probe_figure(doc: dict[str, Any]) -> bytes:
    """Gain over the baseline vs layer, one line per model size, bars: the 95 % interval over folds."""
    plt = plots.plt
    fig, ax = plt.subplots(figsize=(7.2, 4.0))
    runs = doc["runs"]
    offsets = np.linspace(-0.12, 0.12, len(runs)) if len(runs) > 1 else [0.0]
    for r, color, dx in zip(runs, _colors(len(runs)), offsets, strict=True):
        layers = np.array([p["layer"] for p in r["probe"]], dtype=float)
        gain = np.array([p["gain"] for p in r["probe"]])
        lo = gain - np.array([p["gain_ci"][0] for p in r["probe"]])
        hi = np.array([p["gain_ci"][1] for p in r["probe"]]) - gain
        ax.errorbar(layers + dx, gain, yerr=[lo, hi], fmt="-o", color=color, ms=4, capsize=2, lw=1.2,
                    label=f"{r['params']:,} params")
    ax.axhline(0, color="#888", lw=0.8)
    kind = runs[-1]["probe_baseline"]["kind"]
    ax.set_xlabel("layer (0 = embedding, i = after block i)")
    ax.set_ylabel(f"accuracy − {'bigram' if kind == 'bigram' else 'token-identity'} baseline")
    ax.set_xticks(sorted({p["layer"] for r in runs for p in r["probe"]}))
    ax.set_title(f"Linear probe for {doc['target']}: gain over what the current token gives", fontsize=10)
    ax.grid(alpha=0.3, lw=0.5)
    ax.legend(fontsize=8, loc="best")
    return plots.to_png(fig)


def heads_figure(doc: dict[str, Any]) -> bytes:
    """Head statistics vs parameters (one line per layer) and heads used vs parameters: a 2 × 3 grid
    with plain tick labels at the sizes of the sweep, readable at the page's width."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    plt = plots.plt
    runs = doc["runs"]
    params = [r["params"] for r in runs]
    n_layer = max(r["n_layer"] for r in runs)
    panels = [("max_induction", "strongest induction score"), ("max_previous_token", "strongest previous-token"),
              ("mean_entropy", "mean attention entropy (nats)"), ("mean_first_token", "mean first-token weight")]
    fig, grid = plt.subplots(2, 3, figsize=(11, 6.4), layout="constrained")
    axes = grid.ravel()
    for ax, (key, title) in zip(axes, panels, strict=False):
        for layer, color in zip(range(n_layer), _colors(max(n_layer, 1)), strict=True):
            pts = [(r["params"], r["head_layers"][layer][key]) for r in runs if layer < len(r["head_layers"])]
            ax.plot(*zip(*pts, strict=True), "-o", color=color, ms=4, label=f"layer {layer}")
        if key in ("max_induction", "max_previous_token"):
            ax.set_ylim(0, 1.02)  # scores are attention weights: 1 = a perfect such head
        ax.set_title(title, fontsize=10)
    ax = axes[4]
    ax.plot(params, [r["heads_used"] / r["heads_total"] for r in runs], "-o", color="#c0392b", ms=4)
    for r in runs:
        ax.annotate(f"{r['heads_used']}/{r['heads_total']}", (r["params"], r["heads_used"] / r["heads_total"]),
                    fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.set_ylim(0, 1.1)
    ax.set_title("share of heads needed (≤ 1 % loss)", fontsize=10)
    for ax in axes[:5]:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(params))  # the sweep's sizes, in k, not 10^4 mantissas
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1e3:.3g}k" if v >= 1e3 else f"{v:.0f}"))
        ax.set_xlabel("parameters", fontsize=9)
        ax.grid(alpha=0.3, lw=0.5)
        ax.tick_params(labelsize=9)
        ax.tick_params(axis="x", labelrotation=45 if len(params) > 4 else 0)
    axes[0].legend(fontsize=8)
    axes[5].axis("off")
    return plots.to_png(fig)


def _table(doc: dict[str, Any]) -> str:
    head = "".join(f"<th>{c}</th>" for c in ("run", "params", "test loss (stored)", "heads used", "best layer",
                                              "gain over baseline [95 % CI]", "accuracy", "baseline", "selectivity",
                                              "max induction"))
    rows = []
    for r in doc["runs"]:
        best = max(r["probe"], key=lambda p: (p["gain"], -p["layer"]))
        ind = max(layer["max_induction"] for layer in r["head_layers"])
        loss = r.get("test_loss")
        cells = [r["id"], f"{r['params']:,}", "–" if loss is None else f"{loss:.4f}",
                 f"{r['heads_used']}/{r['heads_total']}", str(best["layer"]),
                 f"{best['gain']:+.3f} [{best['gain_ci'][0]:+.3f}, {best['gain_ci'][1]:+.3f}]",
                 f"{best['accuracy']:.3f}", f"{best['baseline_accuracy']:.3f}", f"{best['selectivity']:+.3f}",
                 f"{ind:.3f}"]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def interpret_section(ctx: SweepContext) -> Section | None:
    """Heads and probes across sizes, for sweeps of gpt language models with checkpoints."""
    if ctx.runs.empty or ctx.first("model.family") not in ("gpt", "hf-causal-lm") or not language_sweep(ctx):
        return None
    from overparam.errors import OverparamError
    from overparam.interpret.sweep import default_target, interpret_sweep

    if default_target(str(ctx.first("task.kind"))) is None:
        return None  # no built-in probe target (icl-markov, fewshot): the in-context sections read the heads
    try:
        doc = interpret_sweep(ctx.dir, reuse=True)
    except OverparamError as exc:  # e.g. a bpe sweep without the tokenizers extra: the rest of the report stands
        reason = f"skipped: {exc}."
        return Section(title="Interpretability across sizes", sentences=[reason], brief=True,
                       summary={"skipped": str(exc), "sentences": [reason]})
    if not doc:
        return None
    section = Section(title="Interpretability across sizes", sentences=list(doc["sentences"]))
    from overparam.interpret.probe_reading import BASELINE_WORDS

    base = doc["runs"][-1]["probe_baseline"]
    section.figures.append(("interpret_probes.png", probe_figure(doc),
                            f"Linear-probe accuracy for {doc['target']} minus the baseline, "
                            f"{BASELINE_WORDS[base['kind']]}, "
                            f"by layer, one line per model size (the most-trained run of each); bars: 95 % "
                            f"t-interval over {doc['runs'][-1]['probe_folds']} cross-validation folds."))
    section.figures.append(("interpret_heads.png", heads_figure(doc),
                            "Head statistics vs parameters, per layer (induction on a repeated random "
                            "sequence; entropy and first-token on test text), and the share of heads needed "
                            "to stay within 1 % of the full model's loss."))
    section.tables.append(_table(doc))
    section.summary = {"target": doc["target"], "sentences": doc["sentences"],
                       "runs": [{k: r[k] for k in ("id", "params", "heads_used", "heads_total", "probe")}
                                for r in doc["runs"]]}
    return section
