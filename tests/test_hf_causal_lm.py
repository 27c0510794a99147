"""``hf-causal-lm``: a transformers causal LM built from a config: exact counts, spec checks, a scaling sweep
through train/lm.py, and probe / attention on its runs."""

import json
import math

import pytest
import torch
import yaml

pytest.importorskip("transformers", reason="hf-causal-lm needs the [hf] extra (transformers)")

from overparam.cli import main  # noqa: E402
from overparam.errors import SpecError  # noqa: E402
from overparam.models import gpt  # noqa: E402
from overparam.models import hf_causal_lm as hf  # noqa: E402
from overparam.models.base import Shape  # noqa: E402
from overparam.spec import Spec  # noqa: E402
from overparam.store import Store  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
V, T = 61, 16
SHAPE = Shape((), V, V)


def gpt2(n_layer=2, n_embd=32, n_head=4):
    return {"family": "hf-causal-lm", "context": T,
            "config": {"model_type": "gpt2", "n_layer": n_layer, "n_embd": n_embd, "n_head": n_head}}


@pytest.mark.parametrize("n_layer, d", [(1, 16), (2, 32), (3, 24)])
def test_gpt2_counts_and_flops_are_the_gpt_familys(n_layer, d):
    same = {"n_layer": n_layer, "d_model": d, "n_head": 4, "context": T, "tied": True}
    assert hf.count_params(gpt2(n_layer, d), SHAPE) == gpt.count_params(same, SHAPE) \
        == V * d + T * d + n_layer * (12 * d * d + 13 * d) + 2 * d
    assert hf.nonembedding_params(gpt2(n_layer, d), SHAPE) == gpt.nonembedding_params(same, SHAPE)
    assert hf.flops_per_example(gpt2(n_layer, d), SHAPE) == gpt.flops_per_example(same, SHAPE)


@pytest.mark.parametrize("tied", [False, True])
def test_llama_counts_in_closed_form(tied):
    d, L, inner = 32, 2, 48
    cfg = {"family": "hf-causal-lm", "context": T,
           "config": {"model_type": "llama", "num_hidden_layers": L, "hidden_size": d, "num_attention_heads": 4,
                      "num_key_value_heads": 4, "intermediate_size": inner, "tie_word_embeddings": tied}}
    # embeddings V·d (and an untied unembedding V·d); per layer q, k, v, o (4d²), gate, up, down (3dI),
    # two RMSNorm gains (2d); a final RMSNorm (d); rotary positions have no parameters
    want = V * d * (1 if tied else 2) + L * (4 * d * d + 3 * d * inner + 2 * d) + d
    assert hf.count_params(cfg, SHAPE) == want
    assert hf.nonembedding_params(cfg, SHAPE) == L * (4 * d * d + 3 * d * inner + 2 * d) + d
    model = hf.build(cfg, SHAPE, seed=0)
    assert sum(p.numel() for p in model.parameters()) == want  # what the trainer sees and updates


def test_same_seed_same_weights():
    a, b, c = (hf.build(gpt2(), SHAPE, seed).state_dict() for seed in (0, 0, 1))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["net.transformer.h.0.attn.c_attn.weight"], c["net.transformer.h.0.attn.c_attn.weight"])
    assert hf.build(gpt2(), SHAPE, 0).net.config.n_positions == T  # model.context sets the positions


@pytest.mark.parametrize("config, expected", [
    ({"n_layer": 2}, "model.config.model_type: missing"),
    ({"model_type": "gpt2", "n_embed": 32}, "model.config.n_embed: not a gpt2 config key"),
    ({"model_type": "gpt2", "vocab_size": 100}, "model.config.vocab_size: set by the task"),
    ({"model_type": "gpt2", "n_positions": 64}, "model.config.n_positions: set by model.context"),
    ({"model_type": "gpt2", "attn_pdrop": 0.1}, "model.config.attn_pdrop: dropout is train.dropout"),
    ({"model_type": "no-such-type"}, "unknown transformers model type 'no-such-type'"),
])
def test_bad_configs_are_refused_with_the_key(config, expected):
    with pytest.raises(SpecError, match=expected):
        Spec({"task": {"kind": "markov"}, "model": {"family": "hf-causal-lm", "config": config}})


def test_a_config_entry_is_sweepable_and_names_distinct_runs():
    spec = Spec({"task": {"kind": "markov"}, "model": gpt2(), "vary": {"model.config.n_embd": [16, 32]}})
    runs = spec.runs()
    assert [r.config["model"]["config"]["n_embd"] for r in runs] == [16, 32]
    assert runs[0].config["model"]["config"]["n_layer"] == 2 and len({r.id for r in runs}) == 2
    assert spec.size_axes() == ["model.config.n_embd"]
    assert spec.base["model"]["config"]["n_embd"] == 32  # the base config is not changed by the axis


@pytest.fixture(scope="module")
def lm_sweep(tmp_path_factory):
    d = tmp_path_factory.mktemp("hf")
    corpus = d / "corpus.txt"
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "(to", "it)", "then", "slept", "here"]
    rng = torch.Generator().manual_seed(0)
    corpus.write_text(" ".join(words[int(i)] for i in torch.randint(0, len(words), (2500,), generator=rng)) + "\n")
    spec = d / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "hf", "task": {"kind": "text", "path": str(corpus), "tokenizer": "char"},
        "model": {"family": "hf-causal-lm", "context": 32, "config": {"model_type": "gpt2", "n_layer": 2,
                                                                      "n_head": 2}},
        "train": {"optimizer": "adamw", "lr": 3e-3, "steps": 40, "batch_size": 8, "eval_every": 20},
        "vary": {"model.config.n_embd": [8, 24]}}))
    assert main(["sweep", str(spec), "--out", str(d / "out"), "--no-progress"]) == 0
    return d / "out"


def test_a_two_size_scaling_sweep_trains_through_the_lm_loop(lm_sweep):
    from overparam.data import load_task
    from overparam.store import load_curves

    with Store.open(lm_sweep) as store:
        runs = store.runs()
    assert [r["status"] for r in runs] == ["done", "done"]
    vocab = load_task(runs[0]["config"]["task"]).vocab_size
    tokens = 40 * 8 * 32  # steps × windows × context
    for r in runs:
        d = r["config"]["model"]["config"]["n_embd"]
        same = {"n_layer": 2, "d_model": d, "n_head": 2, "context": 32, "tied": True}
        assert r["params"] == vocab * d + 32 * d + 2 * (12 * d * d + 13 * d) + 2 * d  # gpt2: the gpt family's count
        assert r["flops"] == gpt.flops_per_example(same, Shape((), vocab, vocab)) * tokens
        assert r["metrics"]["tokens"] == tokens
        assert r["metrics"]["test_loss"] < math.log(vocab)  # better than a uniform guess
    curves = load_curves(lm_sweep)
    for r in runs:
        test = curves[(curves.run_id == r["id"]) & (curves.name == "test_loss")].sort_values("step")
        assert list(test.step) == [0, 20, 40] and test.value.iloc[-1] < test.value.iloc[0]


def test_probe_and_attention_accept_the_run(lm_sweep, capsys, tmp_path):
    with Store.open(lm_sweep) as store:
        run = store.runs()[1]
    capsys.readouterr()
    assert main(["probe", str(lm_sweep), "--run", run["id"], "--target", "char_class", "--tokens", "400",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [layer["layer"] for layer in doc["layers"]] == [0, 1, 2]  # embeddings, then each of 2 blocks
    assert all(0 <= layer["accuracy"] <= 1 for layer in doc["layers"])
    assert main(["attention", str(lm_sweep), "--run", run["id"], "--text", "the cat sat", "--out",
                 str(tmp_path / "a.html"), "--json"]) == 0
    view = json.loads(capsys.readouterr().out)
    assert view["n_layer"] == 2 and view["n_head"] == 2 and len(view["tokens"]) == len("the cat sat")
    assert len(view["heads"]) == 4 and all("importance" in h for h in view["heads"])
    assert view["ablation"]["heads_total"] == 4
    assert (tmp_path / "a.html").is_file()
