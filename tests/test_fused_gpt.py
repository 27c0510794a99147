"""Fused GPT training against its independent truth: ``train_lm``, one run at a time, from the same init."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from exactness import assert_sweep_same_fused_and_unfused

from overparam.data import load_task
from overparam.spec import Spec
from overparam.sweep import grouping
from overparam.sweep.grouping import GPT_COST, Group, plan_groups, step_costs
from overparam.sweep.work import execute_group
from overparam.train.fused_gpt import train_gpt_group
from overparam.train.run import shape_of, train_run

CPU = torch.device("cpu")
MARKOV = {"kind": "markov", "vocab_size": 12, "order": 1, "branching": 3, "train_size": 2000, "test_size": 400}
TINY = {"family": "gpt", "n_layer": 1, "d_model": 16, "n_head": 2, "context": 8}
F64 = {"optimizer": "adamw", "lr": 3e-3, "steps": 20, "batch_size": 4, "eval_every": 5, "dtype": "float64"}


pytestmark = pytest.mark.usefixtures("one_thread")


def runs_of(vary, train, model=None, task=MARKOV):
    return Spec({"task": task, "model": {**TINY, **(model or {})}, "vary": vary, "train": train}).runs()


def sequential(runs):
    return [train_run(r.config, load_task(r.config["task"]), CPU) for r in runs]


def fused(runs, **kw):
    return train_gpt_group([r.config for r in runs], load_task(runs[0].config["task"]), CPU, **kw)


def max_diff(a, b) -> float:
    """Largest gap between two results' curves (every metric) and final states."""
    assert a.status == b.status, (a.error, b.error)
    assert [s for s, _ in a.curve] == [s for s, _ in b.curve]
    gaps = [abs(ma[k] - mb[k]) for (_, ma), (_, mb) in zip(a.curve, b.curve) for k in ma if ma[k] is not None]
    assert a.state.keys() == b.state.keys()
    for k in a.state:
        assert a.state[k].shape == b.state[k].shape and a.state[k].dtype == b.state[k].dtype
        gaps.append(float((a.state[k] - b.state[k]).abs().max()))
    return max(gaps)


def test_gpt_group_equals_sequential_float64():
    """Two shapes × two seeds (buckets of two) and a deeper, untied, clipped member with its own lr and wd:
    curves, metrics and final weights of ``train_lm`` to 1e-10."""
    runs = runs_of({"model.d_model": [8, 16], "seed": [0, 1]},
                   {**F64, "weight_decay": 0.01, "warmup_steps": 3, "schedule": "cosine"})
    runs += runs_of({"model.n_layer": [2], "model.tied": [False], "train.clip": [0.05]},
                    {**F64, "lr": 1e-2, "weight_decay": 0.1})
    seq, fus = sequential(runs), fused(runs)
    assert max(max_diff(a, b) for a, b in zip(seq, fus, strict=True)) < 1e-10
    for a, b in zip(seq, fus, strict=True):
        assert set(a.metrics) | {"fused", "group_size"} == set(b.metrics)
        assert b.metrics["fused"] is True and b.metrics["group_size"] == len(runs)
        assert b.metrics["entropy_rate"] == a.metrics["entropy_rate"] and b.metrics["tokens"] == 20 * 4 * 8
        assert b.metrics["train_error"] is None and math.isclose(a.metrics["param_norm"], b.metrics["param_norm"],
                                                                 rel_tol=1e-12)
        assert len(b.curve) == 5  # steps 0, 5, 10, 15, 20 as train_lm evaluates them


def test_gpt_diverged_member_is_frozen_and_others_bit_identical():
    """An absurd lr shares the bucket of d_model 16, seed 0: only it diverges, and the calm member, alone in
    its bucket without it, trains to the same bits (so do the others)."""
    train = {**F64, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "steps": 30}
    calm = runs_of({"model.d_model": [8], "seed": [0, 1]}, train) + runs_of({"seed": [0]}, train)
    wild = runs_of({"train.lr": [1e6]}, train)
    with_wild, without = fused(calm + wild), fused(calm)
    alone = sequential(wild)[0]
    assert with_wild[-1].status == alone.status == "diverged" and with_wild[-1].state is None
    assert with_wild[-1].metrics["diverged_at"] == alone.metrics["diverged_at"] < 30
    assert [s for s, _ in with_wild[-1].curve] == [s for s, _ in alone.curve]
    for (_, a), (_, b) in zip(with_wild[-1].curve, alone.curve, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-12)
    for a, b in zip(with_wild, without):
        assert a.status == b.status == "done"
        assert a.curve == b.curve
        assert all(torch.equal(a.state[k], b.state[k]) for k in a.state)


def test_executor_dispatches_gpt_groups_without_falling_back():
    runs = runs_of({"seed": [0, 1]}, {**F64, "steps": 4, "eval_every": 0})
    task = load_task(runs[0].config["task"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback to the loop warns
        outcomes = execute_group(Group(runs, fused=True), task, CPU)
    assert [o.result.metrics["fused"] for o in outcomes] == [True, True]


def _text_runs(widths, seeds, layers=2, context=16, batch=4, dropout=0.0):
    return Spec({"task": {"kind": "text", "train_size": 4000, "test_size": 1000},
                 "model": {"family": "gpt", "n_layer": layers, "n_head": 4, "context": context},
                 "vary": {"model.d_model": widths, "seed": list(range(seeds))},
                 "train": {"optimizer": "adamw", "steps": 10, "batch_size": batch, "dropout": dropout}}).runs()


def test_cost_model_fuses_shared_shapes_and_declines_distinct_large_ones():
    """auto: many members of one small shape fuse (measured 3.8–4.6× on CPU); eight distinct d_model 64…256
    (measured 0.97–1.01×, compute-bound) and runs with dropout (not fusable) train one at a time."""
    small, distinct = _text_runs([32], 8), _text_runs([64, 80, 96, 116, 140, 172, 212, 256], 1, context=64, batch=16)
    task = load_task(small[0].config["task"])
    for runs, fuses in ((small, True), (distinct, False), (_text_runs([32], 8, dropout=0.1), False)):
        groups = plan_groups(runs, "auto", CPU, tasks=lambda _key: task)
        assert all(g.fused == fuses for g in groups) and sum(len(g.runs) for g in groups) == len(runs)
    assert all(g.fused for g in plan_groups(distinct, "on", CPU, tasks=lambda _key: task))
    # the closed form of grouping._gpt_step_costs for two buckets: (L=2, d=32) × 3 and (L=2, d=48) × 1
    runs = _text_runs([32], 3) + _text_runs([48], 1)
    c, shape = GPT_COST["cpu"], shape_of(task)
    tokens = 4 * 16
    flops = sum(tokens * grouping_flops(r.config, shape) for r in runs)
    loop, fused_cost = step_costs(runs, task, CPU)
    assert loop == pytest.approx(4 * (c["LOOP_STEP"] + 2 * c["LOOP_LAYER"]) + flops / c["LOOP_RATE"], rel=1e-12)
    assert fused_cost == pytest.approx(2 * c["BUCKET_STEP"] + 2 * (c["BUCKET_LAYER"] + 3 * c["MEMBER_LAYER"])
                                       + 2 * (c["BUCKET_LAYER"] + c["MEMBER_LAYER"]) + flops / c["FUSED_RATE"],
                                       rel=1e-12)
    assert grouping.pays(runs, task, CPU) == (fused_cost <= grouping.MARGIN * loop)


def grouping_flops(config, shape) -> float:
    from overparam.models import gpt

    return float(gpt.flops_per_example(config["model"], shape))


def test_sweep_stores_the_same_gpt_results_fused_and_unfused(tmp_path):
    """Through the executor and the store: ``--fuse on`` and ``off`` write the same runs and checkpoints."""
    spec = {"name": "g", "task": MARKOV, "model": TINY, "vary": {"model.d_model": [8, 16], "seed": [0, 1]},
            "train": {**F64, "steps": 8, "eval_every": 4}}
    assert_sweep_same_fused_and_unfused(spec, tmp_path, n_runs=4, metric="test_loss")
