"""In-context tasks against independent truths: the Bayes-optimal predictor against a brute-force posterior,
the prefix-matching score of a hand-built induction head and of a uniform head, the optimal few-shot accuracy
against simulation, per-domain losses against a direct computation, and windows that respect sequences."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from overparam.data import fewshot, icl_markov
from overparam.models import Shape, family_module
from overparam.train import lm
from overparam.train.lm_measures import (
    icl_numbers,
    icl_positions,
    induction_by_head,
    induction_sequences,
    prefix_matching,
    uniform_prefix_matching,
)

torch.set_num_threads(1)

# -- icl-markov: the exact references -----------------------------------------------------------------


def brute_force_predictive(seq: np.ndarray, t: int, alpha: float, grid: int = 700) -> np.ndarray:
    """P(x_{t+1} = j | x_0..x_t) for K = 2 by integrating the likelihood over a grid of both rows.

    Row i is (p_i, 1 − p_i) with p_i = P(i → 0) ~ Beta(α, α); the 2-D integral is done as is
    (no use of the rows' independence), midpoint rule on a grid × grid lattice in θ, p = (1 − cos πθ)/2,
    where the Beta(α, α) density times dp/dθ is ∝ sin(πθ)^(2α − 1): bounded for α ≥ 1/2."""
    theta = (np.arange(grid) + 0.5) / grid
    p = (1 - np.cos(np.pi * theta)) / 2
    p0, p1 = np.meshgrid(p, p, indexing="ij")  # (grid, grid): rows 0 and 1
    s = np.sin(np.pi * theta) ** (2 * alpha - 1)
    prior = np.outer(s, s)
    like = np.ones_like(p0)
    for a, b in zip(seq[:t], seq[1:t + 1], strict=True):
        row = p0 if a == 0 else p1
        like = like * (row if b == 0 else 1 - row)
    w = prior * like
    row = p0 if seq[t] == 0 else p1
    to_zero = float((w * row).sum() / w.sum())
    return np.array([to_zero, 1 - to_zero])


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_bayes_predictor_equals_a_brute_force_posterior_on_two_states(alpha):
    seqs = icl_markov.sample_sequences(2, 2, alpha, 7, seed=4, split=2)
    bayes = icl_markov.bayes_losses(seqs, 2, alpha)
    for n, seq in enumerate(seqs):
        for t in range(6):
            pred = brute_force_predictive(seq, t, alpha)
            assert bayes[n, t] == pytest.approx(-math.log(pred[seq[t + 1]]), abs=2e-4)


def test_bayes_predictor_equals_a_monte_carlo_posterior_on_three_states():
    """K = 3: prior draws of the whole matrix weighted by the likelihood (self-normalized importance sampling)."""
    alpha, draws = 0.7, 400_000
    seq = np.array([0, 2, 2, 1, 0, 2, 1, 1, 2])
    rng = np.random.default_rng(0)
    p = rng.dirichlet([alpha] * 3, size=(draws, 3))  # (draws, 3 rows, 3)
    like = np.ones(draws)
    bayes = icl_markov.bayes_losses(seq[None], 3, alpha)[0]
    for t in range(len(seq) - 1):
        w = like / like.sum()
        pred = float((w * p[:, seq[t], seq[t + 1]]).sum())
        assert bayes[t] == pytest.approx(-math.log(pred), abs=0.02)
        like = like * p[:, seq[t], seq[t + 1]]


def test_unigram_and_uniform_references_by_hand():
    seq = np.array([[1, 1, 0, 1]])
    uni = icl_markov.unigram_losses(seq, 2, 1.0)[0]
    # after x0 = 1: counts (0, 1) -> p(1) = 2/3; after 1,1: p(0) = 1/4; after 1,1,0: p(1) = 3/5
    np.testing.assert_allclose(uni, -np.log([2 / 3, 1 / 4, 3 / 5]))
    refs = icl_markov.references(seq, 2, 1.0)
    np.testing.assert_allclose(refs["uniform"], np.log(2))
    # Bayes: t=0 no transitions: 1/2; t=1 after 1->1: p(1->0) = 1/3; t=2 after 1->1, 1->0: p(0->1) = 1/2
    np.testing.assert_allclose(refs["bayes"][0], -np.log([1 / 2, 1 / 3, 1 / 2]))


def test_sequences_are_deterministic_prefixes_with_their_own_chains():
    a = icl_markov.sample_sequences(300, 3, 1.0, 40, seed=1, split=1)
    b = icl_markov.sample_sequences(700, 3, 1.0, 40, seed=1, split=1)
    np.testing.assert_array_equal(a, b[:300])
    assert not np.array_equal(a, icl_markov.sample_sequences(300, 3, 1.0, 40, seed=1, split=2))
    # sparse rows (α small) make sequences far more predictable in context than dense ones
    sparse = icl_markov.bayes_losses(icl_markov.sample_sequences(400, 3, 0.1, 40, 0, 1), 3, 0.1)
    dense = icl_markov.bayes_losses(icl_markov.sample_sequences(400, 3, 10.0, 40, 0, 1), 3, 10.0)
    assert sparse[:, -5:].mean() < 0.6 * dense[:, -5:].mean()
    assert dense[:, 0].mean() == pytest.approx(math.log(3), abs=0.1)


def test_icl_score_positions_and_paired_gap():
    assert icl_positions(64) == ([6, 7, 8, 9, 10, 11], list(range(58, 64)))
    assert icl_positions(5) == ([1], [4])
    assert icl_positions(10) == ([1], [9]) and icl_positions(20) == ([2, 3], [18, 19])
    losses = np.tile(np.linspace(2.0, 1.0, 20), (4, 1))
    losses[:, -1] += np.array([0.0, 0.1, 0.2, 0.3])
    bayes = np.full_like(losses, 0.9)
    out = icl_numbers(losses, bayes)
    early, late = icl_positions(20)
    assert out["icl_score"] == pytest.approx(losses[:, late].mean() - losses[0, early].mean())
    assert out["bayes_gap"] == pytest.approx(1.0 + 0.15 - 0.9)
    assert out["bayes_gap_se"] == pytest.approx(np.std([0.0, 0.1, 0.2, 0.3], ddof=1) / 2)


# -- induction heads ------------------------------------------------------------------------------------


def hand_built_induction(vocab: int, context: int):
    """A 2-layer, 1-head GPT wired as an induction circuit (Olsson et al. 2022, Elhage et al. 2021).

    Residual dims: [token one-hot | position one-hot | previous token one-hot]. Layer 0's head attends
    from position t to t − 1 (query: position t mapped to t − 1; key: position) and writes the token it
    reads into the previous-token block; layer 1's head attends from t to every s whose previous token is
    t's token (query: token block; key: previous-token block). Every LayerNorm sees three (or two) ones at
    fixed positions, so it is the same affine map at every position, undone by the qkv biases."""
    d = 2 * vocab + context
    cfg = {"family": "gpt", "n_layer": 2, "d_model": d, "n_head": 1, "context": context, "tied": True}
    model = family_module("gpt").build(cfg, Shape((), vocab, vocab), 0)
    tok, pos, prev = slice(0, vocab), slice(vocab, vocab + context), slice(vocab + context, d)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for ln in (model.ln_f, *(m for b in model.blocks for m in (b.ln1, b.ln2))):
            ln.weight.fill_(1.0)
        model.wte.weight[:, tok] = torch.eye(vocab)
        model.wpe.weight[:, pos] = torch.eye(context)
        for layer, ones in ((0, 2), (1, 3)):
            mu = ones / d
            sigma = math.sqrt((ones * (1 - mu) ** 2 + (d - ones) * mu ** 2) / d)
            sharp = 30 * sigma ** 2 * math.sqrt(d)  # score 30 on the intended key
            attn = model.blocks[layer].attn
            w = attn.qkv.weight  # rows: q (d), k (d), v (d)
            q, k, v = w[:d], w[d:2 * d], w[2 * d:]
            if layer == 0:
                for t in range(1, context):
                    q[vocab + t - 1, vocab + t] = sharp  # query at t looks for position t - 1
                k[pos, pos] = torch.eye(context)
                v[prev, tok] = sigma * torch.eye(vocab)  # read the token, write it as "previous token"
                attn.proj.weight.copy_(torch.eye(d))
            else:
                q[tok, tok] = sharp * torch.eye(vocab)  # query: my token
                k[tok, prev] = torch.eye(vocab)  # key: the token before me
            ones_vec = torch.ones(d)
            attn.qkv.bias.copy_(mu / sigma * (w @ ones_vec))  # undo LayerNorm's mean shift
    return model.eval()


def test_prefix_matching_is_high_for_a_hand_built_induction_head_and_near_zero_for_a_uniform_one():
    vocab, context = 64, 32
    model = hand_built_induction(vocab, context)
    scores = induction_by_head(model, vocab, context)  # (2, 1)
    period = context // 2
    assert scores[1, 0] == pytest.approx((period - 0.5) / period, abs=1e-3)  # s = 0 ties once at t = P
    assert scores[0, 0] < 0.05  # the previous-token head does not prefix-match
    cfg = {"family": "gpt", "n_layer": 1, "d_model": 16, "n_head": 2, "context": context, "tied": True}
    uniform = family_module("gpt").build(cfg, Shape((), vocab, vocab), 0).eval()
    with torch.no_grad():
        uniform.blocks[0].attn.qkv.weight[:32].zero_()  # queries and keys 0: every score equal
        uniform.blocks[0].attn.qkv.bias[:32].zero_()
    flat = induction_by_head(uniform, vocab, context)
    closed = np.mean(1 / np.arange(period + 1, context + 1))  # one earlier match per query, weight 1/(t + 1)
    np.testing.assert_allclose(flat, closed, atol=1e-6)
    assert closed < 0.05
    ids = induction_sequences(vocab, context)
    assert uniform_prefix_matching(ids, period) == pytest.approx(closed)


def test_prefix_matching_counts_every_earlier_copy():
    ids = np.array([[0, 1, 0, 1, 0, 1]])  # period 2, three copies
    attn = np.zeros((1, 1, 1, 6, 6))
    attn[0, 0, 0, 4, 1] = 0.5  # query t = 4 (token 0): keys 1 and 3 follow a 0
    attn[0, 0, 0, 4, 3] = 0.25
    attn[0, 0, 0, 4, 0] = 0.25
    score = prefix_matching(attn, ids, period=2)
    assert score[0, 0] == pytest.approx(0.75 / 4)  # queries t = 2..5; only t = 4 attends to matches


# -- few-shot --------------------------------------------------------------------------------------------


def test_optimal_few_shot_accuracy_matches_simulation():
    symbols, labels, n = 6, 3, 40_000
    tokens, syms = fewshot.sample_prompts(n, symbols, labels, 21, seed=3, split=1)
    rng = np.random.default_rng(1)
    for k in (0, 1, 3, 8):
        queries, answers = tokens[:, 2 * k], tokens[:, 2 * k + 1] - symbols
        guess = rng.integers(0, labels, size=n)
        for j in range(k):  # the optimal learner: copy the label of an earlier example of the query's symbol
            hit = tokens[:, 2 * j] == queries
            guess = np.where(hit, tokens[:, 2 * j + 1] - symbols, guess)
        acc = (guess == answers).mean()
        formula = fewshot.optimal_accuracy(k, symbols, labels)
        assert abs(acc - formula) < 4 * math.sqrt(formula * (1 - formula) / n)
        per_prompt = fewshot.optimal_on(syms, [k], labels)[:, 0].mean()
        assert abs(per_prompt - formula) < 4 * math.sqrt(formula * (1 - formula) / n)
    assert fewshot.optimal_accuracy(0, symbols, labels) == pytest.approx(1 / labels)


def test_fewshot_prompts_keep_one_map_per_sequence():
    tokens, syms = fewshot.sample_prompts(200, 5, 4, 30, seed=0, split=2)
    for row in tokens:
        seen: dict[int, int] = {}
        for s, lab in zip(row[0::2], row[1::2], strict=False):
            assert 5 <= lab < 9
            assert seen.setdefault(int(s), int(lab)) == lab  # a symbol keeps its label within a prompt
    assert (tokens[:, 0::2][:, :syms.shape[1]] == syms[:, :tokens[:, 0::2].shape[1]]).all()


# -- windows respect sequences -----------------------------------------------------------------------------


def test_windows_start_at_sequence_starts_and_streams_are_unchanged():
    stride, context = 9, 8
    for offsets in lm.window_offsets(90, context, 16, 5, seed=2, stride=stride):
        assert (offsets % stride == 0).all() and (offsets < 90).all()
    plain = list(lm.window_offsets(500, context, 4, 3, seed=2))
    again = list(lm.window_offsets(500, context, 4, 3, seed=2, stride=1))
    assert all(torch.equal(a, b) for a, b in zip(plain, again, strict=True))
    np.testing.assert_array_equal(lm.eval_offsets(90, context, stride=stride), np.arange(10) * stride)
    kept = lm.eval_offsets(900, context, max_tokens=40, stride=stride)
    assert len(kept) == 5 and (kept % stride == 0).all() and kept[-1] == 99 * stride
