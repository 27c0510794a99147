"""The language-model scaling part of ``overparam demo``: GPT sizes × token budgets on text.

Character-level GPTs on the embedded corpus (CPython's documentation, no download). The two
axes are ``model.d_model`` and ``train.steps``, both geometric with ratio 2 and 3. Training
FLOPs per token grow ≈ 3.5× per doubling of d_model (``gpt.flops_per_example``: 12·L·d² plus
the unembedding and attention terms), so each anti-diagonal of the grid (bigger model, fewer
tokens) holds runs of about the same compute: an IsoFLOP-style grid (Hoffmann et al. 2022,
approach 2) from which ``overparam fit`` reads L(N, D) and the compute-optimal frontier.
Every run's cosine schedule ends at its own last step, as Chinchilla's do.

After the sweep, :func:`after_sweep` writes the scaling analysis (``analysis/scaling_report.py``):
the Approach 3 fit with bootstrap intervals, the compute-optimal frontier, the extrapolation
backtest, the points of diminishing returns, and the demo's headline sentences.

Runtime of the part (``run_sweep`` with one torch thread, then :func:`after_sweep`), measured on
2 CPU cores shared with other jobs: full, 12 runs, 125 s of CPU for training + 9 s for the analysis
(1,000 resamples); wall ≈ 200 s + 12 s at load average ≈ 5, 614 s + 30 s at load ≈ 10. Quick,
8 runs, 8 s of CPU + 2 s (200 resamples); wall 15 s + 3 s at load ≈ 5, 27 s + 6 s at load ≈ 10.
Models this small want one torch thread per process: with torch's default 2 threads on the busy
cores the former 6-run quick grid took 49 s instead of 12.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from overparam.train.lm import default_lr

# Bootstrap resamples of the scaling fit: Approach 3 with 1,000 resamples took 7 s of CPU on the
# full part's 12 runs (200 on the quick part's 8: 1 s), next to minutes of training.
BOOTSTRAP = {True: 200, False: 1000}


def lm_scaling_spec(quick: bool = False) -> dict[str, Any]:
    """A spec dict: char-level GPTs, d_model × steps, on the embedded corpus.

    full (``quick=False``): 2 layers, context 64, d_model 16 / 32 / 64 / 128 × steps 60 / 180 / 540
    of 16 windows (61k–553k tokens, up to 1.3 passes over the 418k training characters); 12 runs.
    Four sizes, not three: the extrapolation backtest refits without the largest size, and the
    joint law needs three sizes left to pin A and α (``analysis/scaling_report.py``).
    quick: 1 layer, context 32, d_model 8 / 16 / 32 / 64 × steps 30 / 90 of 16 windows; 8 runs.
    Two budgets cannot identify L(N, D), so the quick part fits L(N) at the larger budget; its
    fourth size leaves one run to backtest that.
    """
    if quick:
        model = {"family": "gpt", "n_layer": 1, "n_head": 2, "context": 32}
        vary = {"model.d_model": [8, 16, 32, 64], "train.steps": [30, 90]}
        middle, warmup = 32, 5
    else:
        model = {"family": "gpt", "n_layer": 2, "n_head": 4, "context": 64}
        vary = {"model.d_model": [16, 32, 64, 128], "train.steps": [60, 180, 540]}
        middle, warmup = 64, 10
    return {
        "name": "lm-scaling-quick" if quick else "lm-scaling",
        "description": "Char-level GPTs on CPython's bundled docs: model size × training tokens "
                       "(an IsoFLOP-style grid) for a scaling-law fit.",
        "task": {"kind": "text", "tokenizer": "char"},
        "model": model,
        "train": {"optimizer": "adamw", "lr": round(default_lr(middle), 6), "weight_decay": 0.0,
                  "schedule": "cosine", "warmup_steps": warmup, "batch_size": 16, "clip": 1.0,
                  "eval_every": 0, "dropout": 0.0},
        "vary": vary,
        "seed": 0,
    }


def after_sweep(directory: Path, quick: bool) -> dict[str, Any]:
    """``overparam demo``'s hook after this part: the scaling analysis, stored as
    ``DIR/analyses/scaling.json``, and its headline sentences for the top of the report."""
    from overparam.analysis.scaling_report import analyze_scaling_sweep
    from overparam.errors import OverparamError

    try:
        doc = analyze_scaling_sweep(directory, bootstrap=BOOTSTRAP[quick], seed=0)
    except OverparamError as exc:  # e.g. every run diverged: the report still shows the runs
        return {"headline": [f"Language-model scaling: no fit ({exc})."]}
    return {"headline": [f"Language models: {s[0].lower()}{s[1:]}" for s in doc["headline"][:1]]
            + doc["headline"][1:], "scaling": {"law": doc["law"], "seconds": doc["seconds"]}}
