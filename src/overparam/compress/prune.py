"""Global unstructured magnitude pruning: remove the smallest weights of the whole network at once.

Which weights: the weight of every ``nn.Linear`` (hidden layers, heads, attention and MLP
projections) and every convolution (``nn.Conv1d/2d/3d``, a user's model). Biases, norm gains and
embeddings are left dense: they are a small share of
the parameters and pruning them is not what the literature measures. The ranking is *global*,
one threshold over all layers together (Han et al. 2015; Frankle & Carbin 2019 prune globally
for deeper nets): layers with many redundant weights give up more of them.

Exactness: a sparsity ``s`` removes exactly ``round(s · N)`` of the N prunable weights, ties
broken by position, so "90 %" is 90 % and not "everything below a threshold".

Masks alone buy no speed: the pruned model still runs dense kernels over zeros. Its latency is
measured anyway, and is about the dense model's; the physically smaller models come from
:mod:`overparam.compress.structured`.
"""

from __future__ import annotations

import torch
from torch import nn

from overparam.compress.base import Masks, Subject, apply_masks, train_steps

FINETUNE_SEED_OFFSET = 104_729  # fine-tuning draws a batch stream of its own, not the run's


def prunable(model: nn.Module) -> dict[str, nn.Parameter]:
    """The weights magnitude pruning ranks: every ``nn.Linear`` and convolution weight, by parameter name."""
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)) and module.weight.requires_grad:
            out[f"{name}.weight" if name else "weight"] = module.weight
    return out


def magnitude_masks(model: nn.Module, sparsity: float, keep: Masks | None = None) -> Masks:
    """Masks removing exactly ``round(sparsity · N)`` of the N prunable weights, smallest |w| first.

    ``keep`` (earlier masks, for iterative pruning): weights already removed stay removed and
    count towards the target; the rest of the cut comes from the smallest survivors.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    weights = prunable(model)
    names = list(weights)
    scores = []
    for name in names:
        w = weights[name].detach().abs().flatten().double()
        if keep is not None and name in keep:
            w = torch.where(keep[name].flatten(), w, torch.full_like(w, -1.0))  # removed: ranked first
        scores.append(w)
    flat = torch.cat(scores)
    n_cut = int(round(sparsity * flat.numel()))
    order = torch.argsort(flat, stable=True)  # ties: earlier position is cut first
    kept = torch.ones(flat.numel(), dtype=torch.bool)
    kept[order[:n_cut]] = False
    masks, start = {}, 0
    for name in names:
        n = weights[name].numel()
        masks[name] = kept[start:start + n].view_as(weights[name])
        start += n
    return masks


def sparsity_of(masks: Masks) -> float:
    """Fraction of the masked weights that are removed."""
    total = sum(m.numel() for m in masks.values())
    return 1.0 - sum(int(m.sum()) for m in masks.values()) / max(total, 1)


def magnitude_prune(model: nn.Module, sparsity: float) -> tuple[nn.Module, Masks]:
    """One-shot global magnitude pruning of ``model`` in place; returns it and its masks."""
    masks = magnitude_masks(model, sparsity)
    return apply_masks(model, masks), masks


def prune_and_finetune(subject: Subject, sparsity: float, steps: int) -> tuple[nn.Module, Masks, dict]:
    """Prune a copy of the trained model to ``sparsity`` and fine-tune it ``steps`` steps, masks fixed.

    Fine-tuning follows the run's recipe (optimizer, lr, batch size) on a batch stream of its own;
    ``steps = 0`` is the one-shot result without fine-tuning.
    """
    model, masks = magnitude_prune(subject.copy(), sparsity)
    summary = {"steps": 0}
    if steps > 0:
        summary = train_steps(model, subject, steps, seed=subject.config["seed"] + FINETUNE_SEED_OFFSET,
                              masks=masks)
    return model, masks, summary
