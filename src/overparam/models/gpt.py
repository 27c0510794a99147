"""``gpt``: a decoder-only transformer (Radford et al. 2019), read top to bottom in one sitting.

Pre-LayerNorm blocks ``x + attn(ln(x))``, ``x + mlp(ln(x))``; causal multi-head attention;
a GELU MLP of width 4·d_model; learned positions; a final LayerNorm; the unembedding tied to
the token embedding by default (``model.tied``). Sized by ``n_layer``, ``d_model``,
``n_head``, ``context``; ``train.dropout`` applies to embeddings, attention weights and both
residual branches. Input: token ids (B, T) with T ≤ context; output: logits (B, T, V).

Parameter counts, with V the vocabulary, T the context, L the layers, d the width
(every Linear has a bias except the unembedding; each LayerNorm has 2d):

- per block: qkv 3d² + 3d, attention output d² + d, MLP 4d² + 4d and 4d² + d, two LayerNorms
  4d: **12d² + 13d**;
- ``count_params`` (the total, what ``count_trainable`` sees): V·d (token embedding)
  + T·d (positions) + L·(12d² + 13d) + 2d (final LayerNorm) + V·d again if untied;
- ``nonembedding_params`` (Kaplan et al. 2020, the N of their scaling laws): the same without
  the token and position embeddings *and* the unembedding, L·(12d² + 13d) + 2d, whether tied or
  not. This is ≈ 12·L·d², the approximation Kaplan et al. use.

Init (GPT-2): every weight N(0, 0.02), biases 0, LayerNorm γ = 1; the two projections that
write into the residual stream N(0, 0.02/√(2L)) so its variance stays O(1) with depth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from overparam.models.base import Shape, generator
from overparam.options import Option, at_most

OPTIONS = {
    "family": Option(str, None),
    "n_layer": Option(int, 2, "transformer blocks", check=at_most(256)),
    "d_model": Option(int, 64, "residual stream width (a multiple of n_head)", check=at_most(65536)),
    "n_head": Option(int, 4, "attention heads; head size = d_model / n_head", check=at_most(1024)),
    "context": Option(int, 128, "tokens per training window (max sequence length)", check=at_most(1_000_000)),
    "tied": Option(bool, True, "unembedding shares the token embedding matrix"),
}
SIZE_KEYS = ("n_layer", "d_model")
LINEAR_IN_PARAMS = False


@dataclass
class GPTConfig:
    vocab_size: int = 256  # tokens; 256 = byte level
    context: int = 128  # positions the model can attend over; also the training window
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 64  # residual width; head size is d_model // n_head
    dropout: float = 0.0  # on embeddings, attention weights and residual branches while training
    tied: bool = True  # unembedding = token embedding (Press & Wolf 2017): V·d fewer parameters


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head, self.dropout = cfg.n_head, cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)  # queries, keys, values of all heads at once
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)  # writes into the residual stream
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape  # (B, T, d)
        q, k, v = self.qkv(x).split(C, dim=2)  # each (B, T, d)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, d): heads side by side
        return self.resid_drop(self.proj(y))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Weights (B, nh, T, T) of this layer given its input x (B, T, d): softmax(qkᵀ/√hs), causal."""
        B, T, C = x.shape
        q, k, _ = self.qkv(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        scores = q @ k.transpose(-2, -1) / math.sqrt(C // self.n_head)  # (B, nh, T, T)
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        return scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, 4 * cfg.d_model)
        self.proj = nn.Linear(4 * cfg.d_model, cfg.d_model)  # writes into the residual stream
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))  # (B, T, 4d) inside, (B, T, d) out


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))  # (B, T, d)
        return x + self.mlp(self.ln2(x))  # (B, T, d)


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg, self.context = cfg, cfg.context
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)  # token embedding
        self.wpe = nn.Embedding(cfg.context, cfg.d_model)  # learned absolute positions
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        # Tied: no module of its own, so the state dict holds no shared tensor (safetensors refuses those).
        self.head = None if cfg.tied else nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)

    def hidden_states(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """The residual stream after the embeddings and after each block: L + 1 tensors (B, T, d)."""
        T = idx.shape[1]
        if T > self.context:
            raise ValueError(f"sequence of {T} tokens is longer than the context ({self.context})")
        pos = torch.arange(T, device=idx.device)  # (T,)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, d)
        states = [x]
        for block in self.blocks:
            x = block(x)  # (B, T, d)
            states.append(x)
        return states

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Each layer's attention weights (B, nh, T, T) on ``idx``: for ``overparam attention``."""
        states = self.hidden_states(idx)
        return [block.attn.attention(block.ln1(h)) for block, h in zip(self.blocks, states, strict=False)]

    def unembed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln_f(x)  # (B, T, d)
        return F.linear(x, self.wte.weight) if self.head is None else self.head(x)  # (B, T, V)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.unembed(self.hidden_states(idx)[-1])  # (B, T, V)


def validate(cfg: dict[str, Any]) -> None:
    """Constraints between keys that a single option's check cannot see."""
    from overparam.errors import SpecError

    if cfg["d_model"] % cfg["n_head"]:
        raise SpecError(f"model.n_head: must divide model.d_model ({cfg['d_model']}), got {cfg['n_head']}")


def _config(cfg: dict[str, Any], shape: Shape, dropout: float = 0.0) -> GPTConfig:
    validate(cfg)
    vocab = shape.vocab_size or shape.output_dim
    return GPTConfig(vocab_size=vocab, context=cfg["context"], n_layer=cfg["n_layer"], n_head=cfg["n_head"],
                     d_model=cfg["d_model"], dropout=dropout, tied=cfg["tied"])


def build(cfg: dict[str, Any], shape: Shape, seed: int, dropout: float = 0.0) -> nn.Module:
    """A GPT with GPT-2's init drawn from ``generator(seed, "init")`` in module order."""
    c = _config(cfg, shape, dropout)
    model = GPT(c)
    gen = generator(seed, "init")
    residual_std = 0.02 / math.sqrt(2 * c.n_layer)
    with torch.no_grad():
        for name, module in model.named_modules():  # a fixed order: the same seed gives the same model
            if isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
            elif isinstance(module, (nn.Linear, nn.Embedding)):
                std = residual_std if name.endswith(".proj") else 0.02  # attn.proj, mlp.proj
                module.weight.normal_(0.0, std, generator=gen)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
    return model


def nonembedding_params(cfg: dict[str, Any], shape: Shape) -> int:
    """Kaplan et al. (2020) N: all but token/position embeddings and unembedding, L·(12d² + 13d) + 2d."""
    c = _config(cfg, shape)
    d = c.d_model
    return c.n_layer * (12 * d * d + 13 * d) + 2 * d


def embedding_params(cfg: dict[str, Any], shape: Shape) -> int:
    """Token embedding V·d + positions T·d + a separate unembedding V·d when untied."""
    c = _config(cfg, shape)
    return c.vocab_size * c.d_model * (1 if c.tied else 2) + c.context * c.d_model


def count_params(cfg: dict[str, Any], shape: Shape) -> int:
    """Every trainable parameter, tied embeddings counted once (the base-module convention)."""
    return nonembedding_params(cfg, shape) + embedding_params(cfg, shape)


def flops_per_example(cfg: dict[str, Any], shape: Shape) -> int:
    """Training FLOPs per *token*: 6·N_nonembedding + 6·L·T·d + 6·d·V (Kaplan et al. 2020, Table 1).

    - 6·N_nonembedding: 2 FLOPs per multiply-add forward and 4 backward for every weight of the
      blocks (biases and LayerNorm gains, O(d) per layer, are counted the same way: negligible);
    - 6·L·T·d: attention scores qkᵀ and the weighted sum of values; under the causal mask a
      token attends to T/2 positions on average, so the two cost T·d multiply-adds per token
      and layer, ×2 FLOPs, ×3 for training (Kaplan's 2·n_layer·n_ctx·d_attn forward term);
    - 6·d·V: the unembedding matmul (tied or not; it is a matmul either way).

    Embedding lookups, softmaxes, GELUs and LayerNorm arithmetic are not counted.
    """
    c = _config(cfg, shape)
    return 6 * nonembedding_params(cfg, shape) + 6 * c.n_layer * c.context * c.d_model \
        + 6 * c.d_model * c.vocab_size
