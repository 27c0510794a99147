"""Jagged widths without buckets: torch's grouped matmul (CUDA), for one-hidden-layer MLPs.

Members sit side by side at their own width (rounded up to 8 for the kernel's 16-byte
alignment), so a group's hidden layer is one (B, ΣW) activation and no FLOP goes to padding.
Three shapes of grouped product appear, each a batch of independent GEMMs over the segments
``offs`` (int32 ends of each member's units) of one jagged dimension:

    n: (G, B, d) × (d, ΣW) -> (B, ΣW)     member g: A[g] @ Bm[:, seg_g]   (per-member inputs)
    k: (B, ΣW) × (ΣW, K) -> (G, B, K)     member g: A[:, seg_g] @ Bm[seg_g]   (the head)
    m: (ΣW, B) × (G, B, K) -> (ΣW, K)     member g: A[seg_g] @ Bm[g]   (the head's weight grad)

On CUDA with ``torch._grouped_mm`` these run as one kernel each, in bf16 (what the kernel
takes); elsewhere a loop of matmuls computes the same thing, which is how the CPU tests check
the layout and the hand-written backward. The engine only picks this path after ``probe``
has compared it with the bucketed network on the group's own data.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from overparam.train.fused.layout import CUDA_ALIGN, Bucket, Layout
from overparam.train.fused.nets import FlatParams, FusedNet, Place


def native_available(device: torch.device) -> bool:
    """torch has a grouped matmul and the device can run it (bf16 grouped GEMM: sm80+)."""
    if device.type != "cuda" or not hasattr(torch, "_grouped_mm"):
        return False
    return torch.cuda.get_device_capability(device) >= (8, 0)


def _reference(a: torch.Tensor, b: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    """The grouped product by a loop of matmuls (any device, any dtype)."""
    ends = offs.tolist()
    segs = list(zip([0, *ends[:-1]], ends, strict=True))
    if a.dim() == 3:  # n
        return torch.cat([a[g] @ b[:, s:e] for g, (s, e) in enumerate(segs)], dim=1)
    if b.dim() == 2:  # k
        return torch.stack([a[:, s:e] @ b[s:e] for s, e in segs])
    return torch.cat([a[s:e] @ b[g] for g, (s, e) in enumerate(segs)], dim=0)  # m


def _pad_contraction(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad the summed dimension to a multiple of ``CUDA_ALIGN``: the native kernel wants every
    row stride a multiple of 16 bytes, and a 10-class head's gradient (G, B, 10) has 20-byte rows.
    Zeros add nothing to the sums, so both paths pad (the CPU tests run this code too)."""
    n = a.shape[-1]
    pad = -n % CUDA_ALIGN
    if pad == 0:
        return a, b
    return torch.nn.functional.pad(a, (0, pad)), torch.nn.functional.pad(b, (0, 0, 0, pad))  # b: its dim -2


def grouped(a: torch.Tensor, b: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    """One grouped product (forms n, k, m above); bf16 on the native kernel."""
    if not (a.dim() == 2 and b.dim() == 2):  # form k sums over the segments, aligned by the layout
        a, b = _pad_contraction(a, b)
    if a.is_cuda and native_available(a.device):
        a16 = a.to(torch.bfloat16).contiguous()  # row-major
        b16 = b.to(torch.bfloat16).transpose(-2, -1).contiguous().transpose(-2, -1)  # column-major
        return torch._grouped_mm(a16, b16, offs=offs)
    return _reference(a, b, offs)


class _JaggedInput(torch.autograd.Function):
    """out (B, ΣW) = A[g] @ W^T[:, seg_g]; A (G, B, d) per-member inputs, wt (d, ΣW)."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, wt: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(a, wt, offs)
        return grouped(a, wt, offs)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        a, wt, offs = ctx.saved_tensors
        grad_wt = grouped(a.transpose(1, 2), grad, offs)  # n: (d, ΣW)
        return None, grad_wt.to(wt.dtype), None  # inputs never need a gradient


class _JaggedHead(torch.autograd.Function):
    """out (G, B, K) = H[:, seg_g] @ W2^T[seg_g]; h (B, ΣW), w2t (ΣW, K)."""

    @staticmethod
    def forward(ctx: Any, h: torch.Tensor, w2t: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(h, w2t, offs)
        return grouped(h, w2t, offs)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        h, w2t, offs = ctx.saved_tensors
        grad_h = grouped(grad, w2t.T, offs)  # n: (G, B, K) × (K, ΣW) -> (B, ΣW)
        grad_w2t = grouped(h.T, grad, offs)  # m: (ΣW, B) × (G, B, K) -> (ΣW, K)
        return grad_h.to(h.dtype), grad_w2t.to(w2t.dtype), None


def jagged_layout(layout: Layout) -> Layout:
    """Same member order; one 'bucket' per member at its own width rounded up to 8."""
    widths = [-(-w // CUDA_ALIGN) * CUDA_ALIGN for w in layout.widths]
    return Layout(layout.order, layout.widths, tuple(Bucket(w, j, j + 1) for j, w in enumerate(widths)))


class JaggedMLP(FusedNet):
    """One hidden layer, members side by side; logits (M, K, B) like every ``FusedNet``."""

    def __init__(self, members: list[nn.Module], layout: Layout, in_dim: int, out_dim: int,
                 dtype: torch.dtype, device: torch.device):
        self.depth, self.in_dim, self.out_dim = 1, in_dim, out_dim
        super().__init__(members, jagged_layout(layout), dtype, device)
        ends = torch.tensor([b.width for b in self.layout.buckets]).cumsum(0).to(torch.int32)
        self.register_buffer("offs", ends.to(device))  # (G,) int32 segment ends

    def make_params(self, members: list[nn.Module], dtype: torch.dtype, device: torch.device) -> FlatParams:
        """Chunks w1 (ΣW, d), b1 (ΣW,), w2t (ΣW, K) with members' segments, b2 (G, K)."""
        widths = [b.width for b in self.layout.buckets]
        total = sum(widths)
        chunks = {"w1": (total, self.in_dim), "b1": (total,), "w2t": (total, self.out_dim),
                  "b2": (len(members), self.out_dim)}
        places: list[dict[str, Place]] = []
        start = 0
        for j, width in enumerate(widths):
            seg = (slice(start, start + width),)
            places.append({"hidden.0.weight": ("w1", seg, False), "hidden.0.bias": ("b1", seg, False),
                           "head.weight": ("w2t", seg, True), "head.bias": ("b2", (j,), False)})
            start += width
        return FlatParams(members, chunks, places, dtype, device)

    def forward(self, x: torch.Tensor, masks=None) -> torch.Tensor:
        if masks is not None:
            raise ValueError("the jagged path has no dropout (the engine keeps such groups bucketed)")
        p = self.params.views()
        if x.dim() == 2:
            h = x @ p["w1"].T  # (B, ΣW): a shared input is one plain GEMM
        else:
            h = _JaggedInput.apply(x, p["w1"].T, self.offs)  # (B, ΣW)
        h = torch.relu(h + p["b1"])
        out = _JaggedHead.apply(h, p["w2t"], self.offs) + p["b2"].unsqueeze(1)  # (G, B, K)
        return out.transpose(1, 2)  # (G, K, B)


def probe(jagged: FusedNet, bucketed: FusedNet, members: list[nn.Module], x: torch.Tensor, tol: float
          ) -> str | None:
    """None when both networks agree on outputs and on every member's gradients, else why not.

    Run once per group before training on the jagged path: it checks the installed kernel's
    semantics and layout rules on this device, which no CPU test can.
    """
    try:
        outs, grads = [], []
        for net in (jagged, bucketed):
            net.params.flat.grad = None
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=x.is_cuda):
                out = net(x).float()  # (M, K, B)
            (out ** 2).mean().backward()
            outs.append(out.detach())
            grad = net.params.flat.grad
            grads.append([net.params.extract(j, m, grad) for j, m in enumerate(members)])
            net.params.flat.grad = None
    except (RuntimeError, TypeError, ValueError, NotImplementedError) as exc:
        return f"{type(exc).__name__}: {exc}"
    scale = outs[1].abs().max().clamp_min(1e-6)
    if not torch.allclose(outs[0], outs[1], rtol=tol, atol=tol * float(scale)):
        return "outputs differ"
    for a, b in zip(grads[0], grads[1], strict=True):
        for name in a:
            ref = b[name]
            if not torch.allclose(a[name], ref, rtol=tol, atol=tol * float(ref.abs().max().clamp_min(1e-6))):
                return f"gradients of {name} differ"
    return None
