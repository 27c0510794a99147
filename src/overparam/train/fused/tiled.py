"""One hidden layer without buckets: members side by side, the head one batched matmul over tiles.

On a GPU a bucketed group's cost is its kernel count, not its FLOPs. Widths 8…4096 under the
≤ 25 % padding rule make ~30 buckets, each a dozen kernels forward and backward, and
measured on an H100 the graphed step stayed launch-bound at ~3.8 ms. Here every member sits
at its own width rounded up to ``TILE`` (the jagged path's layout), side by side, so the
hidden layer is one (ΣW, B) activation whatever the group, and the step is a fixed handful
of kernels for 2 members or 200:

    h      = relu(W1 · xᵀ + b1)          (ΣW, B): one GEMM (shared batch), one bmm over tiles (per member)
    out_t  = W2_t · h_t                  (NT, K, B): one bmm over all tiles of TILE units
    out_g  = Σ_{t ∈ g} out_t + b2_g      (M, K, B): one index_add over tiles

Nothing crosses between members: every tile belongs to one member and the index_add adds only
that member's tiles, so a diverged member's NaNs stay its own (a block-diagonal GEMM would
spread them as 0 · NaN). Padding is at most TILE − 1 units per member, zero in and out.
"""

from __future__ import annotations

import torch
from torch import nn

from overparam.train.fused.jagged import JaggedMLP
from overparam.train.fused.layout import CUDA_ALIGN, Layout

TILE = CUDA_ALIGN  # units per tile: the side-by-side layout rounds every width up to this


class TiledMLP(JaggedMLP):
    """One hidden layer, members side by side; logits (M, K, B) like every ``FusedNet``."""

    def __init__(self, members: list[nn.Module], layout: Layout, in_dim: int, out_dim: int,
                 dtype: torch.dtype, device: torch.device):
        super().__init__(members, layout, in_dim, out_dim, dtype, device)
        counts = torch.tensor([b.width // TILE for b in self.layout.buckets])
        owner = torch.repeat_interleave(torch.arange(len(counts)), counts)
        self.register_buffer("tile_owner", owner.to(device))  # (NT,) member slot of each tile

    def hidden(self, x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        """(ΣW, B) pre-activations; ``x`` (B, d) shared, or (NT, B, d) each tile's member's rows."""
        if x.dim() == 2:
            return torch.addmm(p["b1"].unsqueeze(1), p["w1"], x.T)
        tiles = len(self.tile_owner)
        w1 = p["w1"].view(tiles, TILE, self.in_dim)
        h = torch.baddbmm(p["b1"].view(tiles, TILE, 1), w1, x.transpose(1, 2))  # (NT, TILE, B)
        return h.view(tiles * TILE, x.shape[1])

    def head(self, h: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        tiles, batch = len(self.tile_owner), h.shape[1]
        w2 = p["w2t"].view(tiles, TILE, self.out_dim).transpose(1, 2)  # (NT, K, TILE)
        per_tile = torch.bmm(w2, h.view(tiles, TILE, batch))  # (NT, K, B)
        per_tile = per_tile.to(p["b2"].dtype)  # under bf16 autocast, sum a wide member's 500 tiles in fp32
        out = per_tile.new_zeros(self.layout.size, self.out_dim, batch).index_add(0, self.tile_owner, per_tile)
        return out + p["b2"].unsqueeze(2)  # (M, K, B)

    def _logits(self, x: torch.Tensor, masks) -> torch.Tensor:
        p = self.params.views()
        h = self.hidden(x, p).relu()
        if masks is not None:  # one (1, W, B) layer of noise per member: this layout's buckets
            h = h * torch.cat([layers[0][0] for layers in masks])
        return self.head(h, p)

    def forward(self, x: torch.Tensor, masks=None) -> torch.Tensor:
        if x.dim() == 3:
            x = x[self.tile_owner]  # (NT, B, d)
        return self._logits(x, masks)

    def train_forward(self, idx: torch.Tensor, masks=None) -> torch.Tensor:
        rows = idx if idx.dim() == 1 else idx[self.tile_owner]  # (B,) or (NT, B): one gather
        return self._logits(self.x_train[rows], masks)
