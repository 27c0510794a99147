"""Plain sentences that read the measured numbers: every number here comes from the analysis."""

from __future__ import annotations

from typing import Any

UNITS = {"rff": "features", "linear": "features", "mlp": "hidden units", "cnn": "channels (k)",
         "resnet18k": "channels (k)", "gpt": "model width"}


def fmt_int(v: Any) -> str:
    return f"{int(round(float(v))):,}"


def fmt_num(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    return f"{v:.{digits}g}"


def size_phrase(curve: dict[str, Any], prefix: str, unit: str) -> str:
    size, params = curve.get(f"{prefix}_size"), curve.get(f"{prefix}_params")
    axis = curve["axis"]
    if axis == "task.train_size" and size is not None:
        return f"n = {fmt_int(size)} training samples"
    if axis == "params" or size is None:
        return f"{fmt_int(params)} parameters"
    name = unit if axis.endswith(".width") else axis
    return f"{fmt_int(size) if isinstance(size, (int, float)) else size} {name} ({fmt_int(params)} parameters)"


NEAR_FIT = 0.01  # a size that leaves at most this train error unfitted is named, with the --eps that admits it


def read_curve(curve: dict[str, Any], family: str | None = None, n_train: int | None = None) -> list[str]:
    """A few sentences: where the threshold is, where test error peaks, how far it falls after."""
    unit = UNITS.get(family or "", "width")
    metric = curve["metric"].replace("_", " ")
    out = []
    if not curve["points"]:
        return ["No finished runs on this curve yet."]
    if curve["threshold_params"] is None:
        best = curve.get("best_under_test_error") if curve["metric"] == "test_error" else curve.get(
            "best_under_test_loss")
        on = (curve.get("threshold_on") or "train_error").replace("_", " ")
        sentence = (f"No size fitted the training set ({on} ≤ {curve['eps']:g}); "
                    f"the best {metric} is {fmt_num(best)} at {size_phrase(curve, 'best_under', unit)}.")
        closest = min(curve["points"], key=lambda p: p.get(on.replace(" ", "_")) or float("inf"))
        left = closest.get(on.replace(" ", "_"))
        if on == "train error" and left is not None and 0 < left <= NEAR_FIT:
            where = size_phrase({"axis": curve["axis"], "near_size": closest["size"],
                                 "near_params": closest["params"]}, "near", unit)
            out.append(sentence + f" The closest, {where}, left {left:.2%} of training labels unfitted: "
                       f"`--eps {left:.6g}` counts it as the interpolation threshold.")
        else:
            out.append(sentence + " The sweep does not reach the interpolation threshold: try larger sizes or "
                       "more steps.")
        return out
    if curve.get("threshold_on") == "train_loss":
        thr = (f"The models first interpolate the training targets exactly (train MSE ≤ {curve['eps']:g}) at "
               f"{size_phrase(curve, 'threshold', unit)}")
    else:
        thr = f"The models first fit every training label at {size_phrase(curve, 'threshold', unit)}"
    if n_train and family in ("rff", "linear") and curve.get("threshold_size") is not None:
        ratio = float(curve["threshold_size"]) / n_train
        thr += f" (N/n = {ratio:.2f} with n = {fmt_int(n_train)} training samples)"
    out.append(thr + " (the interpolation threshold).")
    key = "test_error" if curve["metric"] == "test_error" else "test_loss"
    peak, over, under = curve.get(f"peak_{key}"), curve.get(f"best_over_{key}"), curve.get(f"best_under_{key}")
    if curve["second_descent"]:
        s = (f"{metric.capitalize()} peaks at {fmt_num(peak)} at {size_phrase(curve, 'peak', unit)}, then falls "
             f"{curve['peak_over_best_over']:.3g}× to {fmt_num(over)} by {size_phrase(curve, 'best_over', unit)}")
        if under is not None and curve.get("peak_over_best_under"):
            best_under = size_phrase(curve, "best_under", unit)
            s += (f"; the best under-parameterized model ({best_under}) reached {fmt_num(under)}, "
                  f"{curve['peak_over_best_under']:.3g}× below the peak")
        out.append(s + ".")
        if under is not None and over is not None:
            verdict = ("beats" if over < under else "does not beat")
            out.append(f"The best over-parameterized model {verdict} the best under-parameterized one "
                       f"({fmt_num(over)} vs {fmt_num(under)}).")
    else:
        out.append(f"No second descent on this curve: past the threshold the {metric} does not fall below "
                   f"its peak (best over-parameterized {fmt_num(over)}, best under-parameterized "
                   f"{fmt_num(under)}).")
    if curve["unstable_runs"]:
        out.append(f"{len(curve['unstable_runs'])} run(s) went unstable late in training and are left out "
                   f"of the curve: {', '.join(curve['unstable_runs'][:4])}.")
    if curve["diverged_runs"]:
        out.append(f"{len(curve['diverged_runs'])} run(s) diverged (non-finite loss) and are not plotted.")
    return out
