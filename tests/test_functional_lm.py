"""User language models (and ``hf-causal-lm``) fused through ``torch.func`` against their independent truth:
``train_lm``, one run at a time (``--fuse off``), from the same init, windows and dropout masks."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from overparam.data import load_task
from overparam.spec import Spec, resolve_config
from overparam.store import open_store
from overparam.sweep.grouping import plan_groups
from overparam.sweep.runner import run_sweep
from overparam.train.fused.functional import train_functional_group
from overparam.train.run import train_run

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")
NETS = Path(__file__).with_name("user_nets.py")
TINY_LM = {"family": f"{NETS}:TinyLM", "width": 8, "context": 8}
MARKOV = {"kind": "markov", "vocab_size": 12, "order": 1, "branching": 3, "train_size": 2000, "test_size": 400}
TEXT = {"kind": "text", "train_size": 3000, "test_size": 600}
F64 = {"optimizer": "adamw", "lr": 3e-3, "steps": 12, "batch_size": 4, "eval_every": 4, "dtype": "float64"}
MEMBER_ONLY = {"fused", "group_size"}


def runs_of(task, vary, train=F64, model=TINY_LM):
    return Spec({"task": task, "model": model, "train": train, "vary": vary}).runs()


def max_gap(a, b, path: str = "") -> float:
    """Largest difference between two metric values of any shape (numbers, lists, dicts); other values equal."""
    if isinstance(a, dict):
        assert set(a) == set(b), (path, set(a) ^ set(b))
        return max([max_gap(a[k], b[k], f"{path}.{k}") for k in a], default=0.0)
    if isinstance(a, list):
        assert len(a) == len(b), path
        return max([max_gap(x, y, path) for x, y in zip(a, b)], default=0.0)
    if isinstance(a, float) and isinstance(b, float) and not isinstance(a, bool):
        assert math.isfinite(a) == math.isfinite(b), path
        return abs(a - b) if math.isfinite(a) else 0.0
    assert a == b, (path, a, b)
    return 0.0


def result_gap(fused, alone) -> float:
    """Fused member vs its run alone: status, curve steps and every metric, the final state (names, dtypes)."""
    assert fused.status == alone.status, (fused.error, alone.error)
    assert [s for s, _ in fused.curve] == [s for s, _ in alone.curve]
    gaps = [max_gap(f, a) for (_, f), (_, a) in zip(fused.curve, alone.curve)]
    assert set(fused.metrics) == set(alone.metrics) | MEMBER_ONLY
    gaps.append(max_gap({k: v for k, v in fused.metrics.items() if k not in MEMBER_ONLY}, alone.metrics))
    if alone.state is not None:
        assert list(fused.state) == list(alone.state)
        for k, v in alone.state.items():
            assert fused.state[k].dtype == v.dtype
            gaps.append(float((fused.state[k].double() - v.double()).abs().max()))
    return max(gaps)


# -- through the executor and the store: --fuse on == --fuse off ------------------------------------------------

@pytest.mark.parametrize("task, train", [(MARKOV, F64), (TEXT, {**F64, "dropout": 0.1, "clip": 1.0})],
                         ids=["markov", "text-dropout"])
def test_a_user_lm_sweep_stores_the_same_runs_fused_and_looped(tmp_path, task, train):
    """3 seeds × 2 lrs: every stored metric (curves, loss by position, context gain, per-domain loss, entropy
    rate, ‖θ‖) and every checkpoint tensor agree to 1e-10; the fused sweep trained one group of six."""
    spec = {"name": "lm", "task": task, "model": TINY_LM, "train": train,
            "vary": {"seed": [0, 1, 2], "train.lr": [3e-3, 1e-2]}}
    stored = {}
    for fuse in ("on", "off"):
        summary = run_sweep(spec, tmp_path / fuse, fuse=fuse, device="cpu", progress=False)
        assert summary.trained == 6 and not summary.failed and not summary.notes
        with open_store(tmp_path / fuse) as store:
            stored[fuse] = ({r["id"]: r for r in store.runs()}, sorted(store.curves()),
                            {rid: load_file(store.checkpoint_path(rid)) for rid in (r["id"] for r in store.runs())})
    (on, on_curves, on_ckpt), (off, off_curves, off_ckpt) = stored["on"], stored["off"]
    assert on.keys() == off.keys()
    for rid, row in on.items():
        assert row["status"] == off[rid]["status"] == "done"
        assert row["metrics"]["fused"] is True and row["metrics"]["group_size"] == 6
        assert "fused" not in off[rid]["metrics"]
        want = off[rid]["metrics"]
        assert "loss_by_position" in want and "context_gain" in want
        assert ("entropy_rate" in want) == (task is MARKOV) and ("domain_test_loss" in want) == (task is TEXT)
        got = {k: v for k, v in row["metrics"].items() if k not in MEMBER_ONLY}
        assert max_gap(got, want) <= 1e-10
        ours, theirs = on_ckpt[rid], off_ckpt[rid]
        assert ours.keys() == theirs.keys()
        assert max(float((ours[k].double() - theirs[k].double()).abs().max()) for k in theirs) <= 1e-10
    assert [c[:3] for c in on_curves] == [c[:3] for c in off_curves]
    assert max(abs(a[3] - b[3]) for a, b in zip(on_curves, off_curves) if b[3] is not None) <= 1e-10


# -- the group trainer against train_run -------------------------------------------------------------------------

@pytest.mark.parametrize("task", [
    {"kind": "icl-markov", "states": 3, "alpha": 0.5, "context": 8, "train_size": 128, "test_size": 32},
    {"kind": "fewshot", "symbols": 5, "labels": 3, "context": 9, "shots": [0, 2, 4], "train_size": 64,
     "test_size": 32}], ids=["icl-markov", "fewshot"])
def test_tasks_of_sequences_fuse_exactly_with_their_curve_numbers(task):
    """Windows at sequence starts, the ICL score and gap to Bayes at every evaluation (icl-markov)."""
    model = {**TINY_LM, "context": task["context"]}
    runs = runs_of(task, {"seed": [0, 1], "train.weight_decay": [0.0, 0.1]}, {**F64, "dropout": 0.2}, model)
    data = load_task(runs[0].config["task"])
    fused = train_functional_group([r.config for r in runs], data, CPU)
    alone = [train_run(r.config, data, CPU) for r in runs]
    assert max(result_gap(f, a) for f, a in zip(fused, alone)) <= 1e-10
    if task["kind"] == "icl-markov":
        assert all("icl_score" in point and "bayes_gap" in point for _, point in fused[0].curve)


def test_a_diverging_member_is_frozen_and_the_others_are_bit_identical():
    train = {**F64, "optimizer": "sgd", "momentum": 0.9, "lr": 0.1, "steps": 16}
    calm = runs_of(MARKOV, {"seed": [0, 1, 2]}, train)
    wild = runs_of(MARKOV, {"seed": [1], "train.lr": [1e6]}, train)
    task = load_task(calm[0].config["task"])
    with_wild = train_functional_group([r.config for r in calm + wild], task, CPU)
    without = train_functional_group([r.config for r in calm], task, CPU)
    alone = train_run(wild[0].config, task, CPU)
    assert with_wild[-1].status == alone.status == "diverged" and with_wild[-1].state is None
    assert with_wild[-1].metrics["diverged_at"] == alone.metrics["diverged_at"] < 16
    assert result_gap(with_wild[-1], alone) <= 1e-10
    for a, b in zip(with_wild[:-1], without, strict=True):
        assert a.status == b.status == "done"
        assert a.curve == b.curve
        assert a.state.keys() == b.state.keys() and all(torch.equal(a.state[k], b.state[k]) for k in a.state)


def test_an_interrupted_lm_group_resumes_bit_identical(tmp_path):
    """Moments, dropout generators, divergence and curves come back from the snapshot; windows from (seed, step)."""
    from test_snapshots import assert_identical, group_interrupted_and_resumed

    train = {"optimizer": "adam", "steps": 12, "batch_size": 4, "eval_every": 3, "dropout": 0.2}
    configs = [resolve_config({"task": MARKOV, "model": TINY_LM, "train": {**train, "lr": lr}, "seed": seed})
               for seed, lr in ((0, 1e-3), (1, 1e-3), (1, 3e-3))]
    want, got, snap = group_interrupted_and_resumed(train_functional_group, configs, load_task(configs[0]["task"]),
                                                    tmp_path / "g.safetensors", every=5)
    assert snap.resumed_from == 5
    for g, w in zip(got, want, strict=True):
        assert_identical(g, w)


# -- what fuses, what trains with the loop and why ------------------------------------------------------------

def test_planning_fuses_user_lms_and_says_why_a_module_vmap_cannot_run_stays_in_the_loop():
    fusable = runs_of(MARKOV, {"seed": [0, 1, 2]})
    branching = runs_of(MARKOV, {"seed": [0, 1]}, model={"family": f"{NETS}:counting_lm", "context": 8})
    notes: list[str] = []
    groups = plan_groups(fusable + branching, "auto", CPU, notes=notes)
    assert [(len(g.runs), g.fused) for g in groups] == [(3, True), (1, False), (1, False)]
    assert len(notes) == 1 and notes[0].startswith(f"2 runs of {NETS}:counting_lm train one at a time")
    assert "vmap cannot run the model's forward" in notes[0]


HF = {"family": "hf-causal-lm", "context": 8, "config": {"model_type": "gpt2", "n_layer": 1, "n_embd": 16,
                                                         "n_head": 2}}
LLAMA = {"model_type": "llama", "num_hidden_layers": 1, "hidden_size": 16, "num_attention_heads": 2,
         "intermediate_size": 32}


def test_hf_causal_lm_fuses_exactly_and_attention_dropout_stays_in_the_loop():
    """transformers' gpt2 and llama run under vmap (sdpa attention member by member): fused == loop; with
    train.dropout its attention draws masks inside the kernel, which vmap refuses: the loop, with a note."""
    pytest.importorskip("transformers", reason="hf-causal-lm needs the [hf] extra (transformers)")
    task = load_task(runs_of(MARKOV, {"seed": [0]})[0].config["task"])
    for model in (HF, {**HF, "config": LLAMA}):
        runs = runs_of(MARKOV, {"seed": [0, 1], "train.lr": [3e-3, 1e-2]}, {**F64, "steps": 6, "eval_every": 3},
                       model)
        fused = train_functional_group([r.config for r in runs], task, CPU)
        assert all(f.metrics["fused"] for f in fused)
        assert max(result_gap(f, train_run(r.config, task, CPU)) for f, r in zip(fused, runs)) <= 1e-10
    runs = runs_of(MARKOV, {"seed": [0, 1], "train.lr": [3e-3, 1e-2]}, {**F64, "steps": 6, "eval_every": 3}, HF)
    dropped = runs_of(MARKOV, {"seed": [0, 1]}, {**F64, "dropout": 0.1}, HF)
    notes: list[str] = []
    groups = plan_groups(runs + dropped, "on", CPU, notes=notes)
    assert [(len(g.runs), g.fused) for g in groups] == [(4, True), (1, False), (1, False)]
    assert len(notes) == 1 and notes[0].startswith("2 runs of hf-causal-lm train one at a time")
    assert "attention dropout inside F.scaled_dot_product_attention" in notes[0]
