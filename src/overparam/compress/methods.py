"""Each compression method as one step of ``compress_run``: build the models, hand them to the bench.

Every function takes the :class:`~overparam.compress.measure.Bench` (which holds the loaded run,
the dense curve and the dense entry) and appends one entry per model it builds, with a label that
:func:`~overparam.compress.reading.sentence` reads.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from overparam.compress import latency as lat
from overparam.compress.base import train_steps
from overparam.compress.measure import Bench
from overparam.compress.prune import FINETUNE_SEED_OFFSET
from overparam.compress.reading import diverged as _diverged
from overparam.compress.reading import ft_phrase as _ft
from overparam.compress.reading import pct as _pct


def prune(bench: Bench, sparsities: list[float], ft: int) -> None:
    """Global magnitude pruning at each sparsity, one-shot and fine-tuned ``ft`` steps."""
    from overparam.compress.prune import prune_and_finetune

    for s in sparsities:
        for steps in sorted({0, ft}):
            model, _, summary = prune_and_finetune(bench.subject, s, steps)
            label = f"pruned to {_pct(1 - s)} of its weights" + (_ft(steps) if steps else " in one shot")
            bench.add_torch("prune", s, label, model, f"prune-{s:g}-ft{steps}",
                            variant="ft" if steps else "one-shot",
                            finetune_steps=steps, **_diverged(summary))


def structured(bench: Bench, fractions: list[float], by: str, ft: int) -> None:
    """Units removed per layer, rebuilt smaller; without and with ``ft`` steps of fine-tuning."""
    from overparam.compress.structured import layer_widths, prune_structured
    from overparam.compress.units import prune_units
    from overparam.models import is_user_family

    subject = bench.subject
    family = subject.config["model"]["family"]
    which = "least important" if by == "importance" else "smallest-norm"
    user = is_user_family(family)  # a user's module: units masked in place (compress/units.py)
    for f in fractions:
        small, info = prune_units(subject, f, by) if user else prune_structured(subject, f, by)
        widths = info["widths"] if user else layer_widths(small, family)
        if user:
            what = f"with the {_pct(f)} {which} output units of each hidden layer masked to zero (same shapes)"
        elif family == "mlp":
            shape = "×".join(f"{v:,}" for v in widths.values())
            what = f"rebuilt {shape} wide with the {_pct(f)} {which} neurons removed"
        else:
            what = f"rebuilt with the {_pct(f)} {which} heads and MLP neurons of each block removed"
        for steps in sorted({0, ft}):
            model, summary = small, {}
            if steps:
                model = copy.deepcopy(small)
                summary = train_steps(model, subject, steps, seed=subject.config["seed"] + FINETUNE_SEED_OFFSET,
                                      masks=info.get("masks"))  # masked units stay zero
            bench.add_torch("prune-structured", f, what + _ft(steps), model, f"structured-{f:g}-ft{steps}",
                            variant="ft" if steps else "no-ft", finetune_steps=steps, criterion=by,
                            widths=widths,
                            **_diverged(summary))


def lottery(bench: Bench, targets: list[float], rate: float, rewind_step: int | None
             ) -> list[dict[str, Any]]:
    """A lottery ticket and its random-reinit control per target; returns the per-level curve."""
    from overparam.compress.lottery import find_tickets

    bench.log(f"  lottery: iterative magnitude pruning to {', '.join(_pct(s) for s in targets)} sparsity "
              f"(one training run per level, plus one control per target)")
    found = find_tickets(bench.subject, targets, rate, rewind_step)
    k = found["rewind_step"]
    for s in targets:
        ticket, _ = found["tickets"][s]
        bench.add_torch("lottery", s, f"pruned to a lottery ticket at {_pct(1 - s)} of its weights by "
                        f"iterative magnitude pruning rewound to step {k:,}", ticket, f"lottery-{s:g}",
                        variant="ticket", rewind_step=k)
        bench.add_torch("lottery", s, f"with the {_pct(1 - s)} ticket's mask on fresh random weights",
                        found["controls"][s], f"lottery-{s:g}-reinit", variant="reinit", rewind_step=k)
    return found["levels"]


def onnx_dense(bench: Bench, dense: dict[str, Any]) -> None:
    """Export the dense model, check ONNX Runtime against PyTorch, time it (kept in the dense entry)."""
    import time

    subject = bench.subject
    started = time.perf_counter()
    path = lat.export_onnx(subject.model, subject.example(1), bench.files / "dense.onnx")
    session = lat.OnnxModel(path, threads=torch.get_num_threads())
    diff = max(lat.max_abs_diff(subject.model, session, subject.example(n)) for n in (1, 64))
    cost = lat.measure(session, subject.example, bench.repeats, bench.warmup, memory=False)
    dense["onnxruntime"] = {"file": str(path), "bytes": path.stat().st_size, "max_abs_diff": diff,
                            "latency_ms_b1": cost["latency_b1"]["median"],
                            "latency_ms_b64": cost["latency_b64"]["median"],
                            "latency_b1": cost["latency_b1"], "latency_b64": cost["latency_b64"],
                            **subject.evaluate(session), "seconds": round(time.perf_counter() - started, 3)}
    bench.log(f"  onnx: max |ONNX Runtime − PyTorch| = {diff:.2e}; "
              f"fp32 b1 {cost['latency_b1']['median']:.3f} ms  ({dense['onnxruntime']['seconds']:.1f} s)")
    bench.restart_clock()


def quantize(bench: Bench, schemes: list, dense: dict[str, Any]) -> None:
    """One entry per scheme; ``ort-int8`` quantizes the exported ONNX graph."""
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


def distill(bench: Bench, widths: list[int], temperature: float, alpha: float) -> None:
    """A distilled student and its from-scratch control per width."""
    from overparam.compress.distill import train_student

    gpt = bench.subject.config["model"]["family"] == "gpt"
    for w in widths:
        student_name = f"a d_model {w:,} student" if gpt else f"a {w:,}-wide student"
        for soft in (True, False):
            student, summary = train_student(bench.subject, w, distill=soft, temperature=temperature,
                                             alpha=alpha)
            steps = summary["steps"]
            label = (f"distilled into {student_name} at T = {temperature:g}, α = {alpha:g} over {steps:,} steps"
                     if soft else f"replaced by {student_name} trained on the labels alone with the same "
                                  f"{steps:,}-step budget")
            bench.add_torch("distill", w, label, student, f"distill-{w}-{'kd' if soft else 'scratch'}",
                            variant="distilled" if soft else "scratch", **_diverged(summary))
