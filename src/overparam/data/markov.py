"""``markov``: a synthetic language whose entropy rate, the irreducible loss, is known exactly.

A sparse order-k Markov chain over a Zipfian vocabulary. Token r (0-based) has weight
w_r = (r + 1)^(−zipf). Each state, the last ``order`` tokens, allows ``branching`` next tokens,
drawn without replacement with probability ∝ w (Gumbel-top-k, Vieira 2014), so frequent words
follow many states; their probabilities are a flat Dirichlet draw (normalized Exp(1)
variables), so every state has its own distribution. Everything is drawn from ``task.seed``.

The entropy rate is H = Σ_s π(s) · H(P(· | s)) nats/token (Cover & Thomas 2006, Thm 4.2.4),
with π the stationary distribution of the chain on states. A sparse chain may have several
closed classes; we keep the largest (ties: the one holding the smallest state) and draw each
stream's start state from its π, so both streams are stationary from the first token and H
is exactly the expected log-loss of the true model: the E of a scaling fit
``L(N, D) = E + A/N^α + B/D^β`` (Hoffmann et al. 2022). A model whose context is longer than
``order`` can reach it, except on the first ``order − 1`` positions of a window, which see less
than a full state (a cost of at most (order − 1)/context of the gap to the unigram entropy).

π solves π = πP: dense LU for up to ``DENSE_STATES`` recurrent states, otherwise power
iteration on the lazy chain (P + I)/2 (same π, aperiodic) to an L1 residual ‖πP − π‖₁ below
1e-13; the residual is recorded in ``info["stationary_residual"]``.

``info`` holds ``entropy_rate``, ``chain`` (a :class:`MarkovChain`), ``states_train`` /
``states_test`` (int64, the state each token was drawn from: state = Σ_j x_j V^(k−1−j) over
the previous k tokens, oldest first; for i ≥ k it is a function of ``tokens[i−k:i]``), for
probes. The train and test streams come from separate seeds, so ``train_size`` can be swept
without changing the test set; a smaller training set is a prefix of a larger one.
"""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from overparam.data.base import TaskData
from overparam.errors import SpecError
from overparam.options import Option, at_most, nonnegative

MAX_STATES = 2**20  # vocab_size ** order: the successor table is (states, branching)
MAX_DRAWS = 2**27  # states × vocab_size Gumbel draws to pick successors (≈ 1 GB of float64 work)
DENSE_STATES = 3000  # below this, π by a dense linear solve
CHUNK = 4096  # states per block when drawing successors (bounds memory)


def _at_least(lo: int, hi: int) -> Any:
    return lambda v: None if lo <= v <= hi else f"must be in {lo}..{hi}"


OPTIONS: dict[str, Option] = {
    "kind": Option(str, None, "which task"),
    "vocab_size": Option(int, 64, "tokens in the vocabulary", check=_at_least(2, 65536)),
    "order": Option(int, 2, "k: the next token depends on the last k tokens", check=_at_least(1, 16)),
    "branching": Option(int, 4, "possible next tokens per state (nonzero transition entries)",
                        check=_at_least(1, 65536)),
    "zipf": Option(float, 1.0, "Zipf exponent of token weights (0: uniform)", check=nonnegative),
    "train_size": Option(int, 200_000, "training tokens", check=_at_least(2, 100_000_000)),
    "test_size": Option(int, 20_000, "test tokens", check=at_most(100_000_000)),
    "seed": Option(int, 0, "draws the chain and both streams", check=nonnegative),
}


@dataclass(frozen=True)
class MarkovChain:
    """The chain: successor tokens and probabilities per state, π and the entropy rate (nats)."""

    vocab_size: int
    order: int
    successors: np.ndarray  # (V^k, b) int64 next tokens per state, ascending
    probs: np.ndarray  # (V^k, b) float64, rows sum to 1
    recurrent: np.ndarray  # (n,) int64 states of the closed class kept, ascending
    stationary: np.ndarray  # (V^k,) float64 π, zero outside ``recurrent``
    entropy_rate: float  # Σ_s π(s) H(P(·|s)), nats/token
    stationary_residual: float  # ‖πP − π‖₁

    def next_states(self, states: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """State after emitting ``tokens`` from ``states``: drop the oldest token, append the new."""
        return (states % self.vocab_size ** (self.order - 1)) * self.vocab_size + tokens

    @functools.cached_property
    def _tables(self) -> tuple[list[list[float]], list[list[int]], list[list[int]]]:
        """Per recurrent state (local index): cumulative probs, successor tokens, next local index."""
        index = np.full(len(self.stationary), -1, dtype=np.int64)
        index[self.recurrent] = np.arange(len(self.recurrent))
        cum = np.cumsum(self.probs[self.recurrent], axis=1)
        cum[:, -1] = 1.0  # u < 1 always lands on a successor despite rounding
        succ = self.successors[self.recurrent]
        nxt = index[self.next_states(self.recurrent[:, None], succ)]
        return cum.tolist(), succ.tolist(), nxt.tolist()

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, states they were drawn from), n of each, starting from a state drawn from π."""
        cum_pi = np.cumsum(self.stationary[self.recurrent])
        state = min(int(np.searchsorted(cum_pi, rng.random() * cum_pi[-1], "right")), len(cum_pi) - 1)
        cum, succ, nxt = self._tables
        tokens, states = [0] * n, [0] * n
        for i, u in enumerate(rng.random(n).tolist()):  # sequential by nature: pure Python is fastest
            j = bisect.bisect_right(cum[state], u)
            tokens[i], states[i] = succ[state][j], state
            state = nxt[state][j]
        return np.asarray(tokens, dtype=np.int64), self.recurrent[np.asarray(states, dtype=np.int64)]


def _successors(vocab: int, n_states: int, branching: int, zipf: float,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    log_w = -zipf * np.log(np.arange(1, vocab + 1, dtype=np.float64))
    succ = np.empty((n_states, branching), dtype=np.int64)
    for lo in range(0, n_states, CHUNK):
        keys = log_w + rng.gumbel(size=(min(CHUNK, n_states - lo), vocab))
        top = np.argpartition(-keys, branching - 1, axis=1)[:, :branching] if branching < vocab else \
            np.broadcast_to(np.arange(vocab), keys.shape)
        succ[lo:lo + len(keys)] = np.sort(top, axis=1)
    probs = rng.exponential(size=succ.shape)  # normalized: a flat Dirichlet draw per state
    return succ, probs / probs.sum(axis=1, keepdims=True)


def _closed_class(next_state: np.ndarray) -> np.ndarray:
    """States of the largest closed communicating class of the successor graph."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    n, b = next_state.shape
    rows = np.repeat(np.arange(n), b)
    graph = csr_matrix((np.ones(n * b), (rows, next_state.ravel())), shape=(n, n))
    _, label = connected_components(graph, directed=True, connection="strong")
    leaks = np.unique(label[rows][label[rows] != label[next_state.ravel()]])
    closed = np.setdiff1d(np.unique(label), leaks)  # classes no edge leaves
    sizes = np.bincount(label)[closed]
    _, first = np.unique(label, return_index=True)  # smallest state of each class
    largest = closed[sizes == sizes.max()]
    return np.flatnonzero(label == largest[np.argmin(first[largest])])


def stationary_distribution(rows: np.ndarray, cols: np.ndarray, probs: np.ndarray,
                            n: int) -> tuple[np.ndarray, float]:
    """π of an irreducible chain given as sparse (row, col, prob) triples; returns (π, ‖πP − π‖₁)."""
    from scipy.sparse import csr_matrix

    p = csr_matrix((probs, (rows, cols)), shape=(n, n))
    if n <= DENSE_STATES:
        a = p.T.toarray() - np.eye(n)  # (P^T − I) π = 0, one equation replaced by Σπ = 1
        a[-1] = 1.0
        rhs = np.zeros(n)
        rhs[-1] = 1.0
        pi = np.linalg.solve(a, rhs)
    else:
        pi, pt = np.full(n, 1.0 / n), p.T.tocsr()
        for _ in range(200_000):
            new = 0.5 * (pi + pt @ pi)
            new /= new.sum()
            done = np.abs(new - pi).sum() < 1e-15
            pi = new
            if done:
                break
    pi = np.clip(pi, 0.0, None)
    pi /= pi.sum()
    return pi, float(np.abs(p.T @ pi - pi).sum())


def build_chain(vocab_size: int, order: int, branching: int, zipf: float, seed: int) -> MarkovChain:
    """Draw the chain of a ``markov`` task and compute π and its entropy rate exactly."""
    n_states = vocab_size ** order
    if branching > vocab_size:
        raise SpecError(f"task.branching: at most task.vocab_size ({vocab_size}), got {branching}")
    if n_states > MAX_STATES or n_states * vocab_size > MAX_DRAWS:
        raise SpecError(f"task.order: vocab_size ** order = {n_states:,} states and states × vocab_size = "
                        f"{n_states * vocab_size:,} draws; at most {MAX_STATES:,} and {MAX_DRAWS:,}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x3A7C, 0]))
    succ, probs = _successors(vocab_size, n_states, branching, zipf, rng)
    nxt = (np.arange(n_states)[:, None] % vocab_size ** (order - 1)) * vocab_size + succ  # (S, b)
    recurrent = _closed_class(nxt)
    index = np.full(n_states, -1, dtype=np.int64)
    index[recurrent] = np.arange(len(recurrent))
    local_rows = np.repeat(np.arange(len(recurrent)), branching)
    local_cols = index[nxt[recurrent]].ravel()  # all ≥ 0: the class is closed
    pi_local, residual = stationary_distribution(local_rows, local_cols, probs[recurrent].ravel(),
                                                 len(recurrent))
    pi = np.zeros(n_states)
    pi[recurrent] = pi_local
    with np.errstate(divide="ignore", invalid="ignore"):
        h_state = -np.where(probs > 0, probs * np.log(probs), 0.0).sum(axis=1)  # nats, per state
    rate = float(pi_local @ h_state[recurrent])
    return MarkovChain(vocab_size, order, succ, probs, recurrent, pi, rate, residual)


def load(opts: dict[str, Any]) -> TaskData:
    """Draw the chain from ``task.seed``, then a train and a test stream, each stationary."""
    chain = build_chain(opts["vocab_size"], opts["order"], opts["branching"], opts["zipf"], opts["seed"])
    train_rng = np.random.default_rng(np.random.SeedSequence([opts["seed"], 0x3A7C, 1]))
    test_rng = np.random.default_rng(np.random.SeedSequence([opts["seed"], 0x3A7C, 2]))
    tokens_train, states_train = chain.sample(opts["train_size"], train_rng)
    tokens_test, states_test = chain.sample(opts["test_size"], test_rng)
    info = {"name": "markov", "entropy_rate": chain.entropy_rate, "entropy_rate_bits": chain.entropy_rate
            / np.log(2), "n_states": len(chain.recurrent), "stationary_residual": chain.stationary_residual,
            "n_train": opts["train_size"], "n_test": opts["test_size"], "chain": chain,
            "states_train": states_train, "states_test": states_test}
    return TaskData(kind="lm", tokens_train=tokens_train, tokens_test=tokens_test,
                    vocab_size=opts["vocab_size"], info=info)
