"""What every model family provides, and the conventions its numbers follow.

A family is a module with:

- ``OPTIONS``: its spec keys (``model.*``), and ``SIZE_KEYS``: the keys that set its size;
- ``build(cfg, shape, seed, dropout=0.0) -> nn.Module``: deterministic in ``seed``;
- ``count_params(cfg, shape) -> int``: **trainable** parameters, the x axis of every curve.
  Fixed random projections (``rff``'s features) are not counted: they are not learned;
- ``flops_per_example(cfg, shape) -> int``: **training** FLOPs per example, counted as
  2 per multiply-add of the forward pass plus 4 per multiply-add that touches a trainable
  weight (its two backward products), i.e. the familiar 6·N per example for a dense network
  (Kaplan et al. 2020) and 2 per multiply-add for fixed features;
- ``LINEAR_IN_PARAMS``: True when the model is ``readout(features(x))`` with fixed features,
  so the closed-form solvers (min-norm, ridge) apply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Shape:
    """What a family needs to know about the task to size itself."""

    input_shape: tuple[int, ...]
    output_dim: int
    vocab_size: int | None = None

    @property
    def input_dim(self) -> int:
        return math.prod(self.input_shape) if self.input_shape else 0


def generator(seed: int, stream: str) -> torch.Generator:
    """A torch generator for one purpose of one run (init, batches, dropout, features).

    Separate streams mean that, e.g., changing the batch size never changes the init.
    """
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + sum(map(ord, stream)) * 7919) % (2**63 - 1))
    return g


def init_linear_(layer: nn.Linear, gen: torch.Generator) -> nn.Linear:
    """PyTorch's default Linear init, U(±1/√fan_in), but drawn from ``gen``: reproducible runs."""
    bound = 1.0 / math.sqrt(layer.in_features)
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=gen)
        if layer.bias is not None:
            layer.bias.uniform_(-bound, bound, generator=gen)
    return layer


def count_trainable(model: nn.Module) -> int:
    """Trainable parameters of a built model; tests hold this equal to ``count_params``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
