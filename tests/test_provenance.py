"""Input fingerprints (overparam/provenance.py): what counts as a changed input, what it costs, what the
store records; the commands that refuse a changed input are in tests/hostile_corpus.py ("changed inputs")."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path

import pytest

from overparam import provenance
from overparam.cli import main
from overparam.provenance import difference, fingerprint, task_inputs


def touch_later(path: Path, seconds: int = 100) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 10**9))


def test_a_file_is_its_bytes(tmp_path):
    f = tmp_path / "corpus.txt"
    f.write_text("the cat sat")
    before = fingerprint(f)
    assert before == {"kind": "file", "bytes": 11, "sha256": hashlib.sha256(b"the cat sat").hexdigest()}
    touch_later(f)
    assert difference(before, fingerprint(f)) is None  # a copy or a checkout: same bytes, same input
    f.write_text("the dog sat")
    assert "same size, other bytes" in difference(before, fingerprint(f))
    f.write_text("the cat sat.")
    assert difference(before, fingerprint(f)) == "11 bytes then, 12 now"
    f.unlink()
    assert difference(before, fingerprint(f)) == "it is gone"


def test_a_folder_is_its_listing_and_its_bytes(tmp_path):
    root = tmp_path / "images"
    (root / "train" / "cat").mkdir(parents=True)
    (root / "train" / "cat" / "0.png").write_bytes(b"\x89PNG0")
    (root / "train" / "cat" / "1.png").write_bytes(b"\x89PNG1")
    before = fingerprint(root)
    assert (before["kind"], before["files"], before["bytes"]) == ("folder", 2, 10)
    (root / ".DS_Store").write_bytes(b"junk")  # hidden: the tasks skip it, so does the fingerprint
    (root / "train" / ".cache").mkdir()
    (root / "train" / ".cache" / "x").write_bytes(b"junk")
    assert difference(before, fingerprint(root)) is None
    (root / "train" / "cat" / "1.png").write_bytes(b"\x89PNG2")
    assert "other bytes" in difference(before, fingerprint(root))
    (root / "train" / "cat" / "1.png").write_bytes(b"\x89PNG1")
    (root / "train" / "cat" / "1.png").rename(root / "train" / "cat" / "2.png")
    assert difference(before, fingerprint(root)) == "its files were renamed or replaced"
    (root / "train" / "cat" / "3.png").write_bytes(b"x")
    assert difference(before, fingerprint(root)) == "2 files, 10 bytes then; 3 files, 11 bytes now"
    assert "was a folder" in difference(before, fingerprint(root / "train" / "cat" / "3.png"))


def test_inputs_too_large_to_hash_are_read_by_listing_and_modification_time(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "CONTENT_LIMIT", 4)
    monkeypatch.setattr(provenance, "FOLDER_CONTENT_LIMIT", 4)
    reads = []
    monkeypatch.setattr(provenance, "_hash_file", lambda path, h: reads.append(path))
    f = tmp_path / "big.csv"
    f.write_text("a,b\n1,2\n")
    root = tmp_path / "folder"
    root.mkdir()
    (root / "x.txt").write_text("hello")
    file_before, folder_before = fingerprint(f), fingerprint(root)
    assert "sha256" not in file_before and "sha256" not in folder_before and reads == []  # never read in full
    touch_later(f)
    touch_later(root / "x.txt")
    assert "modified since" in difference(file_before, fingerprint(f))
    assert "modified since" in difference(folder_before, fingerprint(root))


def test_a_file_is_hashed_once_per_process(tmp_path, monkeypatch):
    f = tmp_path / "corpus.txt"
    f.write_text("abc" * 1000)
    calls = []
    real = provenance._hash_file
    monkeypatch.setattr(provenance, "_hash_file", lambda path, h: (calls.append(path), real(path, h)))
    assert fingerprint(f) == fingerprint(f) == fingerprint(f)
    assert len(calls) <= 1  # 0 when an earlier test of this process hashed the same bytes at the same path


def test_task_inputs_name_every_file_option_and_mix_path():
    task = {"kind": "arrays", "path": "x.npy", "labels": "y.npy", "test_path": "xt.npy", "test_labels": "yt.npy"}
    assert task_inputs(task) == [("task.path", "x.npy"), ("task.test_path", "xt.npy"), ("task.labels", "y.npy"),
                                 ("task.test_labels", "yt.npy")]
    mix = {"kind": "text", "path": None, "mix": [{"path": "a.txt"}, {"path": "embedded:docs"}, {"path": "b"}]}
    assert task_inputs(mix) == [("task.mix[0].path", "a.txt"), ("task.mix[2].path", "b")]
    assert task_inputs({"kind": "digits"}) == []


def test_the_store_records_what_the_sweep_read_and_a_touched_input_resumes(tmp_path, capsys):
    from overparam.sweep.runner import run_sweep

    rows = [f"{i % 7}.{i % 3},{(i * 5) % 11}.5,{'ab'[i % 2]}" for i in range(40)]
    data = tmp_path / "t.csv"
    data.write_text("a,b,kind\n" + "\n".join(rows) + "\n")
    spec = {"name": "t", "task": {"kind": "table", "path": str(data), "target": "kind"},
            "model": {"family": "mlp", "width": 4}, "train": {"steps": 3}}
    run_sweep(spec, tmp_path / "out", progress=False)
    con = sqlite3.connect(tmp_path / "out" / "overparam.sqlite")
    recorded = json.loads(con.execute("SELECT value FROM meta WHERE key='input_files'").fetchone()[0])
    con.close()
    assert recorded == {str(data): {"kind": "file", "bytes": data.stat().st_size, "path": str(data),
                                    "sha256": hashlib.sha256(data.read_bytes()).hexdigest()}}
    touch_later(data)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    capsys.readouterr()
    assert main(["sweep", str(spec_file), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert "1 already done, 0 trained now" in capsys.readouterr().err


@pytest.mark.parametrize("damaged", ['{"t.csv": {"kind": "file", "bytes": "many", "sha256": 5}}', "[1]"])
def test_a_damaged_record_never_costs_an_internal_error(tmp_path, capsys, damaged):
    from overparam.sweep.runner import run_sweep

    data = tmp_path / "t.csv"
    data.write_text("a,b,kind\n" + "\n".join(f"{i % 7},{i % 5},{'ab'[i % 2]}" for i in range(40)) + "\n")
    spec = {"name": "t", "task": {"kind": "table", "path": "t.csv", "target": "kind"},
            "model": {"family": "mlp", "width": 4}, "train": {"steps": 3}}
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        run_sweep(spec, "out", progress=False)
        con = sqlite3.connect("out/overparam.sqlite")
        con.execute("UPDATE meta SET value=? WHERE key='input_files'", (damaged,))
        con.commit()
        con.close()
        con = sqlite3.connect("out/overparam.sqlite")
        run_id = con.execute("SELECT id FROM runs").fetchone()[0]
        con.close()
        capsys.readouterr()
        code = main(["implicit", "out", "--run", run_id])
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert code == 2 and "internal error" not in err and len(err.strip().splitlines()) == 1, err
    assert "corrupt store" in err and "meta 'input_files'" in err  # the record is damaged, not the data


def test_an_input_changed_before_any_run_finished_is_recorded_anew(tmp_path):
    """Provenance protects results: with no finished run, the edited file is simply the sweep's input."""
    from overparam.provenance import INPUT_KEY, check_and_record
    from overparam.spec import Spec
    from overparam.store import Store

    data = tmp_path / "t.csv"
    data.write_text("a,kind\n1,x\n2,y\n")
    spec = Spec({"task": {"kind": "table", "path": str(data), "target": "kind"}, "model": {"family": "mlp"}})
    tasks = [r.config["task"] for r in spec.runs()]
    with Store.create(tmp_path / "out") as store:
        store.add_runs(spec.runs())
        check_and_record(store, "mlp", tasks)
        first = store.meta(INPUT_KEY)[str(data)]["sha256"]
        data.write_text("a,kind\n1,x\n2,y\n3,x\n")
        check_and_record(store, "mlp", tasks)  # pending only: accepted, the new bytes recorded
        assert store.meta(INPUT_KEY)[str(data)]["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest() != first
