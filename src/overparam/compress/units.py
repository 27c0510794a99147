"""Structured pruning of any model: whole output units of its Linear and Conv layers, masked.

For ``mlp`` and ``gpt`` (:mod:`.structured`) a removed unit's producer row and consumer column are
cut out and the model is rebuilt smaller. In a user's module the consumer of a layer is not
known (the forward is arbitrary code), so here a removed unit is **masked**: its producer's
weight row (a Linear's output feature, a convolution's output channel, i.e. a filter, Li et al.
2017) and bias entry are set to zero and kept at zero through fine-tuning. The model keeps its
shapes, so its latency does not fall; what is measured is how many units each layer can lose.

Layers: every ``nn.Linear`` and ``nn.Conv1d/2d/3d`` with a trainable weight, except the last one
registered (taken as the output head: its units are the predictions). Each keeps the same
fraction of its units (at least one), ranked by

- ``norm``: ‖the unit's weight row and bias‖₂;
- ``importance``: |∂L/∂g_u| for a gate g = 1 multiplying the unit's output, averaged over training
  batches (Molchanov et al. 2017), as :mod:`.structured` ranks neurons.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from overparam.compress.base import Masks, Subject
from overparam.compress.structured import CRITERIA, IMPORTANCE_BATCHES


def unit_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Name -> layer of every prunable layer, input to output, the output head left out."""
    layers = {name: m for name, m in model.named_modules()
              if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)) and m.weight.requires_grad}
    return dict(list(layers.items())[:-1])


def _units(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def _gate_shape(layer: nn.Module, out: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """The gate broadcast over an output: features last for a Linear, channels on dim 1 for a conv."""
    if isinstance(layer, nn.Linear):
        return gate
    return gate.view(1, -1, *([1] * (out.dim() - 2)))


def norm_scores(model: nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for name, layer in unit_layers(model).items():
        w = layer.weight.detach().flatten(1)  # (units, fan_in)
        if layer.bias is not None:
            w = torch.cat([w, layer.bias.detach()[:, None]], dim=1)
        out[name] = w.norm(dim=1)
    return out


def importance_scores(model: nn.Module, subject: Subject, batches: int = IMPORTANCE_BATCHES) -> dict[str, torch.Tensor]:
    """Mean over training batches of |∂L/∂g_u| for a gate g = 1 on each unit's output."""
    model = copy.deepcopy(model).eval()
    layers = unit_layers(model)
    gates = {name: torch.ones(_units(layer), requires_grad=True) for name, layer in layers.items()}
    hooks = [layer.register_forward_hook(lambda mod, inp, out, n=name: out * _gate_shape(mod, out, gates[n]))
             for name, layer in layers.items()]
    total = {name: torch.zeros(len(g)) for name, g in gates.items()}
    seen = 0
    try:
        for x, y in subject.batches(batches, seed=subject.config["seed"] + 31_337):
            loss = subject.loss(model(x), y)
            grads = torch.autograd.grad(loss, list(gates.values()), allow_unused=True)
            for name, grad in zip(gates, grads, strict=True):
                if grad is not None:
                    total[name] += grad.abs()
            seen += 1
    finally:
        for h in hooks:
            h.remove()
    return {k: v / max(seen, 1) for k, v in total.items()}


def unit_masks(model: nn.Module, keep: dict[str, torch.Tensor]) -> Masks:
    """Parameter masks (True = kept) zeroing every removed unit's weight row and bias entry."""
    masks = {}
    for name, layer in unit_layers(model).items():
        kept = torch.zeros(_units(layer), dtype=torch.bool)
        kept[keep[name]] = True
        masks[f"{name}.weight"] = kept.view(-1, *([1] * (layer.weight.dim() - 1))).expand_as(layer.weight).clone()
        if layer.bias is not None:
            masks[f"{name}.bias"] = kept.clone()
    return masks


def prune_units(subject: Subject, fraction: float, by: str = "importance") -> tuple[nn.Module, dict]:
    """A copy of the trained model with ``fraction`` of every layer's units masked; (model, info with masks)."""
    from overparam.compress.base import apply_masks

    if by not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {by!r}")
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    model = subject.copy()
    if not unit_layers(model):
        from overparam.errors import OverparamError

        raise OverparamError("--prune-structured: the model has no Linear or Conv layer before its output layer")
    scores = importance_scores(model, subject) if by == "importance" else norm_scores(model)
    keep = {}
    for name, score in scores.items():
        n_keep = max(1, int(round((1.0 - fraction) * len(score))))
        keep[name] = torch.sort(torch.argsort(score, descending=True, stable=True)[:n_keep]).values
    masks = unit_masks(model, keep)
    apply_masks(model, masks)
    widths = {name: int(k.numel()) for name, k in keep.items()}
    return model.eval(), {"widths": widths, "criterion": by, "kept_units": widths, "fraction_removed": fraction,
                          "masks": masks, "masked": True}
