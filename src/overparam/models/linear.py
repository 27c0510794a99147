"""``linear``: least squares on the first ``width`` input coordinates.

With the ``teacher`` task this is the finite-sample model of Hastie et al. 2019 and, when
``width`` < the teacher's dimension, Belkin, Hsu & Xu 2019's weak-features model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from overparam.models.base import Shape
from overparam.options import Option, at_most

OPTIONS = {
    "family": Option(str, None),
    "width": Option(int, None, "input coordinates used (null: all)", check=at_most(10_000_000), nullable=True),
    "bias": Option(bool, False, "learn an intercept (off: matches the theory)"),
}
SIZE_KEYS = ("width",)
LINEAR_IN_PARAMS = True


def _width(cfg: dict[str, Any], shape: Shape) -> int:
    return min(cfg["width"] or shape.input_dim, shape.input_dim)


class LinearModel(nn.Module):
    def __init__(self, in_dim: int, width: int, out_dim: int, bias: bool):
        super().__init__()
        self.width = width
        self.readout = nn.Linear(width, out_dim, bias=bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, : self.width]  # (B, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.features(x))


def build(cfg: dict[str, Any], shape: Shape, seed: int, dropout: float = 0.0) -> nn.Module:
    """Zero init, no randomness: gradient descent from zero converges to the min-norm solution."""
    model = LinearModel(shape.input_dim, _width(cfg, shape), shape.output_dim, cfg["bias"])
    with torch.no_grad():
        model.readout.weight.zero_()
        if model.readout.bias is not None:
            model.readout.bias.zero_()
    return model


def count_params(cfg: dict[str, Any], shape: Shape) -> int:
    return _width(cfg, shape) * shape.output_dim + (shape.output_dim if cfg["bias"] else 0)


def flops_per_example(cfg: dict[str, Any], shape: Shape) -> int:
    return 6 * _width(cfg, shape) * shape.output_dim
