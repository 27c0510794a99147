"""The families as fused networks: one leaf tensor for all members, one batched matmul per bucket.

Every member's trainable tensors live in one flat leaf (``FlatParams``), bucket by bucket and,
inside a bucket, parameter by parameter with the member axis leading, so each layer of a
bucket is a view ``(Mb, out, in)`` and the optimizer is a handful of elementwise passes over one
tensor. A member occupies the top-left corner of each padded view; the padding starts at zero
and stays exactly zero: padded units have zero weights in and out, so their activations and
every gradient that reaches them are exact zeros (``linear`` masks its padded inputs instead).

Layers are hand-written ``baddbmm``s, not ``vmap``: for a stacked batch each member's product is
a separate GEMM, computed by the same kernel whatever the other members are. Activations run
feature-major, ``(Mb, W, B)`` (h^T = W·x^T): measured on this CPU, the backward of the
example-major form ran at half the GFLOP/s, and the 10-wide head at a third.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from overparam.train.fused.layout import Layout

FEATURE_CACHE_BYTES = 256 << 20  # rff: keep the train set's fixed features when they fit in this


class FlatParams(nn.Module):
    """Members' trainable tensors, zero-padded to their bucket's width, in one flat leaf.

    ``run_owner[r]``/``run_len[r]``: the flat tensor is a sequence of runs, each one member's
    piece of one parameter; optimizer and clipping expand per-member numbers along them.
    """

    def __init__(self, members: list[nn.Module], layout: Layout, shapes: list[dict[str, tuple[int, ...]]],
                 dtype: torch.dtype, device: torch.device):
        super().__init__()
        self.layout = layout
        self.names = [n for n, p in members[0].named_parameters() if p.requires_grad]
        self.chunks: list[tuple[int, str, tuple[int, ...]]] = []  # (bucket, name, (Mb, *padded shape))
        for b, bucket in enumerate(layout.buckets):
            for name in self.names:
                self.chunks.append((b, name, (bucket.size, *shapes[b][name])))
        self.sizes = [math.prod(s) for _, _, s in self.chunks]
        flat = torch.zeros(sum(self.sizes), dtype=dtype)
        owners, lengths = [], []
        for (b, name, shape), piece in zip(self.chunks, flat.split(self.sizes)):
            piece = piece.view(shape)
            for j, slot in enumerate(range(layout.buckets[b].start, layout.buckets[b].stop)):
                src = dict(members[slot].named_parameters())[name].detach()
                piece[j][tuple(slice(0, n) for n in src.shape)] = src.to(dtype)
                owners.append(slot)
                lengths.append(math.prod(shape[1:]))
        self.flat = nn.Parameter(flat.to(device))
        self.register_buffer("run_owner", torch.tensor(owners, dtype=torch.long, device=device))  # (R,)
        self.register_buffer("run_len", torch.tensor(lengths, dtype=torch.long, device=device))  # (R,)

    def views(self) -> list[dict[str, torch.Tensor]]:
        """Per bucket, ``name -> (Mb, *padded shape)`` views; ``split`` keeps backward one ``cat``."""
        out: list[dict[str, torch.Tensor]] = [{} for _ in self.layout.buckets]
        for (b, name, shape), piece in zip(self.chunks, self.flat.split(self.sizes)):
            out[b][name] = piece.view(shape)
        return out

    @torch.no_grad()
    def write_back(self, slot: int, module: nn.Module) -> None:
        """Copy member ``slot``'s trained values into its own (unfused) module."""
        b = next(i for i, k in enumerate(self.layout.buckets) if k.start <= slot < k.stop)
        j = slot - self.layout.buckets[b].start
        params = dict(module.named_parameters())
        for name, view in self.views()[b].items():
            dst = params[name]
            dst.copy_(view[j][tuple(slice(0, n) for n in dst.shape)].to(dst.device))


def _stack_padded(tensors: list[torch.Tensor], shape: tuple[int, ...], dtype: torch.dtype,
                  device: torch.device) -> torch.Tensor:
    """(len, *shape) zeros with each tensor in its top-left corner: fixed buffers of a bucket."""
    out = torch.zeros(len(tensors), *shape, dtype=dtype)
    for j, t in enumerate(tensors):
        out[j][tuple(slice(0, n) for n in t.shape)] = t.to(dtype)
    return out.to(device)


class FusedNet(nn.Module):
    """Base: ``forward(x)`` maps inputs to logits ``(M, B, K)`` in slot order.

    ``x`` is ``(B, d)`` when every member sees the same batch, else ``(M, B, d)``; buckets see
    it feature-major, ``(Mb, d, B)``.
    """

    def __init__(self, members: list[nn.Module], layout: Layout, dtype: torch.dtype, device: torch.device):
        super().__init__()
        self.layout = layout
        self.params = FlatParams(members, layout, [self.padded_shapes(b.width) for b in layout.buckets],
                                 dtype, device)
        self.x_train: torch.Tensor | None = None

    def padded_shapes(self, width: int) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def bucket_forward(self, b: int, inp: torch.Tensor, p: dict[str, torch.Tensor],
                       masks: list[torch.Tensor] | None) -> torch.Tensor:
        raise NotImplementedError

    def _inputs(self, b: int, x: torch.Tensor) -> torch.Tensor:
        bucket = self.layout.buckets[b]
        if x.dim() == 2:
            return x.T.expand(bucket.size, x.shape[1], x.shape[0])  # (Mb, d, B), no copy
        return x[bucket.start:bucket.stop].transpose(1, 2)  # (Mb, d, B)

    def forward(self, x: torch.Tensor, masks: list[list[torch.Tensor] | None] | None = None) -> torch.Tensor:
        views = self.params.views()
        outs = [self.bucket_forward(b, self._inputs(b, x), views[b], masks[b] if masks else None)
                for b in range(len(self.layout.buckets))]  # each (Mb, K, B)
        return torch.cat(outs).transpose(1, 2)  # (M, B, K)

    def bind(self, x_train: torch.Tensor) -> None:
        """The resident training inputs ``(n, d)`` that ``train_forward`` indexes."""
        self.x_train = x_train

    def train_forward(self, idx: torch.Tensor, masks: list[list[torch.Tensor] | None] | None = None
                      ) -> torch.Tensor:
        """Logits for rows ``idx`` of the bound train set: ``(B,)`` shared or ``(M, B)`` per member."""
        return self(self.x_train[idx], masks)


class FusedMLP(FusedNet):
    """``depth`` ReLU layers and a head per member; dropout masks come from the engine."""

    def __init__(self, members: list[nn.Module], layout: Layout, cfg: dict[str, Any], in_dim: int, out_dim: int,
                 dtype: torch.dtype, device: torch.device):
        self.depth, self.in_dim, self.out_dim = cfg["depth"], in_dim, out_dim
        super().__init__(members, layout, dtype, device)

    def padded_shapes(self, width: int) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in range(self.depth):
            shapes[f"hidden.{layer}.weight"] = (width, self.in_dim if layer == 0 else width)
            shapes[f"hidden.{layer}.bias"] = (width,)
        shapes["head.weight"] = (self.out_dim, width)
        shapes["head.bias"] = (self.out_dim,)
        return shapes

    def bucket_forward(self, b, inp, p, masks):
        h = inp  # (Mb, d, B)
        for layer in range(self.depth):
            w, bias = p[f"hidden.{layer}.weight"], p[f"hidden.{layer}.bias"]
            h = torch.baddbmm(bias.unsqueeze(2), w, h).relu_()  # (Mb, W, B)
            if masks is not None:
                h = h * masks[layer]  # inverted-dropout noise, as nn.Dropout multiplies it
        return torch.baddbmm(p["head.bias"].unsqueeze(2), p["head.weight"], h)  # (Mb, K, B)


class _Readout(FusedNet):
    """Shared by ``rff`` and ``linear``: fixed features, then a trained linear readout."""

    def __init__(self, members: list[nn.Module], layout: Layout, out_dim: int, dtype: torch.dtype,
                 device: torch.device):
        self.out_dim = out_dim
        self.bias = members[0].readout.bias is not None
        super().__init__(members, layout, dtype, device)

    def padded_shapes(self, width: int) -> dict[str, tuple[int, ...]]:
        shapes = {"readout.weight": (self.out_dim, width)}
        if self.bias:
            shapes["readout.bias"] = (self.out_dim,)
        return shapes

    def features(self, b: int, inp: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def readout(self, phi: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        """(Mb, W, B) features -> (Mb, K, B) outputs."""
        if self.bias:
            return torch.baddbmm(p["readout.bias"].unsqueeze(2), p["readout.weight"], phi)
        return torch.bmm(p["readout.weight"], phi)

    def bucket_forward(self, b, inp, p, masks):
        return self.readout(self.features(b, inp), p)


class FusedRFF(_Readout):
    """Random features per member (fixed, padded units scaled to 0); caches the train set's."""

    def __init__(self, members: list[nn.Module], layout: Layout, out_dim: int, dtype: torch.dtype,
                 device: torch.device):
        super().__init__(members, layout, out_dim, dtype, device)
        self.kind = members[0].kind
        self.proj, self.offset, self.scale = [], [], []
        for bucket in layout.buckets:
            group = members[bucket.start:bucket.stop]
            d = group[0].proj.shape[0]
            self.proj.append(_stack_padded([m.proj.T for m in group], (bucket.width, d), dtype, device))  # (Mb, W, d)
            self.offset.append(_stack_padded([m.offset[:, None] for m in group], (bucket.width, 1), dtype, device))
            scales = [torch.full((m.proj.shape[1], 1), math.sqrt(2.0 / m.proj.shape[1]), dtype=dtype)
                      for m in group]  # the member's own √(2/N); 0 on padding, where cos would give 1
            self.scale.append(_stack_padded(scales, (bucket.width, 1), dtype, device))  # (Mb, W, 1)
        self.cache: list[torch.Tensor] | None = None

    def features(self, b: int, inp: torch.Tensor) -> torch.Tensor:
        z = torch.bmm(self.proj[b], inp) + self.offset[b]  # (Mb, W, B): matmul, then add, as unfused
        phi = torch.cos(z) if self.kind == "fourier" else torch.relu(z)
        return phi * self.scale[b]

    def bind(self, x_train: torch.Tensor) -> None:
        super().bind(x_train)
        need = x_train.shape[0] * sum(k.size * k.width for k in self.layout.buckets) * x_train.element_size()
        if need <= FEATURE_CACHE_BYTES:
            with torch.no_grad():
                self.cache = [self.features(b, self._inputs(b, x_train)) for b in range(len(self.layout.buckets))]

    def train_forward(self, idx, masks=None):
        if self.cache is None:
            return super().train_forward(idx, masks)
        views, outs = self.params.views(), []
        for b, bucket in enumerate(self.layout.buckets):
            feats = self.cache[b]  # (Mb, W, n)
            if idx.dim() == 1:
                phi = feats[:, :, idx]  # (Mb, W, B)
            else:
                cols = idx[bucket.start:bucket.stop, None, :].expand(-1, bucket.width, -1)
                phi = torch.gather(feats, 2, cols)  # (Mb, W, B)
            outs.append(self.readout(phi, views[b]))
        return torch.cat(outs).transpose(1, 2)  # (M, B, K)


class FusedLinear(_Readout):
    """The first ``width`` input coordinates; the padded ones are masked to zero at the input."""

    def __init__(self, members: list[nn.Module], layout: Layout, out_dim: int, dtype: torch.dtype,
                 device: torch.device):
        super().__init__(members, layout, out_dim, dtype, device)
        self.mask = []
        for bucket in layout.buckets:
            keep = [torch.ones(w, 1, dtype=dtype) for w in layout.widths[bucket.start:bucket.stop]]
            self.mask.append(_stack_padded(keep, (bucket.width, 1), dtype, device))  # (Mb, W, 1)

    def features(self, b: int, inp: torch.Tensor) -> torch.Tensor:
        return inp[:, :self.layout.buckets[b].width] * self.mask[b]  # (Mb, W, B)


def build_net(family: str, members: list[nn.Module], layout: Layout, model_cfg: dict[str, Any], in_dim: int,
              out_dim: int, dtype: torch.dtype, device: torch.device) -> FusedNet:
    """``members`` in slot order, already cast to ``dtype``."""
    if family == "mlp":
        return FusedMLP(members, layout, model_cfg, in_dim, out_dim, dtype, device)
    if family == "rff":
        return FusedRFF(members, layout, out_dim, dtype, device)
    if family == "linear":
        return FusedLinear(members, layout, out_dim, dtype, device)
    raise ValueError(f"no fused engine for family {family!r}")
