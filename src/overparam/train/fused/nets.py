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


Place = tuple[str, tuple, bool]  # (chunk key, index into that chunk's view, stored transposed)


def _corner(shape: torch.Size | tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(0, n) for n in shape)


class FlatParams(nn.Module):
    """Members' trainable tensors, zero-padded, in one flat leaf split into named chunks.

    ``chunks``: chunk key -> shape, in flat order. ``places[slot][param name]``: where that
    member's tensor lives, in the top-left corner of ``chunk[key][index]`` (transposed when
    flagged); the whole indexed region, padding included, belongs to the member. Consecutive
    elements of one member form a run (``run_owner``, ``run_len``), along which optimizer and
    clipping expand per-member numbers.
    """

    def __init__(self, members: list[nn.Module], chunks: dict[str, tuple[int, ...]],
                 places: list[dict[str, Place]], dtype: torch.dtype, device: torch.device):
        super().__init__()
        self.keys, self.shapes = list(chunks), list(chunks.values())
        self.sizes = [math.prod(s) for s in self.shapes]
        self.places = places
        flat = torch.zeros(sum(self.sizes), dtype=dtype)
        owner = torch.full((len(flat),), -1, dtype=torch.long)
        values, owners = self._split(flat), self._split(owner)
        for slot, member in enumerate(members):
            params = dict(member.named_parameters())
            for name, (key, index, transposed) in places[slot].items():
                src = params[name].detach()
                src = src.T if transposed else src
                values[key][index][_corner(src.shape)] = src.to(dtype)
                owners[key][index] = slot
        if bool((owner < 0).any()):
            raise ValueError("fused layout: some parameter elements belong to no member")
        run_owner, run_len = torch.unique_consecutive(owner, return_counts=True)
        self.flat = nn.Parameter(flat.to(device))
        self.register_buffer("run_owner", run_owner.to(device))  # (R,)
        self.register_buffer("run_len", run_len.to(device))  # (R,)

    def _split(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: piece.view(s) for k, s, piece in zip(self.keys, self.shapes, flat.split(self.sizes), strict=True)}

    def views(self) -> dict[str, torch.Tensor]:
        """Chunk views of the leaf; ``split`` keeps the backward a single ``cat``."""
        return self._split(self.flat)

    @torch.no_grad()
    def extract(self, slot: int, module: nn.Module, source: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Member ``slot``'s tensors, shaped like ``module``'s parameters, read from ``source``
        (a tensor laid out like the leaf, e.g. its gradient; default the leaf itself)."""
        views = self._split(self.flat.detach() if source is None else source)
        out = {}
        for name, param in module.named_parameters():
            key, index, transposed = self.places[slot][name]
            src = views[key][index][_corner(param.shape[::-1] if transposed else param.shape)]
            out[name] = src.T if transposed else src
        return out

    @torch.no_grad()
    def write_back(self, slot: int, module: nn.Module) -> None:
        """Copy member ``slot``'s trained values into its own (unfused) module."""
        params = dict(module.named_parameters())
        for name, value in self.extract(slot, module).items():
            params[name].copy_(value.to(params[name].device))


def bucket_chunks(layout: Layout, shapes: list[dict[str, tuple[int, ...]]]
                  ) -> tuple[dict[str, tuple[int, ...]], list[dict[str, Place]]]:
    """Bucket by bucket, parameter by parameter, member axis leading: chunk ``"{b}/{name}"``."""
    chunks: dict[str, tuple[int, ...]] = {}
    places: list[dict[str, Place]] = [{} for _ in range(layout.size)]
    for b, bucket in enumerate(layout.buckets):
        for name, shape in shapes[b].items():
            chunks[f"{b}/{name}"] = (bucket.size, *shape)
            for j, slot in enumerate(range(bucket.start, bucket.stop)):
                places[slot][name] = (f"{b}/{name}", (j,), False)
    return chunks, places


def _stack_padded(tensors: list[torch.Tensor], shape: tuple[int, ...], dtype: torch.dtype,
                  device: torch.device) -> torch.Tensor:
    """(len, *shape) zeros with each tensor in its top-left corner: fixed buffers of a bucket."""
    out = torch.zeros(len(tensors), *shape, dtype=dtype)
    for j, t in enumerate(tensors):
        out[j][_corner(t.shape)] = t.to(dtype)
    return out.to(device)


class FusedNet(nn.Module):
    """Base: ``forward(x)`` maps inputs to logits ``(M, K, B)`` in slot order (feature-major).

    ``x`` is ``(B, d)`` when every member sees the same batch, else ``(M, B, d)``; buckets see
    it feature-major, ``(Mb, d, B)``.
    """

    def __init__(self, members: list[nn.Module], layout: Layout, dtype: torch.dtype, device: torch.device):
        super().__init__()
        self.layout = layout
        self.params = self.make_params(members, dtype, device)
        self.x_train: torch.Tensor | None = None

    def make_params(self, members: list[nn.Module], dtype: torch.dtype, device: torch.device) -> FlatParams:
        """The leaf: bucket by bucket (``bucket_chunks``) unless a subclass lays it out otherwise."""
        shapes = [self.padded_shapes(b.width) for b in self.layout.buckets]
        return FlatParams(members, *bucket_chunks(self.layout, shapes), dtype, device)

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

    def bucket_views(self) -> list[dict[str, torch.Tensor]]:
        """Per bucket, ``name -> (Mb, *padded shape)``."""
        out: list[dict[str, torch.Tensor]] = [{} for _ in self.layout.buckets]
        for key, view in self.params.views().items():
            b, name = key.split("/", 1)
            out[int(b)][name] = view
        return out

    def forward(self, x: torch.Tensor, masks: list[list[torch.Tensor] | None] | None = None) -> torch.Tensor:
        views = self.bucket_views()
        outs = [self.bucket_forward(b, self._inputs(b, x), views[b], masks[b] if masks else None)
                for b in range(len(self.layout.buckets))]  # each (Mb, K, B)
        return torch.cat(outs)  # (M, K, B)

    def bind(self, x_train: torch.Tensor) -> None:
        """The resident training inputs ``(n, d)`` that ``train_forward`` indexes."""
        self.x_train = x_train

    def train_forward(self, idx: torch.Tensor, masks: list[list[torch.Tensor] | None] | None = None
                      ) -> torch.Tensor:
        """Logits for rows ``idx`` of the bound train set: ``(B,)`` shared or ``(M, B)`` per member."""
        return self(self.x_train[idx], masks)


class FusedMLP(FusedNet):
    """``depth`` ReLU layers and a head per member; dropout masks come from the engine."""

    def __init__(self, members: list[nn.Module], layout: Layout, cfg: dict[str, Any], in_dim: int,
                 out_dim: int, dtype: torch.dtype, device: torch.device):
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
            width = bucket.width
            self.proj.append(_stack_padded([m.proj.T for m in group], (width, d), dtype, device))  # (Mb, W, d)
            self.offset.append(_stack_padded([m.offset[:, None] for m in group], (width, 1), dtype, device))
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
                self.cache = [self.features(b, self._inputs(b, x_train))
                              for b in range(len(self.layout.buckets))]  # each (Mb, W, n)

    def train_forward(self, idx, masks=None):
        if self.cache is None:
            return super().train_forward(idx, masks)
        views, outs = self.bucket_views(), []
        for b, bucket in enumerate(self.layout.buckets):
            feats = self.cache[b]  # (Mb, W, n)
            if idx.dim() == 1:
                phi = feats[:, :, idx]  # (Mb, W, B)
            else:
                cols = idx[bucket.start:bucket.stop, None, :].expand(-1, bucket.width, -1)
                phi = torch.gather(feats, 2, cols)  # (Mb, W, B)
            outs.append(self.readout(phi, views[b]))
        return torch.cat(outs)  # (M, K, B)


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
