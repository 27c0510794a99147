"""Sweeps where a member diverged, or a finished run's weights are not finite: the commands that read
checkpoints over the whole sweep measure the others, name what they left out (one stderr line, the JSON,
the report), exit 0 while one run was measured and 2 when none was; per-run commands refuse a diverged
run in one line, naming it and its status."""

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open

from overparam.cli import main
from overparam.store import load_runs
from overparam.sweep.checkpoints import write_atomically

# lr 1e5 under MSE overflows in a few SGD steps (tests/test_cli.py); lr 0.05 trains normally
SPEC = {"name": "div", "task": {"kind": "digits", "train_size": 200}, "model": {"family": "mlp"},
        "train": {"optimizer": "gd", "steps": 40, "loss": "mse", "eval_every": 10,
                  "diagnostics": ["norms", "sharpness"]},
        "vary": {"train.lr": [0.05, 100000.0], "model.width": [8, 32], "seed": [0, 1]}}
LM_SPEC = {"name": "div-lm", "task": {"kind": "text", "train_size": 4000, "test_size": 1000},
           "model": {"family": "gpt", "n_layer": 1, "d_model": 16, "n_head": 2, "context": 16},
           "train": {"optimizer": "sgd", "steps": 30, "batch_size": 8, "eval_every": 10},
           "vary": {"train.lr": [0.01, 1000000.0]}}


def cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    assert "Traceback" not in err.getvalue() and "internal error" not in err.getvalue(), err.getvalue()
    return code, out.getvalue(), err.getvalue()


def sweep(tmp: Path, spec: dict) -> Path:
    (tmp / "spec.yaml").write_text(yaml.safe_dump(spec))
    code, _, err = cli(["sweep", tmp / "spec.yaml", "--out", tmp / "out", "--no-progress"])
    assert code == 2 and "diverged (non-finite loss" in err, err  # the sweep itself says so, and stores the rest
    return tmp / "out"


@pytest.fixture(scope="module")
def div(tmp_path_factory) -> Path:
    return sweep(tmp_path_factory.mktemp("div"), SPEC)


def copy_of(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    shutil.rmtree(dst / "analyses", ignore_errors=True)
    return dst


def poison(directory: Path, run_id: str) -> None:
    """NaN weights under a valid checksum: finite-ness, not damage, is what is tested."""
    path = directory / "checkpoints" / f"{run_id}.safetensors"
    with safe_open(str(path), framework="pt") as fh:
        meta, state = fh.metadata(), {k: fh.get_tensor(k) for k in fh.keys()}
    write_atomically(path, {k: torch.full_like(v, float("nan")) for k, v in state.items()},
                     {k: v for k, v in meta.items() if k != "sha256"})


def ids_by(runs, status: str, **where) -> list[str]:
    frame = runs[runs["status"] == status]
    for column, value in where.items():
        frame = frame[frame[column] == value]
    return sorted(frame["id"])


def warnings_of(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("overparam: warning:")]


def test_the_fixture_diverged_where_expected(div):
    runs = load_runs(div)
    assert set(runs.loc[runs["train.lr"] == 100000.0, "status"]) == {"diverged"}
    assert set(runs.loc[runs["train.lr"] == 0.05, "status"]) == {"done"}


def test_landscape_measures_the_finished_runs_and_names_the_diverged(div):
    from overparam.analysis.landscape import linear_path_from_store

    runs = load_runs(div)
    code, out, err = cli(["landscape", div, "--json"])
    assert code == 0, err
    doc = json.loads(out)
    diverged = ids_by(runs, "diverged")
    assert sorted(s["run_id"] for s in doc["skipped"]) == diverged
    truth = runs.set_index("id")["diverged_at"]
    assert all(s["status"] == "diverged" and s["diverged_at"] == truth[s["run_id"]] for s in doc["skipped"])
    # one path per width, each the lowest seed's, with the numbers the run alone gives
    expected = [ids_by(runs, "done", **{"model.width": w, "seed": 0})[0] for w in (8, 32)]
    assert [p["run_id"] for p in doc["paths"]] == expected
    alone = linear_path_from_store(div, expected[1], tuple(doc["alphas"]))
    assert doc["paths"][1]["train_loss"] == alone["train_loss"]
    notes = warnings_of(err)
    assert len(notes) == 1 and all(i in notes[0] for i in diverged), err
    assert any(all(i in s for i in diverged) for s in doc["sentences"])


def test_a_run_with_nan_weights_is_replaced_by_its_next_seed(div, tmp_path):
    from overparam.analysis.landscape import linear_path_from_store

    bad = copy_of(div, tmp_path / "nan")
    runs = load_runs(bad)
    broken = ids_by(runs, "done", **{"model.width": 8, "seed": 0})[0]
    stand_in = ids_by(runs, "done", **{"model.width": 8, "seed": 1})[0]
    poison(bad, broken)
    code, out, err = cli(["landscape", bad, "--json"])
    assert code == 0, err
    doc = json.loads(out)
    nan = [s for s in doc["skipped"] if s["run_id"] == broken]
    assert len(nan) == 1 and nan[0]["reason"] == "non-finite weights" and nan[0]["size"] == 8
    assert [p["run_id"] for p in doc["paths"]][0] == stand_in
    assert doc["paths"][0]["train_loss"] == linear_path_from_store(bad, stand_in, tuple(doc["alphas"]))["train_loss"]
    notes = warnings_of(err)
    assert len(notes) == 1 and broken in notes[0] and "non-finite weights" in notes[0]
    # the report reads the saved document: the same runs are named as left out
    assert cli(["report", bad])[0] == 0
    summary = json.loads((bad / "summary.json").read_text())
    found = json.dumps(summary)
    assert broken in found and all(i in found for i in ids_by(runs, "diverged"))
    assert "non-finite weights" in (bad / "report.html").read_text()


def test_no_measurable_run_is_one_line_exit_2(div, tmp_path):
    bad = copy_of(div, tmp_path / "allnan")
    for run_id in ids_by(load_runs(bad), "done"):
        poison(bad, run_id)
    code, out, err = cli(["landscape", bad])
    errors = [line for line in err.splitlines() if line.startswith("overparam: error:")]
    assert code == 2 and out == "" and len(errors) == 1, err
    assert "no run could be measured" in errors[0] and "non-finite weights" in errors[0]
    assert not (bad / "analyses" / "landscape.json").exists()


def test_report_of_a_sweep_with_diverged_runs_and_diagnostics(div, tmp_path):
    """The implicit-regularization section reads the recorded diagnostics of the finished runs only."""
    d = copy_of(div, tmp_path / "rep")
    code, _, err = cli(["report", d])
    assert code == 0, err
    summary = json.loads((d / "summary.json").read_text())
    assert "Implicit regularization" in (d / "report.html").read_text(), summary


@pytest.mark.parametrize("command", [["compress"], ["implicit"]])
def test_per_run_commands_refuse_a_diverged_run_in_one_line(div, command):
    run_id = ids_by(load_runs(div), "diverged")[0]
    code, out, err = cli([*command, div, "--run", run_id])
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith("overparam: error:") and run_id in err and "diverged" in err


def test_interpretability_commands_refuse_a_diverged_language_model_run(tmp_path):
    lm = sweep(tmp_path, LM_SPEC)
    run_id = ids_by(load_runs(lm), "diverged")[0]
    for argv in (["probe", lm, "--run", run_id, "--target", "char_class"], ["attention", lm, "--run", run_id],
                 ["compress", lm, "--run", run_id]):
        code, out, err = cli(argv)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, (argv, err)
        assert err.startswith("overparam: error:") and run_id in err and "diverged" in err
    code, _, err = cli(["report", lm])
    assert code == 0, err
