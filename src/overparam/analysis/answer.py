"""The product's answer: how many parameters does this task need?

**Dense**: the smallest size of a curve whose test metric (the page's statistic over seeds) comes
within ``tolerance`` of the best value the sweep reached. For an error rate the tolerance is
absolute (error ≤ best + 0.01: one percentage point); for a loss it is relative (loss ≤ best ·
(1 + 0.01): within 1 %), because a loss has no fixed scale (MSE in the targets' units, nats per
token) while an error rate is a fraction of examples. With ≥ 2 seeds the same rule is applied to
each seed's own curve, and the range of those per-seed answers is the interval over seeds.
When only the largest size tried comes within the tolerance the curve has not flattened out:
the answer lies beyond the largest size tried (``beyond_largest``).

**Compressed**: among the models of ``overparam compress`` (``DIR/analyses/compress.json``) whose
parent run lies on the curve, the one with the fewest bytes (then fewest nonzero parameters) whose
test metric stays within the same target and whose bytes are below the dense parent's.

A sample-wise sweep (``task.train_size`` varies) asks how much data, not how many parameters:
its answer is left empty, with the reason.
"""

from __future__ import annotations

import math
from typing import Any

PER_MODEL = ("method", "setting", "variant", "label", "test_error", "test_loss", "nonzero_params", "params",
             "bytes", "latency_ms_b1", "latency_ms_b64", "finetune_steps")


def target_value(best: float, tolerance: float, metric: str) -> float:
    return best + tolerance if metric == "test_error" else best * (1.0 + tolerance) if best >= 0 else best


def _first_within(values: list[float], target: float) -> int | None:
    for i, v in enumerate(values):
        if v is not None and not math.isnan(v) and v <= target:
            return i
    return None


def dense_answer(curve: dict[str, Any], tolerance: float) -> dict[str, Any]:
    """The answer on one curve (see the module docstring); ``size`` None with a ``reason`` when there is none."""
    metric, points = curve["metric"], curve["points"]
    out: dict[str, Any] = {"metric": metric, "stat": curve["stat"], "tolerance": tolerance,
                           "tolerance_kind": "absolute" if metric == "test_error" else "relative",
                           "axis": curve["axis"], "fixed": curve["fixed"], "size": None, "params": None,
                           "value": None, "best": None, "best_size": None, "best_params": None, "target": None,
                           "beyond_largest": False, "largest_size": None, "largest_params": None,
                           "seeds": None, "compressed": None, "reason": None}
    if curve["axis"] == "task.train_size":
        out["reason"] = "the sweep varies the training set size, not the model"
        return out
    values = [p.get(metric) for p in points]
    finite = [i for i, v in enumerate(values) if v is not None and not math.isnan(v)]
    if not finite:
        out["reason"] = "no finished run has a test metric"
        return out
    best = min(finite, key=lambda i: values[i])
    target = target_value(values[best], tolerance, metric)
    i = _first_within(values, target)
    last = finite[-1]
    out.update(best=values[best], best_size=points[best]["size"], best_params=points[best]["params"],
               target=target, size=points[i]["size"], params=points[i]["params"], value=values[i],
               largest_size=points[last]["size"], largest_params=points[last]["params"],
               beyond_largest=bool(i == last and len(finite) > 1))
    out["seeds"] = _per_seed(points, metric, tolerance)
    return out


def _per_seed(points: list[dict[str, Any]], metric: str, tolerance: float) -> dict[str, Any] | None:
    """Each seed's own answer on its own curve; their range is the interval over seeds (None with one seed)."""
    labels = sorted({s for p in points for s in p.get(f"{metric}_by_seed", {})})
    if len(labels) < 2:
        return None
    answers = []
    for label in labels:
        own = [(p, p.get(f"{metric}_by_seed", {}).get(label)) for p in points]
        own = [(p, v) for p, v in own if v is not None]
        if not own:
            continue
        target = target_value(min(v for _, v in own), tolerance, metric)
        p = next(p for p, v in own if v <= target)
        answers.append({"seed": label, "size": p["size"], "params": p["params"]})
    if len(answers) < 2:
        return None
    lo, hi = min(answers, key=lambda a: a["params"]), max(answers, key=lambda a: a["params"])
    return {"n": len(answers), "answers": answers, "size_min": lo["size"], "size_max": hi["size"],
            "params_min": lo["params"], "params_max": hi["params"]}


def _on_curve(config: dict[str, Any], fixed: dict[str, Any]) -> bool:
    from overparam.store import flatten_config

    flat = flatten_config(config or {})
    return all(str(flat.get(k)) == str(v) for k, v in fixed.items())


def compressed_answer(answer: dict[str, Any], compress: dict[str, Any] | None) -> dict[str, Any] | None:
    """The smallest compressed model within the answer's target, or a note on why there is none."""
    if not compress or answer.get("target") is None or not isinstance(compress.get("models"), list):
        return None
    run = compress.get("run") or {}
    if not _on_curve(run.get("config") or {}, answer["fixed"]):
        return None
    metric, models = answer["metric"], [m for m in compress["models"] if isinstance(m, dict)]
    dense = next((m for m in models if m.get("method") == "dense"), None)
    dense_bytes = dense.get("bytes") if dense else None
    tried = [m for m in models if m.get("method") != "dense" and m.get("bytes") is not None]
    fits = [m for m in tried if m.get(metric) is not None and m[metric] <= answer["target"]
            and (dense_bytes is None or m["bytes"] < dense_bytes)]
    base = {"parent_run": run.get("id"), "parent_params": run.get("params"), "parent_bytes": dense_bytes,
            "n_tried": len(tried)}
    if not fits:
        return {**base, "model": None}
    best = min(fits, key=lambda m: (m["bytes"], m.get("nonzero_params") or m.get("params") or 0))
    model = {k: best.get(k) for k in PER_MODEL if k in best}
    return {**base, "model": model}


def sweep_answer(curves: list[dict[str, Any]], compress: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The answer of the sweep: its curve's, or with several curves the one whose best test metric is lowest
    (the setting the task does best under), named by ``fixed``; plus the compressed model."""
    answered = [c["answer"] for c in curves if c.get("answer") and c["answer"].get("best") is not None]
    if not answered:
        return curves[0]["answer"] if curves and curves[0].get("answer") else None
    chosen = dict(min(answered, key=lambda a: a["best"]))
    chosen["n_curves"] = len(curves)
    chosen["compressed"] = compressed_answer(chosen, compress)
    return chosen
