"""``resnet18k``: ResNet18 with stage widths k, 2k, 4k, 8k (Nakkiran et al. 2019, App. B).

Nakkiran et al. ("Deep Double Descent", 2019) show model-wise double descent on CIFAR with a
family of ResNet18s whose four stages have k, 2k, 4k, 8k channels; k = 64 is the standard
ResNet18 (He et al. 2016, "Deep Residual Learning", in its CIFAR form). Built here for an
input of C channels and K classes (k = ``model.width``; ``preact`` below for the other block):

=====  =========================================================  ===================
part   layers                                                     output (CIFAR-10)
=====  =========================================================  ===================
stem   conv 3×3 (C → k, pad 1) → BatchNorm → ReLU; no max-pool    (k, 32, 32)
1      2 blocks k → k                                             (k, 32, 32)
2      block k → 2k (stride 2, 1×1 conv + BN shortcut), 2k → 2k   (2k, 16, 16)
3      block 2k → 4k (stride 2, shortcut as above), 4k → 4k       (4k, 8, 8)
4      block 4k → 8k (stride 2, shortcut as above), 8k → 8k       (8k, 4, 4)
head   global average pool → Linear(8k → K)                       (K,)
=====  =========================================================  ===================

A block (BasicBlock) is conv 3×3 → BN → ReLU → conv 3×3 → BN, plus the shortcut (the input,
or a strided 1×1 conv → BN when the shape changes), then ReLU. Convs have no bias (a BN
follows each). A stride-2 conv maps H to ⌈H/2⌉, so 28×28 MNIST ends at 4×4 too; a flat input of
d = s² features (``digits``: 64) is read as one s×s channel. ``train.dropout`` drops pooled
features before the head.

``preact: true`` builds the pre-activation ResNet18 (He et al. 2016, "Identity Mappings") that
the ``make_resnet18k`` circulating with the paper's experiments builds: blocks BN → ReLU →
conv 3×3 → BN → ReLU → conv 3×3, plus the shortcut (identity, or a strided 1×1 conv, no BN, of
the pre-activated input), no post-addition ReLU; the stem is the conv alone; a final BN → ReLU
precedes the pooling.

Parameter count (trainable; BN's running statistics are buffers): a 3×3 conv has 9·a·b, a
1×1 conv a·b, a BN 2·c. A stage of width b fed a/2 = b/2 channels holds 32b² conv weights;
stage 1 (no shortcut) 36k², so all convs hold 9Ck + 36k² + 32·(4 + 16 + 64)k² = 9Ck + 2724k².
BNs add 2k + (8 + 20 + 40 + 80)k = 150k (standard; 122k pre-activation), the head 8kK + K:

    count_params = 2724k² + (9C + 150 + 8K)k + K      (preact: 2724k² + (9C + 122 + 8K)k + K)

i.e. 2724k² + 257k + 10 on CIFAR-10: 11,173,962 at k = 64, the standard CIFAR ResNet18.

Training FLOPs per example follow ``models.base``: 6 per multiply-add of every conv (3×3 and
1×1 shortcuts) and the head, a conv's multiply-adds being H·W·c_in·c_out·(kernel area) at its
output resolution; BN, ReLU, the residual additions and pooling (O(activations)) are not
counted.

Init: PyTorch's defaults, drawn from the run's ``init`` stream in module order (stem, blocks
input to output: conv1, conv2, shortcut; then the head): conv weights U(±1/√fan_in) with
fan_in = c_in·(kernel area), head weight and bias U(±1/√8k), BN γ = 1, β = 0.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from overparam.models.base import Shape, generator, init_linear_
from overparam.options import Option, at_most

OPTIONS = {
    "family": Option(str, None),
    "width": Option(int, 64, "k: the four stages have k, 2k, 4k, 8k channels (64: the standard ResNet18)",
                    check=at_most(1024)),
    "preact": Option(bool, False, "pre-activation blocks (BN-ReLU-conv), as the paper's make_resnet18k builds"),
}
SIZE_KEYS = ("width",)
LINEAR_IN_PARAMS = False
BLOCKS = ((1, 1), (1, 1), (2, 2), (2, 1), (4, 2), (4, 1), (8, 2), (8, 1))  # (width multiplier, stride) per block
BN_EPS, BN_MOMENTUM = 1e-5, 0.1  # nn.BatchNorm2d's defaults; the fused engine uses the same


def image_shape(input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) of the task's inputs; a flat d = s² input is one s×s channel."""
    from overparam.errors import SpecError

    if len(input_shape) == 1 and math.isqrt(input_shape[0]) ** 2 == input_shape[0]:
        input_shape = (1, math.isqrt(input_shape[0]), math.isqrt(input_shape[0]))
    if len(input_shape) != 3:
        raise SpecError(f"model.family: resnet18k needs image inputs (C, H, W) or a square number of "
                        f"features; the task gives {tuple(input_shape)}")
    return tuple(input_shape)  # type: ignore[return-value]


def block_specs(width: int) -> list[tuple[int, int, int]]:
    """(c_in, c_out, stride) of the eight blocks."""
    outs = [m * width for m, _ in BLOCKS]
    return [(a, b, s) for a, b, (_, s) in zip([width, *outs[:-1]], outs, BLOCKS)]


def conv_layers(width: int, image: tuple[int, int, int]) -> list[tuple[int, int, int, tuple[int, int]]]:
    """(c_in, c_out, kernel side, (H, W) of the output) of every conv, in module order."""
    c, h, w = image
    out = [(c, width, 3, (h, w))]
    for a, b, stride in block_specs(width):
        if stride == 2:
            h, w = (h + 1) // 2, (w + 1) // 2  # ⌊(H + 2·1 − 3) / 2⌋ + 1 = ⌈H / 2⌉
        out += [(a, b, 3, (h, w)), (b, b, 3, (h, w))]
        if stride != 1 or a != b:
            out.append((a, b, 1, (h, w)))
    return out


def _norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class Block(nn.Module):
    """Two 3×3 convs and a shortcut; post-activation (standard) or pre-activation."""

    def __init__(self, c_in: int, c_out: int, stride: int, preact: bool):
        super().__init__()
        self.preact = preact
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.norm1 = _norm(c_in if preact else c_out)  # preact: normalizes the block's input
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.norm2 = _norm(c_out)
        projects = stride != 1 or c_in != c_out
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, bias=False) if projects else None
        self.shortcut_norm = _norm(c_out) if projects and not preact else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c_in, H, W) -> (B, c_out, H', W')
        if self.preact:
            a = torch.relu(self.norm1(x))
            skip = x if self.shortcut is None else self.shortcut(a)
            return self.conv2(torch.relu(self.norm2(self.conv1(a)))) + skip
        skip = x if self.shortcut is None else self.shortcut_norm(self.shortcut(x))
        h = torch.relu(self.norm1(self.conv1(x)))
        return torch.relu(self.norm2(self.conv2(h)) + skip)


class ResNet18k(nn.Module):
    """ResNet18 of stage widths k, 2k, 4k, 8k; ``width`` is k (sweeps and analysis read ``model.width``).

    State-dict keys: ``stem.weight``, ``stem_norm.*`` (standard), ``blocks.{0..7}.{conv1,conv2}.weight``,
    ``blocks.{i}.{norm1,norm2}.*``, ``blocks.{2,4,6}.shortcut.weight``, ``blocks.{2,4,6}.shortcut_norm.*``
    (standard), ``norm.*`` (preact), ``head.{weight,bias}``.
    """

    def __init__(self, image: tuple[int, int, int], width: int, n_classes: int, preact: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        self.image, self.width, self.preact = image, width, preact
        self.stem = nn.Conv2d(image[0], width, 3, 1, 1, bias=False)
        self.stem_norm = None if preact else _norm(width)
        self.blocks = nn.ModuleList(Block(a, b, s, preact) for a, b, s in block_specs(width))
        self.norm = _norm(8 * width) if preact else None
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(8 * width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.reshape(x.shape[0], *self.image)
        if not h.is_cuda:  # NCHW: oneDNN's CPU 1×1 stride-2 conv backward corrupts memory on channels-last
            h = h.contiguous()  # inputs with few channels (oneDNN issue #6035); a no-op when already so
        h = self.stem(h)  # (B, k, H, W)
        if self.stem_norm is not None:
            h = torch.relu(self.stem_norm(h))
        for block in self.blocks:
            h = block(h)  # (B, 8k, H/8, W/8) after the last
        if self.norm is not None:
            h = torch.relu(self.norm(h))
        return self.head(self.dropout(h.mean(dim=(2, 3))))  # (B, K)


def build(cfg: dict[str, Any], shape: Shape, seed: int, dropout: float = 0.0) -> nn.Module:
    model = ResNet18k(image_shape(shape.input_shape), cfg["width"], shape.output_dim, cfg["preact"], dropout)
    gen = generator(seed, "init")
    with torch.no_grad():
        for conv in (m for m in model.modules() if isinstance(m, nn.Conv2d)):  # module order, one stream
            bound = 1.0 / math.sqrt(conv.weight[0].numel())
            conv.weight.uniform_(-bound, bound, generator=gen)
    init_linear_(model.head, gen)
    return model


def count_params(cfg: dict[str, Any], shape: Shape) -> int:
    k, c, n_classes = cfg["width"], image_shape(shape.input_shape)[0], shape.output_dim
    norms = (122 if cfg["preact"] else 150) * k
    return 2724 * k * k + 9 * c * k + norms + 8 * k * n_classes + n_classes


def flops_per_example(cfg: dict[str, Any], shape: Shape) -> int:
    layers = conv_layers(cfg["width"], image_shape(shape.input_shape))
    macs = sum(hh * ww * a * b * side * side for a, b, side, (hh, ww) in layers)
    return 6 * (macs + 8 * cfg["width"] * shape.output_dim)


def activation_elements(cfg: dict[str, Any], shape: Shape) -> int:
    """Conv outputs per example, Σ c_out·H·W: training keeps a few tensors of this size per
    example (conv, BN, ReLU outputs) for the backward, which is what bounds memory."""
    return sum(b * hh * ww for _, b, _, (hh, ww) in conv_layers(cfg["width"], image_shape(shape.input_shape)))
