"""A folder of images is decoded once per sweep directory: the sweep writes ``DIR/cache``, and every
command that rebuilds a run of that sweep (compress, landscape, implicit, the report) reads it back
instead of decoding the folder again. A read-only sweep directory still works (decoded in memory,
nothing written); a changed image invalidates the cache (tests/test_own_data.py)."""

import contextlib
import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from overparam.cli import main
from overparam.data import image_folder, load_sweep_task, sweep_cache_dir
from overparam.store import load_runs


def image_tree(root: Path, per_class: int = 6) -> None:
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        for i in range(per_class):
            path = root / "train" / c / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (6, 5), dtype=np.uint8)).save(path)


def cli(argv: list) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    assert "Traceback" not in err.getvalue() and "internal error" not in err.getvalue(), err.getvalue()
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def decodes(monkeypatch) -> list[str]:
    """Each real decoding of a folder, by its root; the in-process memory is cleared before every command
    (``new_process``), so what is counted is what separate commands would decode."""
    calls: list[str] = []
    real = image_folder.decode
    monkeypatch.setattr(image_folder, "decode", lambda root, *a, **k: calls.append(str(root)) or real(root, *a, **k))
    image_folder._MEMORY.clear()
    yield calls
    image_folder._MEMORY.clear()


def new_process() -> None:
    image_folder._MEMORY.clear()


def images_sweep(tmp: Path) -> Path:
    image_tree(tmp / "img")
    spec = {"name": "img-cache", "task": {"kind": "images", "path": str(tmp / "img"), "label_noise": 0.1},
            "model": {"family": "mlp"}, "train": {"optimizer": "adam", "steps": 12, "batch_size": 4, "eval_every": 4},
            "vary": {"model.width": [4, 8]}}
    (tmp / "s.yaml").write_text(yaml.safe_dump(spec))
    code, _, err = cli(["sweep", tmp / "s.yaml", "--out", tmp / "out", "--no-progress"])
    assert code == 0, err
    return tmp / "out"


def test_sweep_and_every_command_after_it_decode_the_folder_once(tmp_path, decodes):
    out = images_sweep(tmp_path)
    assert decodes == [str(tmp_path / "img")]
    cached = list(sweep_cache_dir(out).glob("images-*.npz"))
    assert len(cached) == 1
    run_id = load_runs(out).sort_values("params")["id"].iloc[-1]
    commands = [["compress", out, "--run", run_id, "--prune", "0.5", "--no-onnx", "--json"],
                ["landscape", out, "--json"], ["implicit", out, "--run", run_id, "--json"], ["report", out]]
    for argv in commands:
        new_process()
        code, _, err = cli(argv)
        assert code == 0, (argv, err)
    assert len(decodes) == 1  # one decoding for the sweep and the four commands after it
    new_process()
    task = load_sweep_task(out, _config(out, run_id)["task"])
    assert task.info["cache"] == "disk" and len(decodes) == 1


def _config(out: Path, run_id: str) -> dict:
    from overparam.store import open_store

    with open_store(out) as store:
        return next(r["config"] for r in store.runs() if r["id"] == run_id)


@contextlib.contextmanager
def read_only_copy(src: Path, where: Path):
    """``src`` copied onto a small tmpfs remounted read-only (root on CI; skipped where mount is refused)."""
    where.mkdir(parents=True)
    try:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(where)], capture_output=True,
                              timeout=30)
    except (OSError, subprocess.SubprocessError):
        pytest.skip("cannot run mount here")
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()[:100]}")
    try:
        shutil.copytree(src, where / "s")
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True, capture_output=True, timeout=30)
        yield where / "s"
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


def test_a_read_only_sweep_without_a_cache_decodes_in_memory_and_writes_nothing(tmp_path, decodes):
    out = images_sweep(tmp_path)
    shutil.rmtree(sweep_cache_dir(out))  # e.g. a sweep copied without its cache
    run_id = load_runs(out)["id"].iloc[0]
    reference = None
    with read_only_copy(out, tmp_path / "ro") as ro:
        before = sorted(p.relative_to(ro) for p in ro.rglob("*"))
        new_process()
        code, text, err = cli(["implicit", ro, "--run", run_id, "--json"])
        assert code == 0 and err == "", err
        assert sorted(p.relative_to(ro) for p in ro.rglob("*")) == before  # nothing written, no error
        reference = json.loads(text)
    assert len(decodes) == 2  # the sweep, then the read-only command (no cache to read, none written)
    new_process()
    code, text, _ = cli(["implicit", out, "--run", run_id, "--json"])  # writable: decodes once more, keeps it
    assert code == 0 and json.loads(text) == reference and len(decodes) == 3
    assert len(list(sweep_cache_dir(out).glob("images-*.npz"))) == 1


def test_a_read_only_sweep_with_its_cache_reads_it(tmp_path, decodes):
    out = images_sweep(tmp_path)
    run_id = load_runs(out)["id"].iloc[0]
    with read_only_copy(out, tmp_path / "ro") as ro:
        new_process()
        code, _, err = cli(["implicit", ro, "--run", run_id, "--json"])
        assert code == 0 and err == "", err
    assert len(decodes) == 1  # the sweep's decoding only
