"""Report sections for the in-context, few-shot, position and specialization blocks.

Each section reads the same block ``analyze DIR --json`` prints (``analysis.in_context.blocks``,
computed from the store on every build), draws it, and says it in the sentences of
``report.in_context_reading``. A sweep without a block gets no section for it.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from overparam.analysis.claims import fmt_settings
from overparam.report import in_context_reading as R
from overparam.report import plots
from overparam.report.sections import Section, SweepContext

REFERENCE_STYLE = {"bayes": ("Bayes-optimal", "-", "black"), "unigram": ("in-context unigram", "--", "#777"),
                   "uniform": ("uniform", ":", "#aaa")}


def _blocks(ctx: SweepContext) -> dict[str, Any]:
    """The sweep's blocks, computed once per report build."""
    if "_in_context_blocks" not in ctx.__dict__:
        from overparam.analysis.in_context import blocks

        ctx.__dict__["_in_context_blocks"] = blocks(ctx.dir) if not ctx.runs.empty else {}
    return ctx.__dict__["_in_context_blocks"]


def _colors(n: int) -> list[Any]:
    cmap = plots.plt.get_cmap("viridis")
    return [cmap(0.05 + 0.8 * i / max(n - 1, 1)) for i in range(n)]


def _label(row: dict[str, Any]) -> str:
    fixed = fmt_settings({k.split(".")[-1]: v for k, v in row["fixed"].items()}, "=")
    size = f"{row['params']:,} params" if row["axis"] == "params" else f"{row['axis'].split('.')[-1]}={row['size']}"
    return size + (f", {fixed}" if fixed else "")


def _table(cols: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def loss_by_position_figure(block: dict[str, Any], references: bool) -> bytes:
    """Test loss against position in the context, one line per size (and the exact references)."""
    plt = plots.plt
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    for row, color in zip(block["sizes"], _colors(len(block["sizes"])), strict=True):
        ax.plot(np.arange(len(row["loss_by_position"])), row["loss_by_position"], color=color, lw=1.4,
                label=_label(row))
    if references:
        longest = max(block["sizes"], key=lambda r: r["context"])
        for name, (label, style, color) in REFERENCE_STYLE.items():
            ref = longest["references"][name]["loss_by_position"]
            ax.plot(np.arange(len(ref)), ref, style, color=color, lw=1.2, label=label)
    ax.set_xlabel("position in the context (tokens seen − 1)")
    ax.set_ylabel(f"test loss, nats/token ({block['statistic']})")
    ax.grid(alpha=0.3, lw=0.5)
    ax.legend(fontsize=7)
    return plots.to_png(fig)


def over_training_figure(block: dict[str, Any]) -> bytes:
    """Left: ICL score over training per size, phase changes marked. Right: the best head's
    prefix-matching score, induction-head formation marked."""
    plt = plots.plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.5, 4.2))
    for row, color in zip(block["sizes"], _colors(len(block["sizes"])), strict=True):
        curve = np.asarray(row["icl_curve"]) if row["icl_curve"] else np.zeros((0, 2))
        if len(curve):
            left.plot(curve[:, 0], curve[:, 1], "-o", ms=2.5, color=color, lw=1.3, label=_label(row))
        if row["phase_change"]["step"] is not None:
            left.axvline(row["phase_change"]["step"], color=color, ls=":", lw=1)
        ind = row.get("induction")
        if ind and ind["curve"]:
            c = np.asarray(ind["curve"])
            right.plot(c[:, 0], c[:, 1], "-o", ms=2.5, color=color, lw=1.3, label=_label(row))
            if ind["formation"]["step"] is not None:
                right.axvline(ind["formation"]["step"], color=color, ls=":", lw=1)
    bayes = block["sizes"][0]["references"]["bayes"]["icl_score"]
    left.axhline(bayes, color="black", lw=1, label="Bayes-optimal")
    left.set_xlabel("training step")
    left.set_ylabel("ICL score (late − early loss)")
    left.legend(fontsize=7)
    rows = [r for r in block["sizes"] if r.get("induction")]
    if rows:
        right.axhline(rows[0]["induction"]["uniform"], color="#999", ls="--", lw=1, label="uniform attention")
        right.axhline(rows[0]["induction"]["formation"]["level"], color="#c0392b", ls="--", lw=1,
                      label="formation level")
        right.legend(fontsize=7)
    right.set_xlabel("training step")
    right.set_ylabel("best head's prefix-matching score")
    for ax in (left, right):
        ax.grid(alpha=0.3, lw=0.5)
    return plots.to_png(fig)


def _step(step: int | None) -> str:
    return "–" if step is None else f"{step:,}"


def _icl_table_row(row: dict[str, Any]) -> list[str]:
    ind = row.get("induction")
    best = ind["top_heads"][0] if ind else None
    return [_label(row), f"{row['params']:,}", R.pm(row["icl_score"], row["icl_score_noise"]),
            R.pm(row["bayes_gap"], row["bayes_gap_noise"]), _step(row["phase_change"]["step"]),
            _step(ind["formation"]["step"]) if ind else "–",
            f"layer {best['layer']} head {best['head']}: {R.fmt(best['score'])}" if best else "–"]


def in_context_section(ctx: SweepContext) -> Section | None:
    block = _blocks(ctx).get("in_context")
    if not block:
        return None
    section = Section(title="In-context learning", sentences=R.read_in_context(block))
    section.figures.append(("icl_loss_by_position.png", loss_by_position_figure(block, references=True),
                            "Test loss by position in the context per size, against the exact references on the same "
                            "test sequences: Bayes-optimal (posterior-mean bigram), in-context unigram, uniform."))
    if any(len(r["icl_curve"]) >= 2 for r in block["sizes"]):
        section.figures.append(("icl_over_training.png", over_training_figure(block),
                                "Left: ICL score over training per size; dotted lines: the phase change. Right: the "
                                "largest prefix-matching score of any head; dotted lines: induction heads form."))
    section.tables.append(_table(
        ["size", "params", "ICL score", "gap to Bayes (last position)", "phase change step", "induction heads form",
         "best head"], [_icl_table_row(r) for r in block["sizes"]]))
    section.summary = {"sentences": section.sentences, "block": block,  # the JSON its sentences quote
                       "sizes": [
        {k: r[k] for k in ("size", "params", "icl_score", "icl_score_noise", "bayes_gap", "bayes_gap_noise")}
        | {"phase_change_step": r["phase_change"]["step"],
           "induction_formation_step": (r.get("induction") or {}).get("formation", {}).get("step")}
        for r in block["sizes"]]}
    return section


def few_shot_figure(block: dict[str, Any]) -> bytes:
    plt = plots.plt
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    shots = block["shots"]
    for row, color in zip(block["sizes"], _colors(len(block["sizes"])), strict=True):
        ax.errorbar(shots, row["accuracy"], yerr=row["noise"], fmt="-o", ms=3, color=color, lw=1.4, capsize=2,
                    label=_label(row))
    ax.plot(shots, block["sizes"][0]["optimal"], "k--", lw=1.2, label="optimal learner (same prompts)")
    ax.axhline(block["chance"], color="#999", ls=":", lw=1, label="chance")
    ax.set_xlabel("shots k (example pairs before the query)")
    ax.set_ylabel(f"query accuracy ({block['statistic']})")
    ax.grid(alpha=0.3, lw=0.5)
    ax.legend(fontsize=7)
    return plots.to_png(fig)


def few_shot_section(ctx: SweepContext) -> Section | None:
    block = _blocks(ctx).get("few_shot")
    if not block:
        return None
    section = Section(title="Few-shot learning", sentences=R.read_few_shot(block))
    section.figures.append(("few_shot_accuracy.png", few_shot_figure(block),
                            "Query accuracy by number of shots per size (bars: noise), the optimal learner's on the "
                            "same prompts (copy the label when the query's symbol was shown, else guess) and chance."))
    section.summary = {"sentences": section.sentences, "block": block,  # the JSON its sentences quote
                       "shots": block["shots"],
                       "sizes": [{k: r[k] for k in ("size", "params", "accuracy", "optimal")} for r in block["sizes"]]}
    return section


def position_section(ctx: SweepContext) -> Section | None:
    block = _blocks(ctx).get("position")
    if not block:
        return None
    section = Section(title="Loss by position in the context", sentences=R.read_position(block))
    section.figures.append(("loss_by_position.png", loss_by_position_figure(block, references=False),
                            "Test loss by position within the context window, one line per size and context: how "
                            "much each model gains from distant context."))
    section.summary = {"sentences": section.sentences, "block": block,  # the JSON its sentences quote
                       "extrapolation": block["extrapolation"],
                       "sizes": [{k: r[k] for k in ("size", "params", "context", "context_gain", "context_gain_noise")}
                                 for r in block["sizes"]]}
    return section


def specialization_figure(block: dict[str, Any]) -> bytes:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    plt = plots.plt
    doms = block["domains"]
    fig, axes = plt.subplots(1, len(doms), figsize=(6.2 * len(doms), 4.2), squeeze=False)
    for ax, dom in zip(axes[0], doms, strict=True):
        for key, color, label in (("specialist", "#2c7fb8", f"trained on {dom['domain']} alone"),
                                  ("generic", "#c0392b", "trained on the mixture")):
            pts = sorted([p[key] for p in dom["pairs"]], key=lambda a: a["params"])
            if pts:
                ax.errorbar([a["params"] for a in pts], [a["loss"] for a in pts], yerr=[a["noise"] for a in pts],
                            fmt="-o", ms=3, color=color, capsize=2, label=label)
        ax.set_xscale("log")
        sizes = sorted({p[k]["params"] for p in dom["pairs"] for k in ("specialist", "generic")})
        ax.xaxis.set_major_locator(FixedLocator(sizes))  # the sweep's sizes, labelled plainly (11.7k, not 10^4)
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1e3:.3g}k" if v >= 1e3 else f"{v:.0f}"))
        ax.set_xlabel("trainable parameters")
        ax.set_ylabel(f"test loss on {dom['domain']} (nats/token)")
        ax.grid(alpha=0.3, lw=0.5)
        ax.legend(fontsize=7)
    return plots.to_png(fig)


def specialization_section(ctx: SweepContext) -> Section | None:
    block = _blocks(ctx).get("specialization")
    if not block:
        return None
    section = Section(title="Specialized vs generic", sentences=R.read_specialization(block))
    if any(d["pairs"] for d in block["domains"]):
        section.figures.append(("specialization.png", specialization_figure(block),
                                "Loss on each domain's own test split against parameters: models trained on that "
                                "domain alone vs on the mixture, at the same training tokens (bars: noise)."))
    section.summary = {"sentences": section.sentences, "block": block,  # the JSON its sentences quote
                       "domains": [
        {k: d[k] for k in ("domain", "param_ratio", "flops_ratio")} for d in block["domains"]]}
    return section
