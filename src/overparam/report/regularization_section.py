"""Explicit regularization: per-λ double-descent curves and the optimally tuned envelope.

Applies when a sweep varies ``train.ridge``, ``train.weight_decay`` or ``train.dropout`` together
with a size axis (model size, or ``task.train_size`` for sample-wise curves). The reading is
``overparam.analysis.regularization``: a peak ratio per curve (the highest bump over the higher
of the minima on its two sides; 1 = no bump), before tuning (the smallest λ) and after (the
minimum over λ at each size; Nakkiran, Venkat, Kakade & Ma 2020), and with oracle early
stopping when the runs stored curves over training time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from overparam.analysis.claims import fmt_settings
from overparam.report import plots
from overparam.report.sections import Section, SweepContext

NAMES = {"train.ridge": "ridge λ", "train.weight_decay": "weight decay", "train.dropout": "dropout"}


def _figure(doc: dict[str, Any], group: dict[str, Any], title: str) -> bytes:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    xs = group["params"] if len(set(group["params"])) > 1 else group["sizes"]
    cmap = plt.get_cmap("viridis")
    lams = list(group["curves"])
    for i, lam in enumerate(lams):
        ax.plot(xs, group["curves"][lam], "-o", ms=2.5, lw=1.1, color=cmap(i / max(len(lams) - 1, 1)),
                label=f"{NAMES.get(doc['reg_axis'], doc['reg_axis'])} = {lam}")
    ax.plot(xs, group["envelope"], "-", color="black", lw=2.4, alpha=0.8, label="best over λ (envelope)")
    if group["early"] is not None:
        ax.plot(xs, group["early"], "--", color=plots.COLORS["test"], lw=1.4,
                label=f"early-stopped, λ = {group['unregularized_lambda']}")
    ax.set_xscale("log")
    if doc["metric"] == "test_loss":
        ax.set_yscale("log")
    ax.set_xlabel("trainable parameters" if len(set(group["params"])) > 1 else doc["size_axis"])
    ax.set_ylabel(doc["metric"].replace("_", " "))
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3, which="both", lw=0.5)
    ax.legend(fontsize=7, loc="best", ncol=2 if len(lams) > 5 else 1)
    return plots.to_png(fig)


def _size_text(doc: dict[str, Any], size: Any) -> str:
    axis = doc["size_axis"].split(".")[-1].replace("_", " ")
    return f"{axis} {size}"


def _sentences(doc: dict[str, Any], group: dict[str, Any]) -> list[str]:
    name = NAMES.get(doc["reg_axis"], doc["reg_axis"])
    metric = doc["metric"].replace("_", " ")
    fixed = fmt_settings(group["fixed"])
    head = f"{fixed}: " if fixed else ""
    base = group["unregularized_lambda"]
    out = []
    if group["had_peak"]:
        s = (f"{head}Without tuning ({name} = {base}) the {metric} curve has a peak at "
             f"{_size_text(doc, group['peak_size_unregularized'])}, {group['ratio_unregularized']:.3g}× the "
             f"higher of the minima beside it.")
    else:
        s = (f"{head}Without tuning ({name} = {base}) the {metric} curve has no peak above "
             f"{100 * doc['tol']:.0f} % of its neighbouring minima (peak ratio {group['ratio_unregularized']:.3g}).")
    out.append(s)
    env = group["envelope"]
    picked = [lam for lam in group["envelope_lambda"] if lam is not None]
    tuned = f"picking the best {name} at each size (it chose {_range(picked)})"
    if group["had_peak"] and group["removed"]:
        out.append(f"{tuned.capitalize()} removes it: the envelope's peak ratio is "
                   f"{group['ratio_envelope']:.3g}.")
    elif group["had_peak"]:
        out.append(f"{tuned.capitalize()} does not remove it: the envelope's peak ratio is "
                   f"{group['ratio_envelope']:.3g} (at {_size_text(doc, group['peak_size_envelope'])}).")
    else:
        out.append(f"{tuned.capitalize()} gives peak ratio {group['ratio_envelope']:.3g}.")
    finite = [(v, s) for v, s in zip(env, group["sizes"]) if v is not None]
    if finite:
        best_v, best_s = min(finite, key=lambda t: t[0])
        out.append(f"The best tuned {metric} is {best_v:.3g}, at {_size_text(doc, best_s)}.")
    if group["ratio_early"] is not None:
        out.append(f"Oracle early stopping (the best point of each stored test curve) at {name} = {base} gives "
                   f"peak ratio {group['ratio_early']:.3g}; with the best {name} as well, "
                   f"{group['ratio_early_envelope']:.3g}.")
    return out


def _range(values: list[Any]) -> str:
    uniq = sorted(set(values), key=lambda v: float(v) if isinstance(v, (int, float)) else 0.0)
    if len(uniq) == 1:
        return f"{uniq[0]} everywhere"
    return f"values from {uniq[0]} to {uniq[-1]}"


def regularization_section(ctx: SweepContext) -> Section | None:
    """Per-λ curves and their envelope, when a regularization axis varies with a size axis."""
    from overparam.analysis.regularization import regularization_curves
    from overparam.errors import OverparamError

    runs = ctx.runs
    if runs.empty or not (runs["status"] == "done").any():
        return None
    try:
        doc = regularization_curves((runs, ctx.curves))
    except OverparamError:
        return None
    section = Section(title="Explicit regularization")
    for i, group in enumerate(doc["groups"]):
        if len(group["sizes"]) < 3:
            continue
        section.sentences.extend(_sentences(doc, group))
        fixed = fmt_settings(group["fixed"])
        title = ctx.name + (f" ({fixed})" if fixed else "")
        section.figures.append((f"regularization_{i}.png", _figure(doc, group, title),
                                f"{doc['metric'].replace('_', ' ').capitalize()} against size, one line per "
                                f"{NAMES.get(doc['reg_axis'], doc['reg_axis'])} (mean over seeds); black: the "
                                f"minimum over it at each size; dashed: oracle early stopping, when stored."))
    if not section.figures:
        return None
    section.summary = {k: v for k, v in doc.items() if k != "groups"}
    section.summary["groups"] = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in g.items()}
                                 for g in doc["groups"]]
    section.summary["sentences"] = section.sentences
    return section
