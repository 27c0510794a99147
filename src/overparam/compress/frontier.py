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

import copy
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from overparam.compress import latency as lat
from overparam.compress.base import load_subject, train_steps
from overparam.compress.measure import Bench
from overparam.compress.prune import FINETUNE_SEED_OFFSET
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


def dense_equivalent(curve: list[dict[str, Any]], loss: float | None) -> dict[str, Any]:
    """Where test loss ``loss`` falls on the dense curve (see the module docstring).

    Returns {"params": N_eq or None, "size": {key: value interpolated the same way} or None,
    "status": "matched" | "at_most_smallest" | "beyond_largest" | "no_curve", "bound": N or absent}.
    """
    if not curve or loss is None or not math.isfinite(loss):
        return {"params": None, "size": None, "status": "no_curve"}
    if loss >= curve[0]["test_loss"]:
        return {"params": None, "size": None, "status": "at_most_smallest", "bound": curve[0]["params"]}
    for lo, hi in zip(curve[:-1], curve[1:], strict=True):
        if hi["test_loss"] <= loss:
            t = (lo["test_loss"] - loss) / (lo["test_loss"] - hi["test_loss"])
            size = {}
            for k, a in lo["size"].items():
                b = hi["size"].get(k)
                if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a > 0 and b > 0:
                    size[k] = math.exp(math.log(a) + t * (math.log(b) - math.log(a)))
            log_n = math.log(lo["params"]) + t * (math.log(hi["params"]) - math.log(lo["params"]))
            return {"params": math.exp(log_n), "size": size, "status": "matched"}
    return {"params": None, "size": None, "status": "beyond_largest", "bound": curve[-1]["params"]}


# -- reading an entry as a sentence ---------------------------------------------------------------

def describe_model(config: dict[str, Any]) -> str:
    m = config["model"]
    if m["family"] == "mlp":
        return f"a {m['width']}-wide MLP" if m["depth"] == 1 else f"a {m['depth']}×{m['width']} MLP"
    if m["family"] == "gpt":
        return f"a {m['n_layer']}-layer GPT (d_model {m['d_model']}, {m['n_head']} heads)"
    return f"a {m['family']} model"


def _count(n: float) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k" if n >= 1e4 else f"{n:,.0f}"


def _bytes(n: float) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def _equivalent_phrase(entry: dict[str, Any], family: str) -> str:
    status, n = entry["dense_equivalent_status"], entry["dense_equivalent_params"]
    if status == "matched":
        size = entry.get("dense_equivalent_size") or {}
        if family == "mlp" and "width" in size:
            return f"matches a dense {size['width']:.0f}-wide one ({_count(n)} parameters)"
        return f"matches a dense model of {_count(n)} parameters"
    if status == "at_most_smallest":
        bound = _count(entry["dense_equivalent_bound"])
        return f"is no better than the smallest dense model of the sweep ({bound} parameters)"
    if status == "beyond_largest":
        return "beats every dense model of the sweep"
    return "has no dense curve to be placed on"


def _speed_phrase(entry: dict[str, Any]) -> str:
    s = entry["speedup_b1"]
    if 0.9 <= s <= 1.1:
        return f"runs at the dense model's speed at batch 1 ({s:.2f}×)"
    return f"runs {s:.1f}× faster at batch 1" if s > 1 else f"runs {1 / s:.1f}× slower at batch 1"


def sentence(entry: dict[str, Any], config: dict[str, Any]) -> str:
    """One sentence reading an entry: what it is, its quality, its dense-equivalent size, speed, bytes.

    E.g. "A 512-wide MLP pruned to 10 % of its weights and fine-tuned 300 steps (test error 2.9 %)
    matches a dense 61-wide one (4.5 k parameters) and runs at the dense model's speed at batch 1
    (1.02×); it takes 150.1 KiB on disk (100 % of the dense bytes)."
    """
    err = entry.get("test_error")
    quality = f"test error {100 * err:.1f} %" if err is not None else f"test loss {entry['test_loss']:.3f}"
    text = (f"{describe_model(config)} {entry['label']} ({quality}) "
            f"{_equivalent_phrase(entry, config['model']['family'])} and {_speed_phrase(entry)}; it takes "
            f"{_bytes(entry['bytes'])} on disk ({100 * entry['bytes_ratio']:.0f} % of the dense bytes)")
    return text[0].upper() + text[1:] + "."


def _pct(x: float) -> str:
    v = 100 * x
    return f"{v:.0f} %" if abs(v - round(v)) < 1e-6 else f"{v:.1f} %"


def _ft(steps: int) -> str:
    return f" and fine-tuned {steps} steps" if steps else " without fine-tuning"


def _diverged(summary: dict[str, Any]) -> dict[str, Any]:
    return {"diverged_at": summary["diverged_at"]} if "diverged_at" in summary else {}


# -- each method ----------------------------------------------------------------------------------

def _prune(bench: Bench, sparsities: list[float], ft: int) -> None:
    from overparam.compress.prune import prune_and_finetune

    for s in sparsities:
        for steps in sorted({0, ft}):
            model, _, summary = prune_and_finetune(bench.subject, s, steps)
            label = f"pruned to {_pct(1 - s)} of its weights" + (_ft(steps) if steps else " in one shot")
            bench.add_torch("prune", s, label, model, f"prune-{s:g}-ft{steps}",
                            variant="ft" if steps else "one-shot",
                            finetune_steps=steps, **_diverged(summary))


def _structured(bench: Bench, fractions: list[float], by: str, ft: int) -> None:
    from overparam.compress.structured import layer_widths, prune_structured

    subject = bench.subject
    family = subject.config["model"]["family"]
    which = "least important" if by == "importance" else "smallest-norm"
    for f in fractions:
        small, _ = prune_structured(subject, f, by)
        widths = layer_widths(small, family)
        if family == "mlp":
            shape = "×".join(str(v) for v in widths.values())
            what = f"rebuilt {shape} wide with the {_pct(f)} {which} neurons removed"
        else:
            what = f"rebuilt with the {_pct(f)} {which} heads and MLP neurons of each block removed"
        for steps in sorted({0, ft}):
            model, summary = small, {}
            if steps:
                model = copy.deepcopy(small)
                summary = train_steps(model, subject, steps,
                                      seed=subject.config["seed"] + FINETUNE_SEED_OFFSET)
            bench.add_torch("prune-structured", f, what + _ft(steps), model, f"structured-{f:g}-ft{steps}",
                            variant="ft" if steps else "no-ft", finetune_steps=steps, criterion=by,
                            widths=widths,
                            **_diverged(summary))


def _lottery(bench: Bench, targets: list[float], rate: float, rewind_step: int | None
             ) -> list[dict[str, Any]]:
    from overparam.compress.lottery import find_tickets

    bench.log(f"  lottery: iterative magnitude pruning to {', '.join(_pct(s) for s in targets)} sparsity "
              f"(one training run per level, plus one control per target)")
    found = find_tickets(bench.subject, targets, rate, rewind_step)
    k = found["rewind_step"]
    for s in targets:
        ticket, _ = found["tickets"][s]
        bench.add_torch("lottery", s, f"pruned to a lottery ticket at {_pct(1 - s)} of its weights by "
                        f"iterative magnitude pruning rewound to step {k}", ticket, f"lottery-{s:g}",
                        variant="ticket", rewind_step=k)
        bench.add_torch("lottery", s, f"with the {_pct(1 - s)} ticket's mask on fresh random weights",
                        found["controls"][s], f"lottery-{s:g}-reinit", variant="reinit", rewind_step=k)
    return found["levels"]


def _onnx_dense(bench: Bench, dense: dict[str, Any]) -> None:
    """Export the dense model, check ONNX Runtime against PyTorch, time it (kept in the dense entry)."""
    subject = bench.subject
    path = lat.export_onnx(subject.model, subject.example(1), bench.files / "dense.onnx")
    session = lat.OnnxModel(path, threads=torch.get_num_threads())
    diff = max(lat.max_abs_diff(subject.model, session, subject.example(n)) for n in (1, 64))
    cost = lat.measure(session, subject.example, bench.repeats, bench.warmup, memory=False)
    dense["onnxruntime"] = {"file": str(path), "bytes": path.stat().st_size, "max_abs_diff": diff,
                            "latency_ms_b1": cost["latency_b1"]["median"],
                            "latency_ms_b64": cost["latency_b64"]["median"],
                            "latency_b1": cost["latency_b1"], "latency_b64": cost["latency_b64"],
                            **subject.evaluate(session)}
    bench.log(f"  onnx: max |ONNX Runtime − PyTorch| = {diff:.2e}; "
              f"fp32 b1 {cost['latency_b1']['median']:.3f} ms")


def _quantize(bench: Bench, schemes: list, dense: dict[str, Any]) -> None:
    from overparam.compress.quantize import quantize_model

    subject = bench.subject
    for scheme in schemes:
        if scheme.kind == "dynamic-ort":
            src = Path(dense["onnxruntime"]["file"]) if "onnxruntime" in dense else \
                lat.export_onnx(subject.model, subject.example(1), bench.files / "dense.onnx")
            path = lat.ort_quantize_dynamic(src, bench.files / "ort-int8.onnx")
            session = lat.OnnxModel(path, threads=torch.get_num_threads())
            bench.add("quantize", scheme.name, "quantized by ONNX Runtime's dynamic int8", session,
                      dense["nonzero_params"], dense["params"], path, path.stat().st_size,
                      runtime="onnxruntime")
            continue
        model = quantize_model(subject.model, scheme)
        nonzero = None
        if scheme.kind == "weight-only":
            gran = f"in groups of {scheme.group_size}" if scheme.group_size else "per channel"
            label = f"quantized to int{scheme.bits} weight-only {gran}"
            nonzero = _quantized_nonzero(model)
        elif scheme.kind == "cast":
            label = f"cast to {scheme.name}"
        else:  # weights packed by FBGEMM/oneDNN: count the source's nonzeros (quantization removes none)
            label, nonzero = "quantized by PyTorch's dynamic int8", dense["nonzero_params"]
        bench.add_torch("quantize", scheme.name, label, model, scheme.name, nonzero=nonzero,
                        n_params=dense["params"])


def _quantized_nonzero(model: nn.Module) -> int:
    """Nonzero weights of a weight-only quantized model: nonzero codes, plus every other nonzero parameter."""
    from overparam.compress.quantize import QuantLinear

    total = 0
    for module in model.modules():
        if isinstance(module, QuantLinear):
            total += int(torch.count_nonzero(module.codes()))
            total += int(torch.count_nonzero(module.bias)) if module.bias is not None else 0
        elif not list(module.children()):
            total += sum(int(torch.count_nonzero(p)) for p in module.parameters(recurse=False))
    return total


def _distill(bench: Bench, widths: list[int], temperature: float, alpha: float) -> None:
    from overparam.compress.distill import train_student

    gpt = bench.subject.config["model"]["family"] == "gpt"
    for w in widths:
        student_name = f"a d_model {w} student" if gpt else f"a {w}-wide student"
        for soft in (True, False):
            student, summary = train_student(bench.subject, w, distill=soft, temperature=temperature,
                                             alpha=alpha)
            steps = summary["steps"]
            label = (f"distilled into {student_name} at T = {temperature:g}, α = {alpha:g} over {steps} steps"
                     if soft else f"replaced by {student_name} trained on the labels alone with the same "
                                  f"{steps}-step budget")
            bench.add_torch("distill", w, label, student, f"distill-{w}-{'kd' if soft else 'scratch'}",
                            variant="distilled" if soft else "scratch", **_diverged(summary))


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
        _onnx_dense(bench, dense)
    if prune:
        _prune(bench, prune, ft)
    if prune_structured:
        _structured(bench, prune_structured, structured_by, ft)
    levels = _lottery(bench, lottery, lottery_rate, rewind_step) if lottery else []
    if schemes:
        _quantize(bench, schemes, dense)
    if distill_widths:
        _distill(bench, list(distill_widths), temperature, alpha)

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
