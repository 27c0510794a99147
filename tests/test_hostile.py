"""Hostile input and failing disks (issue 19): one line and exit 2, nothing lost, bounded time.

The corpus (tests/hostile_corpus.py, shared with benchmarks/reliability.py) holds cases of every
class; the tests below add what a corpus case cannot: random YAML specs (hypothesis), real
read-only and full file systems (a small tmpfs, skipped where mounting is not allowed), injected
``ENOSPC``, damaged snapshots that must be discarded, results equal to an uninterrupted sweep.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import io
import json
import sqlite3
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path
from unittest import mock

import pytest
import torch
import yaml
from bad_input_corpus import GOOD_SPEC, make_good_store
from hostile_corpus import CASES, run_hostile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from overparam.cli import main
from overparam.errors import OverparamError, StoreError
from overparam.spec import Spec
from overparam.store import Store, load_runs
from overparam.sweep.checkpoints import load_checkpoint, write_atomically
from overparam.sweep.runner import run_sweep

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return make_good_store(tmp_path_factory.mktemp("good") / "sweep")


def cli(argv: list[str], env: dict | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), mock.patch.dict("os.environ", env or {}):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def one_error(stderr: str) -> str:
    """The single error line (other lines may be the command's own, never another error or a traceback)."""
    errors = [line for line in stderr.splitlines() if line.startswith("overparam: error:")]
    assert len(errors) == 1, stderr
    assert "internal error" not in stderr and "Traceback" not in stderr, stderr
    return errors[0]


def test_every_class_of_the_issue_has_cases():
    kinds = {c.kind for c in CASES}
    assert kinds >= {"spec types", "spec sizes", "corrupt stores", "silent corruption", "bad saved analyses", "flags",
                     "damaged in-context metrics", "changed inputs"}
    assert len(CASES) >= 60


@pytest.mark.parametrize("case", CASES, ids=[f"{c.kind}: {c.name}" for c in CASES])
def test_hostile_case(case, good, tmp_path):
    result = run_hostile(case, tmp_path, good)
    assert result.ok, f"{case.name}: {result.why}"


# -- random YAML specs --------------------------------------------------------------------------------
class Accepted(OverparamError):
    """Raised where a valid spec would start loading data: the spec passed every check."""


NAMES = ["name", "description", "task", "model", "train", "vary", "seed", "kind", "family", "width", "depth", "lr",
         "steps", "train_size", "label_noise", "optimizer", "model.width", "seed", "geometric", "linear", "count",
         "include", "zz"]
KEYS = st.one_of(st.sampled_from(NAMES), st.text(max_size=5), st.integers(-3, 3), st.booleans(), st.none(),
                 st.floats(allow_nan=False, allow_infinity=False, width=16))
LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=8),
                   st.binary(max_size=4), st.dates(), st.datetimes(),
                   st.sampled_from(["digits", "teacher", "mlp", "rff", "linear", "adam", "min_norm", "\ud800x"]))
TREES = st.recursive(LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(KEYS, inner, max_size=4)), max_leaves=25)


def _nest(depth: int, leaf):
    for i in range(depth):
        leaf = [leaf] if i % 2 else {"k": leaf}
    return leaf


def _bomb(levels: int, fanout: int):
    node = ["lol"] * fanout
    for _ in range(levels):
        node = [node] * fanout  # one object, many references: the dumper writes anchors and aliases
    return node


@st.composite
def specs(draw):
    spec = {}
    for key in draw(st.lists(st.sampled_from(["name", "description", "task", "model", "train", "vary", "seed", "x"]),
                             unique=True, max_size=7)):
        spec[key] = draw(TREES)
    task = {"kind": draw(st.one_of(st.sampled_from(["digits", "teacher"]), TREES))}
    model = {"family": draw(st.one_of(st.sampled_from(["mlp", "rff", "linear"]), TREES))}
    task.update(draw(st.dictionaries(KEYS, TREES, max_size=3)))
    model.update(draw(st.dictionaries(KEYS, TREES, max_size=3)))
    spec.setdefault("task", task)
    spec.setdefault("model", model)
    vary = draw(st.dictionaries(st.sampled_from(["model.width", "seed", "train.lr", "task.train_size", "model.x"]),
                                st.one_of(st.lists(st.integers(-2, 50), max_size=5),
                                          st.fixed_dictionaries({"geometric": st.lists(st.floats(0, 100), max_size=3),
                                                                 "count": st.sampled_from([1, 3, 0, 10**7, "x"])}),
                                          TREES), max_size=3))
    if vary:
        spec["vary"] = vary
    twist = draw(st.sampled_from(["none", "deep", "bomb", "shared"]))
    where = draw(st.sampled_from(["name", "task", "vary", "seed", "description"]))
    if twist == "deep":
        spec[where] = _nest(draw(st.integers(1, 150)), draw(LEAVES))
    elif twist == "bomb":
        spec[where] = _bomb(draw(st.integers(1, 12)), draw(st.integers(2, 10)))
    elif twist == "shared":
        shared = draw(TREES)
        spec[where] = [shared, {"again": shared}, shared]
    return spec


def _dump(spec) -> str | None:
    try:
        return yaml.dump(spec, Dumper=yaml.SafeDumper, sort_keys=False, allow_unicode=False)
    except (yaml.YAMLError, TypeError, ValueError, RecursionError):
        return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spec=specs(), mutation=st.one_of(st.none(), st.tuples(st.integers(0, 400), st.text(max_size=4))))
def test_random_yaml_specs_end_in_one_line_within_a_time_bound(tmp_path, good, spec, mutation):
    """Any spec, of any shape and types (non-string keys, deep nesting, aliases, bombs, damaged text), ends in
    exit 2 with one error line (a refusal, or the stand-in for 'accepted': data loading) in bounded time."""
    text = _dump(spec)
    if text is None:
        return
    if mutation is not None:
        at, junk = mutation
        text = text[:at] + junk + text[at:]
    path = tmp_path / f"{uuid.uuid4().hex}.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    before = (good / "overparam.sqlite").read_bytes()
    start = time.perf_counter()
    with mock.patch("overparam.sweep.runner.load_sweep_task", side_effect=Accepted("spec accepted")):
        code, _, err = cli(["sweep", str(path), "--out", str(good), "--no-progress"])
    seconds = time.perf_counter() - start
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("overparam: error:"), err
    assert "internal error" not in err
    assert seconds < 5.0, f"{seconds:.1f} s: {err}"
    assert (good / "overparam.sqlite").read_bytes() == before


def test_the_size_limits_answer_in_well_under_a_second_from_a_fresh_process(tmp_path):
    """The whole command, imports included: limits are checked before torch loads."""
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("name:\n" + "".join(f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}" if i else '"x"'] * 9) + "]\n"
                                        for i in range(9)))
    for spec in (bomb, Path("/dev/zero")):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "overparam", "sweep", str(spec), "--out", str(tmp_path / "o")],
                              capture_output=True, text=True, timeout=60)
        seconds = time.perf_counter() - start
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert seconds < 1.0, seconds
        assert not (tmp_path / "o").exists()


def test_raising_a_limit_admits_what_it_refused(tmp_path, monkeypatch):
    spec = {**GOOD_SPEC, "vary": {"seed": list(range(120)), "model.width": list(range(1, 101))}}
    with pytest.raises(OverparamError, match="12,000 runs"):
        Spec(spec)
    monkeypatch.setenv("OVERPARAM_MAX_RUNS", "20000")
    assert len(Spec(spec).axes["seed"]) == 120  # counted, not expanded: runs() is not called


# -- stores: damage is named, the rest is used ------------------------------------------------------
def _damaged_copy(good: Path, tmp: Path, sql: str) -> tuple[Path, str]:
    import shutil

    bad = tmp / "bad"
    shutil.copytree(good, bad)
    con = sqlite3.connect(bad / "overparam.sqlite")
    victim = con.execute("SELECT id FROM runs ORDER BY idx").fetchone()[0]
    con.execute(sql, (victim,))
    con.commit()
    con.close()
    return bad, victim


def test_one_bad_row_is_named_and_the_other_runs_are_listed(good, tmp_path):
    bad, victim = _damaged_copy(good, tmp_path, "UPDATE runs SET config='null' WHERE id=?")
    code, out, err = cli(["runs", str(bad), "--json"])
    assert code == 2
    line = one_error(err)
    assert "corrupt store" in line and victim in line and str(bad / "overparam.sqlite") in line
    listed = [r["id"] for r in json.loads(out)["runs"]]
    assert listed == [r for r in load_runs(good)["id"] if r != victim] and listed


def test_the_report_of_a_store_with_a_bad_row_is_built_from_the_others(good, tmp_path):
    bad, victim = _damaged_copy(good, tmp_path, "UPDATE runs SET metrics='{bad' WHERE id=?")
    code, _, err = cli(["report", str(bad)])
    assert code == 2 and victim in one_error(err)
    page = (bad / "report.html").read_text()
    others = [r for r in load_runs(good)["id"] if r != victim]
    assert all(r in page for r in others) and f"run {victim} metrics" in page  # the note names what is left out


def test_check_lists_every_damaged_part_and_passes_a_good_store(good, tmp_path):
    code, out, _ = cli(["runs", str(good), "--check", "--json"])
    assert code == 0 and json.loads(out)["check"]["ok"]
    bad, victim = _damaged_copy(good, tmp_path, "UPDATE runs SET params='abc' WHERE id=?")
    ckpt = next(p for p in (bad / "checkpoints").glob("*.safetensors") if p.stem != victim)
    data = bytearray(ckpt.read_bytes())
    data[-5] ^= 1
    ckpt.write_bytes(bytes(data))
    (bad / "analyses").mkdir()
    (bad / "analyses" / "compress.json").write_text("[1]")
    code, out, err = cli(["runs", str(bad), "--check", "--json"])
    assert code == 2 and "damaged" in one_error(err)
    damage = json.loads(out)["check"]["damage"]
    assert {(d["run"], d["what"]) for d in damage} == {(victim, "params"), (ckpt.stem, "checkpoint"),
                                                        (None, "analysis compress.json")}


def test_a_half_made_store_of_an_older_version_is_completed_not_refused(tmp_path):
    """Older overparam created tables one by one: a full disk could leave only some of them."""
    tmp_path.mkdir(exist_ok=True)
    con = sqlite3.connect(tmp_path / "overparam.sqlite")
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    con.commit()
    con.close()
    code, _, err = cli(["runs", str(tmp_path)])
    assert code == 2 and "creation was interrupted" in one_error(err)
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(GOOD_SPEC))
    code, _, err = cli(["sweep", str(spec), "--out", str(tmp_path), "--no-progress"])
    assert code == 0 and "completing a store whose creation was interrupted" in err
    assert set(load_runs(tmp_path)["status"]) == {"done"}


def test_store_creation_is_all_tables_or_nothing(tmp_path, monkeypatch):
    """A failure while the schema is built leaves no store file at all (the next sweep starts clean)."""
    import overparam.store_file as store_file

    real = store_file._verify_new

    def broken(tmp, version):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store_file, "_verify_new", broken)
    with pytest.raises(StoreError, match="disk is full"):
        Store.create(tmp_path / "s")
    assert not (tmp_path / "s" / "overparam.sqlite").exists()
    assert [p.name for p in (tmp_path / "s").iterdir() if p.name.startswith(".creating")] == []
    monkeypatch.setattr(store_file, "_verify_new", real)
    with Store.create(tmp_path / "s") as store:
        assert store.runs() == []


# -- full disks: injected ENOSPC ----------------------------------------------------------------------
SMALL = {**GOOD_SPEC, "vary": {"model.width": [4, 8, 12]}, "train": {"steps": 10}}


def _sweep_cli(tmp: Path, spec: dict, out: Path, *flags: str) -> tuple[int, str, str]:
    path = tmp / f"{uuid.uuid4().hex}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return cli(["sweep", str(path), "--out", str(out), "--no-progress", "--fuse", "off", *flags])


def _finished(directory: Path) -> dict[str, float]:
    con = sqlite3.connect(directory / "overparam.sqlite")
    try:
        return dict(con.execute("SELECT id, finished_at FROM runs WHERE status='done'").fetchall())
    finally:
        con.close()


def test_a_full_disk_while_storing_a_result_is_one_line_and_the_rerun_resumes(tmp_path, monkeypatch):
    out = tmp_path / "s"
    real = Store.record
    calls = {"n": 0}

    def full_on_second(self, run_id, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            with self._writing(f"store the result of run {run_id}"):
                raise sqlite3.OperationalError("database or disk is full")
        return real(self, run_id, *args, **kwargs)

    monkeypatch.setattr(Store, "record", full_on_second)
    code, _, err = _sweep_cli(tmp_path, SMALL, out)
    assert code == 2 and "the disk is full" in one_error(err) and len(err.strip().splitlines()) == 1
    before = _finished(out)
    assert len(before) == 1
    monkeypatch.setattr(Store, "record", real)
    assert _sweep_cli(tmp_path, SMALL, out)[0] == 0
    after = _finished(out)
    assert len(after) == 3 and all(after[k] == v for k, v in before.items())  # finished runs untouched
    reference = tmp_path / "ref"
    run_sweep(SMALL, reference, progress=False, fuse="off")
    a, b = load_runs(out).set_index("id").sort_index(), load_runs(reference).set_index("id").sort_index()
    assert list(a.index) == list(b.index) and (a["test_loss"] == b["test_loss"]).all()


def test_safetensors_reporting_a_full_disk_is_one_line_naming_the_cause(tmp_path, monkeypatch):
    import safetensors.torch
    from safetensors import SafetensorError

    def full(tensors, filename, metadata=None):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    code, _, err = _sweep_cli(tmp_path, SMALL, tmp_path / "s")
    assert code == 2 and "No space left on device" in one_error(err)
    assert set(load_runs(tmp_path / "s")["status"]) == {"pending"}


def test_a_snapshot_that_cannot_be_written_does_not_stop_training(tmp_path, monkeypatch):
    import overparam.train.snapshot as snapshot

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(snapshot.Snapshots, "save", full)
    code, _, err = _sweep_cli(tmp_path, SMALL, tmp_path / "s", "--snapshot-every", "3")
    assert code == 0 and "cannot write snapshot" in err
    assert all(line.startswith("overparam: warning:") or "runs in" in line for line in err.strip().splitlines())
    assert set(load_runs(tmp_path / "s")["status"]) == {"done"}


# -- real file systems: a small tmpfs (root, as on CI; skipped where mounting is refused) ---------------
@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                              timeout=30)
    except (OSError, subprocess.SubprocessError):
        pytest.skip("cannot run mount here")
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()[:100]}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def _remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True, capture_output=True, timeout=30)


FULL = {**GOOD_SPEC, "name": "full", "vary": {"model.width": [4, 8, 16, 1024]}}  # the last checkpoint is ~300 KB


def test_a_disk_that_fills_mid_sweep_loses_nothing_and_the_rerun_resumes(tmp_path):
    with tmpfs(tmp_path / "disk", "220k") as disk:
        out = disk / "s"
        code, _, err = _sweep_cli(tmp_path, FULL, out)
        assert code == 2, err
        line = one_error(err)
        assert "No space left on device" in line or "disk is full" in line
        before = _finished(out)
        assert 1 <= len(before) < 4
        _remount(disk, "size=8m")  # space freed
        code, _, err = _sweep_cli(tmp_path, FULL, out)
        assert code == 0, err
        after = _finished(out)
        assert len(after) == 4 and all(after[k] == v for k, v in before.items())
        reference = tmp_path / "ref"
        run_sweep(FULL, reference, progress=False, fuse="off")
        a, b = load_runs(out).set_index("id").sort_index(), load_runs(reference).set_index("id").sort_index()
        assert (a["test_loss"] == b["test_loss"]).all()


def test_a_read_only_store_is_read_and_reported_elsewhere(good, tmp_path):
    import shutil

    with tmpfs(tmp_path / "ro", "4m") as ro:
        shutil.copytree(good, ro / "s")
        _remount(ro, "ro")
        try:
            code, out, err = cli(["runs", str(ro / "s"), "--json"])
            assert code == 0 and len(json.loads(out)["runs"]) == 2, err
            code, out, err = cli(["analyze", str(ro / "s"), "--json"])
            assert code == 0 and json.loads(out)["curves"], err
            code, _, err = cli(["report", str(ro / "s")])
            assert code == 2 and "Read-only file system" in one_error(err) and "--out" in err
            code, _, err = cli(["report", str(ro / "s"), "--out", str(tmp_path / "rep")])
            assert code == 0 and (tmp_path / "rep" / "report.html").is_file(), err
            code, _, err = _sweep_cli(tmp_path, GOOD_SPEC, ro / "s")
            assert code == 2 and "Read-only file system" in one_error(err)
            code, _, err = _sweep_cli(tmp_path, GOOD_SPEC, ro / "new")
            assert code == 2 and "Read-only file system" in one_error(err)
        finally:
            _remount(ro, "rw")


# -- silent corruption ------------------------------------------------------------------------------
def _tensor_span(path: Path, name: str) -> tuple[int, int]:
    """Byte offsets of tensor ``name``'s data in a safetensors file."""
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + size])
    start, end = header[name]["data_offsets"]
    return 8 + size + start, 8 + size + end


def test_a_checkpoint_without_a_checksum_still_loads_and_one_with_it_is_verified(good, tmp_path):
    from safetensors import safe_open

    run = load_runs(good).iloc[0]
    path = good / "checkpoints" / f"{run['id']}.safetensors"
    with safe_open(str(path), framework="pt") as fh:
        meta, state = fh.metadata(), {k: fh.get_tensor(k) for k in fh.keys()}
    assert "sha256" in meta
    config = json.loads(meta["config"])
    old = tmp_path / "old.safetensors"
    from safetensors.torch import save_file

    save_file(state, str(old), metadata={k: v for k, v in meta.items() if k != "sha256"})  # written before checksums
    assert all(torch.equal(load_checkpoint(old, run["id"], config)[k], state[k]) for k in state)
    start, _ = _tensor_span(path, sorted(state)[0])
    data = bytearray(path.read_bytes())
    data[start] ^= 0x01  # one bit of one weight
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=f"checkpoint of run {run['id']} is damaged"):
        load_checkpoint(damaged, run["id"], config)


SNAP = {**GOOD_SPEC, "vary": {}, "model": {"family": "mlp", "width": 8}, "train": {"steps": 20, "dropout": 0.1}}


def _snapshot_for_sweep(out: Path) -> Path:
    """A genuine snapshot of SNAP's one run at step 5, where a sweep with --snapshot-every 5 looks for it."""
    from overparam.data import load_task
    from overparam.train.run import train_run
    from overparam.train.snapshot import Snapshots

    run = Spec(SNAP).runs()[0]
    path = out / "checkpoints" / "partial" / f"{run.id}.safetensors"
    path.parent.mkdir(parents=True)

    class Stop(Exception):
        pass

    snap = Snapshots(path, [(run.id, run.config)], torch.device("cpu"), every_steps=5)
    real = snap.save

    def save_then_stop(*args, **kwargs):
        real(*args, **kwargs)
        raise Stop

    snap.save = save_then_stop
    with pytest.raises(Stop):
        train_run(run.config, load_task(run.config["task"]), torch.device("cpu"), snap)
    return path


@pytest.mark.parametrize("part", ["state/", "rng/torch_cpu"])
def test_a_damaged_snapshot_is_discarded_and_its_run_restarts_from_scratch(tmp_path, part):
    out = tmp_path / "s"
    path = _snapshot_for_sweep(out)
    name = next(k for k in json.loads(path.read_bytes()[8:8 + struct.unpack("<Q", path.read_bytes()[:8])[0]])
                if k.startswith(part))
    start, end = _tensor_span(path, name)
    data = bytearray(path.read_bytes())
    data[(start + end) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    code, _, err = _sweep_cli(tmp_path, SNAP, out, "--snapshot-every", "5")
    assert code == 0 and "discarded (damaged" in err, err
    reference = tmp_path / "ref"
    run_sweep(SNAP, reference, progress=False)
    a, b = load_runs(out).iloc[0], load_runs(reference).iloc[0]
    assert a["test_loss"] == b["test_loss"] and a["train_loss"] == b["train_loss"]
    assert "resumed_from" not in a or a["resumed_from"] != a["resumed_from"]  # NaN: not resumed


def test_an_old_snapshot_with_an_invalid_random_state_is_discarded_before_anything_is_restored(tmp_path):
    """Without a checksum (written before them), an impossible mt19937 state must still not fail the run."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    out = tmp_path / "s"
    path = _snapshot_for_sweep(out)
    with safe_open(str(path), framework="pt") as fh:
        meta, tensors = fh.metadata(), {k: fh.get_tensor(k) for k in fh.keys()}
    meta.pop("sha256")
    rng = tensors["rng/torch_cpu"].clone()
    rng[8:12] = 255  # the generator's `left` counter, out of range: "Invalid mt19937 state"
    tensors["rng/torch_cpu"] = rng
    with pytest.raises(RuntimeError):
        torch.Generator().set_state(rng)
    save_file(tensors, str(path), metadata=meta)
    code, _, err = _sweep_cli(tmp_path, SNAP, out, "--snapshot-every", "5")
    assert code == 0 and "discarded (random stream torch_cpu" in err, err
    assert not path.exists()  # discarded, and the run finished: nothing left to meet on a rerun


# -- NaN weights, Ray, --json -------------------------------------------------------------------------
def test_nan_weights_are_named_not_computed_from(good, tmp_path):
    import shutil

    from safetensors import safe_open

    bad = tmp_path / "nan"
    shutil.copytree(good, bad)
    run_id = load_runs(good)["id"].iloc[0]
    path = bad / "checkpoints" / f"{run_id}.safetensors"
    with safe_open(str(path), framework="pt") as fh:
        meta, state = fh.metadata(), {k: fh.get_tensor(k) for k in fh.keys()}
    state = {k: torch.full_like(v, float("nan")) for k, v in state.items()}
    write_atomically(path, state, {k: v for k, v in meta.items() if k != "sha256"})
    for argv in (["implicit", str(bad), "--run", run_id], ["compress", str(bad), "--run", run_id, "--json"]):
        code, _, err = cli(argv)
        assert code == 2 and f"run {run_id} has non-finite weights" in one_error(err), err


def test_an_unreachable_ray_address_leaves_no_directory(tmp_path):
    import socket

    pytest.importorskip("ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = _sweep_cli(tmp_path, GOOD_SPEC, tmp_path / "out", "--executor", "ray", "--address",
                              f"127.0.0.1:{port}")
    assert code == 2 and "no Ray cluster answers" in one_error(err)
    assert not (tmp_path / "out").exists()


def test_sweep_json_keeps_stdout_for_the_document(tmp_path, capfd, monkeypatch):
    """Whatever the sweep prints (Python, a C library's descriptor 1, a child process): stderr, not stdout."""
    import os

    import overparam.sweep.runner as runner

    def noisy(spec, out, **kwargs):
        print("(raylet) a log line")
        os.write(1, b"(raylet) straight to descriptor 1\n")
        subprocess.run(["echo", "(worker) a child's stdout"], check=True)
        return runner.SweepSummary(str(out), 1, 0, trained=1)

    monkeypatch.setattr(runner, "run_sweep", noisy)
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(GOOD_SPEC))
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o"), "--json"]) == 0
    captured = capfd.readouterr()
    assert json.loads(captured.out)["trained"] == 1
    assert captured.err.count("(raylet)") == 2 and "(worker)" in captured.err
    print("after")  # stdout is back
    assert capfd.readouterr().out == "after\n"


def test_dates_and_binary_in_a_python_spec_are_refused_too():
    for value in (datetime.date(2024, 1, 1), b"\x00", {1, 2}):
        with pytest.raises(OverparamError, match="name: expected"):
            Spec({**GOOD_SPEC, "name": value})
