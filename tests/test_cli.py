"""The CLI contract: --json prints one document; bad input is one line `overparam: error:` and exit 2."""

import json
import subprocess
import sys

import pytest
import yaml

from overparam.cli import main

SPEC = {"name": "cli", "task": {"kind": "digits", "train_size": 200},
        "model": {"family": "rff", "features": "fourier"}, "train": {"optimizer": "min_norm"},
        "vary": {"model.width": [50, 200, 800], "seed": [0, 1]}}


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    spec = d / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    assert main(["sweep", str(spec), "--out", str(d / "out"), "--no-progress"]) == 0
    return d


def one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("overparam: error: ")
    return err[0]


def test_runs_json_contract(sweep_dir, capsys):
    capsys.readouterr()
    assert main(["runs", str(sweep_dir / "out"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["runs"]) == 6
    run = doc["runs"][0]
    assert set(run) >= {"id", "status", "config", "params", "flops", "metrics"}
    assert set(run["config"]) == {"task", "model", "train", "seed"}
    assert set(run["metrics"]) >= {"train_error", "test_error", "train_loss", "test_loss"}
    assert run["status"] == "done" and run["params"] == run["config"]["model"]["width"] * 10


def test_analyze_json_contract(sweep_dir, capsys):
    capsys.readouterr()
    assert main(["analyze", str(sweep_dir / "out"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    curve = doc["curves"][0]
    for key in ("axis", "fixed", "threshold_params", "peak_params", "peak_test_error", "best_under_params",
                "best_under_test_error", "best_over_params", "best_over_test_error", "second_descent"):
        assert key in curve
    assert curve["axis"] == "model.width"
    assert curve["peak_size"] == 200  # N = n_train: the interpolation peak


def test_report_is_written(sweep_dir):
    assert main(["report", str(sweep_dir / "out")]) == 0
    page = (sweep_dir / "out" / "report.html").read_text()
    assert "<img" in page and "http://" not in page and "https://" not in page
    assert json.loads((sweep_dir / "out" / "summary.json").read_text())["parts"]


@pytest.mark.parametrize("content, fragment", [
    ("task: {kind: digits}\nmodel: {family: mlp, widht: 3}\n", "model.widht: unknown key"),
    ("task: {kind: digits}\nmodel: {family: mlp, width: three}\n", "model.width: expected integer"),
    ("task: {kind: digits}\nmodel: {family: mlp, width: 0}\n", "model.width: must be > 0"),
    ("task: {kind: digits, label_noise: 1.5}\nmodel: {family: mlp}\n", "task.label_noise"),
    ("task: {kind: digits}\nmodel: {family: mlp}\nvary: {model.width: []}\n", "vary.model.width: the axis is empty"),
    ("task: [kind\n", "malformed YAML"),
    ("", "the spec is empty"),
    ("just a string\n", "expected a mapping"),
])
def test_bad_spec_is_one_line_exit_2(tmp_path, capsys, content, fragment):
    spec = tmp_path / "bad.yaml"
    spec.write_text(content)
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert fragment in one_error_line(capsys)


def test_missing_things_are_one_line_exit_2(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "spec file not found" in one_error_line(capsys)
    assert main(["runs", str(tmp_path)]) == 2
    assert "not a sweep directory" in one_error_line(capsys)
    assert main(["analyze", str(tmp_path / "missing")]) == 2
    assert "no such sweep directory" in one_error_line(capsys)
    (tmp_path / "overparam.sqlite").write_bytes(b"\x00garbage" * 64)
    assert main(["runs", str(tmp_path), "--json"]) == 2
    assert "not an overparam store" in one_error_line(capsys)
    assert main(["sweep"]) == 2
    one_error_line(capsys)
    assert main(["analyze", str(tmp_path), "--eps", "-1"]) == 2
    one_error_line(capsys)


def test_binary_spec_file(tmp_path, capsys):
    spec = tmp_path / "bin.yaml"
    spec.write_bytes(b"\xff\xfe\x00\x01" * 50)
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o")]) == 2
    assert "not UTF-8" in one_error_line(capsys)


def test_module_entry_point_and_version():
    out = subprocess.run([sys.executable, "-m", "overparam", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("overparam ")


def test_same_spec_same_numbers(tmp_path):
    from overparam.store import load_runs
    from overparam.sweep.runner import run_sweep

    spec = {"task": {"kind": "digits", "train_size": 200, "label_noise": 0.1},
            "model": {"family": "mlp", "width": 16}, "train": {"steps": 60, "dropout": 0.2},
            "vary": {"seed": [0, 1]}}
    run_sweep(spec, tmp_path / "a", progress=False)
    run_sweep(spec, tmp_path / "b", progress=False)
    a, b = load_runs(tmp_path / "a"), load_runs(tmp_path / "b")
    assert (a["test_loss"].to_numpy() == b["test_loss"].to_numpy()).all()
    assert a["test_loss"].iloc[0] != a["test_loss"].iloc[1]  # the seed matters


def test_nan_loss_marks_run_diverged_keeps_the_rest_and_exits_2(tmp_path, capsys):
    spec = tmp_path / "div.yaml"
    spec.write_text(yaml.safe_dump({
        "task": {"kind": "digits", "train_size": 200}, "model": {"family": "mlp", "width": 16},
        "train": {"optimizer": "sgd", "steps": 50, "loss": "mse"}, "vary": {"train.lr": [0.05, 1.0e5]}}))
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o"), "--no-progress", "--fuse", "off"]) == 2
    line = one_error_line(capsys)
    assert "1 diverged (non-finite loss" in line and "other results are stored" in line
    assert main(["runs", str(tmp_path / "o"), "--json"]) == 0
    runs = {r["config"]["train"]["lr"]: r for r in json.loads(capsys.readouterr().out)["runs"]}
    assert runs[1.0e5]["status"] == "diverged" and runs[0.05]["status"] == "done"
    assert runs[0.05]["metrics"]["test_error"] < 0.5
    assert main(["report", str(tmp_path / "o")]) == 0
    assert "status-diverged" in (tmp_path / "o" / "report.html").read_text()
