"""What each attention head does, in four numbers, from its weights ``a[t, s]`` (query t, key s).

On ordinary text (windows of the test split), averaged over windows and over query positions
t ≥ 1 (t = 0 of a causal model can only attend to itself):

- **entropy** H = −Σ_s a[t, s] ln a[t, s], in nats: 0 for a head that looks at one token,
  ln(t + 1) for a uniform causal head (Clark et al. 2019 use it to tell broad from sharp heads);
- **previous_token** = a[t, t − 1]: the previous-token heads of Olsson et al. (2022);
- **first_token** = a[t, 0]: attention parked on the first position, an "attention sink" that a
  head uses as a no-op (Xiao et al. 2023).

On a random token sequence of length P repeated once, ``r₁ … r_P r₁ … r_P`` (Olsson et al. 2022,
"In-context Learning and Induction Heads"):

- **induction** = mean over the second copy of a[t, t − P + 1]: attention from a token to the
  token that *followed* its previous occurrence, the signature of an induction head. A head
  that attends uniformly scores about 1/t, so a score near 1 is unambiguous.

Bidirectional models (BERT) use every position as a key, and their statistics skip the special
tokens at either end through ``offset`` (the first content position).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

STATS = ("entropy", "previous_token", "first_token", "induction")


@dataclass
class HeadStats:
    """Per-head statistics, each an array (n_layer, n_head)."""

    entropy: np.ndarray
    previous_token: np.ndarray
    first_token: np.ndarray
    induction: np.ndarray

    def heads(self) -> list[dict[str, Any]]:
        """One dict per head: layer, head and the four statistics."""
        n_layer, n_head = self.entropy.shape
        return [{"layer": i, "head": h, **{s: float(getattr(self, s)[i, h]) for s in STATS}}
                for i in range(n_layer) for h in range(n_head)]

    def layers(self) -> list[dict[str, Any]]:
        """Per layer: the mean over heads of each statistic, and the largest induction and
        previous-token scores (one such head is what matters)."""
        out = []
        for i in range(self.entropy.shape[0]):
            row: dict[str, Any] = {"layer": i}
            row.update({f"mean_{s}": float(getattr(self, s)[i].mean()) for s in STATS})
            row["max_induction"] = float(self.induction[i].max())
            row["max_previous_token"] = float(self.previous_token[i].max())
            out.append(row)
        return out


def text_statistics(attn: np.ndarray, offset: int = 0) -> dict[str, np.ndarray]:
    """Entropy, previous-token and first-token scores (each (L, H)) of weights (B, L, H, T, T),
    averaged over the batch and over query positions ``offset + 1`` … T − 1; "first" is ``offset``."""
    a = attn[..., offset + 1:, :]  # (B, L, H, T', T)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(a > 0, a * np.log(a), 0.0)
    entropy = -plogp.sum(-1).mean(axis=(0, 3))
    t = np.arange(offset + 1, attn.shape[-1])
    prev = attn[..., t, t - 1].mean(axis=(0, 3))
    first = attn[..., offset + 1:, offset].mean(axis=(0, 3))
    return {"entropy": entropy, "previous_token": prev, "first_token": first}


def induction_scores(attn: np.ndarray, period: int, offset: int = 0) -> np.ndarray:
    """Mean a[t, t − period + 1] over the second copy (t = offset + period … offset + 2·period − 1)
    of weights (B, L, H, T, T) on repeated random sequences: (L, H)."""
    t = np.arange(offset + period, offset + 2 * period)
    return attn[..., t, t - period + 1].mean(axis=(0, 3))


def repeated_sequences(vocab: int | np.ndarray, period: int, batch: int, seed: int = 0) -> np.ndarray:
    """(batch, 2·period) int64 sequences ``r r`` of uniform random tokens drawn from ``vocab`` (a size,
    or the ids allowed)."""
    rng = np.random.default_rng(seed)
    pool = np.arange(vocab) if np.isscalar(vocab) else np.asarray(vocab)
    r = pool[rng.integers(0, len(pool), size=(batch, period))]
    return np.concatenate([r, r], axis=1).astype(np.int64)


def gpt_head_stats(model: Any, tokens: np.ndarray, context: int, vocab_size: int, n_windows: int = 16,
                   seed: int = 0) -> HeadStats:
    """Head statistics of a ``gpt`` model: text statistics on the first ``n_windows`` windows of
    ``tokens`` (its test split), induction on ``n_windows`` repeated random sequences of period
    context // 2."""
    from overparam.interpret.base import gpt_attention, windows_of

    windows = windows_of(tokens, context, n_windows * context)
    attn = gpt_attention(model, windows)  # (B, L, H, T, T)
    text = text_statistics(attn)
    period = context // 2
    rep = repeated_sequences(vocab_size, period, n_windows, seed)
    induction = induction_scores(gpt_attention(model, rep), period)
    return HeadStats(induction=induction, **text)
