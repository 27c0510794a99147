"""Training snapshots: a run stopped after a snapshot and resumed ends bit-identical to one never stopped.

The truth is the same run trained without interruption (the loop, the LM trainer, the fused
engine, a local sweep). Between the two halves the global torch stream is reseeded, so the
dropout masks of the second half must come from the snapshot; a snapshot whose random streams
are replaced must then give different weights (the comparison can fail). Also: snapshots that
must not be used are ignored with a warning, the time-based schedule, and the sweep's flags.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from overparam.cli import main
from overparam.data import load_task
from overparam.data.base import TaskData
from overparam.data.images import augmenter
from overparam.errors import OverparamError
from overparam.spec import Spec, load_spec, resolve_config
from overparam.store import load_runs, open_store
from overparam.sweep.checkpoints import load_checkpoint, write_atomically
from overparam.sweep.grouping import Group, plan_groups
from overparam.sweep.runner import run_sweep
from overparam.sweep.snapshots import SnapshotPolicy, parse_every, snapshot_policy
from overparam.sweep.work import execute_group
from overparam.train.fused import train_group
from overparam.train.fused_cnn import train_cnn_group
from overparam.train.fused_gpt import train_gpt_group
from overparam.train.lm_measures import record_lm_measures
from overparam.train.run import train_run
from overparam.train.snapshot import Snapshots, TrainingState

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


class Stop(Exception):
    """Stands for a kill right after a snapshot was written."""


def stopping(snap: Snapshots) -> Snapshots:
    real = snap.save

    def save_then_stop(*args, **kwargs):
        real(*args, **kwargs)
        raise Stop

    snap.save = save_then_stop
    return snap


def interrupt_then_resume(train, path: Path, owners, every: int):
    """Train until the first snapshot, stop, then train again from it: (result, the second Snapshots)."""
    with pytest.raises(Stop):
        train(stopping(Snapshots(path, owners, CPU, every_steps=every)))
    torch.manual_seed(12345)  # the rest of the dropout stream must come from the snapshot
    snap = Snapshots(path, owners, CPU, every_steps=every)
    return train(snap), snap


def group_interrupted_and_resumed(train_group_fn, configs, task, path: Path, every: int):
    """A fused group trained straight through, and stopped at its first snapshot then resumed:
    (uninterrupted results, resumed results, the second Snapshots)."""
    want = train_group_fn(configs, task, CPU)
    owners = [(str(i), c) for i, c in enumerate(configs)]
    got, snap = interrupt_then_resume(lambda s: train_group_fn(configs, task, CPU, snapshots=s), path, owners,
                                      every=every)
    return want, got, snap


def assert_identical(got, want) -> None:
    assert got.status == want.status == "done"
    assert got.metrics == want.metrics
    assert got.curve == want.curve
    assert got.state.keys() == want.state.keys()
    assert all(torch.equal(got.state[k], want.state[k]) for k in want.state)


def image_task(n: int = 48, side: int = 8) -> TaskData:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 3, side, side)).astype(np.float32)
    y = rng.integers(0, 10, n)
    task = TaskData("classification", x, y, x[: n // 2], y[: n // 2], 10, y.copy(), info={})
    task.augment_fn = augmenter("crop_flip", 2)  # draws from the run's augmentation generator
    return task


def cnn_config(**train) -> dict:
    train = {"steps": 12, "batch_size": 16, "eval_every": 3, "dropout": 0.2, **train}
    return resolve_config({"task": {"kind": "digits"}, "model": {"family": "cnn", "width": 1}, "train": train,
                           "seed": 3})


def teacher_config(**train) -> dict:
    train = {"optimizer": "adam", "steps": 12, "batch_size": 32, "eval_every": 6, **train}
    return resolve_config({"task": {"kind": "teacher", "train_size": 100, "test_size": 50, "dim": 10},
                           "model": {"family": "mlp", "width": 8}, "train": train})


# --- bit-identical resumption ----------------------------------------------------------------------

@pytest.mark.parametrize("optimizer", [{"optimizer": "adam"}, {"optimizer": "sgd", "momentum": 0.9, "lr": 0.05}])
def test_loop_resumes_bit_identical_with_dropout_and_augmentation(tmp_path, optimizer):
    cfg, task = cnn_config(**optimizer), image_task()
    want = train_run(cfg, task, CPU)
    got, snap = interrupt_then_resume(lambda s: train_run(cfg, task, CPU, s), tmp_path / "s.safetensors",
                                      [("run", cfg)], every=5)
    assert snap.resumed_from == 5 and snap.written == 1  # step 10 (12 is the end: never snapshotted)
    assert_identical(got, want)


def test_the_snapshots_random_streams_are_what_resumes(tmp_path):
    """Control: the same snapshot with other dropout/augmentation streams trains to other weights."""
    from safetensors import safe_open

    cfg, task, path = cnn_config(), image_task(), tmp_path / "s.safetensors"
    want = train_run(cfg, task, CPU)
    with pytest.raises(Stop):
        train_run(cfg, task, CPU, stopping(Snapshots(path, [("run", cfg)], CPU, every_steps=5)))
    with safe_open(str(path), framework="pt") as fh:
        meta, tensors = fh.metadata(), {k: fh.get_tensor(k) for k in fh.keys()}
    assert {"rng/torch_cpu", "rng/augment"} <= tensors.keys()
    tensors["rng/torch_cpu"] = torch.Generator().manual_seed(7).get_state()
    tensors["rng/augment"] = torch.Generator().manual_seed(8).get_state()
    write_atomically(path, tensors, meta)
    snap = Snapshots(path, [("run", cfg)], CPU, every_steps=5)
    got = train_run(cfg, task, CPU, snap)
    assert snap.resumed_from == 5
    assert not torch.equal(got.state["convs.0.weight"], want.state["convs.0.weight"])


def test_language_model_resumes_bit_identical(tmp_path):
    cfg = resolve_config({
        "task": {"kind": "markov", "vocab_size": 8, "order": 1, "branching": 2, "train_size": 4000,
                 "test_size": 1000},
        "model": {"family": "gpt", "n_layer": 1, "d_model": 16, "n_head": 2, "context": 8},
        "train": {"optimizer": "adamw", "lr": 1e-2, "steps": 10, "batch_size": 8, "warmup_steps": 2,
                  "schedule": "cosine", "eval_every": 4, "dropout": 0.1, "weight_decay": 0.1}})
    task = load_task(cfg["task"])
    want = train_run(cfg, task, CPU)
    got, snap = interrupt_then_resume(lambda s: train_run(cfg, task, CPU, s), tmp_path / "s.safetensors",
                                      [("run", cfg)], every=4)
    assert snap.resumed_from == 4
    assert_identical(got, want)
    assert [s for s, _ in got.curve] == [0, 4, 8, 10]  # the curve before the stop came from the snapshot


def test_fused_group_resumes_bit_identical(tmp_path):
    """Members of two widths and seeds, one with its own lr; per-member dropout generators."""
    base = {"task": {"kind": "teacher", "train_size": 100, "test_size": 50, "dim": 10},
            "train": {"optimizer": "adam", "steps": 12, "batch_size": 32, "eval_every": 5, "dropout": 0.2}}
    configs = [resolve_config({**base, "model": {"family": "mlp", "depth": 2, "width": w}, "seed": seed,
                               "train": {**base["train"], "lr": lr}})
               for w, seed, lr in ((4, 0, 1e-3), (16, 1, 1e-3), (8, 0, 3e-3))]
    want, got, snap = group_interrupted_and_resumed(train_group, configs, load_task(configs[0]["task"]),
                                                    tmp_path / "g.safetensors", every=5)
    assert snap.resumed_from == 5
    for g, w in zip(got, want, strict=True):
        assert_identical(g, w)


@pytest.mark.parametrize("family", ["cnn", "resnet18k"])
def test_fused_conv_group_resumes_bit_identical(tmp_path, family):
    """Two widths (buckets) and two seeds (grouped first conv), crop_flip augmentation, per-member dropout
    and lr: parameters, BatchNorm running statistics (in the state dicts), metrics and curves."""
    def member(width: int, seed: int, **train) -> dict:
        cfg = {"task": {"kind": "digits"}, "model": {"family": family, "width": width}, "seed": seed,
               "train": {"steps": 12, "batch_size": 16, "eval_every": 5, **train}}
        return resolve_config(cfg)

    configs = [member(1, 3, dropout=0.2), member(2, 4, lr=3e-3), member(1, 4, dropout=0.1, weight_decay=1e-3)]
    path = tmp_path / "g.safetensors"
    want, got, snap = group_interrupted_and_resumed(train_cnn_group, configs, image_task(n=32), path, every=5)
    assert snap.resumed_from == 5 and snap.written == 1  # step 10
    for g, w in zip(got, want, strict=True):
        assert_identical(g, w)
        assert [s for s, _ in g.curve] == [0, 5, 10, 12]
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        keys = set(fh.keys())
    assert {"rng/augment/0", "rng/augment/1", "rng/dropout/0", "rng/dropout/1"} <= keys  # slots 0, 1: width 1
    assert "rng/dropout/2" not in keys  # the width-2 member has no dropout
    assert any(k.startswith("state/bn/") and k.endswith("running_var") for k in keys)


def test_fused_gpt_group_resumes_bit_identical(tmp_path):
    """Two shapes (buckets) × two seeds, a clipped member with its own lr: parameters, metrics, curves."""
    base = {"task": {"kind": "markov", "vocab_size": 8, "order": 1, "branching": 2, "train_size": 2000,
                     "test_size": 400},
            "train": {"optimizer": "adamw", "lr": 1e-2, "steps": 10, "batch_size": 4, "eval_every": 4,
                      "warmup_steps": 2, "schedule": "cosine", "weight_decay": 0.1}}
    configs = [resolve_config({**base, "model": {"family": "gpt", "n_layer": 1, "d_model": d, "n_head": 2,
                                                 "context": 8}, "seed": seed,
                               "train": {**base["train"], **train}})
               for d, seed, train in ((8, 0, {}), (16, 1, {}), (8, 1, {"lr": 3e-3, "clip": 0.05}))]
    want, got, snap = group_interrupted_and_resumed(train_gpt_group, configs, load_task(configs[0]["task"]),
                                                    tmp_path / "g.safetensors", every=4)
    assert snap.resumed_from == 4
    for g, w in zip(got, want, strict=True):
        assert_identical(g, w)
        assert [s for s, _ in g.curve] == [0, 4, 8, 10]


@pytest.mark.parametrize("family", ["cnn", "gpt"])
def test_a_sweeps_fused_conv_and_gpt_groups_resume_from_their_snapshot(tmp_path, family):
    """The sweep's worker (``execute_group``) hands each engine its group's snapshot: a retry resumes."""
    if family == "cnn":
        spec = {"task": {"kind": "digits"}, "model": {"family": "cnn"}, "vary": {"model.width": [1, 2]},
                "train": {"steps": 8, "batch_size": 16, "eval_every": 4, "dropout": 0.1}}
        task, train = image_task(n=32), train_cnn_group
    else:
        spec = {"task": {"kind": "markov", "vocab_size": 8, "order": 1, "branching": 2, "train_size": 2000,
                         "test_size": 400},
                "model": {"family": "gpt", "n_layer": 1, "n_head": 2, "context": 8},
                "vary": {"model.d_model": [8, 16]}, "train": {"optimizer": "adamw", "steps": 8, "batch_size": 4,
                                                              "eval_every": 4}}
        task, train = None, train_gpt_group
    runs = Spec(spec).runs()
    configs = [r.config for r in runs]
    task = task or load_task(configs[0]["task"])
    want = train(configs, task, CPU)
    for config, w in zip(configs, want, strict=True):  # what the worker adds after training (a language model's)
        record_lm_measures(config, task, w, CPU)
    policy = SnapshotPolicy(str(tmp_path), every_steps=4)
    with pytest.raises(Stop):
        train(configs, task, CPU, snapshots=stopping(policy.for_runs(runs, CPU)))
    outcomes = execute_group(Group(runs, fused=True), task, CPU, policy)
    for outcome, w in zip(outcomes, want, strict=True):
        assert outcome.result.metrics.pop("resumed_from") == 4
        assert_identical(outcome.result, w)


# --- snapshots that must not be used --------------------------------------------------------------

def _snapshot_of(cfg, path: Path, device=CPU) -> None:
    with pytest.raises(Stop):
        train_run(cfg, load_task(cfg["task"]), CPU, stopping(Snapshots(path, [("run", cfg)], device, every_steps=5)))


@pytest.mark.parametrize("case, why", [
    ("garbage", "unreadable"),
    ("truncated", "unreadable"),
    ("other config", "another run or config"),
    ("other run id", "another run or config"),
    ("other device", "written on cuda"),
])
def test_a_snapshot_that_does_not_belong_is_discarded_with_a_warning(tmp_path, case, why):
    cfg = teacher_config()
    path = tmp_path / "s.safetensors"
    if case == "garbage":
        path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    elif case == "truncated":
        _snapshot_of(cfg, path)
        path.write_bytes(path.read_bytes()[:-40])
    elif case == "other config":
        _snapshot_of(teacher_config(lr=3e-3), path)
    elif case == "other run id":
        _snapshot_of(cfg, path)
    else:
        _snapshot_of(cfg, path, device=torch.device("cuda"))  # only its label: writing touches no GPU
    owner = "another" if case == "other run id" else "run"
    snap = Snapshots(path, [(owner, cfg)], CPU, every_steps=5)
    with pytest.warns(UserWarning, match=f"discarded \\(.*{why}"):
        got = train_run(cfg, load_task(cfg["task"]), CPU, snap)
    assert snap.resumed_from is None
    assert_identical(got, train_run(cfg, load_task(cfg["task"]), CPU))


# --- when: steps or time -----------------------------------------------------------------------------

def test_time_based_snapshots_follow_the_clock_and_stay_under_one_percent(tmp_path, monkeypatch):
    now = [0.0]
    snap = Snapshots(tmp_path / "s.safetensors", [("run", {"train": {"steps": 1000}})], CPU, every_seconds=60,
                     clock=lambda: now[0])
    state = TrainingState({"w": torch.zeros(3)})
    snap.resume(state, [])
    written = []
    for step in range(1, 1000):
        now[0] = step * 1.0  # one second per step
        before = snap.written
        snap.step(step, state, [])
        if snap.written > before:
            written.append(step)
    assert written[:3] == [60, 120, 180]  # the clock read after a write is the same instant here

    slow = Snapshots(tmp_path / "t.safetensors", [("run", {"train": {"steps": 1000}})], CPU, every_seconds=60,
                     clock=lambda: now[0])
    now[0] = 0.0
    slow.resume(state, [])
    from overparam import tensor_file

    real = tensor_file.write_atomically

    def write_taking_two_seconds(*args):
        real(*args)
        now[0] += 2.0

    monkeypatch.setattr(tensor_file, "write_atomically", write_taking_two_seconds)
    now[0] = 60.0
    slow.step(60, state, [])
    assert slow.interval == 200.0  # 2 s of writing stretch the interval to 2 / 1 %


@pytest.mark.parametrize("text, want", [("500", (500, 0.0)), ("90s", (0, 90.0)), ("5m", (0, 300.0)),
                                        ("1.5h", (0, 5400.0)), ("off", None), ("0", None), (250, (250, 0.0))])
def test_snapshot_every_parses_steps_durations_and_off(text, want):
    assert parse_every(text) == want


@pytest.mark.parametrize("text", ["-5", "5x", "1.5", "soon", ""])
def test_snapshot_every_refuses_what_it_cannot_read(text):
    with pytest.raises(OverparamError, match="--snapshot-every"):
        parse_every(text)


def test_where_snapshots_go(tmp_path):
    local = snapshot_policy(tmp_path / "d", "60s")
    assert local.directory == str((tmp_path / "d" / "checkpoints" / "partial").absolute())
    assert snapshot_policy(tmp_path / "d", "60s", executor="ray").directory == local.directory  # a local Ray
    assert snapshot_policy(tmp_path / "d", "60s", executor="ray", address="10.0.0.1:6379") is None
    shared = snapshot_policy(tmp_path / "d", 100, tmp_path / "nfs", executor="ray", address="10.0.0.1:6379")
    assert shared.directory == str(tmp_path / "nfs") and shared.every_steps == 100
    assert snapshot_policy(tmp_path / "d", "off") is None


# --- a sweep ---------------------------------------------------------------------------------------

SPEC = {"name": "snap", "task": {"kind": "teacher", "train_size": 100, "test_size": 50, "dim": 10},
        "model": {"family": "mlp", "depth": 1},
        "train": {"optimizer": "adam", "steps": 12, "batch_size": 32, "eval_every": 6, "dropout": 0.1},
        "vary": {"model.width": [4, 8], "seed": [0, 1]}}


@pytest.mark.parametrize("fuse", ["off", "on"])
def test_a_killed_local_sweep_resumes_its_run_from_the_snapshot(tmp_path, fuse):
    reference = run_sweep(SPEC, tmp_path / "ref", fuse=fuse, progress=False, snapshot_every="off")
    out = tmp_path / "s"
    runs = load_spec(SPEC).runs()
    group = plan_groups(runs, fuse, CPU)[0]  # the first group the sweep trains; a kill leaves its snapshot
    policy = snapshot_policy(out, 5)
    snap = stopping(policy.for_runs(group.runs, CPU))
    task = load_task(runs[0].config["task"])
    with pytest.raises(Stop):
        if group.fused:
            train_group([r.config for r in group.runs], task, CPU, snapshots=snap)
        else:
            train_run(group.runs[0].config, task, CPU, snap)
    assert policy.path(group.runs).is_file()

    summary = run_sweep(SPEC, out, fuse=fuse, progress=False, snapshot_every=5)
    assert summary.trained == reference.trained == 4 and not summary.failed
    a = load_runs(tmp_path / "ref").set_index("id").sort_index()
    b = load_runs(out).set_index("id").sort_index()
    resumed = [r.id for r in group.runs]
    assert (b.loc[resumed, "resumed_from"] == 5).all() and b.drop(index=resumed)["resumed_from"].isna().all()
    for col in ("status", "params", "train_loss", "test_loss", "train_error", "test_error", "param_norm"):
        assert a[col].equals(b[col]), col
    with open_store(out) as store:
        configs = {r["id"]: r["config"] for r in store.runs()}
    for run_id in a.index:  # the weights, bit for bit
        x = load_checkpoint(tmp_path / "ref" / "checkpoints" / f"{run_id}.safetensors", run_id, configs[run_id])
        y = load_checkpoint(out / "checkpoints" / f"{run_id}.safetensors", run_id, configs[run_id])
        assert all(torch.equal(x[k], y[k]) for k in x)
    assert not (out / "checkpoints" / "partial").exists()  # deleted once the results were stored


# --- the sweep command's flags ------------------------------------------------------------------------

@pytest.fixture()
def spec_file(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps({**SPEC, "vary": {"model.width": [4, 8]}}))
    return path


@pytest.mark.parametrize("flags, message", [
    (["--num-cpus", "2"], "--num-cpus: only with --executor ray"),
    (["--max-retries", "1"], "--max-retries: only with --executor ray"),
    (["--address", "10.0.0.1:6379"], "--address: only with --executor ray"),
    (["--executor", "ray", "--max-retries", "-1"], "--max-retries: expected an integer >= 0"),
    (["--executor", "ray", "--num-cpus", "0"], "--num-cpus: expected an integer >= 1"),
    (["--executor", "ray", "--num-cpus", "2", "--address", "10.0.0.1:6379"], "--num-cpus: sizes the local Ray"),
    (["--num-cpus", "two", "--executor", "ray"], "invalid int value"),
    (["--snapshot-every", "5x"], "--snapshot-every: expected"),
    (["--snapshot-every", "off", "--snapshot-dir", "x"], "--snapshot-dir: snapshots are off"),
])
def test_bad_sweep_flags_are_one_line_errors(tmp_path, spec_file, capsys, flags, message):
    assert main(["sweep", str(spec_file), "--out", str(tmp_path / "d"), "--no-progress", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("overparam: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "d").exists()  # refused before the sweep directory was made


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a driver without CUDA")
def test_cuda_for_a_clusters_workers_needs_no_cuda_on_the_driver(tmp_path, spec_file, capsys):
    """Locally --device cuda is refused here; with --address it goes to the cluster (none listens here)."""
    import socket

    pytest.importorskip("ray")
    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sweep = ["sweep", str(spec_file), "--no-progress", "--device", "cuda"]
    for executor in ("local", "ray"):
        assert main([*sweep, "--out", str(tmp_path / executor), "--executor", executor]) == 2
        assert "--device cuda: no CUDA device" in capsys.readouterr().err
    # planned for the cluster's GPUs (fused groups sized for an assumed card), then refused by the address
    assert main([*sweep, "--out", str(tmp_path / "c"), "--executor", "ray", "--address", f"127.0.0.1:{port}",
                 "--fuse", "on"]) == 2
    assert "no Ray cluster answers" in capsys.readouterr().err
