"""The Ray executor against the local one (the reference): same results, every run exactly once.

One local Ray (2 CPUs, no dashboard) serves the whole module: starting Ray costs most of the
time here, so the sweeps are tiny. Skipped when the ``ray`` extra is not installed.
"""

import gc
import os
import signal
import sqlite3
import threading
import time

import pytest

ray = pytest.importorskip("ray")

from overparam.errors import DataError, OverparamError  # noqa: E402
from overparam.store import load_runs, open_store  # noqa: E402
from overparam.sweep.checkpoints import load_checkpoint  # noqa: E402
from overparam.sweep.runner import run_sweep  # noqa: E402
from overparam.sweep.work import execute_group  # noqa: E402
from overparam.train.run import train_run  # noqa: E402

# teacher (Gaussian features) rather than digits: no scikit-learn import in each cold worker
SPEC = {"name": "ray-small", "task": {"kind": "teacher", "train_size": 100, "test_size": 200, "dim": 20},
        "model": {"family": "mlp", "depth": 1},
        "train": {"optimizer": "adam", "steps": 12, "batch_size": 32, "eval_every": 6},
        "vary": {"model.width": [4, 8, 16]}}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    # "local": a private Ray even if `ray start` left a cluster on this machine
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning")

    @ray.remote(num_cpus=1)
    def warm_up():  # a worker's cold start (torch, the training code, the data) while the driver works
        import overparam.sweep.ray  # noqa: F401  (what _train_group needs first)
        import overparam.train.loop  # noqa: F401

        time.sleep(0.5)  # hold this worker so the other task lands on the other one

    warm_up.remote(), warm_up.remote()
    yield
    ray.shutdown()


def statuses(directory):
    con = sqlite3.connect(directory / "overparam.sqlite")
    try:
        return dict(con.execute("SELECT id, status FROM runs").fetchall())
    finally:
        con.close()


@pytest.mark.parametrize("fuse", ["off", "on"])
def test_ray_matches_local(tmp_path, fuse):
    local = run_sweep(SPEC, tmp_path / "local", fuse=fuse, progress=False)
    remote = run_sweep(SPEC, tmp_path / "ray", executor="ray", fuse=fuse, progress=False)
    assert local.trained == remote.trained == 3 and not remote.failed
    a = load_runs(tmp_path / "local").set_index("id").sort_index()
    b = load_runs(tmp_path / "ray").set_index("id").sort_index()
    assert list(a.index) == list(b.index)
    for col in ("status", "params", "flops", "train_loss", "test_loss"):
        assert (a[col] == b[col]).all(), col
    # the driver wrote the workers' weights: identical checkpoints, bit for bit
    with open_store(tmp_path / "local") as store:
        configs = {r["id"]: r["config"] for r in store.runs()}
    for run_id in a.index:
        x = load_checkpoint(tmp_path / "local" / "checkpoints" / f"{run_id}.safetensors", run_id, configs[run_id])
        y = load_checkpoint(tmp_path / "ray" / "checkpoints" / f"{run_id}.safetensors", run_id, configs[run_id])
        assert x.keys() == y.keys() and all((x[k] == y[k]).all() for k in x)


def test_killed_worker_is_retried_from_its_snapshot_and_every_run_lands_once(tmp_path):
    marker = tmp_path / "crashed"

    def crash_after_a_snapshot(group, task, device, snapshots=None):  # a local function: Ray ships it by value
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))  # the first attempt to get here, only
        except FileExistsError:
            return execute_group(group, task, device, snapshots)
        snap = snapshots.for_runs(group.runs, device)
        write = snap.save

        def save_then_die(*args, **kwargs):
            write(*args, **kwargs)
            os._exit(1)  # the worker process dies mid-task, as on a lost node

        snap.save = save_then_die
        train_run(group.runs[0].config, task, device, snap)

    out = tmp_path / "s"
    summary = run_sweep(SPEC, out, executor="ray", fuse="off", progress=False, snapshot_every=4,
                        executor_options={"work": crash_after_a_snapshot, "max_retries": 2})
    assert marker.exists(), "the first attempt should have killed its worker"
    assert summary.trained == 3 and not summary.failed  # one result per run, none twice
    assert set(statuses(out).values()) == {"done"}
    runs = load_runs(out).set_index("id").sort_index()
    assert len(runs) == 3
    assert sorted(runs["resumed_from"].fillna(0)) == [0, 0, 4]  # the killed run went on from step 4
    reference = run_sweep(SPEC, tmp_path / "local", fuse="off", progress=False, snapshot_every="off")
    assert reference.trained == 3
    local = load_runs(tmp_path / "local").set_index("id").sort_index()
    for col in ("train_loss", "test_loss", "param_norm"):
        assert local[col].equals(runs[col]), col  # resumed on another worker: still bit-identical
    assert not (out / "checkpoints" / "partial").exists()  # snapshots go once results are stored


def test_bad_input_on_a_worker_is_the_same_error_as_locally(tmp_path):
    def bad(group, task, device, snapshots=None):
        raise DataError("digits: unusable (test)")

    with pytest.raises(OverparamError, match="unusable"):
        run_sweep(SPEC, tmp_path / "s", executor="ray", fuse="off", progress=False,
                  executor_options={"work": bad})
    assert set(statuses(tmp_path / "s").values()) == {"pending"}  # nothing left 'running'


def test_ctrl_c_cancels_and_leaves_the_store_consistent(tmp_path):
    def widest_is_slow(group, task, device, snapshots=None):
        if group.runs[0].config["model"]["width"] == 16:
            time.sleep(120)  # cancelled long before this ends
        return execute_group(group, task, device, snapshots)

    out = tmp_path / "s"
    sent = threading.Event()
    sent_at: list[float] = []

    def interrupt_when_one_lands():  # Ctrl-C as soon as a quick run is stored
        deadline = time.time() + 120
        while time.time() < deadline:
            try:  # the file may exist before its tables do
                landed = (out / "overparam.sqlite").exists() and "done" in statuses(out).values()
            except sqlite3.OperationalError:
                landed = False
            if landed:
                sent_at.append(time.time())
                sent.set()
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=interrupt_when_one_lands, daemon=True)
    # hypothesis (an earlier module's property tests) times every gc pass with a gc callback; a Ctrl-C
    # that lands while that callback runs is raised inside it and swallowed as "unraisable". No
    # such callback exists in the CLI, so none may run here.
    callbacks = gc.callbacks[:]
    gc.callbacks.clear()
    try:
        watcher.start()
        with pytest.raises(KeyboardInterrupt):
            run_sweep(SPEC, out, executor="ray", fuse="off", progress=False,
                      executor_options={"work": widest_is_slow})
    finally:
        gc.callbacks[:] = callbacks
    stopped = time.time()
    watcher.join()
    assert sent.is_set()
    assert stopped - sent_at[0] < 30, "Ctrl-C should not wait for the running tasks"
    after = statuses(out)
    assert "running" not in after.values() and "done" in after.values()
    assert [s for r, s in after.items() if r in slow_ids(out)] == ["pending"]  # cancelled, not lost
    again = run_sweep(SPEC, out, fuse="off", progress=False)  # resume: only what is left
    assert again.already_done + again.trained == 3 and again.trained >= 1


def slow_ids(directory):
    return {r["id"] for r in load_runs(directory).to_dict("records") if r["model.width"] == 16}


def test_gpu_request_is_a_fraction_sized_by_group_memory():
    import torch

    from overparam.data import load_task
    from overparam.spec import load_spec
    from overparam.sweep.grouping import Group
    from overparam.sweep.plan import memory_estimate
    from overparam.sweep.ray import RayExecutor

    runs = load_spec(SPEC).runs()
    task = load_task(runs[0].config["task"])
    need = sum(memory_estimate(r.config, task) for r in runs)
    cpu = RayExecutor(torch.device("cpu"))
    assert cpu.gpus(Group(runs), task) == 0.0
    roomy = RayExecutor(torch.device("cuda"), gpu_memory=1000 * need)
    assert roomy.gpus(Group(runs), task) == 1 / 8  # small groups share a card, 8 at most
    tight = RayExecutor(torch.device("cuda"), gpu_memory=need // 3)
    assert tight.gpus(Group(runs), task) == 1.0  # never more than one card per task
    half = RayExecutor(torch.device("cuda"), gpu_memory=2 * need)
    assert half.gpus(Group(runs), task) == 0.5


def test_an_address_where_nothing_listens_fails_fast():
    import socket

    from overparam.sweep.ray import _probe

    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.time()
    with pytest.raises(OverparamError, match="no Ray cluster answers"):
        _probe(f"127.0.0.1:{port}")
    with pytest.raises(OverparamError, match="HOST:PORT"):
        _probe("127.0.0.1:http")
    assert time.time() - start < 10


def test_workers_read_the_images_the_driver_decoded_from_the_sweep_cache(tmp_path):
    """A folder of images is decoded once, by the driver, into DIR/cache; each worker reads that array."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        for i in range(5):
            path = tmp_path / "img" / "train" / c / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (6, 5), dtype=np.uint8)).save(path)
    seen = tmp_path / "seen"

    def record_where_the_task_came_from(group, task, device, snapshots=None):  # shipped by value to the worker
        with open(seen, "a") as fh:
            fh.write(task.info["cache"] + "\n")
        return execute_group(group, task, device, snapshots)

    spec = {"name": "ray-images", "task": {"kind": "images", "path": str(tmp_path / "img")},
            "model": {"family": "mlp"}, "train": {"optimizer": "adam", "steps": 6, "batch_size": 4},
            "vary": {"model.width": [4, 8]}}
    summary = run_sweep(spec, tmp_path / "s", executor="ray", fuse="off", progress=False,
                        executor_options={"work": record_where_the_task_came_from})
    assert summary.trained == 2 and not summary.failed
    assert seen.read_text().split() == ["disk", "disk"]  # neither worker decoded the folder again
    local = run_sweep(spec, tmp_path / "local", fuse="off", progress=False)
    assert local.trained == 2
    a = load_runs(tmp_path / "s").set_index("id").sort_index()
    b = load_runs(tmp_path / "local").set_index("id").sort_index()
    assert (a["test_loss"] == b["test_loss"]).all()
