"""Structured pruning: remove whole neurons (and attention heads) and rebuild a smaller dense model.

Unstructured sparsity needs sparse kernels to pay; on ordinary dense hardware a 90 %-sparse matrix
costs what the dense one costs. Removing a hidden unit instead deletes a row of the layer that
produces it and a column of the layer that consumes it, so the rebuilt model is a plain, smaller
dense network and its latency really falls (Li et al. 2017; for heads, Michel et al. 2019).

A :class:`UnitGroup` is one layer's removable units: ``mlp`` hidden neurons, ``gpt`` MLP neurons
(rows of ``mlp.fc``, columns of ``mlp.proj``) and attention heads (the head's query, key and
value rows of ``attn.qkv``, its columns of ``attn.proj``). Each group keeps the same fraction
of its units (at least one). Units are ranked by

- ``norm``: ‖incoming weights and bias‖₂ · ‖outgoing weights‖₂. For a ReLU unit only this product
  is meaningful: scaling the incoming weights by c and the outgoing by 1/c leaves the function
  unchanged (positive homogeneity), so either norm alone can be fooled;
- ``importance``: the first-order Taylor estimate of the loss change when the unit is removed,
  |∂L/∂g| for a gate g = 1 multiplying the unit's output, averaged over training batches
  (Molchanov et al. 2017 for neurons; Michel et al. 2019 for heads, their "head importance").

Removing a unit is exactly zeroing its columns in the consumer, so :func:`mask_units` (the
masked model) and :func:`shrink` (the rebuilt model) compute the same function; a test holds it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from overparam.compress.base import Subject

CRITERIA = ("norm", "importance")
IMPORTANCE_BATCHES = 16  # training batches the Taylor importance is averaged over


@dataclass(frozen=True)
class UnitGroup:
    """One layer's removable units: rows of the producers, columns of the consumer."""

    name: str
    producer: str  # the Linear whose output rows are the units
    offsets: tuple[int, ...]  # row blocks of the producer, one per part (q, k, v of a head)
    consumer: str  # the Linear whose input columns are the units
    n_units: int
    unit_size: int = 1  # columns per unit: 1 for a neuron, the head size for a head
    kind: str = "neuron"  # "neuron" | "head"

    def rows(self, units: torch.Tensor) -> torch.Tensor:
        cols = self.cols(units)
        return torch.cat([o + cols for o in self.offsets])

    def cols(self, units: torch.Tensor) -> torch.Tensor:
        return (units[:, None] * self.unit_size + torch.arange(self.unit_size)).flatten()


def unit_groups(model: nn.Module, family: str) -> list[UnitGroup]:
    """The prunable unit groups of an ``mlp`` or ``gpt`` model, input to output."""
    if family == "mlp":
        n = len(model.hidden)
        return [UnitGroup(f"hidden.{i}", f"hidden.{i}", (0,), f"hidden.{i + 1}" if i + 1 < n else "head",
                          model.hidden[i].out_features) for i in range(n)]
    if family == "gpt":
        groups = []
        for b, block in enumerate(model.blocks):
            d, nh = block.attn.qkv.in_features, block.attn.n_head
            groups.append(UnitGroup(f"blocks.{b}.attn.heads", f"blocks.{b}.attn.qkv", (0, d, 2 * d),
                                    f"blocks.{b}.attn.proj", nh, d // nh, "head"))
            groups.append(UnitGroup(f"blocks.{b}.mlp", f"blocks.{b}.mlp.fc", (0,), f"blocks.{b}.mlp.proj",
                                    block.mlp.fc.out_features))
        return groups
    raise ValueError(f"structured pruning does not know family {family!r}")


def _module(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name)


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def norm_scores(model: nn.Module, group: UnitGroup) -> torch.Tensor:
    """‖incoming rows (with bias)‖₂ · ‖outgoing columns‖₂ per unit."""
    prod, cons = _module(model, group.producer), _module(model, group.consumer)
    w_in = prod.weight.detach()
    if prod.bias is not None:
        w_in = torch.cat([w_in, prod.bias.detach()[:, None]], dim=1)
    idx = torch.arange(group.n_units)
    rows = torch.stack([w_in[group.rows(idx[u:u + 1])].norm() for u in range(group.n_units)])
    w_out = cons.weight.detach()
    cols = torch.stack([w_out[:, group.cols(idx[u:u + 1])].norm() for u in range(group.n_units)])
    return rows * cols


def importance_scores(model: nn.Module, groups: list[UnitGroup], subject: Subject,
                      batches: int = IMPORTANCE_BATCHES) -> dict[str, torch.Tensor]:
    """Mean over training batches of |∂L/∂g_u| for a gate g = 1 on each unit's output."""
    model = copy.deepcopy(model).eval()
    gates = {g.name: torch.ones(g.n_units, requires_grad=True) for g in groups}
    hooks = []
    for g in groups:
        def gate_input(module, inputs, g=g):
            return (inputs[0] * gates[g.name].repeat_interleave(g.unit_size),)

        hooks.append(_module(model, g.consumer).register_forward_pre_hook(gate_input))
    total = {g.name: torch.zeros(g.n_units) for g in groups}
    seen = 0
    try:
        for x, y in subject.batches(batches, seed=subject.config["seed"] + 31_337):
            loss = subject.loss(model(x), y)
            grads = torch.autograd.grad(loss, [gates[g.name] for g in groups])
            for g, grad in zip(groups, grads, strict=True):
                total[g.name] += grad.abs()
            seen += 1
    finally:
        for h in hooks:
            h.remove()
    return {k: v / max(seen, 1) for k, v in total.items()}


def choose_units(model: nn.Module, subject: Subject, fraction: float, by: str = "importance"
                 ) -> dict[str, torch.Tensor]:
    """Sorted indices of the units each group keeps after removing ``fraction`` of them."""
    if by not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {by!r}")
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    groups = unit_groups(model, subject.config["model"]["family"])
    scores = importance_scores(model, groups, subject) if by == "importance" else \
        {g.name: norm_scores(model, g) for g in groups}
    keep = {}
    for g in groups:
        n_keep = max(1, int(round((1.0 - fraction) * g.n_units)))
        top = torch.argsort(scores[g.name], descending=True, stable=True)[:n_keep]
        keep[g.name] = torch.sort(top).values
    return keep


def mask_units(model: nn.Module, family: str, keep: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of ``model`` with every removed unit's consumer columns set to zero (same shapes)."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for g in unit_groups(model, family):
            drop = torch.ones(g.n_units, dtype=torch.bool)
            drop[keep[g.name]] = False
            _module(model, g.consumer).weight[:, g.cols(torch.nonzero(drop).flatten())] = 0.0
    return model


def _slice_linear(layer: nn.Linear, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None
                  ) -> nn.Linear:
    w = layer.weight.detach()
    b = layer.bias.detach() if layer.bias is not None else None
    if rows is not None:
        w, b = w[rows], (b[rows] if b is not None else None)
    if cols is not None:
        w = w[:, cols]
    new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    with torch.no_grad():
        new.weight.copy_(w)
        if b is not None:
            new.bias.copy_(b)
    return new


class PrunedAttention(nn.Module):
    """Causal self-attention with ``n_head`` heads of ``head_size`` whose total need not equal d_model.

    The ``gpt`` family's attention splits ``qkv`` at d_model; after heads are removed the
    inner width is n_head · head_size < d_model, which this module handles. Same math otherwise.
    """

    def __init__(self, qkv: nn.Linear, proj: nn.Linear, n_head: int, head_size: int, dropout: float):
        super().__init__()
        self.qkv, self.proj = qkv, proj
        self.n_head, self.head_size, self.dropout = n_head, head_size, dropout
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape  # (B, T, d)
        inner = self.n_head * self.head_size
        q, k, v = self.qkv(x).split(inner, dim=2)  # each (B, T, nh·hs)
        heads = (B, T, self.n_head, self.head_size)
        q, k, v = (t.view(heads).transpose(1, 2) for t in (q, k, v))  # each (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, nh, T, hs)
        return self.resid_drop(self.proj(y.transpose(1, 2).contiguous().view(B, T, inner)))


def shrink(model: nn.Module, family: str, keep: dict[str, torch.Tensor]) -> nn.Module:
    """A physically smaller dense copy of ``model`` holding only the kept units."""
    model = copy.deepcopy(model)
    for g in unit_groups(model, family):
        units = keep[g.name]
        _set_module(model, g.producer, _slice_linear(_module(model, g.producer), rows=g.rows(units)))
        _set_module(model, g.consumer, _slice_linear(_module(model, g.consumer), cols=g.cols(units)))
        if g.kind == "head":
            attn_name = g.producer.rpartition(".")[0]
            attn = _module(model, attn_name)
            _set_module(model, attn_name, PrunedAttention(attn.qkv, attn.proj, len(units), g.unit_size,
                                                          attn.dropout))
    return model.eval()


def layer_widths(model: nn.Module, family: str) -> dict[str, int]:
    """Units per group of a (possibly shrunk) model, e.g. {"hidden.0": 96}."""
    out = {}
    for name, module in model.named_modules():
        if family == "mlp" and name.startswith("hidden.") and isinstance(module, nn.Linear):
            out[name] = module.out_features
        elif family == "gpt" and name.endswith(".attn"):
            out[f"{name}.heads"] = module.n_head
        elif family == "gpt" and name.endswith(".mlp.fc"):
            out[name.rpartition(".")[0]] = module.out_features
    return out


def prune_structured(subject: Subject, fraction: float, by: str = "importance") -> tuple[nn.Module, dict]:
    """Remove ``fraction`` of the units of every group of the trained model; return the smaller model."""
    family = subject.config["model"]["family"]
    keep = choose_units(subject.model, subject, fraction, by)
    small = shrink(subject.model, family, keep)
    return small, {"widths": layer_widths(small, family), "criterion": by,
                   "kept_units": {k: int(v.numel()) for k, v in keep.items()}, "fraction_removed": fraction}
