"""The compression frontier of one run, in the sweep's own units: the dense-equivalent size.

Every compressed model is placed on the dense sweep's test-loss curve: its **dense-equivalent
size** is the parameter count of the smallest dense model of the same sweep (same task, family
and recipe; any size, mean over seeds) with the same test loss, linearly interpolated in
log(parameters) between the two dense sizes that bracket it:

    t = (L_{i−1} − L) / (L_{i−1} − L_i),   log N_eq = log N_{i−1} + t · (log N_i − log N_{i−1})

where i is the first size (walking up from the smallest) whose loss is ≤ L. "First" matters on a
double-descent curve, which reaches a loss, rises above it near the interpolation threshold and
reaches it again: the compressed model matches the *smallest* dense model that is as good. A
loss above the smallest model's is "≤ smallest"; below every dense model's, "> largest"; both are
reported as bounds with a null size, never extrapolated.

:func:`compress_run` is the orchestration behind ``overparam compress``: it loads the run,
produces every requested compressed model, measures each the same way (:mod:`.measure`), writes
``DIR/analyses/compress.json`` and the model files under ``DIR/compressed/<run id>/``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from overparam.errors import OverparamError, require

DEFAULT_SPARSITIES = (0.5, 0.8, 0.9, 0.95)
DEFAULT_FRACTIONS = (0.5, 0.75, 0.9)  # share of units removed per layer by structured pruning
ARTIFACT = "compress"  # DIR/analyses/compress.json, read by the report


# -- the dense curve and the dense-equivalent size ------------------------------------------------

def _curve_key(config: dict[str, Any], size_keys: Sequence[str]) -> str:
    cfg = json.loads(json.dumps(config))
    cfg.pop("seed", None)
    for k in size_keys:
        cfg["model"].pop(k, None)
    return json.dumps(cfg, sort_keys=True)


def dense_curve(runs: list[dict[str, Any]], config: dict[str, Any], size_keys: Sequence[str]
                ) -> list[dict[str, Any]]:
    """The runs that share ``config`` except for size and seed: one point per size, means over seeds.

    Runs that did not finish, have no finite test loss, or are flagged ``unstable`` are left out.
    """
    key = _curve_key(config, size_keys)
    points: dict[int, list[dict[str, Any]]] = {}
    for r in runs:
        m = r["metrics"] or {}
        loss = m.get("test_loss")
        if (r["status"] != "done" or r["params"] is None or loss is None or not math.isfinite(loss)
                or m.get("unstable") or _curve_key(r["config"], size_keys) != key):
            continue
        points.setdefault(int(r["params"]), []).append(r)
    curve = []
    for params in sorted(points):
        rs = points[params]
        errors = [r["metrics"]["test_error"] for r in rs if r["metrics"].get("test_error") is not None]
        curve.append({"params": params, "size": {k: rs[0]["config"]["model"].get(k) for k in size_keys},
                      "test_loss": sum(r["metrics"]["test_loss"] for r in rs) / len(rs),
                      "test_error": sum(errors) / len(errors) if errors else None, "seeds": len(rs)})
    return curve


def dense_equivalent(curve: list[dict[str, Any]], loss: float | None, key: str = "test_loss",
                     rtol: float = 1e-6) -> dict[str, Any]:
    """Where ``loss`` falls on the dense curve of ``key`` (see the module docstring).

    Returns {"params": N_eq or None, "size": {key: value interpolated the same way} or None,
    "status": "matched" | "at_most_smallest" | "beyond_largest" | "no_curve", "bound": N or absent}.
    Losses within ``rtol`` count as equal: a dense run re-evaluated here lands on its own point,
    not past it because of the last float bit.
    """
    points = [p for p in curve if p.get(key) is not None]
    if not points or loss is None or not math.isfinite(loss):
        return {"params": None, "size": None, "status": "no_curve"}
    tol = rtol * abs(loss)
    if loss >= points[0][key] - tol:
        return {"params": None, "size": None, "status": "at_most_smallest", "bound": points[0]["params"]}
    for lo, hi in zip(points[:-1], points[1:], strict=True):
        if hi[key] <= loss + tol:
            t = min(1.0, (lo[key] - loss) / (lo[key] - hi[key]))
            size = {}
            for k, a in lo["size"].items():
                b = hi["size"].get(k)
                if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a > 0 and b > 0:
                    size[k] = math.exp(math.log(a) + t * (math.log(b) - math.log(a)))
            log_n = math.log(lo["params"]) + t * (math.log(hi["params"]) - math.log(lo["params"]))
            return {"params": math.exp(log_n), "size": size, "status": "matched"}
    return {"params": None, "size": None, "status": "beyond_largest", "bound": points[-1]["params"]}


# -- orchestration --------------------------------------------------------------------------------

def _fractions(values: Sequence[float], what: str) -> list[float]:
    out = []
    for v in values:
        number = isinstance(v, (int, float)) and not isinstance(v, bool)
        if not number or not math.isfinite(v) or not 0.0 < v < 1.0:
            raise OverparamError(f"{what}: expected fractions strictly between 0 and 1, got {v!r}")
        out.append(float(v))
    return sorted(set(out))


def _has_onnxruntime() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def _schemes(quantize: Sequence[str] | None, skipped: list[str]) -> list:
    from overparam.compress.quantize import DEFAULT_SCHEMES, parse_scheme

    try:
        schemes = [parse_scheme(s) for s in (DEFAULT_SCHEMES if quantize is None else quantize)]
    except ValueError as exc:
        raise OverparamError(f"--quantize: {exc}") from exc
    if any(s.kind == "dynamic-ort" for s in schemes) and not _has_onnxruntime():
        if quantize is not None:
            require("onnxruntime", "onnx")  # asked for by name: say what to install
        schemes = [s for s in schemes if s.kind != "dynamic-ort"]
        skipped.append("ort-int8 and the ONNX export: onnxruntime is not installed "
                       "(pip install 'overparam[onnx]')")
    return schemes


def compress_run(directory: str | Path, run_id: str, *, prune: Sequence[float] = DEFAULT_SPARSITIES,
                 finetune_steps: int | None = None, prune_structured: Sequence[float] = DEFAULT_FRACTIONS,
                 structured_by: str = "importance", lottery: Sequence[float] = (), lottery_rate: float = 0.2,
                 rewind_step: int | None = None, quantize: Sequence[str] | None = None,
                 distill_widths: Sequence[int] = (), temperature: float = 2.0, alpha: float = 0.5,
                 onnx: bool | None = None, repeats: int = 30, warmup: int = 5,
                 log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Compress run ``run_id`` of the sweep in ``directory`` every requested way and measure each.

    Returns (and writes to ``DIR/analyses/compress.json``) ``{"models": [...], ...}``: the dense
    model first (``method: "dense"``), then one entry per compressed model with ``method``,
    ``setting``, ``variant``, ``test_error``, ``test_loss``, ``nonzero_params``, ``bytes``,
    ``latency_ms_b1``, ``latency_ms_b64`` (medians; distributions in ``latency_b1``/``latency_b64``),
    ``peak_memory_bytes``, ``dense_equivalent_params`` and a ``sentence``.

    ``quantize=None``: every scheme this machine can run. ``onnx=None``: export to ONNX when
    onnxruntime is installed. ``finetune_steps=None``: a quarter of the run's steps, at least 50.
    Lottery tickets cost one training run per pruning level; they run only when asked for.
    """
    from overparam.compress import latency as lat
    from overparam.compress import methods
    from overparam.compress.base import load_subject
    from overparam.compress.measure import Bench
    from overparam.compress.reading import describe_model
    from overparam.compress.structured import CRITERIA
    from overparam.store import open_store

    log = log or (lambda msg: None)
    prune, lottery = _fractions(prune, "--prune"), _fractions(lottery, "--lottery")
    prune_structured = _fractions(prune_structured, "--prune-structured")
    if structured_by not in CRITERIA:
        raise OverparamError(f"--structured-by: expected one of {', '.join(CRITERIA)}, got {structured_by!r}")
    if repeats < 1 or warmup < 0:
        raise OverparamError(f"--repeats must be >= 1 and --warmup >= 0, got {repeats} and {warmup}")
    if not 0.0 < lottery_rate < 1.0:
        raise OverparamError(f"--lottery-rate: expected a fraction in (0, 1), got {lottery_rate}")
    if not temperature > 0 or not 0.0 <= alpha <= 1.0:
        raise OverparamError(f"--temperature must be > 0 and --alpha in [0, 1], "
                             f"got {temperature} and {alpha}")
    if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in distill_widths):
        raise OverparamError(f"--distill-width: expected positive integers, got {list(distill_widths)}")
    skipped: list[str] = []
    schemes = _schemes(quantize, skipped)
    if onnx is None:
        onnx = _has_onnxruntime()
    elif onnx:
        require("onnxruntime", "onnx")
    elif quantize is None:  # --no-onnx: the default list loses ort-int8 too; naming it keeps it
        schemes = [s for s in schemes if s.kind != "dynamic-ort"]

    subject = load_subject(directory, run_id)
    steps = subject.train["steps"]
    ft = max(50, steps // 4) if finetune_steps is None else int(finetune_steps)
    if ft < 0:
        raise OverparamError(f"--finetune-steps: expected >= 0, got {ft}")
    if rewind_step is not None and not 0 <= rewind_step < steps:
        raise OverparamError(f"--rewind-step: expected 0 <= step < {steps} (the run's steps), "
                             f"got {rewind_step}")
    if distill_widths:
        from overparam.compress.distill import student_config

        for w in distill_widths:
            student_config(subject, w)  # refuse a bad width before anything trains
    with open_store(directory) as store:
        curve = dense_curve(store.runs(), subject.config, subject.family.SIZE_KEYS)
    files = Path(directory) / "compressed" / subject.run_id
    files.mkdir(parents=True, exist_ok=True)
    bench = Bench(subject, curve, files, repeats, warmup, log)
    started = time.time()
    log(f"compressing run {subject.run_id}, {describe_model(subject.config)}; the dense curve has "
        f"{len(curve)} sizes")

    dense = bench.add_torch("dense", None, "uncompressed", subject.model, "dense")
    if onnx:
        methods.onnx_dense(bench, dense)
    if prune:
        methods.prune(bench, prune, ft)
    if prune_structured:
        methods.structured(bench, prune_structured, structured_by, ft)
    levels = methods.lottery(bench, lottery, lottery_rate, rewind_step) if lottery else []
    if schemes:
        methods.quantize(bench, schemes, dense)
    if distill_widths:
        methods.distill(bench, list(distill_widths), temperature, alpha)

    doc = {
        "run": {"id": subject.run_id, "config": subject.config,
                "params": int(sum(p.numel() for p in subject.model.parameters())),
                "metrics": {k: subject.metrics.get(k) for k in ("test_loss", "test_error", "train_loss",
                                                                 "train_error")}},
        "family": subject.config["model"]["family"],
        "models": bench.entries,
        "dense_curve": curve,
        "lottery_levels": levels,
        "sentences": [e["sentence"] for e in bench.entries if e["method"] != "dense"],
        "settings": {"finetune_steps": ft, "structured_by": structured_by, "lottery_rate": lottery_rate,
                     "temperature": temperature, "alpha": alpha, "repeats": repeats, "warmup": warmup,
                     "batch_sizes": [1, 64]},
        "machine": lat.machine(),
        "skipped": skipped,
        "files": str(files),
        "seconds": round(time.time() - started, 2),
    }
    from overparam.cli import _clean_json

    doc = _clean_json(doc)
    out = Path(directory) / "analyses"
    out.mkdir(exist_ok=True)
    (out / f"{ARTIFACT}.json").write_text(json.dumps(doc, indent=2, allow_nan=False))
    return doc
