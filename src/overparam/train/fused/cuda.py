"""CUDA only: the fused step captured as a CUDA graph, one graph per batch shape.

A group's step is hundreds of small kernels; replaying them as one graph removes the launch
overhead that otherwise dominates small members on a GPU. Everything that changes between
steps enters through static device buffers refreshed before each replay: the batch's row
indices and ``ctl`` (each member's lr, the step number, Adam's bias corrections). Divergence
bookkeeping already lives on the device (``Step``), so a replay never syncs with the host.

Capturing needs warm-up iterations, which would train: the trained state is snapshotted before
and restored after, so the captured program starts from exactly where the eager one would.
"""

from __future__ import annotations

import torch

from overparam.train.fused.engine import Step

WARMUP = 3  # eager iterations on a side stream before capture (cuBLAS workspaces, autograd caches)


class GraphedStep:
    """Calls like ``Step``; captures lazily per index shape (the epoch's last batch may be short)."""

    def __init__(self, step: Step):
        if step.data.x_train.device.type != "cuda":
            raise ValueError("CUDA graphs need the group on a CUDA device")
        self.step = step
        self.step.opt.eager = False  # per-member numbers are rebuilt inside the graph from ctl
        self.graphs: dict[tuple[int, ...], tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}

    def _state(self) -> list[torch.Tensor]:
        opt, step = self.step.opt, self.step
        tensors = [opt.flat.data, step.active, step.diverged_at]
        tensors += [t for t in (opt.exp_avg, opt.exp_avg_sq, opt.buf) if t is not None]
        return tensors

    def _capture(self, idx: torch.Tensor, ctl: torch.Tensor):
        static_idx = idx.clone()
        static_ctl = torch.zeros(len(ctl) + 2, dtype=torch.float64, device=idx.device)  # ctl, bc1, √bc2
        members = self.step.net.layout.size

        def run() -> None:
            bias = (static_ctl[members + 1], static_ctl[members + 2])
            self.step(static_idx, static_ctl[:members + 1], None, bias)

        saved = [t.clone() for t in self._state()]
        static_ctl[:members].fill_(0.0)  # warm-up steps at lr 0, on copies we restore anyway
        static_ctl[members + 1:].fill_(1.0)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP):
                run()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        self.step.net.params.flat.grad = None  # backward allocates the grad inside the graph's pool
        with torch.cuda.graph(graph):
            run()
        for dst, src in zip(self._state(), saved, strict=True):
            dst.copy_(src)
        return graph, static_idx, static_ctl

    def __call__(self, idx: torch.Tensor, ctl: torch.Tensor, masks=None, bias=None) -> None:
        if masks is not None:
            raise ValueError("dropout masks are drawn on the host side: run this group without graphs")
        key = tuple(idx.shape)
        if key not in self.graphs:
            self.graphs[key] = self._capture(idx, ctl)
        graph, static_idx, static_ctl = self.graphs[key]
        static_idx.copy_(idx, non_blocking=True)
        members = self.step.net.layout.size
        static_ctl[:members + 1].copy_(ctl, non_blocking=True)
        static_ctl[members + 1:].copy_(torch.tensor(bias, dtype=torch.float64), non_blocking=True)
        graph.replay()
