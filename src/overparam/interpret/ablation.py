"""Which heads a model uses: loss increase when a head is removed, and how many can go.

A head is removed by zeroing the columns of its layer's output projection that read it
(``attn.proj.weight[:, h·hs:(h+1)·hs]``): its output then never reaches the residual stream,
exactly as if the head were pruned (the bias stays; it belongs to no head). This is Michel et
al.'s (2019, "Are Sixteen Heads Really Better than One?") head mask set to 0.

- **importance** of a head = test loss with it removed − test loss of the full model (nats/token);
- the **pruning curve**: the k least important heads removed together, k = 0 … all;
- **heads used** = the number of heads left when as many of the least important as possible are
  removed with the loss at most ``tolerance`` (default 1 %) above the full model's.
Losses are the mean next-token cross-entropy on the windows the sweep's own ``test_loss`` is
measured on (``train.lm.eval_offsets``: the test split tiled, or at most ``EVAL_TOKENS`` predicted
tokens spread evenly over it), the same windows for every ablation: the full model's loss here *is*
the stored test loss of the run, one number for one fact. ``n_tokens`` asks for fewer (evenly spaced
windows, a subset of those), and the result then says it measured a subset and on how many tokens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def head_projections(model: nn.Module) -> list[tuple[torch.Tensor, int, int]]:
    """Per layer: (output projection weight, heads, the weight's dimension that reads the heads).

    ``gpt``: ``attn.proj`` (a Linear, (out, in): dimension 1); ``hf-causal-lm``: the module says
    (gpt2's ``c_proj`` is a Conv1D, (in, out): dimension 0).
    """
    if hasattr(model, "blocks"):
        return [(block.attn.proj.weight, block.attn.n_head, 1) for block in model.blocks]
    return model.head_projections()


@contextlib.contextmanager
def heads_removed(model: nn.Module, heads: Iterable[tuple[int, int]]) -> Iterator[nn.Module]:
    """The model with ``heads`` ((layer, head) pairs) removed, restored on exit."""
    saved = []
    layers = head_projections(model)
    with torch.no_grad():
        for layer, head in heads:
            weight, n_head, dim = layers[layer]
            size = weight.shape[dim] // n_head
            cols = weight.narrow(dim, head * size, size)  # a view: the head's inputs to the projection
            saved.append((cols, cols.clone()))
            cols.zero_()
    try:
        yield model
    finally:
        with torch.no_grad():
            for cols, old in reversed(saved):
                cols.copy_(old)


@torch.no_grad()
def window_loss(model: nn.Module, windows: np.ndarray, batch: int | None = None) -> float:
    """Mean next-token cross-entropy (nats) of windows (B, T + 1): positions 0…T−1 predict 1…T,
    ``batch`` windows per forward pass (default: about 16k tokens, as the training loop evaluates)."""
    from overparam.train.lm import EVAL_BATCH_TOKENS

    batch = batch or max(1, EVAL_BATCH_TOKENS // max(windows.shape[1] - 1, 1))
    total, count = 0.0, 0
    for start in range(0, len(windows), batch):
        w = torch.as_tensor(windows[start:start + batch])
        logits = model(w[:, :-1])
        total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1),
                                       reduction="sum"))
        count += w[:, 1:].numel()
    return total / count


def loss_windows(tokens: np.ndarray, context: int, n_tokens: int | None = None) -> np.ndarray:
    """Windows (B, context + 1) of the test split: those its stored ``test_loss`` is measured on
    (``n_tokens`` None), or about ``n_tokens`` predicted tokens of them, evenly spaced."""
    from overparam.train.lm import EVAL_TOKENS, eval_offsets

    if len(tokens) < context + 1:
        from overparam.errors import OverparamError

        raise OverparamError(f"{len(tokens)} test tokens cannot fill one window of {context + 1}")
    limit = EVAL_TOKENS if n_tokens is None else min(EVAL_TOKENS, max(int(n_tokens), context))
    starts = eval_offsets(len(tokens), context, limit).numpy()
    return np.asarray(tokens, dtype=np.int64)[starts[:, None] + np.arange(context + 1)]


def head_importance(model: nn.Module, windows: np.ndarray) -> dict[str, Any]:
    """Full-model loss and, per head, the loss with it removed and the increase (its importance)."""
    model.eval()
    base = window_loss(model, windows)
    heads = []
    for layer, (_, n_head, _) in enumerate(head_projections(model)):
        for head in range(n_head):
            with heads_removed(model, [(layer, head)]):
                loss = window_loss(model, windows)
            heads.append({"layer": layer, "head": head, "loss": loss, "importance": loss - base})
    return {"loss": base, "heads": heads}


def pruning_curve(model: nn.Module, windows: np.ndarray, importance: dict[str, Any],
                  tolerance: float = 0.01) -> dict[str, Any]:
    """Loss with the k least important heads removed, k = 0 … all, and the heads a model uses.

    ``heads_used`` = total − the largest k whose loss ≤ (1 + tolerance) × the full model's loss
    (k = 0 always qualifies). The ranking is by single-head importance, as Michel et al. prune.
    """
    order = sorted(importance["heads"], key=lambda h: (h["importance"], h["layer"], h["head"]))
    base = importance["loss"]
    curve = [{"removed": 0, "loss": base}]
    for k in range(1, len(order) + 1):
        with heads_removed(model, [(h["layer"], h["head"]) for h in order[:k]]):
            curve.append({"removed": k, "loss": window_loss(model, windows)})
    ok = [p["removed"] for p in curve if p["loss"] <= base * (1 + tolerance)]
    return {"curve": curve, "order": [[h["layer"], h["head"]] for h in order], "tolerance": tolerance,
            "heads_total": len(order), "heads_used": len(order) - max(ok)}


def ablate_run(run: Any, n_tokens: int | None = None, tolerance: float = 0.01) -> dict[str, Any]:
    """Head importance and the pruning curve of a loaded run on its test split.

    ``measured_on`` says which windows: ``"test_loss"`` (the stored test loss's own, the default:
    ``loss`` then equals the run's ``test_loss``) or ``"subset"`` (fewer, when ``n_tokens`` asks).
    """
    from overparam.train.lm import eval_offsets

    windows = loss_windows(run.task.tokens_test, run.context, n_tokens)
    every = len(eval_offsets(len(run.task.tokens_test), run.context))
    importance = head_importance(run.model, windows)
    return {**importance, **pruning_curve(run.model, windows, importance, tolerance),
            "tokens": int(windows[:, 1:].size), "measured_on": "test_loss" if len(windows) == every else "subset",
            "stored_test_loss": run.metrics.get("test_loss")}
