"""Figures as PNG bytes (matplotlib, Agg): embedded in the report and saved under DIR/figures."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

COLORS = {"test": "#c0392b", "train": "#2c7fb8", "theory": "#444444"}


def log_ticks(lo: float, hi: float) -> list[float]:
    """Round ticks for a log axis from ``lo`` to ``hi``: 1-2-5 per decade, or finer (1, 1.5, 2, 3, 4,
    5, 6, 8) when the range holds fewer than three of those. Plain numbers at these read at a glance;
    matplotlib's default minor labels (4×10⁻¹, 6×10⁻¹) crowd and its major ones may not appear at all."""
    import math

    decades = range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
    for steps in ((1, 2, 5), (1, 1.5, 2, 3, 4, 5, 6, 8)):
        inside = [round(m * 10.0 ** e, 12) for e in decades for m in steps if lo <= m * 10.0 ** e <= hi]
        if len(inside) >= 3:
            return inside
    return inside


def to_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def double_descent_figure(curve: dict[str, Any], runs: pd.DataFrame, title: str) -> bytes:
    """Train and test metric vs parameter count (log x): seed mean, seed range, every seed as a dot,
    the interpolation threshold as a dashed line and the peak as a ring."""
    key = "error" if curve["metric"] == "test_error" else "loss"
    pts = curve["points"]
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    x = [p["params"] for p in pts]
    for split in ("train", "test"):
        name = f"{split}_{key}"
        y = [p.get(name) for p in pts]
        if all(v is None for v in y):
            continue
        lo = [p.get(f"{name}_min", p.get(name)) for p in pts]
        hi = [p.get(f"{name}_max", p.get(name)) for p in pts]
        ax.fill_between(x, lo, hi, color=COLORS[split], alpha=0.15, linewidth=0)
        ax.plot(x, y, "-o", color=COLORS[split], ms=3, lw=1.6, label=f"{split} {key} ({curve['stat']} over seeds)")
    ids = set(runs["id"]) if "id" in runs else set()
    if ids and f"test_{key}" in runs:
        done = runs[(runs["status"] == "done")]
        ax.scatter(done["params"], done[f"test_{key}"], s=6, color=COLORS["test"], alpha=0.35, zorder=3)
        if "unstable" in done:
            bad = done[done["unstable"].fillna(False).astype(bool)]
            if len(bad):
                ax.scatter(bad["params"], bad[f"test_{key}"], s=40, marker="x", color="black", zorder=4,
                           label="unstable run (left out)")
    if curve.get("threshold_params"):
        ax.axvline(curve["threshold_params"], color="#555", ls="--", lw=1, label="interpolation threshold")
    bump = curve.get("bump") or {}
    if curve.get("peak_params") and curve.get(f"peak_test_{key}") is not None and bump.get("evidence") in (
            "clear", "weak", "unknown"):  # a rise within the noise is not marked as a peak
        words = {"clear": "clear", "weak": "weak evidence", "unknown": "noise unknown"}[bump["evidence"]]
        ax.scatter([curve["peak_params"]], [curve[f"peak_test_{key}"]], s=120, facecolors="none",
                   edgecolors="black", lw=1.5, zorder=5, label=f"test peak ({words})")
    ax.set_xscale("log")
    if key == "loss":
        ax.set_yscale("log")
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel(key)
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3, which="both", lw=0.5)
    ax.legend(fontsize=8, loc="best")
    return to_png(fig)


def curves_over_time_figure(curves: pd.DataFrame, runs: pd.DataFrame, axis: str, title: str) -> bytes | None:
    """Test error over training steps, one line per size (seed mean): epoch-wise behaviour."""
    metric = "test_error" if (curves["name"] == "test_error").any() else "test_loss"
    data = curves[curves["name"] == metric].merge(runs[["id", axis]], left_on="run_id", right_on="id")
    if data.empty or data["step"].nunique() < 3:
        return None
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    sizes = sorted(data[axis].unique())
    cmap = plt.get_cmap("viridis")
    for i, size in enumerate(sizes):
        d = data[data[axis] == size].groupby("step")["value"].mean()
        d = d[d.index > 0]
        ax.plot(d.index, d.values, color=cmap(i / max(len(sizes) - 1, 1)), lw=1.2, label=str(size))
    ax.set_xscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3, lw=0.5)
    if len(sizes) <= 12:
        ax.legend(fontsize=7, title=axis, ncol=2)
    return to_png(fig)
