"""The report's compression section: the frontier over the dense sweep's curve, read in sentences.

Reads ``DIR/analyses/compress.json`` (written by ``overparam compress``); nothing is recomputed.
Left panel: test loss against nonzero parameters, the dense sweep's curve as a line, each
compressed model as a point joined by a dotted line to its dense-equivalent size on the curve.
Right panel: test loss against the measured speed-up over the dense model at batch 64 (median of
call-by-call ratios timed interleaved, bars p10–p90): where masks buy nothing and rebuilt models do.
"""

from __future__ import annotations

import html
from typing import Any

MARKERS = {"dense": "*", "prune": "o", "prune-structured": "s", "lottery": "^", "quantize": "D",
           "distill": "v"}
COLORS = {"dense": "#000000", "prune": "#2c7fb8", "prune-structured": "#41ab5d", "lottery": "#8856a7",
          "quantize": "#e6550d", "distill": "#c51b8a"}


def frontier_figure(doc: dict[str, Any]) -> bytes:
    """PNG bytes of the two-panel frontier figure."""
    from overparam.report.plots import plt, to_png

    fig, (left, right) = plt.subplots(1, 2, figsize=(11.5, 4.4))
    curve = doc.get("dense_curve") or []
    if curve:
        left.plot([p["params"] for p in curve], [p["test_loss"] for p in curve], "-", color="#999", lw=1.6,
                  marker="o", ms=3, label="dense sweep", zorder=1)
    seen: set[str] = set()
    for e in doc["models"]:
        m = e["method"]
        label = m if m not in seen else None
        seen.add(m)
        style = {"marker": MARKERS.get(m, "o"), "color": COLORS.get(m, "#444"), "zorder": 3,
                 "s": 140 if m == "dense" else 36}
        hollow = e.get("variant") in ("one-shot", "no-ft", "reinit", "scratch")
        if hollow:
            style.update(facecolors="none", edgecolors=style.pop("color"))
        left.scatter([max(e["nonzero_params"], 1)], [e["test_loss"]], label=label, **style)
        if e.get("dense_equivalent_params") and m != "dense":
            left.plot([e["nonzero_params"], e["dense_equivalent_params"]], [e["test_loss"]] * 2, ":",
                      color=COLORS.get(m, "#444"), lw=0.8, zorder=2)
        s64 = e.get("speedup_b64", 1.0)
        lo, hi = e.get("speedup_b64_p10_p90") or [s64, s64]
        right.errorbar([s64], [e["test_loss"]], xerr=[[max(s64 - lo, 0)], [max(hi - s64, 0)]], fmt="none",
                       ecolor=COLORS.get(m, "#444"), elinewidth=0.8, alpha=0.6)
        right.scatter([s64], [e["test_loss"]], **style)
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both", lw=0.5)
        ax.set_ylabel("test loss")
    left.set_xlabel("nonzero parameters")
    right.axvline(1.0, color="#555", ls="--", lw=0.8)
    right.set_xlabel("speed-up over the dense model at batch 64 (×; bars p10–p90)")
    left.legend(fontsize=7, loc="best")
    left.set_title("Compression frontier over the dense curve", fontsize=10)
    right.set_title("Quality against measured speed (hollow: not fine-tuned, or a control)", fontsize=10)
    return to_png(fig)


def models_table(doc: dict[str, Any]) -> str:
    """The frontier as an escaped HTML table."""
    cols = ("method", "setting", "variant", "test error", "test loss", "nonzero", "bytes", "b1 ms (p10–p90)",
            "b64 ms", "speed-up b1", "speed-up b64", "dense-equivalent params")
    rows = []
    for e in doc["models"]:
        b1 = e["latency_b1"]
        eq = e.get("dense_equivalent_params")
        status = e.get("dense_equivalent_status")
        bounds = {"at_most_smallest": "≤ smallest", "beyond_largest": "> largest"}
        eq_text = f"{eq:,.0f}" if eq else bounds.get(status, "–")
        err = e.get("test_error")
        cells = (e["method"], "" if e.get("setting") is None else str(e["setting"]), e.get("variant") or "",
                 "" if err is None else f"{100 * err:.2f} %", f"{e['test_loss']:.4f}",
                 f"{e['nonzero_params']:,}",
                 f"{e['bytes']:,}", f"{b1['median']:.3f} ({b1['p10']:.3f}–{b1['p90']:.3f})",
                 f"{e['latency_ms_b64']:.3f}", f"{e.get('speedup_b1', 1.0):.2f}×",
                 f"{e.get('speedup_b64', 1.0):.2f}×", eq_text)
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
    intro = (f"Run {doc['run']['id']} compressed every requested way; each model is placed on the dense "
             f"sweep's test-loss curve at its dense-equivalent size (the smallest dense size with the same "
             f"test loss, interpolated in log parameters). Latency measured on "
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
                            "Left: test loss against nonzero parameters; dotted lines join each compressed "
                            "model to its dense-equivalent size on the dense sweep's curve. Right: test loss "
                            "against the measured speed-up over the dense model at batch 64."))
    section.tables.append(models_table(doc))
    keep = ("method", "setting", "variant", "test_error", "test_loss", "nonzero_params", "bytes",
            "latency_ms_b1", "latency_ms_b64", "peak_memory_bytes", "dense_equivalent_params", "speedup_b1",
            "speedup_b64")
    section.summary = {"run": doc["run"]["id"],
                       "models": [{k: e.get(k) for k in keep} for e in doc["models"]],
                       "sentences": doc.get("sentences", [])}
    return section
