"""``overparam demo``: the main job on embedded data, end to end, in one directory.

Parts (each a normal sweep directory under DIR that every command accepts):

1. ``random-features``: Belkin et al. 2019's model-wise double descent with random Fourier
   features on scikit-learn's digits, min-norm least squares in float64 (closed form).
2. ``trained-mlp``: a one-hidden-layer MLP trained with Adam on digits with 20 % label noise.
3. ``lm-scaling``: small GPTs on the embedded CPython documentation corpus (when available).
4. ``in-context``: small GPTs on ``icl-markov``, against the Bayes-optimal predictor (``demo_icl``).

Then the report (DIR/report.html, DIR/summary.json): at its top each part's answer and shape, read by
the same code, from the same analysis, as its sections (``overparam.report.lead``), then the lines a
part's follow-up analyses add (its ``headline`` in ``demo.json``: compression, the scaling law).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

N_TRAIN_RFF = 500


def rff_spec(quick: bool) -> dict[str, Any]:
    """N from n/20 to 20n (≥ 25 geometric points, N = n included), 3 seeds; quick: fewer points."""
    n = N_TRAIN_RFF
    return {
        "name": "random-features",
        "description": "Random Fourier features on digits, min-norm least squares (float64)",
        "task": {"kind": "digits", "train_size": n, "seed": 0},
        "model": {"family": "rff", "features": "fourier", "bandwidth": 3.0},
        "train": {"optimizer": "min_norm", "solver": "svd", "dtype": "float64", "checkpoint": not quick},
        "vary": {
            "model.width": {"geometric": [n // 20, n * (10 if quick else 20)], "count": 12 if quick else 27,
                            "include": [n, 10 * n]},
            "seed": [0, 1, 2] if not quick else [0, 1],
        },
    }


def mlp_spec(quick: bool) -> dict[str, Any]:
    """Widths geometric; Adam (lr 3e-3) long enough that the wide nets fit every noisy label.

    Measured on this task (n = 500, 20 % noise, batch 128): width 64 reaches train error 0 by
    step 2000 with test error 0.22, width 512 by step 1000 with test error 0.17.
    """
    return {
        "name": "trained-mlp",
        "description": "One-hidden-layer MLP, Adam, digits with 20 % label noise",
        "task": {"kind": "digits", "train_size": 500, "label_noise": 0.2, "seed": 0},
        "model": {"family": "mlp", "depth": 1},
        "train": {"optimizer": "adam", "lr": 3e-3, "steps": 1200 if quick else 2500, "batch_size": 128,
                  "eval_log_points": 8 if quick else 14, "checkpoint": True,
                  "diagnostics": ["norms"]},  # ‖θ‖ and ‖θ − θ₀‖ per width: the implicit-regularization section
        "vary": {
            "model.width": {"geometric": [4, 512], "count": 6} if quick else
            {"geometric": [2, 2048], "count": 12},
            "seed": [0] if quick else [0, 1, 2],
        },
    }


def _lm_spec(quick: bool) -> dict[str, Any] | None:
    try:
        from overparam.demo_lm import lm_scaling_spec
    except ImportError:
        return None
    return lm_scaling_spec(quick)


def _icl_spec(quick: bool) -> dict[str, Any]:
    from overparam.demo_icl import icl_spec

    return icl_spec(quick)


PARTS: list[tuple[str, Callable[[bool], dict[str, Any] | None], str]] = [
    ("random-features", rff_spec,
     "Model-wise double descent, the cleanest case: random Fourier features of scikit-learn's digits and a "
     "min-norm least-squares readout fitted in closed form (float64), swept in the number of features N "
     "around the number of training samples n = 500."),
    ("trained-mlp", mlp_spec,
     "The same question for a trained network: one hidden layer, Adam, 20 % of training labels replaced "
     "by a wrong class; test error is measured on clean labels, train error on the noisy labels it was fit to."),
    ("lm-scaling", _lm_spec,
     "Language models on the CPython documentation text: how loss falls with parameters and tokens, and "
     "the scaling law fitted to it."),
    ("in-context", _icl_spec,
     "In-context learning with an exact optimum: every sequence draws its own Markov chain, so only reading "
     "the sequence helps; each size against the Bayes-optimal predictor, and when induction heads form."),
]


def _say(msg: str) -> None:
    print(f"[overparam demo] {msg}", file=sys.stderr, flush=True)


def run_demo(out: str | Path = "demo-out", quick: bool = False, fuse: str = "auto", device: str = "auto",
             progress: bool = True, parts: list[str] | None = None) -> Path:
    """Run every part into ``out/<part>/``, then write ``out/report.html`` and ``out/summary.json``."""
    from overparam.report.html import build_report
    from overparam.sweep.runner import run_sweep

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"quick": quick, "parts": []}
    for name, make_spec, intro in PARTS:
        if parts and name not in parts:
            continue
        spec = make_spec(quick)
        if spec is None:
            continue
        start = time.perf_counter()
        _say(f"{name}: training")
        run_sweep(spec, out / name, device=device, fuse=fuse, progress=progress)
        after = _after_part(name, out / name, quick)
        manifest["parts"].append({"dir": name, "intro": intro, "seconds": round(time.perf_counter() - start, 1),
                                  **after})
        _say(f"{name}: done in {time.perf_counter() - start:.0f} s")
    (out / "demo.json").write_text(json.dumps(manifest, indent=2))
    for part in manifest["parts"]:
        build_report(out / part["dir"])
    report = build_report(out, title="overparam demo: how many parameters does this task need?")
    _say(f"report: {report.resolve()}")
    return report


def _after_part(name: str, directory: Path, quick: bool) -> dict[str, Any]:
    """Analyses that follow a part's sweep (scaling fit, compression, landscape), stored beside it."""
    import importlib

    hooks = {"lm-scaling": ("overparam.demo_lm:after_sweep",), "in-context": ("overparam.demo_icl:after_sweep",),
             "trained-mlp": ("overparam.demo:compress_widest", "overparam.demo:landscape_by_width")}
    merged: dict[str, Any] = {}
    for target in hooks.get(name, ()):
        module_name, func_name = target.split(":")
        try:
            func = getattr(importlib.import_module(module_name), func_name)
        except (ImportError, AttributeError):
            continue
        for key, value in (func(directory, quick) or {}).items():
            merged[key] = merged.get(key, []) + value if isinstance(value, list) else value
    return merged


def landscape_by_width(directory: Path, quick: bool) -> dict[str, Any]:
    """Steps to a train loss and the loss along init → trained per width (``overparam landscape``),
    written to ``analyses/landscape.json`` for the report; under a second on the quick sweep."""
    from overparam.analysis.landscape_report import analyze_landscape

    analyze_landscape(directory)
    return {}


def compress_widest(directory: Path, quick: bool) -> dict[str, Any]:
    """Compress the widest seed-0 MLP of the sweep: how much of its width was needed?

    Magnitude pruning with fine-tuning, neuron pruning that rebuilds a smaller dense model,
    int8/int4 weight-only quantization and a distilled student, each placed on the dense
    sweep's own curve as a dense-equivalent size (``overparam.compress``).
    """
    from overparam.compress import compress_run
    from overparam.store import load_runs

    runs = load_runs(directory, status="done")
    if runs.empty:
        return {}
    widest = runs[runs["seed"] == runs["seed"].min()].sort_values("params").iloc[-1]
    doc = compress_run(directory, widest["id"], prune=(0.5, 0.9), prune_structured=(0.5, 0.9),
                       quantize=["int8", "int4"] if quick else ["all"], distill_widths=(32,) if not quick else (),
                       onnx=not quick, repeats=10 if quick else 30)
    def pick(method: str, variant: str | None = None, setting: Any = None) -> list[dict[str, Any]]:
        return [m for m in doc["models"] if m["method"] == method and m.get("sentence")
                and (variant is None or m.get("variant") == variant) and (setting is None or m["setting"] == setting)]

    chosen = (sorted(pick("prune", "ft"), key=lambda m: m["setting"])[-1:] + pick("prune-structured", "ft")[-1:]
              + pick("quantize", setting="int8")[:1])
    return {"headline": [f"Compression of the widest MLP: {m['sentence']}" for m in chosen]}
