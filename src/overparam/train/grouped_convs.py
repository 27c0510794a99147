"""Grouped forwards of the conv families: Mb members of one width computed as one network.

``train/fused_cnn.py`` stacks members along the channel axis (member j owns channels
[j·c, (j+1)·c) of every layer) and calls a family's *body* here: every conv is applied with
``groups=Mb`` to the members' stacked weights (Mb·c_out, c_in, kh, kw), so no member reads
another's channels; BatchNorm, ReLU, pooling and residual additions act per channel, hence per
member. Each body mirrors its family's ``nn.Module`` (``models/cnn.py``, ``models/resnet.py``)
op for op, which is what makes fused == sequential hold (``tests/test_cnn.py``, ``tests/test_resnet.py``).

A body takes ``h`` (B, Mb·C, H, W), or the shared (B, C, H, W) batch when ``first_groups`` is 1
(every member sees the same images: the first conv then has Mb·c_out outputs of one input),
the bucket's parameter views ``p`` (name -> (Mb, *member shape)), ``norm(name, h)`` (that
BatchNorm over the Mb·c channels with the members' own statistics) and Mb; it returns the
pooled features (B, Mb·F), member-major.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F

Norm = Callable[[str, torch.Tensor], torch.Tensor]
Body = Callable[[torch.Tensor, dict[str, torch.Tensor], Norm, int, int], torch.Tensor]
FEATURES = {"cnn": 8, "resnet18k": 8}  # pooled features per member, in units of k (the head's input)


def grouped_conv(h: torch.Tensor, weight: torch.Tensor, groups: int, bias: torch.Tensor | None = None,
                 stride: int = 1) -> torch.Tensor:
    """Mb convs as one: ``weight`` (Mb, c_out, c_in/…, k, k), 'same' padding for odd k."""
    return F.conv2d(h, weight.reshape(-1, *weight.shape[2:]), None if bias is None else bias.reshape(-1),
                    stride=stride, padding=weight.shape[-1] // 2, groups=groups)


def cnn_body(h: torch.Tensor, p: dict[str, torch.Tensor], norm: Norm, mb: int, first_groups: int) -> torch.Tensor:
    """``models.cnn.CNN`` without its head: conv → BN → ReLU (→ max-pool 2) ×4, global max."""
    from overparam.models.cnn import POOLED

    for i, pool in enumerate(POOLED):
        h = grouped_conv(h, p[f"convs.{i}.weight"], first_groups if i == 0 else mb, p[f"convs.{i}.bias"])
        h = torch.relu(norm(f"norms.{i}", h))  # (B, Mb·c_out, H_i, W_i)
        if pool:
            h = F.max_pool2d(h, 2)
    return h.amax(dim=(2, 3))  # (B, Mb·8k)


def resnet_body(h: torch.Tensor, p: dict[str, torch.Tensor], norm: Norm, mb: int, first_groups: int,
                preact: bool) -> torch.Tensor:
    """``models.resnet.ResNet18k`` without its head: stem, eight blocks, global average pool."""
    from overparam.models.resnet import BLOCKS

    h = grouped_conv(h, p["stem.weight"], first_groups)  # (B, Mb·k, H, W)
    if not preact:
        h = torch.relu(norm("stem_norm", h))
    for i, (_, stride) in enumerate(BLOCKS):
        name = f"blocks.{i}"
        projects = f"{name}.shortcut.weight" in p
        if preact:
            a = torch.relu(norm(f"{name}.norm1", h))
            skip = grouped_conv(a, p[f"{name}.shortcut.weight"], mb, stride=stride) if projects else h
            z = torch.relu(norm(f"{name}.norm2", grouped_conv(a, p[f"{name}.conv1.weight"], mb, stride=stride)))
            h = grouped_conv(z, p[f"{name}.conv2.weight"], mb) + skip
        else:
            skip = norm(f"{name}.shortcut_norm", grouped_conv(h, p[f"{name}.shortcut.weight"], mb, stride=stride)) \
                if projects else h
            z = torch.relu(norm(f"{name}.norm1", grouped_conv(h, p[f"{name}.conv1.weight"], mb, stride=stride)))
            h = torch.relu(norm(f"{name}.norm2", grouped_conv(z, p[f"{name}.conv2.weight"], mb)) + skip)
    if preact:
        h = torch.relu(norm("norm", h))
    return h.mean(dim=(2, 3))  # (B, Mb·8k)


def body_for(model: dict[str, Any]) -> Body:
    """The grouped body of a resolved ``model`` config (``cnn`` or ``resnet18k``)."""
    if model["family"] == "cnn":
        return cnn_body
    if model["family"] == "resnet18k":
        return partial(resnet_body, preact=model["preact"])
    raise ValueError(f"no grouped conv body for family {model['family']!r}")
