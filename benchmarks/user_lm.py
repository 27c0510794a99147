"""Language models as user factories: the generic (torch.func) engine's benchmark subjects on language tasks.

``make_gpt`` builds the module the ``gpt`` family builds (same layers, init scheme and forward), so
``sweep_speed.py`` times the generic engine against the hand-written ``fused_gpt`` on the same
arithmetic (its attention is ``F.scaled_dot_product_attention``, which vmap runs member by member on
CPU). ``make_lm`` is a one-layer transformer as a user might write it, attention as plain matmuls,
which vmap batches across members.
"""

import math

import torch
from torch import nn

from overparam.models import gpt
from overparam.models.base import Shape


def make_gpt(vocab_size: int, context: int = 64, n_layer: int = 1, d_model: int = 32, n_head: int = 2,
             dropout: float = 0.0) -> nn.Module:
    cfg = {"n_layer": n_layer, "d_model": d_model, "n_head": n_head, "context": context, "tied": True}
    return gpt.build(cfg, Shape((), vocab_size, vocab_size), int(torch.initial_seed()), dropout=dropout)


class TinyLM(nn.Module):
    """Token and position embeddings, one causal self-attention layer (``heads`` heads), an MLP, a head."""

    def __init__(self, vocab_size: int, context: int = 64, width: int = 32, heads: int = 2):
        super().__init__()
        self.heads = heads
        self.tok, self.pos = nn.Embedding(vocab_size, width), nn.Embedding(context, width)
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.head = nn.Linear(width, vocab_size)
        self.register_buffer("causal", torch.tril(torch.ones(context, context, dtype=torch.bool)))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        b, t = idx.shape
        h = self.tok(idx) + self.pos.weight[:t]  # (B, T, d)
        q, k, v = (z.view(b, t, self.heads, -1).transpose(1, 2) for z in self.qkv(self.ln1(h)).chunk(3, dim=-1))
        att = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).masked_fill(~self.causal[:t, :t], float("-inf"))
        y = (att.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, t, -1)  # (B, T, d)
        h = h + self.proj(y)
        return self.head(h + self.mlp(self.ln2(h)))  # (B, T, V)


def make_lm(vocab_size: int, context: int = 64, width: int = 32, heads: int = 2) -> TinyLM:
    return TinyLM(vocab_size, context, width, heads)
