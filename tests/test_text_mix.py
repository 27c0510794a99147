"""`text` with `mix`: domains split and shared out as the docstring says, per-domain losses equal a direct
computation on a two-domain toy corpus, loss by position for text runs, and the specialization reading."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from overparam.data import load_task
from overparam.spec import Spec
from overparam.train.lm import eval_offsets
from overparam.train.lm_measures import MEASURE_TOKENS, lm_measures

torch.set_num_threads(1)


@pytest.fixture
def toy(tmp_path):
    """Domain a: "ab" repeated (predictable); domain b: random letters x, y, z."""
    a = tmp_path / "a.txt"
    a.write_text("ab" * 200)
    b = tmp_path / "b.txt"
    b.write_text("".join(np.random.default_rng(0).choice(list("xyz"), size=800)))
    return a, b


def _task(a, b, **extra):
    spec = Spec({"task": {"kind": "text", "val_fraction": 0.25, "mix": [{"path": str(a), "weight": 1},
                                                                        {"path": str(b), "weight": 3, "name": "noise"}],
                          **extra}, "model": {"family": "gpt", "context": 8}})
    return spec.base["task"], load_task(spec.base["task"])


def test_domains_split_alone_and_share_training_by_weight(toy):
    a, b = toy
    opts, task = _task(*toy, train_size=400)
    assert [e["name"] for e in opts["mix"]] == ["a", "noise"]  # defaults filled: names equal runs equally
    doms = task.info["domains"]
    assert [d["n_train"] for d in doms] == [100, 300] and [d["n_test"] for d in doms] == [100, 200]
    raw_a, raw_b = a.read_bytes(), b.read_bytes()
    np.testing.assert_array_equal(task.tokens_train, np.frombuffer(raw_a[:100] + raw_b[:300], dtype=np.uint8))
    np.testing.assert_array_equal(task.tokens_test, np.frombuffer(raw_a[300:] + raw_b[600:], dtype=np.uint8))
    assert doms[1]["test_start"] == 100
    _, full = _task(*toy)  # train_size null: the largest total both domains can fill at 1:3
    assert [d["n_train"] for d in full.info["domains"]] == [200, 600]
    with pytest.raises(Exception, match="domain 'a' has 300 training tokens"):
        _task(*toy, train_size=1300)


class Bigram(nn.Module):
    """Logits of the next token from the current one: a table, so every loss has a closed form."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(table)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.table[idx]


def test_per_domain_losses_equal_a_direct_computation(toy):
    _, task = _task(*toy, train_size=400)
    table = torch.zeros(256, 256, dtype=torch.float64)
    table[ord("a"), ord("b")] = table[ord("b"), ord("a")] = 20.0  # the "ab" domain is nearly free
    table[ord("x"), ord("y")] = 1.0
    model = Bigram(table)
    context = 8
    out = lm_measures(model, task, context, torch.device("cpu"))
    logp = torch.log_softmax(table, dim=1).numpy()
    for dom in task.info["domains"]:
        offs = eval_offsets(dom["n_test"], context, MEASURE_TOKENS).numpy() + dom["test_start"]
        tokens = task.tokens_test
        per_window = [np.mean([-logp[tokens[o + t], tokens[o + t + 1]] for t in range(context)]) for o in offs]
        assert out["domain_test_loss"][dom["name"]] == pytest.approx(np.mean(per_window), rel=1e-12)
        assert out["domain_test_loss_se"][dom["name"]] == pytest.approx(
            np.std(per_window, ddof=1) / math.sqrt(len(per_window)), rel=1e-9, abs=1e-15)
    assert out["domain_test_loss"]["a"] < 0.01 < math.log(3) * 0.9 < out["domain_test_loss"]["noise"]
    # loss by position averages over the pooled test windows; a bigram is the same at every position
    offs = eval_offsets(len(task.tokens_test), context, MEASURE_TOKENS).numpy()
    direct = np.array([[-logp[task.tokens_test[o + t], task.tokens_test[o + t + 1]] for t in range(context)]
                       for o in offs])
    np.testing.assert_allclose(out["loss_by_position"], direct.mean(axis=0), rtol=1e-12)


def test_stdlib_docstrings_are_a_second_embedded_domain():
    from overparam.data.text_mix import stdlib_docstrings

    text = stdlib_docstrings()
    assert len(text) > 100_000 and "Return" in text
    assert stdlib_docstrings() is text  # read once per process


def _run(rid, d, mix_names, loss, seed=0, params=None, tokens=1000, se=0.01):
    mix = [{"path": f"embedded:{n}" if n in ("docs", "stdlib") else n, "weight": 1.0, "name": n} for n in mix_names]
    return {"id": rid, "status": "done", "params": params or d * 100, "flops": 6.0 * (params or d * 100) * tokens,
            "config": {"task": {"kind": "text", "mix": mix, "path": None}, "model": {"family": "gpt", "d_model": d},
                       "train": {}, "seed": seed},
            "metrics": {"tokens": tokens, "domain_test_loss": {n: loss.get(n, 3.0) for n in mix_names},
                        "domain_test_loss_se": {n: se for n in mix_names}}}


def test_specialization_pairs_sizes_and_finds_the_smallest_matching_specialist():
    from overparam.analysis.specialization import specialization_block
    from overparam.report.in_context_reading import read_specialization

    runs = [_run("s8", 8, ["docs"], {"docs": 2.0}), _run("s16", 16, ["docs"], {"docs": 1.7}),
            _run("s32", 32, ["docs"], {"docs": 1.5}),
            _run("g8", 8, ["docs", "stdlib"], {"docs": 2.1}), _run("g16", 16, ["docs", "stdlib"], {"docs": 1.8}),
            _run("g32", 32, ["docs", "stdlib"], {"docs": 1.69})]
    block = specialization_block(runs)
    (dom,) = block["domains"]
    assert dom["domain"] == "docs" and [p["size"] for p in dom["pairs"]] == [8, 16, 32]
    assert all(p["specialist_better"] and p["same_compute"] for p in dom["pairs"])
    assert dom["pairs"][0]["difference"] == pytest.approx(-0.1)
    assert dom["pairs"][0]["noise"] == pytest.approx(math.hypot(0.01, 0.01))
    assert dom["largest_generic"]["params"] == 3200
    # d 16's 1.7 is 0.01 worse than the largest generic's 1.69: within 2 × √2 × 0.01, so it matches
    assert dom["smallest_matching_specialist"]["params"] == 1600 and dom["param_ratio"] == pytest.approx(2.0)
    sentences = read_specialization(block)
    assert any("matches it (not worse beyond noise) has 1,600 parameters: 1.7 ± 0.01, a difference of 0.01 ± "
               "0.0141: 2× fewer parameters" in s for s in sentences)
    matching = dom["smallest_matching_specialist"]
    assert matching["noise"] == 0.01 and matching["versus_largest"]["difference"] == pytest.approx(0.01)
    from tests.test_in_context_sweep import assert_quotes_only_block_numbers

    assert_quotes_only_block_numbers(sentences, block)
    runs[1]["metrics"]["domain_test_loss"]["docs"] = 1.8  # now d 16 is worse beyond noise: d 32 is the first
    assert specialization_block(runs)["domains"][0]["smallest_matching_specialist"]["params"] == 3200
    assert specialization_block([r for r in runs if r["id"].startswith("s")]) is None  # no generic arm


def test_text_sweep_reports_position_and_domains(tmp_path, toy, capsys):
    from overparam.cli import main
    from overparam.sweep.runner import run_sweep

    a, b = toy
    spec = {"name": "mix", "task": {"kind": "text", "val_fraction": 0.25, "train_size": 200},
            "model": {"family": "gpt", "n_layer": 1, "n_head": 2, "context": 8},
            "train": {"optimizer": "adamw", "lr": 1e-2, "steps": 15, "batch_size": 8},
            "vary": {"model.d_model": [8, 16],
                     "task.mix": [[{"path": str(a), "name": "a"}], [{"path": str(a), "name": "a"},
                                                                    {"path": str(b), "name": "b"}]]}}
    run_sweep(spec, tmp_path / "s", progress=False)
    assert main(["analyze", str(tmp_path / "s"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {"position", "specialization"} <= set(doc) and not {"in_context", "few_shot"} & set(doc)
    pos = doc["position"]
    assert len(pos["sizes"]) == 4 and pos["extrapolation"]["supported"] is False
    assert all(len(r["loss_by_position"]) == 8 for r in pos["sizes"])
    (dom,) = doc["specialization"]["domains"]
    assert dom["domain"] == "a" and len(dom["pairs"]) == 2
    assert all(p["generic"]["domain_share"] == 0.5 and p["specialist"]["tokens"] == p["generic"]["tokens"]
               for p in dom["pairs"])
