"""The step of the engines that feed batches through a buffer (conv families, GPT), and its CUDA graph.

``Step`` is one optimizer step of a fused group whose batch arrives as tensors ``x``, ``y``
(images and labels, or token windows): forward and backward of Σ members' losses, per-member
clipping and NaN/inf detection, freezing of diverged members, one elementwise update. State
that graphs read lives on the device. ``GraphedStep`` replays it as a CUDA graph from static
buffers, one graph per batch shape. ``train/fused/cuda.py`` is the same idea for the MLP engine,
whose step indexes a resident train set instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from overparam.train import precision
from overparam.train.fused.optim import FusedOptimizer

WARMUP = 3  # eager steps on a side stream before a CUDA graph capture


def member_losses(out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    """(M,) mean loss of each member over its batch: logits (M, B, K), labels (M, B)."""
    if kind == "cross_entropy":
        return F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(dim=1)
    target = F.one_hot(y, out.shape[-1]).to(out.dtype)
    return ((out - target) ** 2).sum(dim=2).mean(dim=1)


class Step:
    """Forward, backward, clip, detect, update from a batch buffer: the part a CUDA graph captures.

    ``ctl`` (M + 3,) float64: each member's lr, the step number, Adam's two bias corrections.
    Divergence lives on the device: ``active`` (M,), ``diverged_at`` (M,) (0 while alive).
    """

    def __init__(self, net: nn.Module, opt: FusedOptimizer, kind: str, autocast: torch.dtype | None):
        self.net, self.opt, self.kind, self.autocast = net, opt, kind, autocast
        self.members = len(net.seed_of)
        self.active = torch.ones(self.members, dtype=torch.bool, device=net.flat.device)
        self.diverged_at = torch.zeros(self.members, dtype=torch.float64, device=net.flat.device)
        self.eager_lr = True  # a float lr when all members share it (bit-identical to torch's Adam)

    def losses(self, x: torch.Tensor, y: torch.Tensor, masks=None) -> torch.Tensor:
        """(M,) each member's training loss on its batch, in train.dtype."""
        with precision.autocast_region(x.device, self.autocast):
            out = self.net(x, True, masks)  # (M, B, K)
        return member_losses(out.to(self.net.flat.dtype), y, self.kind)  # (M,)

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor, masks=None) -> torch.Tensor:
        """(M,) losses, detached, with each member's gradient in ``net.flat.grad``."""
        losses = self.losses(x, y, masks)  # (M,)
        self.net.flat.grad = None
        losses.sum().backward()  # d(Σ loss_i)/d(loss_i) = 1: each member gets its own gradient
        return losses.detach()

    def __call__(self, x: torch.Tensor, y: torch.Tensor, ctl: torch.Tensor, masks=None) -> None:
        m = self.members
        ok = torch.isfinite(self.forward_backward(x, y, masks))
        if self.opt.clipping:
            ok &= torch.isfinite(self.opt.clip_(self.net.flat.grad)) | ~self.opt.has_clip
        self.diverged_at.copy_(torch.where(self.active & ~ok, ctl[m], self.diverged_at))
        self.active &= ok
        lr = ctl[:m] * self.active
        if self.eager_lr and bool((lr == lr[0]).all()) and bool(self.active.all()):
            rate: float | torch.Tensor = float(lr[0])
            bias = (float(ctl[m + 1]), float(ctl[m + 2]))
        else:
            rate, bias = lr, (ctl[m + 1], ctl[m + 2])  # (M,) float64: the optimizer expands it
        self.opt.step(rate, bias)


class GraphedStep:
    """CUDA only: ``Step`` replayed from static buffers, one graph per batch shape.

    Warm-up steps (needed before capture) run at lr 0 and everything they touch (parameters,
    moments, BatchNorm statistics, divergence state) is restored afterwards.
    """

    def __init__(self, step: Step):
        self.step, self.graphs = step, {}
        step.eager_lr = step.opt.eager = False  # no host reads inside the graph

    def _state(self) -> list[torch.Tensor]:
        opt, s = self.step.opt, self.step
        extra = [t for t in (opt.exp_avg, opt.exp_avg_sq, opt.buf) if t is not None]
        return [opt.flat.data, s.active, s.diverged_at, *extra, *s.net.buffers_state()]

    def __call__(self, x: torch.Tensor, y: torch.Tensor, ctl: torch.Tensor, masks=None) -> None:
        key = tuple(x.shape)
        if key not in self.graphs:
            sx, sy, sc = x.clone(), y.clone(), torch.ones_like(ctl)
            sc[:self.step.members].zero_()
            saved = [t.clone() for t in self._state()]
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(WARMUP):
                    self.step(sx, sy, sc)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            self.step.net.flat.grad = None
            with torch.cuda.graph(graph):
                self.step(sx, sy, sc)
            for dst, src in zip(self._state(), saved):
                dst.copy_(src)
            self.graphs[key] = (graph, sx, sy, sc)
        graph, sx, sy, sc = self.graphs[key]
        sx.copy_(x)
        sy.copy_(y)
        sc.copy_(ctl)
        graph.replay()
