"""Hostile input (issue 19): one or more cases per class, shared by tests/test_hostile.py and
benchmarks/reliability.py.

A case is handled when the exit code matches, an exit-2 case prints exactly one stderr line that
starts ``overparam: error:`` (a case marked ``own_lines`` may print the command's own progress
lines beside it, but still exactly one error line), no "internal error" or traceback appears,
the message holds ``fragment``, it ends within ``seconds``, and the good store given as ``good``
is byte-identical afterwards (plus any file the case names as ``watched``).

``run_hostile`` runs a case in this process (fast: the tests); ``subprocess=True`` runs the CLI
as a child with a timeout (the benchmark: real file descriptors, and a hang is counted, not waited on).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from bad_input_corpus import GOOD_SPEC

Setup = Callable[[Path, Path], "list[str] | tuple[list[str], list[Path]]"]


@dataclass
class Hostile:
    kind: str  # the class of issue 19
    name: str
    setup: Setup  # (tmp dir, good sweep dir) -> argv, or (argv, files that must stay byte-identical)
    code: int = 2
    fragment: str = ""
    env: dict[str, str] = field(default_factory=dict)
    seconds: float = 10.0  # in-process time bound (the size limits must answer in well under a second)
    own_lines: bool = False  # the command prints its own stderr lines too (e.g. report: PATH)


@dataclass
class Result:
    case: Hostile
    code: int | None  # None: it hung (subprocess mode)
    stderr: str
    seconds: float
    ok: bool
    why: str

    @property
    def internal(self) -> bool:
        return self.code == 1 or "internal error" in self.stderr or "Traceback" in self.stderr


def _spec(tmp: Path, name: str, content: str | bytes) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def spec_text(kind: str, name: str, text: str | bytes, fragment: str = "", seconds: float = 1.0) -> Hostile:
    """A spec given as YAML text, swept into the good store (it must be refused before touching it)."""
    def setup(tmp: Path, good: Path) -> list[str]:
        return ["sweep", str(_spec(tmp, name, text)), "--out", str(good), "--no-progress"]

    return Hostile(kind, name, setup, 2, fragment, seconds=seconds)


BASE = "task: {kind: digits, train_size: 100}\nmodel: {family: mlp}\ntrain: {steps: 5}\n"


def bomb(levels: int = 9, fanout: int = 9, indent: str = "  ") -> str:
    """The billion laughs: ``levels`` anchors, each a list of ``fanout`` aliases of the one before."""
    lines = [f'{indent}a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"{indent}a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fanout) + "]")
    return "\n".join(lines) + "\n"


def bomb_list(levels: int = 9) -> str:
    """A bomb as a flow list that can stand where a list is expected (vary axes, widths)."""
    text = '&b0 [1, 2, 3, 4, 5, 6, 7, 8, 9]'
    for i in range(1, levels):
        text = f"[{text}, " + ", ".join([f"*b{i - 1}"] * 8) + "]"
        text = text.replace("[", f"&b{i} [", 1) if i < levels - 1 else text
    return text


def _nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


SPEC_CASES = [
    spec_text("spec types", "kind-list", "task: {kind: [digits]}\nmodel: {family: mlp}\n",
              "task.kind: expected a string"),
    spec_text("spec types", "kind-mapping", "task: {kind: {a: 1}}\nmodel: {family: mlp}\n", "task.kind"),
    spec_text("spec types", "family-list", "task: {kind: digits}\nmodel: {family: [mlp, cnn]}\n", "model.family"),
    spec_text("spec types", "family-mapping", "task: {kind: digits}\nmodel: {family: {x: 1}}\n", "model.family"),
    spec_text("spec types", "integer-key", BASE.replace("train_size: 100", "1: 100"),
              "task: every key must be a string"),
    spec_text("spec types", "mixed-keys-top", BASE + "1: x\n2: y\nzz: 3\n", "every key must be a string"),
    spec_text("spec types", "integer-vary-key", BASE + "vary: {1: [1, 2]}\n", "vary: every key must be a string"),
    spec_text("spec types", "bool-key", BASE + "vary: {true: [1, 2]}\n", "vary: every key must be a string"),
    spec_text("spec types", "binary-name", "name: !!binary aGVsbG8=\n" + BASE, "name: expected a string"),
    spec_text("spec types", "date-name", "name: 2024-01-01\n" + BASE, "quote it"),
    spec_text("spec types", "timestamp-seed", "seed: 2001-12-14t21:59:43.10-05:00\n" + BASE, "seed:"),
    spec_text("spec types", "set-value", BASE.replace("train: {steps: 5}", "train: !!set {a, b}"), "a set"),
    spec_text("spec types", "lone-surrogate-name", 'name: "\\ud800 run"\n' + BASE, "lone surrogate"),
    spec_text("spec types", "surrogate-in-path", BASE.replace("kind: digits", 'kind: "di\\udcffgits"'), "surrogate"),
    spec_text("spec types", "name-list", "name: [a, b]\n" + BASE, "name: expected a string"),
    spec_text("spec types", "huge-integer", BASE.replace("steps: 5", "steps: " + "9" * 5000), "unreadable value"),
    spec_text("spec types", "int64-overflow", BASE + "seed: 99999999999999999999\n", "out of range"),
    spec_text("spec types", "seed-too-large", BASE + "seed: 5000000000\n", "seed"),
    spec_text("spec types", "include-list", BASE + "vary: {model.width: {linear: [1, 9], count: 3, include: [[1]]}}\n",
              "include[0]", seconds=10),
    spec_text("spec types", "omap-section", BASE.replace("train: {steps: 5}", "train: !!omap [{steps: 5}]"),
              "train: expected a mapping"),
    spec_text("spec sizes", "deep-list", "name: " + _nested(3000) + "\n" + BASE, "nested deeper than"),
    spec_text("spec sizes", "deep-mapping", BASE + "vary: " + "{a: " * 2000 + "1" + "}" * 2000 + "\n", "nested deeper"),
    spec_text("spec sizes", "deep-block", "name:\n" + "".join("  " * i + "- \n" for i in range(1, 400)) + BASE,
              "nested deeper"),
    spec_text("spec sizes", "alias-bomb-name", "name:\n" + bomb() + BASE, "alias"),
    spec_text("spec sizes", "alias-bomb-description", "description:\n" + bomb() + BASE, "alias"),
    spec_text("spec sizes", "alias-bomb-seed", BASE + "seed:\n" + bomb(), "alias"),
    spec_text("spec sizes", "alias-bomb-vary", BASE + "vary: {model.width: " + bomb_list() + "}\n", "alias"),
    spec_text("spec sizes", "alias-bomb-merge", "x: &x {" + ", ".join(f"k{i}: {i}" for i in range(50)) + "}\n"
              + "".join(f"y{i}: &y{i} [" + ", ".join([f"*{'x' if i == 0 else f'y{i - 1}'}"] * 20) + "]\n"
                        for i in range(6)) + BASE, "alias"),
    spec_text("spec sizes", "recursive-alias", "task: &t {kind: digits, extra: *t}\nmodel: {family: mlp}\n",
              "recursive"),
    spec_text("spec sizes", "vary-product-1e9", BASE + "vary:\n  seed: {linear: [0, 99999], count: 100000}\n"
              "  model.width: {linear: [1, 10000], count: 10000}\n", "OVERPARAM_MAX_RUNS"),
    spec_text("spec sizes", "vary-product-lists", BASE + "vary:\n  seed: {linear: [0, 999], count: 1000}\n"
              "  train.lr: {geometric: [1.0e-5, 1.0], count: 1000}\n  model.width: [1, 2, 3]\n", "3,000,000 runs"),
    spec_text("spec sizes", "vary-one-huge-axis", BASE + "vary: {seed: {linear: [0, 99999], count: 100000}}\n",
              "limit of 10,000"),
    Hostile("spec sizes", "dev-zero", lambda tmp, good: ["sweep", "/dev/zero", "--out", str(good), "--no-progress"],
            2, "larger than", seconds=1.0),
    Hostile("spec sizes", "huge-file", lambda tmp, good: ["sweep", str(_spec(tmp, "huge", BASE + "#" * (3 << 20))),
                                                          "--out", str(good)], 2, "OVERPARAM_MAX_SPEC_BYTES",
            seconds=1.0),
    Hostile("spec sizes", "bad-limit-env", lambda tmp, good: ["sweep", str(_spec(tmp, "ok", BASE)), "--out", str(good)],
            2, "OVERPARAM_MAX_SPEC_BYTES", env={"OVERPARAM_MAX_SPEC_BYTES": "-3"}, seconds=1.0),
]


# -- stores -----------------------------------------------------------------------------------------
def _copy(tmp: Path, good: Path, name: str) -> Path:
    bad = tmp / f"store-{name}"
    shutil.copytree(good, bad)
    return bad


def _edit(bad: Path, sql: str, *args) -> None:
    con = sqlite3.connect(bad / "overparam.sqlite")
    con.execute(sql, args)
    con.commit()
    con.close()


def _first_run(good: Path) -> str:
    con = sqlite3.connect(good / "overparam.sqlite")
    try:
        return con.execute("SELECT id FROM runs ORDER BY idx").fetchone()[0]
    finally:
        con.close()


def _page_of(path: Path, table: str) -> int:
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT rootpage FROM sqlite_master WHERE name=?", (table,)).fetchone()[0]
    finally:
        con.close()


def _damage_page(bad: Path, table: str, how: str) -> None:
    path = bad / "overparam.sqlite"
    page = _page_of(path, table)
    data = bytearray(path.read_bytes())
    start = (page - 1) * 4096
    if how == "zero":
        data[start:start + 4096] = bytes(4096)
    else:
        for i in range(start + 8, start + 4096, 97):
            data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def row_case(name: str, column: str, value: str, command: str, fragment: str) -> Hostile:
    def setup(tmp: Path, good: Path) -> list[str]:
        bad = _copy(tmp, good, name)
        if column.startswith("meta."):
            _edit(bad, "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", column[5:], value)
        elif column == "curve":
            _edit(bad, "UPDATE curves SET value=? WHERE run_id=?", value, _first_run(good))
        else:
            _edit(bad, f"UPDATE runs SET {column}=? WHERE id=?", value, _first_run(good))
        return [command, str(bad)] + (["--json"] if command in ("runs", "analyze") else [])

    return Hostile("corrupt stores", name, setup, 2, fragment, own_lines=command == "report")


def page_case(name: str, table: str, how: str, command: str) -> Hostile:
    def setup(tmp: Path, good: Path) -> list[str]:
        bad = _copy(tmp, good, name)
        _damage_page(bad, table, how)
        if command == "sweep":
            spec = _spec(tmp, "good", yaml.safe_dump(GOOD_SPEC))
            return ["sweep", str(spec), "--out", str(bad), "--no-progress"], [bad / "overparam.sqlite"]
        return [command, str(bad)]

    return Hostile("corrupt stores", name, setup, 2, "corrupt store")


def _sweep_into(tmp: Path, target: Path, *extra: str) -> list[str]:
    spec = _spec(tmp, "good", yaml.safe_dump(GOOD_SPEC))
    return ["sweep", str(spec), "--out", str(target), "--no-progress", *extra]


def _sweep_damaged_row(tmp: Path, good: Path):
    bad = _copy(tmp, good, "sweep-bad-row")
    _edit(bad, "UPDATE runs SET metrics='{bad' WHERE id=?", _first_run(good))
    return _sweep_into(tmp, bad), [bad / "overparam.sqlite"]


def _sweep_zero_bytes(tmp: Path, good: Path):
    target = tmp / "zero"
    target.mkdir()
    (target / "overparam.sqlite").write_bytes(b"")
    return _sweep_into(tmp, target), [target / "overparam.sqlite"]


def _sweep_foreign_db(tmp: Path, good: Path):
    target = tmp / "foreign"
    target.mkdir()
    con = sqlite3.connect(target / "overparam.sqlite")
    con.execute("CREATE TABLE notes (x)")
    con.execute("INSERT INTO notes VALUES ('mine')")
    con.commit()
    con.close()
    return _sweep_into(tmp, target), [target / "overparam.sqlite"]


def _check_meta(tmp: Path, good: Path, name: str, sources: str) -> list[str]:
    """Provenance of a user's model file (overparam.provenance), damaged: read only by a rebuild and --check."""
    bad = _copy(tmp, good, name)
    _edit(bad, "INSERT OR REPLACE INTO meta(key, value) VALUES ('model_sources', ?)", sources)
    return ["runs", str(bad), "--check"]


def _check_damaged(tmp: Path, good: Path) -> list[str]:
    bad = _copy(tmp, good, "check")
    _edit(bad, "UPDATE runs SET params='abc' WHERE id=?", _first_run(good))
    return ["runs", str(bad), "--check"]


STORE_CASES = [
    row_case("config-null", "config", "null", "runs", "corrupt store"),
    row_case("config-not-json", "config", "{bad", "analyze", "config: not JSON"),
    row_case("metrics-bad-json", "metrics", "{bad", "runs", "metrics: not JSON"),
    row_case("metrics-list", "metrics", "[1, 2]", "analyze", "metrics"),
    row_case("metric-string", "metrics", '{"test_error": "abc"}', "analyze", "test_error"),
    row_case("params-text", "params", "abc", "runs", "params"),
    row_case("flops-text", "flops", "lots", "analyze", "flops"),
    row_case("point-null", "point", "null", "runs", "point"),
    row_case("meta-spec-bad", "meta.spec", "{bad", "report", "meta 'spec'"),
    row_case("meta-name-list", "meta.name", "[1]", "report", "meta 'name'"),
    Hostile("corrupt stores", "meta-model-sources-list",
            lambda tmp, good: _check_meta(tmp, good, "sources-list", "[1]"), 2, "1 damaged part", own_lines=True),
    Hostile("corrupt stores", "meta-model-source-text",
            lambda tmp, good: _check_meta(tmp, good, "source-text", '{"net.py:make_net": "x"}'), 2,
            "1 damaged part", own_lines=True),
    row_case("metric-n-test-string", "metrics", '{"test_error": 0.1, "n_test": "many"}', "report", "n_test"),
    row_case("curve-text", "curve", "abc", "analyze", "curve"),
    page_case("runs-page-flipped", "runs", "flip", "runs"),
    page_case("runs-page-zeroed", "runs", "zero", "analyze"),
    page_case("runs-page-zeroed-report", "runs", "zero", "report"),
    page_case("curves-page-zeroed-sweep", "curves", "zero", "sweep"),
    page_case("runs-page-flipped-sweep", "runs", "flip", "sweep"),
    Hostile("corrupt stores", "sweep-into-damaged-row", _sweep_damaged_row, 2, "does not write into a damaged store"),
    Hostile("corrupt stores", "sweep-into-zero-bytes", _sweep_zero_bytes, 2, "0 bytes"),
    Hostile("corrupt stores", "sweep-into-foreign-db", _sweep_foreign_db, 2, "never re-initializes"),
    Hostile("corrupt stores", "runs-check", _check_damaged, 2, "damaged", own_lines=True),
    Hostile("corrupt stores", "out-empty", lambda tmp, good: _sweep_into(tmp, Path(""))[:3] + ["", "--no-progress"],
            2, "--out: empty path"),
]


# -- silent corruption ------------------------------------------------------------------------------
def _flip_checkpoint(tmp: Path, good: Path) -> list[str]:
    bad = _copy(tmp, good, "flipped-ckpt")
    path = bad / "checkpoints" / f"{_first_run(good)}.safetensors"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x40  # inside the tensor data: safetensors' own header check does not see it
    path.write_bytes(bytes(data))
    return ["compress", str(bad), "--run", _first_run(good), "--json"]


def _flip_checkpoint_implicit(tmp: Path, good: Path) -> list[str]:
    argv = _flip_checkpoint(tmp, good)
    return ["implicit", argv[1], "--run", argv[3]]


def threads_case(value: str) -> Hostile:
    return Hostile("silent corruption", f"threads-{value}",
                   lambda tmp, good: _sweep_into(tmp, tmp / f"t{value}"), 2, "OVERPARAM_THREADS",
                   env={"OVERPARAM_THREADS": value})


SILENT_CASES = [
    Hostile("silent corruption", "checkpoint-bit-flip-compress", _flip_checkpoint, 2, "is damaged"),
    Hostile("silent corruption", "checkpoint-bit-flip-implicit", _flip_checkpoint_implicit, 2, "is damaged"),
    threads_case("0"), threads_case("-1"), threads_case("99999"), threads_case("two"),
]


# -- bad saved analyses (exit 0: the report is built without them, with one warning line) ------------
def analysis_case(name: str, content: str, command: str = "report") -> Hostile:
    def setup(tmp: Path, good: Path) -> list[str]:
        bad = _copy(tmp, good, f"analysis-{name}")
        (bad / "analyses").mkdir(exist_ok=True)
        (bad / "analyses" / "compress.json").write_text(content)
        return [command, str(bad)]

    return Hostile("bad saved analyses", name, setup, 0, "compress.json", own_lines=True)


ANALYSIS_CASES = [analysis_case("models-string", '{"models": "x"}'), analysis_case("list-of-empty", "[{}]"),
                  analysis_case("bad-json", "{bad"), analysis_case("models-list-of-empty", '{"models": [{}]}'),
                  # read by the answer too (its smallest compressed model), in analyze and the report's lead
                  analysis_case("run-string", '{"run": "x", "models": [{"method": "dense", "bytes": 10}]}', "analyze"),
                  analysis_case("bytes-string", '{"run": {"config": {}}, "models": [{"method": "dense", "bytes": 100}, '
                                                '{"method": "prune", "bytes": "big", "test_error": 0.0}]}')]


# -- flags ------------------------------------------------------------------------------------------
def _simple(*argv: str) -> Setup:
    return lambda tmp, good: [a.replace("{good}", str(good)).replace("{tmp}", str(tmp)) for a in argv]


def _points_csv(tmp: Path) -> str:
    path = tmp / "points.csv"
    path.write_text("params,tokens,loss\n1e6,1e9,3.1\n2e6,2e9,3.0\n4e6,4e9,2.9\n8e6,8e9,2.85\n")
    return str(path)


FLAG_CASES = [
    Hostile("flags", "runs-output-directory", _simple("runs", "{good}", "--output", "{tmp}"), 2, "is a directory"),
    Hostile("flags", "runs-output-missing-folder", _simple("runs", "{good}", "--output", "{tmp}/no/such/x.csv"), 2,
            "does not exist"),
    Hostile("flags", "fit-seed-negative", lambda tmp, good: ["fit", "--csv", _points_csv(tmp), "--seed", "-1"], 2,
            "--seed"),
    Hostile("flags", "fit-bootstrap-1e9", lambda tmp, good: ["fit", "--csv", _points_csv(tmp), "--bootstrap", "1e9"],
            2, "--bootstrap"),
    Hostile("flags", "advise-bootstrap-huge",
            lambda tmp, good: ["advise", "--csv", _points_csv(tmp), "--compute", "1e20", "--bootstrap", "1000000000"],
            2, "--bootstrap"),
    Hostile("flags", "fit-bootstrap-fraction", lambda tmp, good: ["fit", "--csv", _points_csv(tmp), "--bootstrap",
                                                                  "2.5"], 2, "--bootstrap"),
    Hostile("flags", "report-out-empty", _simple("report", "{good}", "--out", ""), 2, "--out"),
    Hostile("flags", "implicit-trace-1e9", lambda tmp, good: ["implicit", str(good), "--run", _first_run(good),
                                                              "--trace", "1000000000"], 2, "--trace"),
    Hostile("flags", "compress-threads-99999", lambda tmp, good: ["compress", str(good), "--run", _first_run(good),
                                                                  "--threads", "99999"], 2, "--threads"),
    Hostile("flags", "probe-seed-negative", _simple("probe", "{good}", "--run", "x", "--target", "char_class",
                                                    "--seed", "-1"), 2, "--seed"),
]

# -- damaged in-context metrics (lists and mappings that the readings use directly) -----------------------
LM_TRAIN = {"optimizer": "adamw", "lr": 1e-2, "steps": 4, "batch_size": 8}
LM_SPECS = {  # tiny sweeps of two sizes whose runs carry each kind of list metric (train.lm_measures)
    "icl": {"name": "icl", "task": {"kind": "icl-markov", "states": 3, "alpha": 0.5, "context": 12, "train_size": 128,
                                    "test_size": 32},
            "model": {"family": "gpt", "n_layer": 1, "n_head": 2, "context": 12},
            "train": {**LM_TRAIN, "eval_every": 2}, "vary": {"model.d_model": [8, 16]}},
    "fewshot": {"name": "fs", "task": {"kind": "fewshot", "symbols": 5, "labels": 3, "context": 13, "shots": [0, 2, 6],
                                       "train_size": 64, "test_size": 32},
                "model": {"family": "gpt", "n_layer": 1, "n_head": 2, "context": 13}, "train": LM_TRAIN,
                "vary": {"model.d_model": [8, 16]}},
    "text": {"name": "tx", "task": {"kind": "text", "tokenizer": "char", "train_size": 3000, "test_size": 1000},
             "model": {"family": "gpt", "n_layer": 1, "n_head": 2, "context": 16}, "train": LM_TRAIN,
             "vary": {"model.d_model": [8, 16]}},
}


def _lm_store(tmp: Path, which: str, spec: dict | None = None) -> Path:
    from overparam.sweep.runner import run_sweep

    out = tmp / f"lm-{which}"
    run_sweep(spec or LM_SPECS[which], out, progress=False)
    return out


def _set_metric(store: Path, key: str, value) -> None:
    """Metric ``key`` of the first run set to ``value`` (JSON text; None: removed)."""
    con = sqlite3.connect(store / "overparam.sqlite")
    run_id, text = con.execute("SELECT id, metrics FROM runs ORDER BY idx").fetchone()
    metrics = json.loads(text)
    if value is None:
        metrics.pop(key)
    else:
        metrics[key] = json.loads(value)
    con.execute("UPDATE runs SET metrics=? WHERE id=?", (json.dumps(metrics), run_id))
    con.commit()
    con.close()


def metric_case(which: str, key: str, value: str | None, fragment: str, command: str = "analyze") -> Hostile:
    def setup(tmp: Path, good: Path) -> list[str]:
        bad = _lm_store(tmp, which)
        _set_metric(bad, key, value)
        return [command, str(bad)] + (["--json"] if command in ("analyze", "runs") else [])

    name = f"{which}-{key}-{'missing' if value is None else value[:20]}-{command}"
    return Hostile("damaged in-context metrics", name, setup, 2, fragment, own_lines=command == "report", seconds=30)


METRIC_CASES = [
    metric_case("icl", "loss_by_position", '"x"', "loss_by_position is 'x'"),
    metric_case("icl", "loss_by_position", "[1, 2]", "loss_by_position has 2 positions", "report"),
    metric_case("icl", "loss_by_position", "[NaN, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]", "not all finite"),
    metric_case("icl", "reference_loss_by_position", '{"bayes": [1]}', "has 1 values", "report"),
    metric_case("icl", "induction_by_head", "[[1, 2], [3]]", "rows of different lengths"),
    metric_case("icl", "position_late", "[99]", "reaches past the 12 positions"),
    metric_case("icl", "bayes_gap", None, "icl_score without bayes_gap", "report"),
    metric_case("icl", "icl_score", '"high"', "icl_score is 'high'"),
    metric_case("icl", "reference_icl_score", '{"bayes": "a"}', "reference_icl_score"),
    metric_case("fewshot", "shot_accuracy", "[0.5]", "1 values for 3 numbers of shots", "report"),
    metric_case("fewshot", "shots", '"abc"', "shots is 'abc'"),
    metric_case("fewshot", "shot_optimal", '{"a": 1}', "shot_optimal"),
    metric_case("text", "domain_test_loss", "[1, 2]", "domain_test_loss is [1, 2]"),
    metric_case("text", "domain_test_loss", '{"docs": "x"}', "domain_test_loss", "report"),
    metric_case("text", "domain_test_loss_se", "7", "domain_test_loss_se is 7", "runs"),
    metric_case("text", "loss_by_position_se", "[0.1]", "loss_by_position_se has 1 values"),
]


# -- inputs that changed after the sweep trained on them ----------------------------------------------
def _corpus(path: Path, words: int = 2000, extra: str = "") -> Path:
    vocab = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far"]
    path.write_text(" ".join(vocab[(7 * i) % len(vocab)] for i in range(words)) + extra)
    return path


def _text_input_sweep(tmp: Path, mix: bool = False) -> tuple[Path, Path, Path]:
    """A char-level gpt sweep on a corpus file in ``tmp``: (sweep dir, corpus, spec file)."""
    corpus = _corpus(tmp / "corpus.txt")
    task = {"kind": "text", "tokenizer": "char", "train_size": 3000, "test_size": 1000}
    task |= {"mix": [{"path": str(corpus), "weight": 1}, {"path": "embedded:docs", "weight": 1}]} if mix else {
        "path": str(corpus)}
    spec = {"name": "inputs", "task": task, "model": {"family": "gpt", "n_layer": 1, "n_head": 2, "d_model": 8,
                                                      "context": 16}, "train": LM_TRAIN}
    return _lm_store(tmp, "input", spec), corpus, _spec(tmp, "inputs", yaml.safe_dump(spec))


def _edited_corpus(command: str, mix: bool = False, forget: bool = False) -> Setup:
    def setup(tmp: Path, good: Path):
        out, corpus, spec = _text_input_sweep(tmp, mix)
        if forget:  # a store written before input fingerprints
            _edit(out, "DELETE FROM meta WHERE key='input_files'")
        with corpus.open("a") as f:
            f.write(" zebra QUIZ!")  # new characters: another vocabulary
        if command == "sweep":
            return ["sweep", str(spec), "--out", str(out), "--no-progress"], [out / "overparam.sqlite"]
        return [command, str(out)] + (["--run", _first_run(out)] if command != "report" else [])

    return setup


def _table_sweep_test_file_edited(tmp: Path, good: Path) -> list[str]:
    """A table sweep whose test CSV then changes one digit: same size, other bytes."""
    from overparam.sweep.runner import run_sweep

    rows = [f"{i % 7}.{i % 3},{(i * 5) % 11}.5,{'ab'[i % 2]}" for i in range(60)]
    (tmp / "train.csv").write_text("a,b,kind\n" + "\n".join(rows[:40]) + "\n")
    test = tmp / "test.csv"
    test.write_text("a,b,kind\n" + "\n".join(rows[40:]) + "\n")
    out = tmp / "table"
    run_sweep({"name": "table", "task": {"kind": "table", "path": str(tmp / "train.csv"), "test_path": str(test),
                                         "target": "kind"},
               "model": {"family": "mlp", "width": 8}, "train": {"steps": 5}}, out, progress=False)
    text = test.read_text()
    test.write_text(text.replace("0.5", "1.5", 1))
    return ["compress", str(out), "--run", _first_run(out)]


def _image_folder_grew(tmp: Path, good: Path) -> list[str]:
    """An image-folder sweep, then one more image in a class folder."""
    import numpy as np
    from PIL import Image

    from overparam.sweep.runner import run_sweep

    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp / "img" / "train" / c).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (6, 5), dtype=np.uint8)).save(tmp / "img" / "train" / c / f"{i}.png")
    out = tmp / "images"
    run_sweep({"name": "img", "task": {"kind": "images", "path": str(tmp / "img"), "test_size": 4},
               "model": {"family": "mlp", "width": 8}, "train": {"steps": 5}}, out, progress=False)
    Image.fromarray(rng.integers(0, 256, (6, 5), dtype=np.uint8)).save(tmp / "img" / "train" / "cat" / "new.png")
    return ["implicit", str(out), "--run", _first_run(out)]


INPUT_CASES = [
    Hostile("changed inputs", "corpus-edited-attention", _edited_corpus("attention"), 2, "task.path changed since"),
    Hostile("changed inputs", "corpus-edited-resume", _edited_corpus("sweep"), 2, "use a new --out"),
    Hostile("changed inputs", "corpus-edited-report", _edited_corpus("report"), 0, "task.path changed since",
            own_lines=True, seconds=60),
    Hostile("changed inputs", "mix-domain-edited-attention", _edited_corpus("attention", mix=True), 2,
            "task.mix[0].path changed since"),
    Hostile("changed inputs", "corpus-edited-old-store", _edited_corpus("attention", forget=True), 2,
            "does not fit the model rebuilt"),
    Hostile("changed inputs", "table-test-file-edited-compress", _table_sweep_test_file_edited, 2,
            "same size, other bytes"),
    Hostile("changed inputs", "image-added-implicit", _image_folder_grew, 2, "13 files"),
]

CASES: list[Hostile] = (SPEC_CASES + STORE_CASES + SILENT_CASES + ANALYSIS_CASES + FLAG_CASES + METRIC_CASES
                        + INPUT_CASES)


# -- running a case ---------------------------------------------------------------------------------
def _judge(case: Hostile, code: int | None, stderr: str, seconds: float, watched: dict[Path, bytes]) -> Result:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("overparam: error:")]
    why = ""
    if code is None:
        why = f"hung (killed after {seconds:.0f} s)"
    elif code != case.code:
        why = f"exit {code}, expected {case.code}: {lines[-1:]!r}"
    elif "Traceback" in stderr or "internal error" in stderr:
        why = "internal error or traceback"
    elif case.code == 2 and (len(errors) != 1 or (not case.own_lines and len(lines) != 1)):
        why = f"not one error line: {lines!r}"
    elif case.code == 0 and errors:
        why = f"an error line on success: {errors!r}"
    elif case.fragment and case.fragment not in stderr:
        why = f"message lacks {case.fragment!r}: {lines!r}"
    elif seconds > case.seconds:
        why = f"took {seconds:.2f} s, bound {case.seconds} s"
    else:
        changed = [str(p) for p, before in watched.items() if (p.read_bytes() if p.exists() else None) != before]
        if changed:
            why = f"changed: {changed}"
    return Result(case, code, stderr, seconds, not why, why)


def run_hostile(case: Hostile, tmp: Path, good: Path, subprocess_timeout: float | None = None) -> Result:
    """Run one case (in this process, or as a child process when ``subprocess_timeout`` is given)."""
    from overparam.cli import main

    argv = case.setup(tmp, good)
    extra: list[Path] = []
    if isinstance(argv, tuple):
        argv, extra = argv
    watched = {p: p.read_bytes() for p in [good / "overparam.sqlite", *extra]}
    if subprocess_timeout is not None:
        env = {**os.environ, **case.env, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
        start = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-m", "overparam", *argv], capture_output=True, text=True,
                                  env=env, timeout=subprocess_timeout)
            code, stderr = proc.returncode, proc.stderr
        except subprocess.TimeoutExpired as exc:
            code, stderr = None, (exc.stderr or b"").decode(errors="replace") if isinstance(exc.stderr, bytes) \
                else (exc.stderr or "")
        seconds = time.perf_counter() - start
        result = _judge(case, code, stderr, 0.0, watched)  # a child's time includes importing torch
        result.seconds = seconds
        return result
    saved = {k: os.environ.get(k) for k in case.env}
    os.environ.update(case.env)
    err = io.StringIO()
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return _judge(case, code, err.getvalue(), time.perf_counter() - start, watched)


def summarize(results: list[Result]) -> dict:
    """Counts for the benchmark table: per class and overall."""
    by_kind: dict[str, dict[str, int]] = {}
    for r in results:
        row = by_kind.setdefault(r.case.kind, {"tried": 0, "handled": 0, "exit2": 0, "internal": 0, "hangs": 0})
        row["tried"] += 1
        row["handled"] += r.ok
        row["exit2"] += r.code == 2
        row["internal"] += r.internal
        row["hangs"] += r.code is None
    return by_kind


def dump(results: list[Result]) -> str:
    return json.dumps([{"kind": r.case.kind, "name": r.case.name, "code": r.code, "ok": r.ok, "why": r.why,
                        "seconds": round(r.seconds, 3)} for r in results], indent=1)
