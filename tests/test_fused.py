"""The fused engine against its independent truth: the same runs trained one at a time."""

from __future__ import annotations

import math

import pytest
import torch
from exactness import assert_sweep_same_fused_and_unfused

from overparam.data import load_task
from overparam.models import mlp
from overparam.spec import Spec
from overparam.sweep import grouping
from overparam.sweep.grouping import plan_groups
from overparam.train.fused import train_group
from overparam.train.fused.layout import MAX_WASTE, MIN_PAD, padded_width, plan_layout
from overparam.train.run import shape_of, train_run

DIGITS = {"kind": "digits", "train_size": 160, "test_size": 100, "label_noise": 0.1}
TEACHER = {"kind": "teacher", "train_size": 120, "test_size": 80, "dim": 24, "outputs": 2}
F64 = {"steps": 100, "batch_size": 32, "eval_every": 25, "dtype": "float64"}


pytestmark = pytest.mark.usefixtures("one_thread")


def runs_of(task, model, vary, train):
    return Spec({"task": task, "model": model, "vary": vary, "train": train}).runs()


def sequential(runs):
    return [train_run(r.config, load_task(r.config["task"]), torch.device("cpu")) for r in runs]


def fused(runs, **kw):
    return train_group([r.config for r in runs], load_task(runs[0].config["task"]), torch.device("cpu"), **kw)


def max_diff(a, b) -> float:
    """Largest gap between two results' curves (every metric) and final states."""
    assert a.status == b.status, (a.error, b.error)
    assert [s for s, _ in a.curve] == [s for s, _ in b.curve]
    gaps = [abs(ma[k] - mb[k]) for (_, ma), (_, mb) in zip(a.curve, b.curve) for k in ma if ma[k] is not None]
    if a.state is not None:
        assert a.state.keys() == b.state.keys()
        for k in a.state:
            assert a.state[k].shape == b.state[k].shape and a.state[k].dtype == b.state[k].dtype
            gaps.append(float((a.state[k] - b.state[k]).abs().max()))
    return max(gaps)


def test_mlp_group_equals_sequential_float64():
    """≥ 8 widths (deep, so hidden-to-hidden layers are bucketed too), lrs and seeds differ."""
    runs = runs_of(DIGITS, {"family": "mlp", "depth": 2}, {"model.width": [3, 7, 12, 20, 33, 47, 64, 90]},
                   {"optimizer": "adam", "lr": 3e-3, **F64})
    runs += runs_of(DIGITS, {"family": "mlp", "depth": 2}, {"model.width": [12, 64], "seed": [1]},
                    {"optimizer": "adam", "lr": 1e-2, "weight_decay": 1e-3, **F64})
    seq, fus = sequential(runs), fused(runs)
    assert max(max_diff(a, b) for a, b in zip(seq, fus)) < 1e-10
    for a, b in zip(seq, fus):
        assert b.metrics["fused"] is True and b.metrics["group_size"] == len(runs)
        assert set(a.metrics) | {"fused", "group_size"} == set(b.metrics)
        assert math.isclose(a.metrics["param_norm"], b.metrics["param_norm"], rel_tol=1e-12)


def test_dropout_clip_momentum_and_label_draws_match():
    """Dropout masks, clipping, SGD momentum, schedules and per-member label noise, fused exactly."""
    runs = runs_of(DIGITS, {"family": "mlp", "depth": 2},
                   {"model.width": [6, 40], "seed": [1, 2], "train.dropout": [0.0, 0.3], "train.clip": [None, 0.5]},
                   {"optimizer": "adam", "lr": 3e-3, **F64, "steps": 60})
    runs += runs_of(DIGITS, {"family": "mlp"},
                    {"model.width": [6, 30], "train.momentum": [0.0, 0.9], "task.noise_seed": [4, 5]},
                    {"optimizer": "sgd", "lr": 0.05, "schedule": "cosine", "warmup_steps": 10, **F64, "steps": 60})
    runs += runs_of(DIGITS, {"family": "mlp"}, {"model.width": [9, 30], "train.weight_decay": [0.0, 0.1]},
                    {"optimizer": "adamw", "lr": 3e-3, "loss": "mse", **F64, "steps": 60, "eval_log_points": 4})
    groups = plan_groups(runs, "on", torch.device("cpu"))
    assert sorted(len(g.runs) for g in groups) == [4, 8, 16] and all(g.fused for g in groups)
    for group in groups:
        seq, fus = sequential(group.runs), fused(group.runs)
        assert max(max_diff(a, b) for a, b in zip(seq, fus)) < 1e-10


def test_rff_and_linear_match_sequential():
    runs = runs_of(TEACHER, {"family": "rff", "bias": True}, {"model.width": [10, 50, 130], "seed": [0, 1]},
                   {"optimizer": "sgd", "lr": 0.1, **F64, "steps": 60})
    runs += runs_of(TEACHER, {"family": "rff", "features": "relu"}, {"model.width": [10, 100]},
                    {"optimizer": "gd", "lr": 0.1, **F64, "steps": 40})
    runs += runs_of(TEACHER, {"family": "linear"}, {"model.width": [3, 10, 17, 24, 100]},
                    {"optimizer": "sgd", "lr": 0.05, **F64, "steps": 40})
    for group in plan_groups(runs, "on", torch.device("cpu")):
        seq, fus = sequential(group.runs), fused(group.runs)
        assert max(max_diff(a, b) for a, b in zip(seq, fus)) < 1e-10


def test_diverged_member_is_frozen_and_others_bit_identical():
    train = {"optimizer": "sgd", "lr": 0.02, "loss": "mse", **F64, "steps": 80, "eval_every": 10}
    calm = runs_of(DIGITS, {"family": "mlp"}, {"model.width": [4, 9, 16, 20, 33, 40, 64, 100]}, train)
    wild = runs_of(DIGITS, {"family": "mlp", "width": 20}, {"train.lr": [1e3]}, train)
    with_wild, without = fused(calm + wild), fused(calm)
    alone = sequential(wild)[0]
    assert with_wild[-1].status == alone.status == "diverged"
    assert with_wild[-1].metrics["diverged_at"] == alone.metrics["diverged_at"] < 80
    assert with_wild[-1].state is None and len(with_wild[-1].curve) == len(alone.curve)
    for a, b in zip(with_wild, without):
        assert a.status == b.status == "done"
        assert a.curve == b.curve
        assert all(torch.equal(a.state[k], b.state[k]) for k in a.state)


def test_padding_rule_wastes_at_most_a_quarter_and_ignores_the_group():
    shape = shape_of(load_task(runs_of(DIGITS, {"family": "mlp"}, {}, {})[0].config["task"]))
    for depth in (1, 2):
        base = runs_of(DIGITS, {"family": "mlp", "depth": depth}, {}, {})[0].config
        for width in range(1, 3000, 7):
            config = {**base, "model": {**base["model"], "width": width}}
            pad = padded_width(config, shape, "cpu")
            assert pad >= width
            if width > MIN_PAD:
                padded = mlp.count_params({**config["model"], "width": pad}, shape)
                assert padded <= MAX_WASTE * mlp.count_params(config["model"], shape)
    configs = [r.config for r in runs_of(DIGITS, {"family": "mlp"}, {"model.width": [5, 64, 70, 300]}, {})]
    alone = {c["model"]["width"]: b.width for c in configs for b in plan_layout([c], shape, "cpu").buckets}
    together = plan_layout(configs, shape, "cpu")
    assert alone == {w: b.width for b in together.buckets for w in together.widths[b.start:b.stop]}


def test_plan_groups_keys_modes_and_memory_bound(monkeypatch):
    adam = {"optimizer": "adam", "steps": 5, "batch_size": 32}
    runs = runs_of(DIGITS, {"family": "mlp"}, {"model.width": [4, 8], "seed": [0, 1], "train.lr": [1e-3, 1e-2]},
                   adam)
    runs += runs_of(DIGITS, {"family": "mlp"}, {"model.width": [4, 8]}, {**adam, "batch_size": 64})
    runs += runs_of(TEACHER, {"family": "rff"}, {"model.width": [4, 8]}, {"optimizer": "min_norm"})
    cpu = torch.device("cpu")
    assert all(len(g.runs) == 1 and not g.fused for g in plan_groups(runs, "off", cpu))
    on = plan_groups(runs, "on", cpu)
    assert sorted(len(g.runs) for g in on if g.fused) == [2, 8]
    assert sum(len(g.runs) for g in on) == len(runs) and not any(g.fused for g in on if len(g.runs) == 1)
    auto = plan_groups(runs, "auto", cpu)
    assert sorted(len(g.runs) for g in auto if g.fused) == [2, 8]  # small members: fusing pays
    monkeypatch.setitem(grouping.GROUP_MEMORY, "cpu", 1)
    assert all(not g.fused for g in plan_groups(runs, "on", cpu))
    with pytest.raises(ValueError):
        plan_groups(runs, "sometimes", cpu)


def test_auto_declines_members_whose_gemms_are_already_big():
    """heavy8 (depth 2, width 4096, batch 1024: 110 GFLOP a member step) measured 0.92x fused on CPU:
    auto trains it one at a time; sweep64's widest (0.23 GFLOP, fused 1.10x faster) still fuse."""
    heavy = runs_of({"kind": "teacher", "dim": 256, "outputs": 10, "train_size": 2048, "test_size": 64},
                    {"family": "mlp", "depth": 2, "width": 4096}, {"seed": [0, 1]},
                    {"optimizer": "adam", "batch_size": 1024})
    wide = runs_of({"kind": "digits", "train_size": 1000}, {"family": "mlp"}, {"model.width": [2048, 4096]},
                   {"optimizer": "adam", "batch_size": 128})
    cpu = torch.device("cpu")
    assert not plan_groups(heavy, "auto", cpu)[0].fused and plan_groups(heavy, "on", cpu)[0].fused
    assert plan_groups(wide, "auto", cpu)[0].fused


def test_sweep_fused_and_unfused_store_the_same_results(tmp_path):
    spec = {"name": "f", "task": DIGITS, "model": {"family": "mlp"},
            "vary": {"model.width": [3, 12, 30], "seed": [0, 1]}, "train": {"optimizer": "adam", **F64, "steps": 30}}
    assert_sweep_same_fused_and_unfused(spec, tmp_path, n_runs=6, metric="train_loss")


def test_jagged_grouped_matmul_path_matches_and_is_probed(monkeypatch):
    """The CUDA grouped-matmul network, run here through its loop-of-matmuls reference."""
    from overparam.train.fused import jagged

    runs = runs_of(DIGITS, {"family": "mlp"}, {"model.width": [3, 20, 45], "seed": [0, 1], "train.lr": [1e-3, 1e-2]},
                   {"optimizer": "adam", **F64, "steps": 30})
    seq, fus = sequential(runs), fused(runs, kernel="jagged")
    assert max(max_diff(a, b) for a, b in zip(seq, fus)) < 1e-10
    exact = jagged._reference
    monkeypatch.setattr(jagged, "_reference", lambda a, b, offs: exact(a, b, offs) * 1.01)  # a broken kernel
    with pytest.raises(ValueError, match="disagrees"):
        fused(runs[:2], kernel="jagged")
    assert fused(runs[:2])[0].status == "done"  # auto never takes the jagged path on CPU


def test_tiled_path_matches_sequential_and_keeps_members_apart():
    """Members side by side (train/fused/tiled.py): per-member batches, shared batches with dropout,
    clipping and label draws, all equal to one-at-a-time training; a diverged member's NaNs stay its own."""
    runs = runs_of(DIGITS, {"family": "mlp"}, {"model.width": [3, 20, 45, 130], "seed": [0, 1]},
                   {"optimizer": "adam", "lr": 3e-3, **F64, "steps": 30})
    seq, fus = sequential(runs), fused(runs, kernel="tiles")
    assert max(max_diff(a, b) for a, b in zip(seq, fus)) < 1e-10
    runs = runs_of(DIGITS, {"family": "mlp"},
                   {"model.width": [5, 40, 300], "train.dropout": [0.0, 0.3], "task.noise_seed": [1, 2]},
                   {"optimizer": "adam", "lr": 3e-3, "clip": 0.5, **F64, "steps": 30})
    seq, fus = sequential(runs), fused(runs, kernel="tiles")
    assert max(max_diff(a, b) for a, b in zip(seq, fus)) < 1e-10
    train = {"optimizer": "sgd", "lr": 0.02, "loss": "mse", **F64, "steps": 60, "eval_every": 10}
    calm = runs_of(DIGITS, {"family": "mlp"}, {"model.width": [4, 9, 20, 33, 64, 100]}, train)
    wild = runs_of(DIGITS, {"family": "mlp", "width": 20}, {"train.lr": [1e3]}, train)
    with_wild, without = fused(calm + wild, kernel="tiles"), fused(calm, kernel="tiles")
    assert with_wild[-1].status == "diverged"
    assert with_wild[-1].metrics["diverged_at"] == sequential(wild)[0].metrics["diverged_at"] < 60
    for a, b in zip(with_wild, without):
        assert a.status == b.status == "done" and a.curve == b.curve
        assert all(torch.equal(a.state[k], b.state[k]) for k in a.state)
    with pytest.raises(ValueError, match="one-hidden-layer"):
        fused(runs_of(DIGITS, {"family": "mlp", "depth": 2}, {"model.width": [4, 9]}, train), kernel="tiles")


def test_grouped_products_pad_unaligned_sums():
    """The native grouped matmul wants 16-byte rows; a 10-class head's gradient has 20-byte rows, so
    the summed dimension is zero-padded to a multiple of 8, which changes no product (all three forms)."""
    from overparam.train.fused import jagged

    gen = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    offs = torch.tensor([8, 24, 48], dtype=torch.int32)
    segs = [(0, 8), (8, 24), (24, 48)]
    a, b = rand(3, 20, 10), rand(10, 48)
    assert torch.allclose(jagged.grouped(a, b, offs), torch.cat([a[g] @ b[:, s:e] for g, (s, e) in enumerate(segs)], 1))
    h, g3 = rand(48, 13), rand(3, 13, 10)
    assert torch.allclose(jagged.grouped(h, g3, offs), torch.cat([h[s:e] @ g3[g] for g, (s, e) in enumerate(segs)]))
    padded_a, padded_b = jagged._pad_contraction(a, b)
    assert padded_a.shape == (3, 20, 16) and padded_b.shape == (16, 48) and not padded_a[..., 10:].any()


@pytest.mark.parametrize("kernel,one_layer,dropout,device,buckets,autocast,grouped,want", [
    ("auto", True, False, "cpu", 30, False, False, "buckets"),  # CPU: the widest GEMMs bound the step
    ("auto", True, False, "cuda", 30, False, False, "tiles"),  # CUDA: a few kernels instead of 30 buckets'
    ("auto", True, False, "cuda", 1, False, False, "buckets"),  # equal widths: one bucket already
    ("auto", False, False, "cuda", 30, False, False, "buckets"),  # deep: hidden-to-hidden stays bucketed
    ("auto", True, False, "cuda", 30, True, True, "jagged"),  # bf16 and a grouped matmul
    ("auto", True, True, "cuda", 30, True, True, "tiles"),  # dropout: jagged cannot, tiles can
    ("tiles", True, True, "cpu", 1, False, False, "tiles"),
    ("buckets", True, False, "cuda", 30, True, True, "buckets"),
])
def test_kernel_choice(kernel, one_layer, dropout, device, buckets, autocast, grouped, want):
    from overparam.train.fused.engine import choose_kernel

    assert choose_kernel(kernel, one_layer, dropout, device, buckets, autocast, grouped) == want


def test_kernel_choice_refuses_what_it_cannot_run():
    from overparam.train.fused.engine import choose_kernel

    with pytest.raises(ValueError, match="expected one of"):
        choose_kernel("fast", True, False, "cpu", 1, False, False)
    with pytest.raises(ValueError, match="one-hidden-layer"):
        choose_kernel("tiles", False, False, "cpu", 1, False, False)
    with pytest.raises(ValueError, match="dropout"):
        choose_kernel("jagged", True, True, "cuda", 30, True, True)


def test_cuda_cost_model_counts_a_tiled_group_as_one_bucket():
    """Widths 8…4096 make ~30 buckets; on CUDA they train side by side, so the fused step's
    predicted overhead is one bucket's and its FLOPs are the widths rounded up to 8."""
    runs = runs_of({"kind": "digits", "train_size": 1000}, {"family": "mlp"},
                   {"model.width": {"geometric": [8, 4096], "count": 64}}, {"optimizer": "adam", "batch_size": 128})
    task = load_task(runs[0].config["task"])
    c = grouping.COST["cuda"]
    loop, fused_cost = grouping.step_costs(runs, task, torch.device("cuda"))
    assert loop == pytest.approx(len(runs) * c["LOOP_STEP"] + sum(
        128 * mlp.flops_per_example(r.config["model"], shape_of(task)) for r in runs) / c["LOOP_RATE"])
    overhead = c["GROUP_STEP"] + c["BUCKET_STEP"] + len(runs) * c["MEMBER_STEP"]
    assert overhead < fused_cost < overhead + 2 * (loop - len(runs) * c["LOOP_STEP"]) * c["LOOP_RATE"] / c["FUSED_RATE"]
    assert len(plan_layout([r.config for r in runs], shape_of(task), "cuda").buckets) > 20


@pytest.mark.parametrize("n,batch,steps", [(1000, 128, 50), (100, 7, 40), (50, 49, 9), (64, 64, 3)])
def test_group_batches_are_each_members_batch_order(n, batch, steps):
    """The epoch-at-once draw yields, row for row, what ``batch_indices`` gives each member alone."""
    from overparam.train.batches import batch_indices
    from overparam.train.fused.data import group_batches

    seeds = [3, 1, 1, 7, 2, 3]
    got = list(group_batches(n, batch, steps, seeds, torch.device("cpu")))
    alone = [list(batch_indices(n, batch, steps, s)) for s in seeds]
    assert len(got) == steps
    for step, rows in enumerate(got):
        for member, seed_rows in enumerate(alone):
            assert torch.equal(rows if rows.dim() == 1 else rows[member], seed_rows[step])
