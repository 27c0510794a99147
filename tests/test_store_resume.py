"""Reliability from day one: a SIGKILLed sweep resumes without retraining or losing finished runs."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import yaml

from overparam.errors import StoreError
from overparam.store import Store, load_runs
from overparam.sweep.runner import run_sweep

SPEC = {"name": "kill-me", "task": {"kind": "digits", "train_size": 300},
        "model": {"family": "mlp", "depth": 1},
        "train": {"optimizer": "adam", "steps": 150, "batch_size": 64},
        "vary": {"model.width": [4, 8, 12, 16, 24, 32, 48, 64]}}


def finished(directory):
    if not (directory / "overparam.sqlite").is_file():
        return {}
    con = sqlite3.connect(directory / "overparam.sqlite")
    try:
        return dict(con.execute("SELECT id, finished_at FROM runs WHERE status='done'").fetchall())
    except sqlite3.OperationalError:
        return {}
    finally:
        con.close()


def test_sigkill_then_resume_loses_and_repeats_nothing(tmp_path):
    """Killed mid-run too: the run in training goes on from its last snapshot, to the same bits."""
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))
    out = tmp_path / "sweep"
    partial = out / "checkpoints" / "partial"
    cmd = [sys.executable, "-m", "overparam", "sweep", str(spec_file), "--out", str(out), "--no-progress",
           "--fuse", "off", "--snapshot-every", "10"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and (
            len(finished(out)) < 3 or not list(partial.glob("*.safetensors"))):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = finished(out)
    assert 0 < len(before) < 8, "the kill should land mid-sweep"
    left = {p.stem: snapshot_step(p) for p in partial.glob("*.safetensors") if p.stem not in before}  # resumed

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    after = finished(out)
    assert len(after) == 8
    assert all(after[k] == v for k, v in before.items()), "a finished run was retrained"
    con = sqlite3.connect(out / "overparam.sqlite")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 8
    con.close()

    # identical to an uninterrupted sweep (deterministic on CPU)
    ref = tmp_path / "ref"
    run_sweep(SPEC, ref, fuse="off", progress=False)
    a = load_runs(out).set_index("id").sort_index()
    b = load_runs(ref).set_index("id").sort_index()
    assert list(a.index) == list(b.index)
    assert (a["test_loss"] == b["test_loss"]).all() and (a["train_loss"] == b["train_loss"]).all()
    resumed = a["resumed_from"].dropna().to_dict() if "resumed_from" in a else {}
    assert resumed == left and not partial.exists()


def snapshot_step(path) -> int:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return int(fh.metadata()["step"])


def test_second_writer_is_refused_with_a_clear_message(tmp_path):
    with Store.create(tmp_path) as _:
        with pytest.raises(StoreError, match="another overparam process"):
            Store.create(tmp_path)
    Store.create(tmp_path).close()  # the lock is released on close


def test_rerun_trains_nothing(tmp_path):
    small = {**SPEC, "vary": {"model.width": [4, 8]}, "train": {"steps": 20}}
    first = run_sweep(small, tmp_path, progress=False)
    second = run_sweep(small, tmp_path, progress=False)
    assert first.trained == 2 and second.trained == 0 and second.already_done == 2


def test_corrupt_and_foreign_stores_are_refused_untouched(tmp_path):
    garbage = tmp_path / "g"
    garbage.mkdir()
    (garbage / "overparam.sqlite").write_bytes(b"this is not a database" * 100)
    before = (garbage / "overparam.sqlite").read_bytes()
    with pytest.raises(StoreError, match="not an overparam store"):
        load_runs(garbage)
    with pytest.raises(StoreError):
        run_sweep(SPEC, garbage, progress=False)
    assert (garbage / "overparam.sqlite").read_bytes() == before

    foreign = tmp_path / "f"
    foreign.mkdir()
    con = sqlite3.connect(foreign / "overparam.sqlite")
    con.execute("CREATE TABLE other(x)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="not an overparam store"):
        load_runs(foreign)

    future = tmp_path / "future"
    Store.create(future).close()
    con = sqlite3.connect(future / "overparam.sqlite")
    con.execute("PRAGMA user_version=99")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer"):
        load_runs(future)


def test_disk_full_during_checkpoint_leaves_store_consistent(tmp_path, monkeypatch, capsys):
    import errno

    import safetensors.torch

    from overparam.cli import main

    small = {**SPEC, "vary": {"model.width": [4, 8, 12]}, "train": {"steps": 10}}
    run_sweep({**small, "vary": {"model.width": [4]}}, tmp_path, progress=False)  # one finished run
    calls = {"n": 0}
    real = safetensors.torch.save_file

    def full_disk(tensors, filename, metadata=None):
        calls["n"] += 1
        if calls["n"] >= 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(yaml.safe_dump(small))
    assert main(["sweep", str(spec_file), "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "stored results are unaffected" in err[0]
    con = sqlite3.connect(tmp_path / "overparam.sqlite")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    status = dict(con.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())
    con.close()
    assert status == {"done": 2, "pending": 1}  # nothing half-written, nothing left 'running'
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))
    monkeypatch.setattr(safetensors.torch, "save_file", real)
    assert main(["sweep", str(spec_file), "--out", str(tmp_path), "--no-progress"]) == 0
    assert len(finished(tmp_path)) == 3
