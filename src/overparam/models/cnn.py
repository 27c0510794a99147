"""``cnn``: the width-k five-layer CNN of deep double descent (Nakkiran et al. 2019, App. B).

Nakkiran et al. ("Deep Double Descent: Where Bigger Models and More Data Hurt", 2019) sweep a
family of five-layer CNNs: four 3×3 conv layers of widths [k, 2k, 4k, 8k] and one fully
connected layer (``mcnn`` in their released code, after Page's "How to train your ResNet").
Built here, for an input of C channels and K classes (k = ``model.width``):

=====  ======================================================  ===================
stage  layers                                                  output (CIFAR-10)
=====  ======================================================  ===================
0      conv 3×3 (C → k, pad 1, bias) → BatchNorm → ReLU        (k, 32, 32)
1      conv 3×3 (k → 2k) → BatchNorm → ReLU → max-pool 2       (2k, 16, 16)
2      conv 3×3 (2k → 4k) → BatchNorm → ReLU → max-pool 2      (4k, 8, 8)
3      conv 3×3 (4k → 8k) → BatchNorm → ReLU                   (8k, 8, 8)
head   global max pool → Linear(8k → K)                        (K,)
=====  ======================================================  ===================

The paper's appendix lists the max-pools as [1, 2, 2, 8]: stage 3's conv at 8×8, then one 8×8
max, i.e. a global max, as built here; the released code pools 2 after stage 3 and then 4×4,
the same function on 32×32 inputs. The global max also serves 28×28 MNIST (stage 3 at 7×7). A
flat input of d = s² features (``digits``: 64) is read as one s×s channel. ``train.dropout``
drops pooled features before the head.

Parameter count (trainable; BatchNorm's running statistics are buffers, not counted):
each conv 9·c_in·c_out + c_out, each BatchNorm 2·c_out, the head 8k·K + K, so

    count_params = 9Ck + 18k² + 72k² + 288k² + 3·15k + 8kK + K = 378k² + (9C + 45 + 8K)k + K,

i.e. 378k² + 152k + 10 on CIFAR-10 (1,558,026 at k = 64, the largest width of the paper's sweep).

Training FLOPs per example follow ``models.base``: 6 per multiply-add of the convolutions and
the head (each touches a trainable weight), with a conv's multiply-adds H·W·c_in·c_out·9 at
its output resolution; BatchNorm, ReLU and pooling (elementwise, O(activations)) are not
counted.

Init: PyTorch's defaults, drawn from the run's ``init`` stream: conv and head weights and
biases U(±1/√fan_in) (fan_in = 9·c_in for a conv), BatchNorm γ = 1, β = 0.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from overparam.models.base import Shape, generator, init_linear_
from overparam.options import Option, at_most

OPTIONS = {
    "family": Option(str, None),
    "width": Option(int, 16, "k: the four conv stages have k, 2k, 4k, 8k channels", check=at_most(4096)),
}
SIZE_KEYS = ("width",)
LINEAR_IN_PARAMS = False
STAGES = (1, 2, 4, 8)  # channel multipliers of k
POOLED = (False, True, True, False)  # max-pool 2 after stages 1 and 2; stage 3 ends in the global max
BN_EPS, BN_MOMENTUM = 1e-5, 0.1  # nn.BatchNorm2d's defaults; the fused engine uses the same


def image_shape(input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) of the task's inputs; a flat d = s² input is one s×s channel."""
    from overparam.errors import SpecError

    if len(input_shape) == 1 and math.isqrt(input_shape[0]) ** 2 == input_shape[0]:
        input_shape = (1, math.isqrt(input_shape[0]), math.isqrt(input_shape[0]))
    if len(input_shape) != 3 or min(input_shape[1:]) < 4:
        raise SpecError(f"model.family: cnn needs image inputs (C, H, W) of at least 4×4 (two "
                        f"max-pools), or a square number of features; the task gives {tuple(input_shape)}")
    return tuple(input_shape)  # type: ignore[return-value]


def resolutions(shape: Shape) -> list[tuple[int, int]]:
    """(H, W) at which each conv runs: each max-pool halves it (floor)."""
    _, h, w = image_shape(shape.input_shape)
    out = []
    for pool in (False, *POOLED[:-1]):
        if pool:
            h, w = h // 2, w // 2
        out.append((h, w))
    return out


def channels(width: int, in_channels: int) -> list[tuple[int, int]]:
    """(c_in, c_out) of each conv: C → k → 2k → 4k → 8k."""
    outs = [m * width for m in STAGES]
    return list(zip([in_channels, *outs[:-1]], outs))


class CNN(nn.Module):
    """The width-k CNN; ``width`` is k (sweeps and analysis read ``model.width``).

    State-dict keys: ``convs.{0..3}.{weight,bias}``, ``norms.{0..3}.{weight,bias,running_mean,
    running_var,num_batches_tracked}``, ``head.{weight,bias}``.
    """

    def __init__(self, image: tuple[int, int, int], width: int, n_classes: int, dropout: float = 0.0):
        super().__init__()
        self.image, self.width = image, width
        pairs = channels(width, image[0])
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in pairs)
        self.norms = nn.ModuleList(nn.BatchNorm2d(b, eps=BN_EPS, momentum=BN_MOMENTUM) for _, b in pairs)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(pairs[-1][1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.reshape(x.shape[0], *self.image)  # (B, C, H, W)
        for conv, norm, pool in zip(self.convs, self.norms, POOLED):
            h = torch.relu(norm(conv(h)))  # (B, c_out, H_l, W_l)
            if pool:
                h = F.max_pool2d(h, 2)
        h = self.dropout(h.amax(dim=(2, 3)))  # (B, 8k): global max pool
        return self.head(h)  # (B, K)


def init_conv_(conv: nn.Conv2d, gen: torch.Generator) -> nn.Conv2d:
    """PyTorch's default conv init, U(±1/√fan_in) with fan_in = c_in·3·3, drawn from ``gen``."""
    bound = 1.0 / math.sqrt(conv.weight[0].numel())
    with torch.no_grad():
        conv.weight.uniform_(-bound, bound, generator=gen)
        conv.bias.uniform_(-bound, bound, generator=gen)
    return conv


def build(cfg: dict[str, Any], shape: Shape, seed: int, dropout: float = 0.0) -> nn.Module:
    model = CNN(image_shape(shape.input_shape), cfg["width"], shape.output_dim, dropout)
    gen = generator(seed, "init")
    for conv in model.convs:  # input to output, then the head: one stream, fixed order
        init_conv_(conv, gen)
    init_linear_(model.head, gen)
    return model


def count_params(cfg: dict[str, Any], shape: Shape) -> int:
    k, n_classes = cfg["width"], shape.output_dim
    convs = sum(9 * a * b + b + 2 * b for a, b in channels(k, image_shape(shape.input_shape)[0]))
    return convs + 8 * k * n_classes + n_classes


def flops_per_example(cfg: dict[str, Any], shape: Shape) -> int:
    c = image_shape(shape.input_shape)[0]
    k, macs = cfg["width"], 0
    for (a, b), (hh, ww) in zip(channels(k, c), resolutions(shape)):
        macs += hh * ww * a * b * 9
    macs += 8 * k * shape.output_dim
    return 6 * macs


def activation_elements(cfg: dict[str, Any], shape: Shape) -> int:
    """Conv outputs per example, Σ_l c_out·H_l·W_l: training keeps a few tensors of this size
    (conv, BatchNorm and ReLU outputs) per example for the backward, which is what bounds memory."""
    c = image_shape(shape.input_shape)[0]
    return sum(b * hh * ww for (_, b), (hh, ww) in zip(channels(cfg["width"], c), resolutions(shape)))
