"""The compression frontier of one run, in the sweep's own units: the dense-equivalent size.

Every compressed model is placed on the dense sweep's curve (same task, family and recipe; any
size, mean over seeds) of the metric the user reads: **test error** for classification (test loss
beside it), test loss otherwise. Its **dense-equivalent size** answers "how big a dense model of
this sweep does as well?", starting from the model it was compressed from (its *parent*, which
always maps to its own size):

- at least as good as the parent (error ≤ the parent's): the parent's size, flagged ``better``
  when strictly better. (A smaller dense size that is already good enough is the answer line's
  business, not this one's.)
- worse: walk the dense curve down from the parent toward smaller sizes and stop at the first size
  i whose error e_i is at least the compressed model's e; interpolate in log size between it and
  the size walked just before it (j, larger, e_j < e; the parent itself for the first step):

      t = (e_i − e) / (e_i − e_j),   log N_eq = log N_i + t · (log N_j − log N_i)

- worse than every size down to the smallest: "below the sweep", with the smallest size as bound.

Walking down from the parent, not up from the smallest model, keeps a double-descent curve from
sending a model that lost almost nothing to a tiny size that happens to reach the same error
before the interpolation peak.

:func:`compress_run` is the orchestration behind ``overparam compress``: it loads the run,
produces every requested compressed model, measures each the same way (:mod:`.measure`), writes
``DIR/analyses/compress.json`` and the model files under ``DIR/compressed/<run id>/``.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from overparam.errors import OverparamError, require

# What `overparam compress` runs when no method is named: two sparsities, two neuron fractions and two
# weight-only schemes, each pruned model with and without fine-tuning. About 10 s for a 2048-wide digits
# MLP on one thread (benchmarks/compress_speed.py); lottery tickets and distillation each cost whole
# training runs and run only when asked for.
DEFAULT_METHODS: dict[str, tuple] = {"prune": (0.5, 0.9), "prune_structured": (0.5, 0.9),
                                     "quantize": ("int8", "int4")}
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


def dense_equivalent(curve: list[dict[str, Any]], value: float | None, parent: dict[str, Any],
                     key: str = "test_error", rtol: float = 1e-6) -> dict[str, Any]:
    """Where ``value`` of ``key`` places a model compressed from ``parent`` on the dense curve
    (see the module docstring for the rule).

    ``curve``: points ``{"params", "size", key}`` (any order); ``parent``: ``{"params", "size",
    key}`` of the model it came from (its own measured value, not the seed mean at its size).
    Returns ``{"params": N_eq or None, "size": {key: interpolated} or None, "status": "parent" |
    "matched" | "below_sweep" | "no_curve", "better": bool, "bound"?: N}``. Values within ``rtol``
    count as equal: the parent re-evaluated lands on itself, not past it by the last float bit.
    """
    own = parent.get(key)
    if value is None or own is None or not (math.isfinite(value) and math.isfinite(own)):
        return {"params": None, "size": None, "status": "no_curve", "better": False}
    tol = rtol * max(abs(value), abs(own), 1e-12)
    if value <= own + tol:
        return {"params": float(parent["params"]), "size": dict(parent.get("size") or {}), "status": "parent",
                "better": bool(value < own - tol)}
    below = sorted((p for p in curve if p.get(key) is not None and p["params"] < parent["params"]),
                   key=lambda p: p["params"], reverse=True)
    before = parent
    for point in below:  # walking down: the first size at least as bad as the compressed model
        if point[key] >= value - tol:
            t = min(1.0, max(0.0, (point[key] - value) / (point[key] - before[key])))
            return {"params": _log_between(point["params"], before["params"], t),
                    "size": _size_between(point.get("size") or {}, before.get("size") or {}, t),
                    "status": "matched", "better": False, "between": [point["params"], before["params"]]}
        before = point
    smallest = below[-1]["params"] if below else parent["params"]
    return {"params": None, "size": None, "status": "below_sweep", "better": False, "bound": smallest}


def _log_between(a: float, b: float, t: float) -> float:
    """exp(log a + t (log b − log a)): the point a fraction t of the way from a to b on a log axis."""
    return math.exp(math.log(a) + t * (math.log(b) - math.log(a)))


def _size_between(lo: dict[str, Any], hi: dict[str, Any], t: float) -> dict[str, float]:
    """Each positive numeric size key (width, d_model...) interpolated like the parameter count."""
    out = {}
    for k, a in lo.items():
        b = hi.get(k)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a > 0 and b > 0:
            out[k] = _log_between(a, b, t)
    return out


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


def _schemes(quantize: Sequence[str], skipped: list[str]) -> list:
    """Parsed schemes; ``all`` expands to every scheme this machine can run (ort-int8 needs onnxruntime)."""
    from overparam.compress.quantize import DEFAULT_SCHEMES, parse_scheme

    everything = any(str(s).strip().lower() == "all" for s in quantize)
    names = [s for s in quantize if str(s).strip().lower() != "all"]
    if everything:
        names = list(dict.fromkeys([*names, *DEFAULT_SCHEMES]))
    try:
        schemes = [parse_scheme(s) for s in names]
    except ValueError as exc:
        raise OverparamError(f"--quantize: {exc}") from exc
    if any(s.kind == "dynamic-ort" for s in schemes) and not _has_onnxruntime():
        if not everything:
            require("onnxruntime", "onnx")  # asked for by name: say what to install
        schemes = [s for s in schemes if s.kind != "dynamic-ort"]
        skipped.append("ort-int8 and the ONNX export: onnxruntime is not installed "
                       "(pip install 'overparam[onnx]')")
    return schemes


def requested_methods(prune: Sequence[float] | None, prune_structured: Sequence[float] | None,
                      lottery: Sequence[float] | None, quantize: Sequence[str] | None,
                      distill_widths: Sequence[int] | None) -> dict[str, list]:
    """The methods to run: exactly those given (None = not asked for, [] = asked for none); when
    none is given at all, :data:`DEFAULT_METHODS`."""
    given = {"prune": prune, "prune_structured": prune_structured, "lottery": lottery, "quantize": quantize,
             "distill_widths": distill_widths}
    if all(v is None for v in given.values()):
        given = {k: DEFAULT_METHODS.get(k) for k in given}
    return {k: list(v) if v is not None else [] for k, v in given.items()}


@contextlib.contextmanager
def cpu_threads(threads: int | None) -> Iterator[int]:
    """torch intra-op threads for the duration: ``threads``, or what a sweep uses
    (:func:`overparam.sweep.runner.set_cpu_threads`: one, or OVERPARAM_THREADS). Restored on exit.

    Fine-tuning and timing models this small on several threads of a loaded machine was measured
    up to 10× slower than on one (benchmarks/compress_speed.py): OpenMP workers spin at every
    barrier while another process holds the core they wait for.
    """
    import torch

    from overparam.flags import max_threads  # torch's OpenMP crashed (SIGSEGV) at 99999
    from overparam.sweep.runner import set_cpu_threads

    before = torch.get_num_threads()
    if threads is None:
        set_cpu_threads(torch.device("cpu"))
    elif isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= max_threads():
        raise OverparamError(f"--threads: expected an integer in 1..{max_threads()}, got {threads!r}")
    else:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def compress_run(directory: str | Path, run_id: str, *, prune: Sequence[float] | None = None,
                 finetune_steps: int | None = None, prune_structured: Sequence[float] | None = None,
                 structured_by: str = "importance", lottery: Sequence[float] | None = None,
                 lottery_rate: float = 0.2, rewind_step: int | None = None, quantize: Sequence[str] | None = None,
                 distill_widths: Sequence[int] | None = None, temperature: float = 2.0, alpha: float = 0.5,
                 onnx: bool | None = None, repeats: int = 30, warmup: int = 5, threads: int | None = None,
                 log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Compress run ``run_id`` of the sweep in ``directory`` the requested ways and measure each.

    Runs exactly the methods given (``prune``, ``prune_structured``, ``lottery``, ``quantize``,
    ``distill_widths``; None = not asked for); with none given, :data:`DEFAULT_METHODS`. ``quantize``
    may name ``all``: every scheme this machine can run.

    Returns (and writes to ``DIR/analyses/compress.json``) ``{"models": [...], ...}``: the dense
    model first (``method: "dense"``), then one entry per compressed model with ``method``,
    ``setting``, ``variant``, ``test_error``, ``test_loss``, ``nonzero_params``, ``bytes``,
    ``latency_ms_b1``, ``latency_ms_b64`` (medians; distributions in ``latency_b1``/``latency_b64``),
    ``peak_memory_bytes``, ``dense_equivalent_params`` and a ``sentence``.

    ``onnx=None``: export the dense model to ONNX when onnxruntime is installed. ``finetune_steps=None``:
    a quarter of the run's steps, at least 50. ``threads=None``: one torch thread (OVERPARAM_THREADS),
    as a sweep trains; restored afterwards. Lottery tickets cost one training run per pruning level.
    """
    with cpu_threads(threads):
        return _compress(directory, run_id, requested_methods(prune, prune_structured, lottery, quantize,
                                                              distill_widths),
                         finetune_steps=finetune_steps, structured_by=structured_by, lottery_rate=lottery_rate,
                         rewind_step=rewind_step, temperature=temperature, alpha=alpha, onnx=onnx,
                         repeats=repeats, warmup=warmup, log=log)


def _compress(directory: str | Path, run_id: str, methods_: dict[str, list], *, finetune_steps: int | None,
              structured_by: str, lottery_rate: float, rewind_step: int | None, temperature: float, alpha: float,
              onnx: bool | None, repeats: int, warmup: int, log: Callable[[str], None] | None) -> dict[str, Any]:
    import torch

    from overparam.compress import latency as lat
    from overparam.compress import methods
    from overparam.compress.base import load_subject
    from overparam.compress.measure import Bench
    from overparam.compress.reading import describe_model
    from overparam.compress.structured import CRITERIA
    from overparam.store import open_store

    log = log or (lambda msg: None)
    prune, lottery = _fractions(methods_["prune"], "--prune"), _fractions(methods_["lottery"], "--lottery")
    prune_structured = _fractions(methods_["prune_structured"], "--structured")
    distill_widths = methods_["distill_widths"]
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
    schemes = _schemes(methods_["quantize"], skipped)
    if onnx is None:
        onnx = _has_onnxruntime()
    elif onnx:
        require("onnxruntime", "onnx")
    elif any(str(q).strip().lower() == "all" for q in methods_["quantize"]):  # --no-onnx: "all" loses ort-int8
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
        f"{len(curve)} sizes; {torch.get_num_threads()} torch thread(s)")

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
        "metric": bench.metric, "n_test": subject.n_test,
        "methods": {k: v for k, v in methods_.items() if v},
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
