"""The language-model scaling part of ``overparam demo``: GPT sizes × token budgets on text.

Character-level GPTs on the embedded corpus (CPython's documentation, no download). The two
axes are ``model.d_model`` and ``train.steps``, both geometric with ratio 2 and 3. Training
FLOPs per token grow ≈ 3.5× per doubling of d_model (``gpt.flops_per_example``: 12·L·d² plus
the unembedding and attention terms), so each anti-diagonal of the grid (bigger model, fewer
tokens) holds runs of about the same compute: an IsoFLOP-style grid (Hoffmann et al. 2022,
approach 2) from which ``overparam fit`` reads L(N, D) and the compute-optimal frontier.
Every run's cosine schedule ends at its own last step, as Chinchilla's do.

Runtime, measured with ``overparam.train.run.train_run`` (task loaded once, one torch thread)
on 2 CPU cores shared with other jobs (load average ≈ 5): full, 9 runs, 186 s wall (97 s of
CPU); quick, 6 runs, 11.7 s wall (5.7 s of CPU). Models this small want one torch thread per
process: with torch's default 2 threads on the busy cores the quick grid took 49 s.
"""

from __future__ import annotations

from typing import Any

from overparam.train.lm import default_lr


def lm_scaling_spec(quick: bool = False) -> dict[str, Any]:
    """A spec dict: char-level GPTs, d_model × steps, on the embedded corpus.

    full (``quick=False``): 2 layers, context 64, d_model 32 / 64 / 128 × steps 60 / 180 / 540 of
    16 windows (61k–553k tokens, up to 1.3 passes over the 418k training characters); 9 runs.
    quick: 1 layer, context 32, d_model 16 / 32 / 64 × steps 30 / 90 of 16 windows; 6 runs.
    """
    if quick:
        model = {"family": "gpt", "n_layer": 1, "n_head": 2, "context": 32}
        vary = {"model.d_model": [16, 32, 64], "train.steps": [30, 90]}
        middle, warmup = 32, 5
    else:
        model = {"family": "gpt", "n_layer": 2, "n_head": 4, "context": 64}
        vary = {"model.d_model": [32, 64, 128], "train.steps": [60, 180, 540]}
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
