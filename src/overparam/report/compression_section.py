"""The report's compression section: the frontier over the dense sweep's curve, read in sentences.

Reads ``DIR/analyses/compress.json`` (written by ``overparam compress``); nothing is recomputed.
Both panels plot the metric the dense-equivalent size is read on (test error for classification,
test loss otherwise). Left: against nonzero parameters, the dense sweep's curve as a line, each
compressed model as a point joined by a dotted line to its dense-equivalent size on the curve.
Right: against the measured speed-up over the dense model at batch 64 (median of call-by-call
ratios timed interleaved, bars p10–p90): where masks buy nothing and rebuilt models do.
"""

from __future__ import annotations

import html
from typing import Any

MARKERS = {"dense": "*", "prune": "o", "prune-structured": "s", "lottery": "^", "quantize": "D",
           "distill": "v"}
COLORS = {"dense": "#000000", "prune": "#2c7fb8", "prune-structured": "#41ab5d", "lottery": "#8856a7",
          "quantize": "#e6550d", "distill": "#c51b8a"}


def _metric(doc: dict[str, Any]) -> str:
    return doc.get("metric") or ("test_error" if doc["models"][0].get("test_error") is not None else "test_loss")


def frontier_figure(doc: dict[str, Any]) -> bytes:
    """PNG bytes of the two-panel frontier figure."""
    from overparam.report.plots import plt, to_png

    metric = _metric(doc)
    label = metric.replace("_", " ")
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained")
    curve = [p for p in doc.get("dense_curve") or [] if p.get(metric) is not None]
    if curve:
        left.plot([p["params"] for p in curve], [p[metric] for p in curve], "-", color="#999", lw=1.6,
                  marker="o", ms=3, label="dense sweep (mean over seeds)", zorder=1)
    seen: set[str] = set()
    for e in doc["models"]:
        m = e["method"]
        name = m if m not in seen else None
        seen.add(m)
        style = {"marker": MARKERS.get(m, "o"), "color": COLORS.get(m, "#444"), "zorder": 3,
                 "s": 140 if m == "dense" else 36}
        if e.get("variant") in ("one-shot", "no-ft", "reinit", "scratch"):
            style.update(facecolors="none", edgecolors=style.pop("color"))
        y = e[metric]
        left.scatter([max(e["nonzero_params"], 1)], [y], label=name, **style)
        if e.get("dense_equivalent_params") and m != "dense":
            left.plot([e["nonzero_params"], e["dense_equivalent_params"]], [y] * 2, ":",
                      color=COLORS.get(m, "#444"), lw=0.8, zorder=2)
        s64 = e.get("speedup_b64", 1.0)
        lo, hi = e.get("speedup_b64_p10_p90") or [s64, s64]
        right.errorbar([s64], [y], xerr=[[max(s64 - lo, 0)], [max(hi - s64, 0)]], fmt="none",
                       ecolor=COLORS.get(m, "#444"), elinewidth=0.8, alpha=0.6)
        right.scatter([s64], [y], **style)
    ys = [e[metric] for e in doc["models"]] + [p[metric] for p in curve]
    for ax in (left, right):
        ax.set_xscale("log")
        if min(ys) > 0:  # an error of exactly 0 has no place on a log axis
            ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both", lw=0.5)
        ax.set_ylabel(label)
    _readable_ticks(left, right, metric)
    left.set_xlabel("nonzero parameters")
    right.axvline(1.0, color="#555", ls="--", lw=0.8)
    right.set_xlabel("speed-up over the dense model at batch 64 (×; bars p10–p90)")
    left.legend(fontsize=7, loc="best")
    left.set_title(f"{label.capitalize()} of each model over the dense curve", fontsize=10)
    right.set_title("Against measured speed (hollow: not fine-tuned, or a control)", fontsize=10)
    return to_png(fig)


def _readable_ticks(left, right, metric: str) -> None:
    """Plain tick labels: speed-ups as 0.5×, 1×, 2×; errors as percentages; no crowded minor labels."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    from overparam.report.plots import log_ticks

    lo, hi = right.get_xlim()
    ticks = [t for t in (0.03125, 0.0625, 0.125, 0.25, 0.5, 1, 2, 4, 8, 16, 32) if lo <= t <= hi]
    right.xaxis.set_major_locator(FixedLocator(ticks))
    right.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
    right.xaxis.set_minor_formatter(NullFormatter())
    for ax in (left, right):
        if ax.get_yscale() == "log":
            ax.yaxis.set_minor_formatter(NullFormatter())
            lo, hi = ax.get_ylim()
            ax.yaxis.set_major_locator(FixedLocator(log_ticks(lo, hi)))
        if metric == "test_error":
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * v:g} %"))
        else:
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def models_table(doc: dict[str, Any]) -> str:
    """The frontier as an escaped HTML table."""
    from overparam.compress.reading import equivalent_text

    by = _metric(doc).replace("test_", "")
    cols = ("method", "setting", "variant", "test error", "test loss", "nonzero", "bytes", "b1 ms (p10–p90)",
            "b64 ms", "speed-up b1", "speed-up b64", f"dense-equivalent params (by {by})")
    rows = []
    for e in doc["models"]:
        b1 = e["latency_b1"]
        err = e.get("test_error")
        cells = (e["method"], "" if e.get("setting") is None else str(e["setting"]), e.get("variant") or "",
                 "" if err is None else f"{100 * err:.2f} %", f"{e['test_loss']:.4f}",
                 f"{e['nonzero_params']:,}",
                 f"{e['bytes']:,}", f"{b1['median']:.3f} ({b1['p10']:.3f}–{b1['p90']:.3f})",
                 f"{e['latency_ms_b64']:.3f}", f"{e.get('speedup_b1', 1.0):.2f}×",
                 f"{e.get('speedup_b64', 1.0):.2f}×", equivalent_text(e))
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def compression_section(ctx):
    """Report section builder ``(SweepContext) -> Section | None``: None when compress never ran here."""
    from overparam.report.sections import Section

    doc = ctx.artifact("compress")
    if not doc or not doc.get("models"):
        return None
    dense = doc["models"][0]
    machine = doc.get("machine", {})
    threads = machine.get("torch_threads", "?")
    metric = _metric(doc).replace("_", " ")
    intro = (f"Run {doc['run']['id']} compressed the requested ways. Each model gets a dense-equivalent size "
             f"on the dense sweep's {metric} curve: a model at least as good as the dense model it came from "
             f"counts as that model's size; a worse one as the size where the curve, walked down from there, "
             f"first does as badly (interpolated in log parameters). Latency measured on "
             f"{machine.get('processor', '?')} with {threads} thread{'' if threads == 1 else 's'}, median of "
             f"{doc['settings']['repeats']} calls; "
             f"speed-ups are medians of call-by-call ratios against the dense model timed interleaved.")
    sentences = [intro, *doc.get("sentences", [])]
    if "onnxruntime" in dense:
        o = dense["onnxruntime"]
        sentences.append(f"ONNX export checked against PyTorch: max |difference| {o['max_abs_diff']:.1e}; "
                         f"ONNX Runtime fp32 runs batch 1 in {o['latency_ms_b1']:.3f} ms (PyTorch "
                         f"{dense['latency_ms_b1']:.3f} ms).")
    sentences.extend(f"Skipped: {s}" for s in doc.get("skipped", []))
    section = Section(title="Compression frontier", sentences=sentences)
    section.figures.append(("compression_frontier.png", frontier_figure(doc),
                            f"Left: {metric} against nonzero parameters; dotted lines join each compressed "
                            f"model to its dense-equivalent size on the dense sweep's curve. Right: {metric} "
                            f"against the measured speed-up over the dense model at batch 64."))
    section.tables.append(models_table(doc))
    keep = ("method", "setting", "variant", "test_error", "test_loss", "nonzero_params", "bytes",
            "latency_ms_b1", "latency_ms_b64", "peak_memory_bytes", "dense_equivalent_params",
            "dense_equivalent_status", "dense_equivalent_better", "speedup_b1", "speedup_b64")
    section.summary = {"run": doc["run"]["id"],
                       "models": [{k: e.get(k) for k in keep} for e in doc["models"]],
                       "sentences": doc.get("sentences", [])}
    return section
