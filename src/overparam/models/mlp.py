"""``mlp``: ``depth`` hidden layers of ``width`` ReLU units, then a linear head.

Parameter count (biases everywhere): d·w + w + (depth−1)(w² + w) + w·K + K for input d and
K outputs. Dropout (``train.dropout``) follows each hidden activation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from overparam.models.base import Shape, generator, init_linear_
from overparam.options import Option, at_most

OPTIONS = {
    "family": Option(str, None),
    "width": Option(int, 64, "hidden units per layer", check=at_most(1_000_000)),
    "depth": Option(int, 1, "hidden layers", check=at_most(64)),
}
SIZE_KEYS = ("width", "depth")
LINEAR_IN_PARAMS = False


class MLP(nn.Module):
    def __init__(self, in_dim: int, width: int, depth: int, out_dim: int, dropout: float):
        super().__init__()
        dims = [in_dim] + [width] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.head = nn.Linear(dims[-1], out_dim)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)  # (B, d)
        for layer in self.hidden:
            h = self.dropout(torch.relu(layer(h)))  # (B, w)
        return self.head(h)  # (B, K)


def build(cfg: dict[str, Any], shape: Shape, seed: int, dropout: float = 0.0) -> nn.Module:
    model = MLP(shape.input_dim, cfg["width"], cfg["depth"], shape.output_dim, dropout)
    gen = generator(seed, "init")
    for layer in [*model.hidden, model.head]:  # input to output, one stream: fixed order
        init_linear_(layer, gen)
    return model


def count_params(cfg: dict[str, Any], shape: Shape) -> int:
    d, w, k, depth = shape.input_dim, cfg["width"], shape.output_dim, cfg["depth"]
    return d * w + w + (depth - 1) * (w * w + w) + w * k + k


def flops_per_example(cfg: dict[str, Any], shape: Shape) -> int:
    d, w, k, depth = shape.input_dim, cfg["width"], shape.output_dim, cfg["depth"]
    return 6 * (d * w + (depth - 1) * w * w + w * k)
