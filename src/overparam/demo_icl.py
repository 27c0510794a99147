"""The in-context learning part of ``overparam demo``: small GPTs on ``icl-markov``.

Every sequence draws its own 3-state Markov chain (Dirichlet(0.5) rows), so the models can only
learn in context; the part's report compares each size with the Bayes-optimal predictor on the
same sequences and marks when the ICL score drops and when an induction head forms
(``analysis/in_context.py``). The full part is ``examples/icl-markov.yaml``.

Runtime, measured on 2 CPU cores shared with other jobs (one torch thread): full, 3 runs of
1,200 steps, 57–100 s of CPU (the example spec); quick, 2 runs of 400 steps, 18 s of CPU for the
part alone in a fresh process (imports and its report included), 11 s of wall time inside
``overparam demo --quick``, whose lm-scaling part took 29 s of CPU alone the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def icl_spec(quick: bool = False) -> dict[str, Any]:
    """full: d_model 16 / 32 / 64 × 1,200 steps; quick: d_model 16 / 32 × 400 steps (induction heads form
    by step 200–400 at these widths, so both parts see the transition)."""
    return {
        "name": "in-context-quick" if quick else "in-context",
        "description": "GPTs on sequences that each draw their own Markov chain: in-context learning against "
                       "the Bayes-optimal predictor, and when induction heads form.",
        "task": {"kind": "icl-markov", "states": 3, "alpha": 0.5, "context": 32,
                 "train_size": 12800 if quick else 40000, "test_size": 512 if quick else 1024, "seed": 0},
        "model": {"family": "gpt", "n_layer": 2, "n_head": 1, "context": 32},
        "train": {"optimizer": "adamw", "lr": 3e-3, "warmup_steps": 50, "steps": 400 if quick else 1200,
                  "batch_size": 32, "eval_every": 50 if quick else 100, "eval_log_points": 0 if quick else 10},
        "vary": {"model.d_model": [16, 32] if quick else [16, 32, 64]},
        "seed": 0,
    }


def after_sweep(directory: Path, quick: bool) -> dict[str, Any]:
    """The demo's headline for this part: the largest size's ICL score and gap against Bayes-optimal,
    and where its induction head formed relative to the phase change (the report's own sentences)."""
    from overparam.analysis.in_context import blocks
    from overparam.report.in_context_reading import read_in_context

    block = blocks(directory).get("in_context")
    if not block:
        return {"headline": ["In-context learning: no finished runs."]}
    largest = max(block["sizes"], key=lambda r: r["params"])
    lines = read_in_context({**block, "sizes": [largest]})[1:]  # ICL score and gap, phase change, induction heads
    return {"headline": [" ".join([f"In-context learning (each sequence its own Markov chain): {lines[0]}",
                                   *lines[2:3]])]}
