"""`overparam implicit`: diagnostics of a stored run against closed forms."""

import json

import numpy as np

from overparam.cli import main
from overparam.data import load_task
from overparam.store import load_runs, open_store
from overparam.sweep.runner import run_sweep

SPEC = {"task": {"kind": "teacher", "dim": 30, "train_size": 20, "test_size": 50},
        "model": {"family": "linear"}, "train": {"optimizer": "min_norm"}, "vary": {"model.width": [10, 30]}}


def test_min_norm_run_is_at_the_min_norm_solution_and_its_hessian_is_exact(tmp_path, capsys):
    run_sweep(SPEC, tmp_path, progress=False)
    runs = load_runs(tmp_path)
    wide = runs.loc[runs["model.width"] == 30, "id"].iloc[0]
    capsys.readouterr()
    assert main(["implicit", str(tmp_path), "--run", wide, "--k", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["distance_to_min_norm"] < 1e-8  # zero init + pinv = the min-norm interpolant
    with open_store(tmp_path) as store:
        task_config = store.runs()[0]["config"]["task"]
    xtr = load_task(task_config).x_train  # the same data, rebuilt from the stored config
    top = np.sort(np.linalg.eigvalsh(2 * xtr.T @ xtr / len(xtr)))[::-1][:2]
    assert np.allclose(doc["hessian_top"], top, rtol=1e-6)
    # min_norm has no step size: the human output says why there is no 2/lr instead of printing None
    assert doc["stability_threshold"] is None and "min_norm" in doc["why_null"]["stability_threshold"]
    assert main(["implicit", str(tmp_path), "--run", wide]) == 0
    out = capsys.readouterr().out
    assert "None" not in out and "stability_threshold    n/a: 2/lr bounds the sharpness only for gd and sgd" in out


def test_bad_run_and_options_are_one_line_errors(tmp_path, capsys):
    run_sweep({**SPEC, "vary": {"model.width": [10]}}, tmp_path, progress=False)
    for argv in (["--run", "nope"], ["--run", "x", "--k", "0"], ["--run", "x", "--trace", "1"]):
        assert main(["implicit", str(tmp_path), *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("overparam: error: ")
