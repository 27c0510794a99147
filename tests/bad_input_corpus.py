"""The bad-input corpus: each case is input a user could give, with the exit code it must get.

Shared by ``tests/test_reliability.py`` and ``benchmarks/reliability.py``. A case is handled
correctly when the exit code matches, an error is exactly one stderr line starting
``overparam: error:``, nothing on stderr looks like a traceback, and the good store given as
``good`` is byte-identical afterwards.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

GOOD_SPEC = {"name": "good", "task": {"kind": "digits", "train_size": 100},
             "model": {"family": "mlp"}, "train": {"steps": 30},
             "vary": {"model.width": [8, 16]}}


@dataclass
class Case:
    name: str
    setup: Callable[[Path, Path], list[str]]  # (tmp dir, good sweep dir) -> argv
    code: int = 2
    fragment: str = ""


def _spec_file(tmp: Path, name: str, content: str | bytes) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def spec_case(name: str, content: str | bytes | dict, fragment: str = "") -> Case:
    def setup(tmp: Path, good: Path) -> list[str]:
        text = yaml.safe_dump(content) if isinstance(content, dict) else content
        return ["sweep", str(_spec_file(tmp, name, text)), "--out", str(good), "--no-progress"]

    return Case(f"spec: {name}", setup, 2, fragment)


def sweep_flags_case(name: str, flags: list[str], fragment: str) -> Case:
    """A good spec with bad ``overparam sweep`` flags: refused before anything is written."""
    def setup(tmp: Path, good: Path) -> list[str]:
        spec = _spec_file(tmp, "good", yaml.safe_dump(GOOD_SPEC))
        return ["sweep", str(spec), "--out", str(good), "--no-progress", *flags]

    return Case(f"cli: {name}", setup, 2, fragment)


def merged(**sections) -> dict:
    spec = {k: (dict(v) if isinstance(v, dict) else v) for k, v in GOOD_SPEC.items()}
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    return spec


def corpus_case(name: str, content: bytes | None, fragment: str, code: int = 2) -> Case:
    def setup(tmp: Path, good: Path) -> list[str]:
        corpus = tmp / f"corpus-{name}.txt"
        if content is not None:
            corpus.write_bytes(content)
        spec = {"task": {"kind": "text", "path": str(corpus), "tokenizer": "byte"},
                "model": {"family": "gpt", "n_layer": 1, "d_model": 16, "n_head": 2, "context": 16},
                "train": {"steps": 2, "batch_size": 2}}
        return ["sweep", str(_spec_file(tmp, name, yaml.safe_dump(spec))), "--out", str(tmp / f"o-{name}"),
                "--no-progress"]

    return Case(f"corpus: {name}", setup, code, fragment)


def csv_case(name: str, content: bytes, fragment: str = "") -> Case:
    def setup(tmp: Path, good: Path) -> list[str]:
        path = tmp / f"{name}.csv"
        path.write_bytes(content)
        return ["fit", "--csv", str(path), "--bootstrap", "0", "--json"]

    return Case(f"csv: {name}", setup, 2, fragment)


def store_case(name: str, damage: Callable[[Path], None], command: str, fragment: str = "") -> Case:
    def setup(tmp: Path, good: Path) -> list[str]:
        bad = tmp / f"store-{name}"
        shutil.copytree(good, bad)
        damage(bad / "overparam.sqlite")
        return [command, str(bad)] + (["--json"] if command in ("runs", "analyze") else [])

    return Case(f"store: {name}", setup, 2, fragment)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(8192))


def _future(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version=42")
    con.commit()
    con.close()


def _zero(path: Path) -> None:
    path.write_bytes(b"")


def _locked(tmp: Path, good: Path) -> list[str]:
    fd = os.open(good / "overparam.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    _locked.fd = fd  # released by release_locks()
    spec = _spec_file(tmp, "locked", yaml.safe_dump(GOOD_SPEC))
    return ["sweep", str(spec), "--out", str(good), "--no-progress"]


def release_locks() -> None:
    fd = getattr(_locked, "fd", None)
    if fd is not None:
        os.close(fd)
        _locked.fd = None


def _swapped_checkpoints(tmp: Path, good: Path) -> list[str]:
    """Two runs' checkpoint files swapped: each now belongs to another config."""
    bad = tmp / "store-swapped"
    shutil.copytree(good, bad)
    a, b = sorted((bad / "checkpoints").glob("*.safetensors"))[:2]
    tmp_name = a.with_suffix(".swap")
    a.rename(tmp_name)
    b.rename(a)
    tmp_name.rename(b)
    return ["compress", str(bad), "--run", a.stem, "--json"]


def _no_checkpoints(tmp: Path, good: Path) -> list[str]:
    """A sweep whose weights were never saved: the linear path has nothing to interpolate to."""
    bad = tmp / "store-no-checkpoints"
    shutil.copytree(good, bad)
    shutil.rmtree(bad / "checkpoints")
    return ["landscape", str(bad)]


def _simple(argv: list[str]) -> Callable[[Path, Path], list[str]]:
    return lambda tmp, good: [a.replace("{good}", str(good)).replace("{tmp}", str(tmp)) for a in argv]


CASES: list[Case] = [
    spec_case("malformed-yaml", "task: {kind: digits\nmodel: [", "malformed YAML"),
    spec_case("empty", "", "empty"),
    spec_case("binary", b"\x00\x01\x02\xff" * 64, ""),
    spec_case("not-utf8", b"name: caf\xe9\n", "not UTF-8"),
    spec_case("top-level-list", "- 1\n- 2\n", "expected a mapping"),
    spec_case("unknown-top-key", merged(extra=1), "extra: unknown top-level key"),
    spec_case("unknown-task-key", merged(task={"trainsize": 3}), "task.trainsize: unknown key"),
    spec_case("unknown-model-key", merged(model={"widht": 3}), "model.widht: unknown key"),
    spec_case("unknown-train-key", merged(train={"learning_rate": 3}), "train.learning_rate: unknown key"),
    spec_case("width-string", merged(model={"width": "wide"}), "model.width: expected integer"),
    spec_case("lr-list", merged(train={"optimizer": "adam", "lr": [1, 2]}), "train.lr: expected number"),
    spec_case("width-zero", merged(model={"width": 0}, vary={}), "model.width: must be > 0"),
    spec_case("width-negative", merged(vary={"model.width": [10, -5]}), "vary.model.width[1]"),
    spec_case("label-noise-one", merged(task={"label_noise": 1.0}), "task.label_noise"),
    spec_case("label-noise-negative", merged(task={"label_noise": -0.2}), "task.label_noise"),
    spec_case("empty-axis", merged(vary={"model.width": []}), "the axis is empty"),
    spec_case("axis-unknown-key", merged(vary={"model.height": [1]}), "vary.model.height"),
    spec_case("axis-bad-geometric", merged(vary={"model.width": {"geometric": [0, 10], "count": 3}}), "> 0"),
    spec_case("axis-no-count", merged(vary={"model.width": {"geometric": [1, 10]}}), "count"),
    spec_case("axis-huge-count", merged(vary={"seed": {"linear": [0, 10], "count": 10**7}}), "count"),
    spec_case("unknown-task", merged(task={"kind": "imagenet"}), "task.kind: unknown task"),
    spec_case("unknown-family", merged(model={"family": "resnet"}), "model.family: unknown family"),
    spec_case("unknown-optimizer", merged(train={"optimizer": "lion"}), "train.optimizer"),
    spec_case("closed-form-mlp", merged(train={"optimizer": "min_norm"}), "closed form"),
    spec_case("absurd-width", merged(vary={"model.width": [10**9]}), "must be <="),
    spec_case("too-big-for-memory", {"task": {"kind": "digits"}, "model": {"family": "mlp", "width": 900000,
                                                                          "depth": 40}}, "GiB"),
    spec_case("train-size-too-big", merged(task={"train_size": 5000}), "digits has 1797 images"),
    spec_case("nan-lr", "task: {kind: digits}\nmodel: {family: mlp}\ntrain: {lr: .nan}\n", "finite"),
    spec_case("gpt-heads", {"task": {"kind": "text"}, "model": {"family": "gpt", "d_model": 30, "n_head": 4}},
              "n_head"),
    spec_case("unknown-diagnostic", merged(train={"diagnostics": ["sharp"]}), "unknown diagnostic 'sharp'"),
    spec_case("diagnostics-not-list", merged(train={"diagnostics": "norms"}), "train.diagnostics: expected list"),
    spec_case("diagnostic-twice", merged(train={"diagnostics": ["norms", "norms"]}), "listed twice"),
    spec_case("sharpness-on-text", {"task": {"kind": "text"}, "model": {"family": "gpt"},
                                    "train": {"diagnostics": ["sharpness"]}}, "norms only"),
    spec_case("autocast-unknown", merged(train={"autocast": "fp8"}), "train.autocast"),
    spec_case("autocast-float64", merged(train={"autocast": "bf16", "dtype": "float64"}), "train.autocast"),
    sweep_flags_case("retries with local executor", ["--max-retries", "3"], "--max-retries"),
    sweep_flags_case("bad snapshot interval", ["--snapshot-every", "soon"], "--snapshot-every"),
    sweep_flags_case("num-cpus zero", ["--executor", "ray", "--num-cpus", "0"], "--num-cpus"),
    Case("spec: missing file", _simple(["sweep", "{tmp}/nope.yaml", "--out", "{good}"]), 2, "not found"),
    Case("spec: a directory", _simple(["sweep", "{tmp}", "--out", "{good}"]), 2, "directory"),
    Case("cli: unknown command", _simple(["frobnicate"]), 2, "invalid choice"),
    Case("cli: bad fuse", _simple(["sweep", "x.yaml", "--out", "{good}", "--fuse", "maybe"]), 2, "fuse"),
    Case("cli: analyze negative eps", _simple(["analyze", "{good}", "--eps", "-1"]), 2, "eps"),
    Case("cli: theory bad gamma", _simple(["theory", "ridgeless", "--gamma", "a:b"]), 2, ""),
    Case("cli: advise without goal", _simple(["advise", "{good}"]), 2, ""),
    Case("dir: no store", _simple(["runs", "{tmp}"]), 2, "not a sweep directory"),
    Case("dir: missing", _simple(["analyze", "{tmp}/missing"]), 2, "no such"),
    Case("dir: locked by another writer", _locked, 2, "another overparam process"),
    Case("store: checkpoint does not match its config", _swapped_checkpoints, 2, "does not match"),
    Case("landscape: no curves", _simple(["landscape", "{good}"]), 2, "eval_log_points"),
    Case("landscape: no checkpoints", _no_checkpoints, 2, "checkpoint"),
    Case("landscape: missing dir", _simple(["landscape", "{tmp}/missing"]), 2, "no such"),
    Case("landscape: threshold not a number", _simple(["landscape", "{good}", "--threshold", "low"]), 2,
         "--threshold"),
    Case("landscape: threshold nan", _simple(["landscape", "{good}", "--threshold", "nan"]), 2, "finite"),
    Case("landscape: both thresholds", _simple(["landscape", "{good}", "--threshold", "1",
                                                "--threshold-frac", "0.5"]), 2, "not allowed with"),
    Case("landscape: alphas malformed", _simple(["landscape", "{good}", "--alphas", "0:1"]), 2, "--alphas"),
    Case("landscape: alphas miss 1", _simple(["landscape", "{good}", "--alphas", "0:0.5:3"]), 2, "0 and 1"),
    Case("landscape: max runs zero", _simple(["landscape", "{good}", "--max-runs", "0"]), 2, "--max-runs"),
    store_case("truncated", _truncate, "runs"),
    store_case("garbage", _garbage, "analyze", "not an overparam store"),
    store_case("zero-bytes", _zero, "runs", "not an overparam store"),
    store_case("future-schema", _future, "runs", "newer"),
    store_case("report-on-garbage", _garbage, "report", "not an overparam store"),
    csv_case("nan", b"params,tokens,loss\n1e6,1e9,3.1\n2e6,2e9,nan\n4e6,4e9,2.8\n", ""),
    csv_case("negative", b"params,tokens,loss\n1e6,1e9,3.1\n-2e6,2e9,3.0\n4e6,4e9,2.8\n", ""),
    csv_case("missing-column", b"params,loss\n1e6,3.1\n2e6,3.0\n", ""),
    csv_case("one-row", b"params,tokens,loss\n1e6,1e9,3.1\n", ""),
    csv_case("empty", b"", ""),
    csv_case("binary", b"\x00\xff\x10" * 100, ""),
    corpus_case("missing", None, "", 2),
    corpus_case("empty", b"", "empty", 2),
    corpus_case("binary", b"\x00\x01\x02\x03" * 500, "binary", 2),
    corpus_case("non-utf8", b"hello \xff\xfe world " * 50, "UTF-8", 2),
    corpus_case("one-huge-line", b"abc " * 50_000, "", 0),
]


@dataclass
class Outcome:
    case: Case
    code: int
    stderr: str
    ok: bool
    why: str


def run_case(case: Case, tmp: Path, good: Path) -> Outcome:
    """Run one case in-process and judge it against the contract."""
    from overparam.cli import main

    before = (good / "overparam.sqlite").read_bytes()
    out, err = io.StringIO(), io.StringIO()
    try:
        argv = case.setup(tmp, good)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        release_locks()
    stderr = err.getvalue()
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    why = ""
    if code != case.code:
        why = f"exit {code}, expected {case.code}"
    elif "Traceback" in stderr:
        why = "traceback on stderr"
    elif case.code == 2 and (len(lines) != 1 or not lines[0].startswith("overparam: error: ")):
        why = f"not one error line: {lines!r}"
    elif case.fragment and case.fragment not in stderr:
        why = f"message lacks {case.fragment!r}: {lines!r}"
    elif (good / "overparam.sqlite").read_bytes() != before:
        why = "the good store changed"
    return Outcome(case, code, stderr, not why, why)


def make_good_store(directory: Path) -> Path:
    from overparam.sweep.runner import run_sweep

    run_sweep(GOOD_SPEC, directory, progress=False)
    return directory
