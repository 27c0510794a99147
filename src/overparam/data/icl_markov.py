"""``icl-markov``: sequences that each draw their own Markov chain, so only in-context learning helps.

Every sequence draws a transition matrix P over ``states`` symbols, each row independently from
a symmetric Dirichlet(α) prior (Edelman et al. 2024, "The evolution of statistical induction
heads: in-context learning Markov chains"), a first symbol uniformly, and ``context`` further
symbols from the chain. Nothing about one sequence's chain carries over to the next: a model
can only predict better than the marginal by inferring P from the sequence it is reading.

Exact references, per position t (the prediction of x_{t+1} from x_0 … x_t):

- **Bayes-optimal**: the posterior mean of row x_t given the transitions seen so far,
  p(j) = (c_ij + α) / (Σ_j c_ij + Kα), with c_ij the count of i → j among x_0 … x_t and i = x_t.
  Rows are independent Dirichlet(α) a priori and x_0 is uniform (independent of P), so the
  posterior of each row is Dirichlet(α + c_i·) and this predictive is exactly optimal in
  expected log-loss; no model can beat it on average.
- **in-context unigram**: p(j) = (n_j + α) / (t + 1 + Kα), n_j the count of j among x_0 … x_t
  (the best a model that ignores order can do, Edelman et al.'s intermediate stage).
- **uniform**: ln K at every position.

Their per-token losses on every test sequence are in ``info["reference"]`` ((N, context)
arrays, nats), computed on exactly the sequences the models are evaluated on.

Layout: ``tokens_train`` and ``tokens_test`` are the sequences of ``context + 1`` symbols laid
end to end; ``info["sequence_length"]`` = ``context + 1`` tells the language-model trainer to
start every window at a sequence start (``train.lm.window_offsets``), so a window of
``model.context ≤ task.context`` tokens is the start of one sequence. Sequences are drawn in
blocks (:func:`block_size`, a function of ``states`` only) from a stream keyed by (seed, split,
block), so a smaller ``train_size`` is a prefix of a larger one and the test set never depends on it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from overparam.data.base import TaskData
from overparam.errors import SpecError
from overparam.options import Option, positive

BLOCK_FLOATS = 2**22  # transition probabilities held per block of sequences (32 MB in float64)
TAG = 0x1C1  # this task's key in the seed sequence


def _between(lo: int, hi: int):
    return lambda v: None if lo <= v <= hi else f"must be in {lo}..{hi}"


OPTIONS: dict[str, Option] = {
    "kind": Option(str, None, "which task"),
    "states": Option(int, 8, "K: symbols of each sequence's chain (the vocabulary)", check=_between(2, 256)),
    "alpha": Option(float, 1.0, "α of the symmetric Dirichlet prior of each transition row (small: sparse rows)",
                    check=positive),
    "context": Option(int, 64, "symbols a model reads per sequence; each sequence holds context + 1",
                      check=_between(2, 65536)),
    "train_size": Option(int, 4096, "training sequences", check=_between(1, 10_000_000)),
    "test_size": Option(int, 512, "test sequences", check=_between(1, 1_000_000)),
    "seed": Option(int, 0, "draws every chain and sequence", check=lambda v: None if v >= 0 else "must be >= 0"),
}


def block_size(states: int) -> int:
    """Sequences per independently seeded block: 256, fewer when K² transition entries each would not fit."""
    return max(1, min(256, BLOCK_FLOATS // (states * states)))


def sample_sequences(n: int, states: int, alpha: float, length: int, seed: int, split: int) -> np.ndarray:
    """(n, length) int64 sequences, each from its own Dirichlet(α) chain with a uniform first symbol."""
    out = np.empty((n, length), dtype=np.int64)
    size = block_size(states)
    for block in range(-(-n // size)):
        rng = np.random.default_rng(np.random.SeedSequence([seed, TAG, split, block]))
        p = rng.gamma(alpha, size=(size, states, states))
        p /= p.sum(axis=2, keepdims=True)  # normalized gammas: a Dirichlet(α) row each
        cum = np.cumsum(p, axis=2)
        cum[..., -1] = 1.0  # u < 1 always lands on a symbol despite rounding
        x = np.empty((size, length), dtype=np.int64)
        x[:, 0] = rng.integers(0, states, size=size)
        u = rng.random((size, length - 1))
        rows = np.arange(size)
        for t in range(length - 1):
            x[:, t + 1] = (u[:, t, None] >= cum[rows, x[:, t]]).sum(axis=1)
        lo = block * size
        out[lo:lo + size] = x[:min(size, n - lo)]
    return out


def bayes_losses(seqs: np.ndarray, states: int, alpha: float) -> np.ndarray:
    """(N, T − 1) log-loss (nats) of the posterior-mean bigram predictor at each position."""
    n, length = seqs.shape
    counts = np.zeros((n, states, states))
    rows = np.arange(n)
    out = np.empty((n, length - 1))
    for t in range(length - 1):
        i, j = seqs[:, t], seqs[:, t + 1]
        out[:, t] = -np.log((counts[rows, i, j] + alpha) / (counts[rows, i].sum(axis=1) + states * alpha))
        counts[rows, i, j] += 1
    return out


def unigram_losses(seqs: np.ndarray, states: int, alpha: float) -> np.ndarray:
    """(N, T − 1) log-loss of the add-α in-context unigram predictor at each position."""
    n, length = seqs.shape
    counts = np.zeros((n, states))
    rows = np.arange(n)
    out = np.empty((n, length - 1))
    for t in range(length - 1):
        counts[rows, seqs[:, t]] += 1
        out[:, t] = -np.log((counts[rows, seqs[:, t + 1]] + alpha) / (t + 1 + states * alpha))
    return out


def references(seqs: np.ndarray, states: int, alpha: float) -> dict[str, np.ndarray]:
    """Per-token losses of the three references on ``seqs``: each (N, T − 1), nats (counted a block of
    sequences at a time, so the (N, K, K) counts never need to fit at once)."""
    size = block_size(states)
    parts = [(bayes_losses(seqs[lo:lo + size], states, alpha), unigram_losses(seqs[lo:lo + size], states, alpha))
             for lo in range(0, len(seqs), size)]
    return {"bayes": np.concatenate([b for b, _ in parts]), "unigram": np.concatenate([u for _, u in parts]),
            "uniform": np.full((len(seqs), seqs.shape[1] - 1), np.log(states))}


def validate_run(cfg: dict[str, Any]) -> None:
    """A model reads the start of one sequence: model.context must not exceed task.context."""
    from overparam.data.sequences import check_run

    check_run(cfg)


def load(opts: dict[str, Any]) -> TaskData:
    """Draw the train and test sequences and the references' losses on the test sequences."""
    k, alpha, length = opts["states"], opts["alpha"], opts["context"] + 1
    if opts["train_size"] * length > 200_000_000 or opts["test_size"] * length > 50_000_000:
        raise SpecError(f"task.train_size: {opts['train_size']} sequences of {length} symbols is too many tokens "
                        f"(at most 200,000,000 for training, 50,000,000 for test)")
    train = sample_sequences(opts["train_size"], k, alpha, length, opts["seed"], 1)
    test = sample_sequences(opts["test_size"], k, alpha, length, opts["seed"], 2)
    info = {"name": "icl-markov", "sequence_length": length, "states": k, "alpha": alpha,
            "n_train": opts["train_size"], "n_test": opts["test_size"], "reference": references(test, k, alpha)}
    return TaskData(kind="lm", tokens_train=train.reshape(-1), tokens_test=test.reshape(-1), vocab_size=k,
                    info=info)
