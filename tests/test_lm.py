"""Language models: text and markov tasks, the gpt family, the LM trainer, the LM demo spec.

Independent truths: parameter counts written out by hand and checked against the built model;
the Markov entropy rate against a block-entropy enumeration, a second stationary solver and
the empirical log-loss of the sampled stream; causality by perturbing a future token.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from overparam.data import markov, text
from overparam.errors import DataError, SpecError
from overparam.models import gpt
from overparam.models.base import Shape, count_trainable
from overparam.options import resolve_section
from overparam.spec import Spec, load_spec, resolve_config
from overparam.train import lm
from overparam.train.run import run_size, train_run

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


def _gpt(**kw):
    return {"family": "gpt", "n_layer": 2, "d_model": 64, "n_head": 4, "context": 128, "tied": True, **kw}


def _markov(**kw):
    return resolve_section("task", markov.OPTIONS, {"kind": "markov", **kw})


def _text(**kw):
    return resolve_section("task", text.OPTIONS, {"kind": "text", **kw})


# --- gpt: parameter counts, FLOPs, causality -------------------------------------------------

# (config, vocab, total, non-embedding), written out from the formulas in models/gpt.py:
# block = 12d² + 13d; non-embedding = L·block + 2d; embeddings = V·d (×2 untied) + T·d.
REFERENCE = [
    (_gpt(), 256, 124_672, 100_096),  # 2·(49152 + 832) + 128; + 256·64 + 128·64
    (_gpt(n_layer=3, d_model=48, n_head=3, context=32, tied=False), 103, 96_336, 84_912),
    (_gpt(n_layer=1, d_model=16, n_head=2, context=8), 8, 3_568, 3_312),  # 3072 + 208 + 32; + 8·16 + 8·16
]


@pytest.mark.parametrize("cfg,vocab,total,nonemb", REFERENCE)
def test_parameter_counts_are_exact(cfg, vocab, total, nonemb):
    shape = Shape((), vocab, vocab)
    model = gpt.build(cfg, shape, seed=0)
    assert gpt.count_params(cfg, shape) == total == count_trainable(model)
    embeddings = {"wte.weight", "wpe.weight", "head.weight"}
    built_nonemb = sum(p.numel() for n, p in model.named_parameters() if n not in embeddings)
    assert gpt.nonembedding_params(cfg, shape) == nonemb == built_nonemb
    assert ("head.weight" in dict(model.named_parameters())) == (not cfg["tied"])


def test_flops_per_token_formula():
    cfg, shape = _gpt(), Shape((), 256, 256)
    # 6·N_nonemb + 6·L·T·d + 6·d·V = 600,576 + 98,304 + 98,304
    assert gpt.flops_per_example(cfg, shape) == 797_184


def test_n_head_must_divide_d_model():
    with pytest.raises(SpecError, match="model.n_head"):
        gpt.build(_gpt(n_head=5), Shape((), 256, 256), seed=0)


def test_init_is_deterministic_and_gpt2_scaled():
    shape = Shape((), 50, 50)
    a, b = gpt.build(_gpt(), shape, seed=3), gpt.build(_gpt(), shape, seed=3)
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), name
    assert not torch.equal(a.wte.weight, gpt.build(_gpt(), shape, seed=4).wte.weight)
    proj = a.blocks[0].mlp.proj.weight
    assert abs(proj.std().item() - 0.02 / math.sqrt(4)) < 0.002
    assert abs(a.blocks[0].mlp.fc.weight.std().item() - 0.02) < 0.002


def test_causality_future_tokens_do_not_change_earlier_logits():
    model = gpt.build(_gpt(context=16), Shape((), 32, 32), seed=1).eval()
    idx = torch.randint(0, 32, (2, 16), generator=torch.Generator().manual_seed(0))
    changed = idx.clone()
    changed[:, 9] = (changed[:, 9] + 1) % 32
    with torch.no_grad():
        before, after = model(idx), model(changed)
    assert torch.equal(before[:, :9], after[:, :9])
    assert not torch.allclose(before[:, 9:], after[:, 9:])
    maps = model.attention_maps(idx)  # the weights the forward pass uses, recomputed by hand
    assert len(maps) == 2 and all(m.shape == (2, 4, 16, 16) for m in maps)
    assert all(torch.all(m.triu(1) == 0) and torch.allclose(m.sum(-1), torch.ones(2, 4, 16)) for m in maps)
    block, x = model.blocks[0], model.hidden_states(idx)[0]
    v = block.attn.qkv(block.ln1(x))[..., 128:].view(2, 16, 4, 16).transpose(1, 2)  # (B, nh, T, hs)
    by_hand = block.attn.proj((maps[0] @ v).transpose(1, 2).reshape(2, 16, 64))
    assert torch.allclose(by_hand, block.attn(block.ln1(x)), atol=1e-6)


# --- markov: the entropy rate is exact ---------------------------------------------------------

def test_entropy_rate_matches_block_entropy_enumeration():
    """For a stationary order-k chain, H(X_1..X_n) − H(X_1..X_{n−1}) = H exactly once n > k."""
    chain = markov.build_chain(vocab_size=3, order=2, branching=2, zipf=1.0, seed=5)
    pi, v = chain.stationary, chain.vocab_size

    def prob(seq: tuple[int, ...]) -> float:  # P(x_1..x_n), the first k tokens being the start state
        s = seq[0] * v + seq[1]
        p = pi[s]
        for t in seq[2:]:
            row = list(chain.successors[s])
            if t not in row:
                return 0.0
            p *= chain.probs[s][row.index(t)]
            s = (s % v) * v + t
        return p

    def block(n: int) -> float:
        ps = [prob(seq) for seq in itertools.product(range(v), repeat=n)]
        return -sum(p * math.log(p) for p in ps if p > 0)

    assert abs(sum(prob(s) for s in itertools.product(range(v), repeat=5)) - 1) < 1e-12
    assert block(6) - block(5) == pytest.approx(chain.entropy_rate, abs=1e-10)
    assert block(4) - block(3) == pytest.approx(chain.entropy_rate, abs=1e-10)


def test_stationary_solvers_agree_and_pi_is_invariant(monkeypatch):
    dense = markov.build_chain(vocab_size=6, order=2, branching=3, zipf=1.0, seed=2)
    monkeypatch.setattr(markov, "DENSE_STATES", 1)  # force power iteration
    power = markov.build_chain(vocab_size=6, order=2, branching=3, zipf=1.0, seed=2)
    assert np.abs(dense.stationary - power.stationary).sum() < 1e-11
    assert dense.entropy_rate == pytest.approx(power.entropy_rate, abs=1e-12)
    # π P = π, written out with loops over the successor table
    n = len(dense.stationary)
    moved = np.zeros(n)
    for s in range(n):
        for t, p in zip(dense.successors[s], dense.probs[s], strict=True):
            moved[(s % 6) * 6 + t] += dense.stationary[s] * p
    assert np.abs(moved - dense.stationary).sum() < 1e-12
    assert dense.stationary.sum() == pytest.approx(1.0)


def test_markov_stream_log_loss_matches_entropy_rate():
    data = markov.load(_markov(vocab_size=16, order=2, branching=3, train_size=100_000, test_size=1000))
    chain, states = data.info["chain"], data.info["states_train"]
    col = np.array([np.searchsorted(chain.successors[s], t)
                    for s, t in zip(states, data.tokens_train, strict=True)])
    assert np.all(chain.successors[states, col] == data.tokens_train)
    nll = -np.log(chain.probs[states, col])
    tolerance = 4 * nll.std() / math.sqrt(len(nll)) + 0.01  # CLT, plus slack for autocorrelation
    assert nll.mean() == pytest.approx(data.info["entropy_rate"], abs=tolerance)
    # states follow the tokens: state i+1 = (state i, token i)
    assert np.array_equal(chain.next_states(states[:-1], data.tokens_train[:-1]), states[1:])


def test_markov_is_deterministic_and_train_size_is_a_prefix():
    small = markov.load(_markov(vocab_size=8, order=1, branching=2, train_size=500, test_size=300, seed=1))
    big = markov.load(_markov(vocab_size=8, order=1, branching=2, train_size=900, test_size=300, seed=1))
    assert np.array_equal(small.tokens_train, big.tokens_train[:500])
    assert np.array_equal(small.tokens_test, big.tokens_test)
    assert small.info["entropy_rate"] == big.info["entropy_rate"]
    other = markov.load(_markov(vocab_size=8, order=1, branching=2, train_size=500, test_size=300, seed=2))
    assert not np.array_equal(small.tokens_train, other.tokens_train)


def test_markov_rejects_impossible_sizes():
    with pytest.raises(SpecError, match="task.branching"):
        markov.load(_markov(vocab_size=4, branching=5))
    with pytest.raises(SpecError, match="task.order"):
        markov.load(_markov(vocab_size=1024, order=3))


# --- training ---------------------------------------------------------------------------------

def _markov_config(**train):
    return resolve_config({
        "task": {"kind": "markov", "vocab_size": 8, "order": 1, "branching": 2, "train_size": 20_000,
                 "test_size": 4_000, "seed": 0},
        "model": {"family": "gpt", "n_layer": 1, "d_model": 32, "n_head": 2, "context": 16},
        "train": {"optimizer": "adamw", "lr": 1e-2, "steps": 150, "batch_size": 16, "warmup_steps": 10,
                  "schedule": "cosine", "eval_every": 50, **train}})


def test_tiny_gpt_learns_markov_down_to_the_entropy_rate():
    from overparam.data import load_task

    cfg = _markov_config()
    task = load_task(cfg["task"])
    rate = task.info["entropy_rate"]
    # Order 1: every position of a window sees its state (the token it sits on), so the best
    # possible loss is the entropy rate itself; the test stream's own average is within ~0.01.
    result = train_run(cfg, task, CPU)
    first, last = result.curve[0][1], result.metrics
    assert result.status == "done"
    assert first["test_loss"] > rate + 1.0  # the init knows nothing (tied: it favours repeats)
    assert rate - 0.03 < last["test_loss"] < rate + 0.03  # measured: 0.5268 vs 0.5248
    assert last["entropy_rate"] == rate and last["train_error"] is None and last["test_error"] is None
    assert last["tokens"] == 150 * 16 * 16
    params, flops = run_size(cfg, task)
    assert params == gpt.count_params(cfg["model"], Shape((), 8, 8))
    assert flops == gpt.flops_per_example(cfg["model"], Shape((), 8, 8)) * 150 * 16 * 16


def test_training_is_deterministic():
    from overparam.data import load_task

    cfg = _markov_config(steps=20, eval_every=0, dropout=0.1)
    task = load_task(cfg["task"])
    a, b = train_run(cfg, task, CPU), train_run(cfg, task, CPU)
    assert a.metrics["test_loss"] == b.metrics["test_loss"]
    assert all(torch.equal(a.state[k], b.state[k]) for k in a.state)
    cfg["seed"] = 1
    assert train_run(cfg, task, CPU).metrics["test_loss"] != a.metrics["test_loss"]


def test_divergence_is_reported():
    from overparam.data import load_task

    cfg = _markov_config(steps=5, lr=1e6, optimizer="sgd", warmup_steps=0, eval_every=1)
    result = train_run(cfg, load_task(cfg["task"]), CPU)
    assert result.status == "diverged" and result.metrics["diverged_at"] >= 1 and result.state is None


def test_window_sampler_is_pure_and_in_range():
    a = list(lm.window_offsets(1000, 16, 8, 5, seed=7))
    b = list(lm.window_offsets(1000, 16, 8, 5, seed=7))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert all(int(x.min()) >= 0 and int(x.max()) <= 1000 - 17 for x in a)
    tokens = torch.arange(1000)
    x, y = lm.windows(tokens, a[0], 16)
    assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(x[:, 0], a[0])
    offsets = lm.eval_offsets(1_000_000, 64, max_tokens=4096)
    assert len(offsets) == 64 and int(offsets[-1]) + 65 <= 1_000_000
    assert torch.equal(lm.eval_offsets(100, 10), torch.arange(9) * 10)  # tiles: 9 windows of 11 tokens


# --- text: corpora ---------------------------------------------------------------------------

def test_embedded_corpus_loads_without_shared_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = text.load(_text())
    assert data.kind == "lm" and data.vocab_size == 256 and data.info["source"] == text.EMBEDDED
    assert len(data.tokens_train) > 300_000 and data.tokens_train.dtype == np.int64
    n = len(data.tokens_train) + len(data.tokens_test)
    assert len(data.tokens_train) == int(n * 0.9)
    assert text.decode(data.tokens_train[:5000], data.info) in text.embedded_corpus()
    chars = text.load(_text(tokenizer="char", train_size=1000, test_size=500))
    assert chars.vocab_size == len(set(text.embedded_corpus())) and len(chars.tokens_train) == 1000
    assert len(chars.tokens_test) == 500


@pytest.mark.skipif(not SHAKESPEARE.exists(), reason="../shared/data not present")
def test_shakespeare_file_and_folder(tmp_path):
    data = text.load(_text(path=str(SHAKESPEARE), tokenizer="char"))
    assert data.vocab_size == 65 and len(data.tokens_train) == 1_003_854
    folder = tmp_path / "corpus"
    (folder / "b").mkdir(parents=True)
    (folder / "b" / "2.txt").write_text("second")
    (folder / "1.txt").write_text("first ")
    (folder / ".hidden").write_bytes(b"\x00\x01")  # skipped
    both = text.load(_text(path=str(folder), val_fraction=0.25))
    assert text.decode(np.concatenate([both.tokens_train, both.tokens_test]), both.info) == "first second"


def test_bpe_tokenizer_round_trips(tmp_path):
    pytest.importorskip("tokenizers")
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat on the mat. " * 200 + "naïve café ✓\n")
    data = text.load(_text(path=str(corpus), tokenizer="bpe", vocab_size=300))
    assert data.vocab_size <= 300 and len(data.tokens_train) < corpus.stat().st_size
    whole = np.concatenate([data.tokens_train, data.tokens_test])
    assert text.decode(whole, data.info) == corpus.read_text()


@pytest.mark.parametrize("content,message", [
    (b"", "is empty"),
    (b"PNG\x00\x00\x00\x10binary", "binary file (NUL byte at offset 3)"),
    (b"\x01\x02\x03\x04\x05\x06\x07hello", "binary file"),
    (b"hello \xff world", "not UTF-8 text (invalid start byte at byte offset 6)"),
])
def test_bad_corpora_raise_data_errors(tmp_path, content, message):
    path = tmp_path / "corpus.txt"
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        text.load(_text(path=str(path)))
    assert message in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_empty_and_short_corpora(tmp_path):
    with pytest.raises(DataError, match="no such file or folder: .*nowhere"):
        text.load(_text(path=str(tmp_path / "nowhere")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty folder"):
        text.load(_text(path=str(tmp_path / "empty")))
    short = tmp_path / "short.txt"
    short.write_text("a few words of text, far fewer than the context " * 2)
    cfg = resolve_config({"task": {"kind": "text", "path": str(short)},
                          "model": {"family": "gpt", "context": 64}, "train": {"steps": 1}})
    from overparam.data import load_task

    with pytest.raises(DataError, match=r"short.txt: too short for model.context = 64"):
        train_run(cfg, load_task(cfg["task"]), CPU)
    with pytest.raises(SpecError, match="task.train_size"):
        text.load(_text(path=str(short), train_size=10_000))


# --- specs ----------------------------------------------------------------------------------

def test_spec_validates_gpt_on_text_and_rejects_unknown_keys():
    spec = Spec({"name": "lm", "task": {"kind": "text", "tokenizer": "char"},
                 "model": {"family": "gpt", "n_layer": 1, "d_model": 32, "n_head": 2, "context": 32},
                 "vary": {"model.d_model": [32, 64], "train.steps": {"geometric": [10, 1000], "count": 3}},
                 "train": {"optimizer": "adamw", "lr": 3e-3}})
    assert len(spec.runs()) == 6 and spec.size_axes() == ["model.d_model"]
    with pytest.raises(SpecError, match=r"model\.d_modle: unknown key"):
        Spec({"task": {"kind": "text"}, "model": {"family": "gpt", "d_modle": 64}})
    with pytest.raises(SpecError, match=r"task\.tokeniser: unknown key"):
        Spec({"task": {"kind": "text", "tokeniser": "char"}, "model": {"family": "gpt"}})
    with pytest.raises(SpecError, match=r"task\.tokenizer: must be one of"):
        Spec({"task": {"kind": "text", "tokenizer": "word"}, "model": {"family": "gpt"}})
    with pytest.raises(SpecError, match=r"vary\.model\.width: unknown key"):
        Spec({"task": {"kind": "markov"}, "model": {"family": "gpt"}, "vary": {"model.width": [1, 2]}})


@pytest.mark.parametrize("name", ["lm-scaling.yaml", "markov-scaling.yaml"])
def test_example_specs_validate(name):
    spec = load_spec(ROOT / "examples" / name)
    assert spec.base["model"]["family"] == "gpt" and len(spec.runs()) >= 4


@pytest.mark.parametrize("quick", [True, False])
def test_demo_lm_spec_validates(quick):
    from overparam.demo_lm import lm_scaling_spec

    spec = Spec(lm_scaling_spec(quick))
    assert spec.base["task"]["kind"] == "text" and spec.base["task"]["path"] is None
    assert {"model.d_model", "train.steps"} <= set(spec.axes)
