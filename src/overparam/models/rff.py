"""``rff``: a fixed random feature map and a trained linear readout (Rahimi & Recht 2007).

``fourier``: φ(x) = √(2/N)·cos(x·W/ℓ + b), W ~ N(0, I), b ~ U[0, 2π) — approximates the
Gaussian kernel of length scale ℓ (``bandwidth``). ``relu``: φ(x) = √(2/N)·relu(x·W/ℓ + b),
b ~ N(0, 1) — the random-ReLU features of Mei & Montanari 2019. Only the readout is trained,
so the parameter count is N × outputs: Belkin et al. 2019's model-wise double descent peaks
where N × outputs equals n × outputs, i.e. at N = n features.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from overparam.models.base import Shape, generator, init_linear_
from overparam.options import Option, at_most, positive

OPTIONS = {
    "family": Option(str, None),
    "width": Option(int, 256, "number of random features N", check=at_most(5_000_000)),
    "features": Option(str, "fourier", "feature map", choices=("fourier", "relu")),
    "bandwidth": Option(float, 3.0, "length scale ℓ of the features (input units)", check=positive),
    "bias": Option(bool, False, "learn an intercept in the readout"),
}
SIZE_KEYS = ("width",)
LINEAR_IN_PARAMS = True


class RandomFeatures(nn.Module):
    def __init__(self, in_dim: int, n_features: int, out_dim: int, kind: str, bandwidth: float,
                 bias: bool, gen: torch.Generator):
        super().__init__()
        self.kind = kind
        w = torch.randn(in_dim, n_features, generator=gen, dtype=torch.float64) / bandwidth
        if kind == "fourier":
            b = torch.rand(n_features, generator=gen, dtype=torch.float64) * (2 * math.pi)
        else:
            b = torch.randn(n_features, generator=gen, dtype=torch.float64)
        self.register_buffer("proj", w)  # (d, N), fixed
        self.register_buffer("offset", b)  # (N,), fixed
        self.readout = nn.Linear(n_features, out_dim, bias=bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        z = x.flatten(1).to(self.proj.dtype) @ self.proj + self.offset  # (B, N)
        phi = torch.cos(z) if self.kind == "fourier" else torch.relu(z)
        return (phi * math.sqrt(2.0 / self.proj.shape[1])).to(self.readout.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.features(x))


def build(cfg: dict[str, Any], shape: Shape, seed: int, dropout: float = 0.0) -> nn.Module:
    """Features from the run's ``features`` stream; readout init U(±1/√N) from its ``init`` stream."""
    model = RandomFeatures(shape.input_dim, cfg["width"], shape.output_dim, cfg["features"],
                           cfg["bandwidth"], cfg["bias"], generator(seed, "features"))
    init_linear_(model.readout, generator(seed, "init"))
    return model


def count_params(cfg: dict[str, Any], shape: Shape) -> int:
    return cfg["width"] * shape.output_dim + (shape.output_dim if cfg["bias"] else 0)


def flops_per_example(cfg: dict[str, Any], shape: Shape) -> int:
    fixed = 2 * shape.input_dim * cfg["width"]
    return fixed + 6 * cfg["width"] * shape.output_dim
