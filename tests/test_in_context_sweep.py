"""Tiny in-context sweeps end to end: fused == one at a time, the analysis blocks, the report's readings
(every quoted number is one of the block's), `attention --heads induction`, and bad input before training."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from overparam.cli import main
from overparam.store import open_store
from overparam.sweep.runner import run_sweep

torch.set_num_threads(1)

ICL_SPEC = {"name": "icl-test", "task": {"kind": "icl-markov", "states": 3, "alpha": 0.5, "context": 12,
                                         "train_size": 256, "test_size": 64},
            "model": {"family": "gpt", "n_layer": 2, "n_head": 2, "d_model": 8, "context": 12},
            "train": {"optimizer": "adamw", "lr": 1e-2, "steps": 30, "batch_size": 8, "eval_every": 10,
                      "dtype": "float64"},
            "vary": {"seed": [0, 1]}}


def _runs(directory) -> list[dict]:
    with open_store(directory) as store:
        return store.runs()


@pytest.fixture(scope="module")
def icl_pair(tmp_path_factory):
    """The same two-run icl-markov sweep trained fused and one model at a time (float64)."""
    root = tmp_path_factory.mktemp("icl")
    run_sweep(ICL_SPEC, root / "fused", fuse="on", progress=False)
    run_sweep(ICL_SPEC, root / "loop", fuse="off", progress=False)
    return root / "fused", root / "loop"


def test_fused_and_sequential_icl_runs_measure_the_same(icl_pair):
    fused, loop = (_runs(d) for d in icl_pair)
    assert all(r["metrics"].get("fused") for r in fused) and not any(r["metrics"].get("fused") for r in loop)
    for a, b in zip(fused, loop, strict=True):
        assert a["id"] == b["id"] and a["status"] == b["status"] == "done"
        for key in ("test_loss", "icl_score", "bayes_gap", "induction_score", "context_gain"):
            assert a["metrics"][key] == pytest.approx(b["metrics"][key], rel=1e-9, abs=1e-12)
        np.testing.assert_allclose(a["metrics"]["loss_by_position"], b["metrics"]["loss_by_position"], rtol=1e-9)
    with open_store(icl_pair[0]) as s1, open_store(icl_pair[1]) as s2:
        c1 = {(r, st, n): v for r, st, n, v in s1.curves() if n in ("icl_score", "induction_score")}
        c2 = {(r, st, n): v for r, st, n, v in s2.curves() if n in ("icl_score", "induction_score")}
    assert c1.keys() == c2.keys() and len(c1) == 2 * 2 * 4  # 2 runs, 2 curves, steps 0, 10, 20, 30
    assert all(c1[k] == pytest.approx(c2[k], rel=1e-9) for k in c1)


def test_loss_by_position_averages_to_the_test_loss_and_references_are_exact(icl_pair):
    from overparam.data import load_task

    run = _runs(icl_pair[1])[0]
    m = run["metrics"]
    assert len(m["loss_by_position"]) == 12 and np.mean(m["loss_by_position"]) == pytest.approx(m["test_loss"])
    task = load_task(run["config"]["task"])
    refs = task.info["reference"]
    np.testing.assert_allclose(m["reference_loss_by_position"]["bayes"], refs["bayes"].mean(axis=0))
    assert m["reference_loss_by_position"]["uniform"] == pytest.approx([math.log(3)] * 12)
    assert m["position_early"] == [1] and m["position_late"] == [11]
    assert m["bayes_gap"] == pytest.approx(m["loss_by_position"][-1] - refs["bayes"][:, -1].mean())


def test_analyze_json_has_the_in_context_block_only(icl_pair, capsys):
    assert main(["analyze", str(icl_pair[1]), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert "in_context" in doc and not {"few_shot", "position", "specialization"} & set(doc)
    block = doc["in_context"]
    (row,) = block["sizes"]  # two seeds of one size
    runs = _runs(icl_pair[1])
    assert row["n_runs"] == 2
    assert row["icl_score"] == pytest.approx(np.mean([r["metrics"]["icl_score"] for r in runs]))
    assert row["icl_score_noise"] == pytest.approx(np.std([r["metrics"]["icl_score"] for r in runs], ddof=1)
                                                   / math.sqrt(2))
    assert [s for s, _ in row["icl_curve"]] == [0, 10, 20, 30]
    assert row["induction"]["uniform"] > 0 and len(row["induction"]["by_head"]) == 2
    assert main(["analyze", str(icl_pair[1])]) == 0
    assert "in-context learning:" in capsys.readouterr().out


NUMBER = re.compile(r"(?<![\w.])[-−]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?")


def allowed_numbers(block) -> set[str]:
    """Every way a number of ``block`` may be quoted: 3 significant digits, an integer with or without commas."""
    from overparam.report.in_context_reading import fmt

    out: set[str] = set()

    def walk(v):
        if isinstance(v, bool) or v is None:
            return
        if isinstance(v, (int, float)):
            out.update({fmt(v), f"{v:g}"})
            if float(v).is_integer():
                out.update({str(int(v)), f"{int(v):,}"})
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
    walk(block)
    return out


def assert_quotes_only_block_numbers(sentences: list[str], block, literals=("2022", "1", "0")) -> None:
    allowed = allowed_numbers(block) | set(literals)
    for sentence in sentences:
        for token in NUMBER.findall(sentence):
            assert token.rstrip(".,") in allowed, f"{token!r} in {sentence!r} is not a number of the block"


def test_report_reads_the_in_context_block(icl_pair):
    from overparam.analysis.in_context import blocks
    from overparam.report.html import build_report
    from overparam.report.in_context_reading import read_in_context

    block = blocks(icl_pair[1])["in_context"]
    sentences = read_in_context(block)
    assert_quotes_only_block_numbers(sentences, block)
    build_report(icl_pair[1])
    summary = json.loads((icl_pair[1] / "summary.json").read_text())
    part = next(iter(summary["parts"].values()))
    assert part["in-context_learning"]["sentences"] == sentences
    page = (icl_pair[1] / "report.html").read_text()
    assert "In-context learning" in page and "Few-shot" not in page


def test_reading_states_only_what_exceeds_the_noise():
    from overparam.report.in_context_reading import read_few_shot, read_in_context

    row = {"fixed": {}, "axis": "model.d_model", "size": 8, "params": 1000, "context": 10, "early": [1], "late": [9],
           "icl_score": -0.2, "icl_score_noise": 0.05, "bayes_gap": 0.03, "bayes_gap_noise": 0.02, "last_loss": 0.9,
           "references": {"bayes": {"icl_score": -0.25, "last_loss": 0.87}, "unigram": {"icl_score": -0.1}},
           "phase_change": {"evaluations": 5, "step": None, "start": 0.0, "min": -0.05},
           "induction": {"uniform": 0.3, "top_heads": [{"layer": 1, "head": 0, "score": 0.9}],
                         "formation": {"step": 40, "level": 0.65}, "order": None}}
    block = {"statistic": "mean over seeds", "z": 2.0, "sizes": [row]}
    text = " ".join(read_in_context(block))
    assert "within noise of the Bayes-optimal" in text and "no phase change is read" in text
    row["bayes_gap"] = 0.05
    assert "0.05 nats above the Bayes-optimal" in " ".join(read_in_context(block))
    fs_row = {"fixed": {}, "axis": "params", "size": 10, "params": 10, "shots": [0, 1, 4],
              "accuracy": [0.36, 0.40, 0.70], "noise": [0.01, 0.01, 0.01], "optimal": [0.333, 0.5, 0.8],
              "gap": [-0.027, 0.1, 0.1], "fraction_of_optimal_gain": [None, 0.4, 0.785],
              "below_optimal": [False, True, True]}
    fs = {"statistic": "mean over seeds", "z": 2.0, "chance": 0.333, "shots": [0, 1, 4], "sizes": [fs_row]}
    sentences = read_few_shot(fs)
    assert "nothing is claimed there" in sentences[1] and "k = 0:" not in sentences[2]
    assert "k = 1: 0.4 ± 0.01 vs 0.5 (0.1 below optimal, 0.4 of its gain over chance)" in sentences[2]


def test_attention_lists_induction_heads(icl_pair, capsys):
    run_id = _runs(icl_pair[1])[0]["id"]
    assert main(["attention", str(icl_pair[1]), "--run", run_id[:8], "--heads", "induction", "--top", "3",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    scores = [h["score"] for h in doc["heads"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True) and doc["n_heads"] == 4
    assert doc["induction_level"] == pytest.approx(doc["uniform"] + (1 - doc["uniform"]) / 2)
    assert main(["attention", str(icl_pair[1]), "--run", run_id[:8], "--heads", "induction"]) == 0
    assert "prefix-matching score" in capsys.readouterr().out


@pytest.mark.parametrize("task, model, message", [
    ({"kind": "icl-markov", "states": 1}, {}, "task.states: must be in 2..256"),
    ({"kind": "icl-markov", "context": 16}, {"context": 32}, "model.context: 32 is longer than an? icl-markov"),
    ({"kind": "fewshot", "context": 17, "shots": [0, 8, 9]}, {"context": 17}, "task.shots: k = 9 needs 2k"),
    ({"kind": "fewshot", "context": 33, "shots": [0, 8]}, {"context": 16}, "task.shots: k = 8 needs a model"),
    ({"kind": "fewshot", "shots": [1, 1]}, {"context": 33}, "task.shots: repeats"),
    ({"kind": "text", "mix": [{"path": "embedded:docs", "weight": 0}]}, {"context": 16},
     r"task.mix\[0\].weight: must be > 0"),
    ({"kind": "text", "mix": [{"path": "embedded:docs"}, {"path": "/no/such/dir", "name": "b"}]}, {"context": 16},
     r"task.mix\[1\].path: no such file or folder"),
])
def test_bad_input_is_one_line_before_training(tmp_path, capsys, task, model, message):
    import yaml

    spec = {"name": "bad", "task": task, "model": {"family": "gpt", "d_model": 8, "n_head": 2, **model},
            "train": {"steps": 1}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("overparam: error:") and "\n" not in err and re.search(message, err), err
    assert not (tmp_path / "out" / "overparam.sqlite").exists()


def test_fewshot_sweep_reads_accuracy_against_the_optimal_learner(tmp_path, capsys):
    from overparam.data import fewshot, load_task
    from overparam.report.in_context_reading import read_few_shot

    spec = {"name": "fs", "task": {"kind": "fewshot", "symbols": 5, "labels": 3, "context": 13, "shots": [0, 2, 6],
                                   "train_size": 128, "test_size": 96},
            "model": {"family": "gpt", "n_layer": 1, "n_head": 2, "context": 13},
            "train": {"optimizer": "adamw", "lr": 1e-2, "steps": 10, "batch_size": 8},
            "vary": {"model.d_model": [8, 16]}}
    run_sweep(spec, tmp_path / "fs", progress=False)
    assert main(["analyze", str(tmp_path / "fs"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert "few_shot" in doc and not {"in_context", "position", "specialization"} & set(doc)
    block = doc["few_shot"]
    task = load_task(_runs(tmp_path / "fs")[0]["config"]["task"])
    assert block["shots"] == [0, 2, 6] and block["chance"] == pytest.approx(1 / 3)
    assert block["optimal_expected"] == pytest.approx([fewshot.optimal_accuracy(k, 5, 3) for k in (0, 2, 6)])
    for row in block["sizes"]:
        assert row["optimal"] == pytest.approx(task.info["optimal"].mean(axis=0).tolist())  # all 96 prompts
        assert row["fraction_of_optimal_gain"][0] is None and all(0 <= a <= 1 for a in row["accuracy"])
        assert row["noise"][1] == pytest.approx(math.sqrt(row["accuracy"][1] * (1 - row["accuracy"][1]) / 96))
    sentences = read_few_shot(block)
    assert_quotes_only_block_numbers(sentences, block)
    assert "nothing is claimed there" in sentences[1] and not any("k = 0:" in s for s in sentences)


def test_markov_sweep_gets_a_position_block_and_no_in_context_one(tmp_path, capsys):
    from overparam.report.in_context_reading import read_position

    spec = {"name": "mk", "task": {"kind": "markov", "vocab_size": 8, "order": 1, "branching": 2,
                                   "train_size": 4000, "test_size": 2000},
            "model": {"family": "gpt", "n_layer": 1, "n_head": 2, "d_model": 8},
            "train": {"optimizer": "adamw", "lr": 1e-2, "steps": 20, "batch_size": 8},
            "vary": {"model.context": [8, 16]}}
    run_sweep(spec, tmp_path / "mk", progress=False)
    assert main(["analyze", str(tmp_path / "mk"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) & {"in_context", "few_shot", "position", "specialization"} == {"position"}
    block = doc["position"]
    assert [r["context"] for r in block["sizes"]] == [8, 16] and block["extrapolation"]["supported"] is False
    for row, run in zip(block["sizes"], _runs(tmp_path / "mk"), strict=True):
        m = run["metrics"]
        assert row["context_gain"] == pytest.approx(m["context_gain"])
        assert row["context_gain"] == pytest.approx(np.mean([m["loss_by_position"][t] for t in row["early"]]) - np.mean(
            [m["loss_by_position"][t] for t in row["late"]]), abs=1e-9)
        assert row["entropy_rate"] == pytest.approx(m["entropy_rate"])
    sentences = read_position(block)
    assert_quotes_only_block_numbers(sentences, block)
    assert "not supported" in sentences[-1] and "learned absolute position embeddings" in sentences[-1]
    for row, sentence in zip(block["sizes"], sentences[1:-1], strict=True):
        assert ("distant context is worth" in sentence) == row["gains"]
        assert ("predicted worse than early ones" in sentence) == row["loses"]
        assert not (row["gains"] and row["loses"])
