"""`overparam landscape` and the report's "Loss landscape vs width" section, against the library and
closed forms: the JSON equals what the library functions compute, a model linear in its parameters
has an exactly quadratic (convex) path whose ends are the stored init and final losses."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from overparam.analysis.landscape import linear_path_from_store, steps_to_threshold
from overparam.analysis.landscape_report import (
    analyze_landscape,
    auto_threshold,
    choose_path_runs,
    parse_alphas,
    read_paths,
    read_steps,
    round_up,
)
from overparam.cli import main
from overparam.errors import OverparamError
from overparam.report.landscape_section import landscape_section
from overparam.report.sections import SweepContext
from overparam.store import load_curves, load_runs
from overparam.sweep.runner import run_sweep

torch.set_num_threads(1)

MLP = {"name": "ls", "task": {"kind": "digits", "train_size": 200, "test_size": 200, "label_noise": 0.1},
       "model": {"family": "mlp", "depth": 1},
       "train": {"optimizer": "adam", "lr": 1e-2, "steps": 150, "batch_size": 64, "eval_log_points": 8},
       "vary": {"model.width": [2, 8, 32, 128]}}


@pytest.fixture(scope="module")
def mlp_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("landscape")
    run_sweep(MLP, out, progress=False)
    return out


def _roundtrip(doc):
    return json.loads(json.dumps(doc))


def test_cli_writes_the_library_numbers_and_leaves_the_store_alone(mlp_sweep, capsys):
    before = (mlp_sweep / "overparam.sqlite").read_bytes()
    capsys.readouterr()
    assert main(["landscape", str(mlp_sweep), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert json.loads((mlp_sweep / "analyses" / "landscape.json").read_text()) == doc
    assert (mlp_sweep / "overparam.sqlite").read_bytes() == before
    runs, curves = load_runs(mlp_sweep), load_curves(mlp_sweep)
    assert doc["run_ids"] == sorted(runs["id"]) and doc["axis"] == "model.width"
    # automatic threshold: 4 widths, 1 seed: the 2nd lowest of the runs' best train losses, rounded up
    best = curves[curves["name"] == "train_loss"].groupby("run_id")["value"].min().sort_values()
    assert doc["threshold"] == round_up(best.iloc[1]) == auto_threshold(runs, curves)
    assert best.iloc[1] <= doc["threshold"] < best.iloc[1] * 1.1
    assert doc["steps"] == _roundtrip(steps_to_threshold(mlp_sweep, doc["threshold"]))
    assert sum(s["n_reached"] > 0 for s in doc["steps"]["sizes"]) >= 2  # at least half the widths
    assert [p["size"] for p in doc["paths"]] == [2, 8, 32, 128]  # one run per width by default
    for path in doc["paths"]:
        lib = _roundtrip(linear_path_from_store(mlp_sweep, path["run_id"]))
        for key in ("alpha", "train_loss", "test_loss", "barrier", "monotonic"):
            assert path[key] == lib[key], key
        assert path["has_barrier"] == (path["barrier"] > 1e-9 * max(lib["train_loss"][0], lib["train_loss"][-1]))


def test_human_output_and_a_given_threshold(mlp_sweep, capsys):
    capsys.readouterr()
    assert main(["landscape", str(mlp_sweep), "--threshold", "1.5", "--max-runs", "2", "--alphas", "0:1:5"]) == 0
    out = capsys.readouterr().out
    doc = json.loads((mlp_sweep / "analyses" / "landscape.json").read_text())
    assert doc["threshold"] == 1.5 and doc["threshold_rule"]["kind"] == "given"
    assert doc["alphas"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [p["size"] for p in doc["paths"]] == [2, 128]  # a cap keeps both ends of the width range
    assert out.splitlines()[0].split()[:4] == ["width", "params", "reached", "median"]
    assert "train loss 1.5" in out and "landscape.json" in out


def test_linear_model_path_is_a_convex_quadratic_with_the_stored_ends(tmp_path, capsys):
    spec = {"name": "lin", "task": {"kind": "teacher", "sigma2": 0.25, "dim": 40, "train_size": 30, "test_size": 300},
            "model": {"family": "linear"},
            "train": {"optimizer": "gd", "lr": 0.05, "steps": 200, "eval_log_points": 8, "dtype": "float64"},
            "vary": {"model.width": [5, 20, 40]}}
    run_sweep(spec, tmp_path, progress=False)
    capsys.readouterr()
    assert main(["landscape", str(tmp_path), "--alphas=-0.5:1.5:41", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    runs = load_runs(tmp_path).set_index("id")
    curves = load_curves(tmp_path)
    alphas = np.array(doc["alphas"])
    assert len(doc["paths"]) == 3
    for path in doc["paths"]:
        loss = np.array(path["train_loss"])
        assert path["barrier"] <= 1e-12 and not path["has_barrier"]  # MSE of a linear model: convex in α
        second = np.diff(loss, 2)  # a quadratic on an even grid: constant, non-negative second differences
        assert np.all(second >= 0) and np.allclose(second, second.mean(), rtol=1e-6, atol=1e-12)
        stored = curves[(curves["run_id"] == path["run_id"]) & (curves["name"] == "train_loss")]
        assert loss[alphas == 0.0][0] == pytest.approx(stored.loc[stored["step"] == 0, "value"].iloc[0], rel=1e-10)
        assert loss[alphas == 1.0][0] == pytest.approx(runs.at[path["run_id"], "train_loss"], rel=1e-10)
        test_end = np.array(path["test_loss"])[alphas == 1.0][0]
        assert test_end == pytest.approx(runs.at[path["run_id"], "test_loss"], rel=1e-10)
    assert main(["landscape", str(tmp_path), "--metric", "train_error"]) == 2  # regression: no error curves
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--metric train_loss" in err[0]


def test_report_section_with_and_without_the_analysis(mlp_sweep, tmp_path):
    sweep = tmp_path / "copy"
    shutil.copytree(mlp_sweep, sweep)
    shutil.rmtree(sweep / "analyses", ignore_errors=True)
    section = landscape_section(SweepContext(sweep))  # curves only: steps to the threshold, no path
    assert section.title == "Loss landscape vs width" and len(section.figures) == 1
    assert section.summary["threshold"] == auto_threshold(load_runs(sweep), load_curves(sweep))
    assert "overparam landscape" in section.sentences[-1]
    doc = analyze_landscape(sweep)
    assert main(["report", str(sweep)]) == 0
    page = (sweep / "report.html").read_text()
    assert "Loss landscape vs width" in page and (sweep / "figures" / "landscape_path.png").is_file()
    summary = json.loads((sweep / "summary.json").read_text())["parts"]["copy"]["loss_landscape_vs_width"]
    assert summary["landscape_json"] == "fresh"
    assert summary["sentences"] == doc["sentences"]  # the report reads what the command printed
    assert summary["sizes"] == _roundtrip(doc["steps"]["sizes"])
    assert [p["barrier"] for p in summary["paths"]] == [p["barrier"] for p in doc["paths"]]
    doc["run_ids"] = doc["run_ids"][1:]  # as if written before the sweep's last run finished
    (sweep / "analyses" / "landscape.json").write_text(json.dumps(doc))
    section = landscape_section(SweepContext(sweep))
    assert len(section.figures) == 1 and "another set of finished runs" in section.sentences[-1]


def test_round_up_and_the_automatic_threshold_rule():
    assert round_up(0.7481563) == 0.75 and round_up(0.75) == 0.75 and round_up(1234.0) == 1300.0
    assert round_up(0.0) == 0.0 and round_up(-0.1234) == -0.12 and round_up(0.000101) == 0.00011
    # 3 widths x 2 seeds: per width the lower of the two seeds' bests; across widths the 2nd lowest of 3
    runs = pd.DataFrame({"id": list("abcdef"), "status": "done", "model.width": [4, 4, 8, 8, 16, 16],
                         "seed": [0, 1] * 3, "params": [10, 10, 20, 20, 40, 40]})
    bests = {"a": 0.9, "b": 0.5, "c": 0.31, "d": 0.6, "e": 0.05, "f": 0.2}
    curves = pd.DataFrame([(r, s, "train_loss", 2.3 if s == 0 else v) for r, v in bests.items() for s in (0, 10)],
                          columns=["run_id", "step", "name", "value"])
    assert auto_threshold(runs, curves) == 0.31  # widths: 4 → 0.5, 8 → 0.31, 16 → 0.05


def test_choose_path_runs_spreads_a_cap_over_widths():
    widths = [2, 4, 8, 16, 32]
    runs = pd.DataFrame({"id": [f"w{w}s{s}" for s in (1, 0) for w in widths], "status": "done",
                         "model.width": widths * 2, "seed": [1] * 5 + [0] * 5, "params": [w * 10 for w in widths] * 2})
    def has(i):
        return i != "w4s0"
    assert choose_path_runs(runs, "model.width", None, has) == ["w2s0", "w4s1", "w8s0", "w16s0", "w32s0"]
    assert choose_path_runs(runs, "model.width", 3, has) == ["w2s0", "w8s0", "w32s0"]
    assert choose_path_runs(runs, "model.width", 7, has)[5:] == ["w2s1", "w32s1"]
    assert choose_path_runs(runs, "model.width", 100, has) == choose_path_runs(runs, "model.width", 9, has)


@pytest.mark.parametrize("text", ["0:1", "a:b:c", "1:0:5", "0:1:2", "0:0.5:3", "0.1:1:10", "0:1:nan"])
def test_bad_alphas_are_refused(text):
    with pytest.raises(OverparamError, match="alphas"):
        parse_alphas(text)


def test_reading_states_the_documents_numbers():
    sizes = [{"size": 8, "params": 100, "n_runs": 2, "n_reached": 0, "median_step": None},
             {"size": 16, "params": 200, "n_runs": 2, "n_reached": 1, "median_step": 800.0},
             {"size": 64, "params": 800, "n_runs": 2, "n_reached": 2, "median_step": 300.0}]
    runs = [{"run_id": "r", "step": None, "last_step": 1000, "final": 0.5, "params": 100}]
    doc = {"steps": {"metric": "train_loss", "threshold": 0.1, "runs": runs, "sizes": sizes}, "axis": "model.width",
           "threshold_rule": {"text": "train loss 0.1 (set by hand)"}, "evaluated_steps": 12,
           "pooled": ["task.label_noise"]}
    said = read_steps(doc)
    # pooled over label noise, a width's two runs are not two seeds: they are counted as runs
    assert said[0] == ("Wider networks fit faster: width 64 reached train loss 0.1 at step 300, width 16 at step 800 "
                       "(median over the runs that reached it).")
    assert said[1] == "1 of 3 widths never reached it in 1,000 steps (width 8)."
    assert said[2] == "Only 1 of 2 runs of width 16 reached it."
    assert read_steps({**doc, "pooled": []})[2] == "Only 1 of 2 seeds of width 16 reached it."
    assert "(12 evaluated steps per run)" in said[3] and "task.label_noise" in said[4]

    def path(size, barrier, monotonic, train, test):
        return {"size": size, "params": size * 10, "seed": 0, "barrier": barrier, "has_barrier": barrier > 0,
                "monotonic": monotonic, "train_loss": train, "test_loss": test}

    doc = {"axis": "model.width", "alphas": [0.0, 0.5, 1.0],
           "paths": [path(8, 0.05, True, [2.3, 1.5, 1.0], [2.3, 1.6, 1.2]),
                     path(16, 0.02, False, [2.3, 1.0, 0.5], [2.3, 1.0, 0.9]),
                     path(64, 0.0, True, [2.3, 0.8, 0.1], [2.3, 0.4, 0.6])]}
    assert read_paths(doc) == [
        "Along the straight line from the initial to the trained weights the train loss decreased monotonically "
        "for 2 of 3 widths (one run per size, its lowest seed).",
        "The loss rose above the straight chord between the endpoints (a barrier) for 2 of 3; the largest barrier, "
        "0.05, is at width 8; at the widest, width 64, there is none.",
        "Halfway (α = 0.5) the train loss is 1.5 at width 8 and 0.8 at width 64.",
        "Part-way along the line the test loss is lower than at the trained weights (by more than 1 %) for 1 of 3 "
        "widths; most at width 64: 0.4 at α = 0.5, 0.6 trained."]


def test_reading_separates_thousands_in_sizes_and_losses():
    """The demo read "most at width 1091": a width of 1,000 or more keeps its separator, as elsewhere on the page."""
    def path(size, barrier, train, test):
        return {"size": size, "params": size * 10, "seed": 0, "barrier": barrier, "has_barrier": barrier > 0,
                "monotonic": True, "train_loss": train, "test_loss": test}

    doc = {"axis": "model.width", "alphas": [0.0, 0.5, 1.0],
           "paths": [path(581, 0.02, [2.3, 1.5, 1.0], [2.3, 1.6, 1.2]),
                     path(1091, 0.0, [2.3, 1.0, 0.5], [2.3, 0.4, 0.9]),
                     path(2048, 0.0, [2.3, 0.8, 0.1], [2.3, 0.7, 0.6])]}
    said = read_paths(doc)
    assert said[1].endswith("is at width 581; from width 1,091 up there is none.")
    assert said[2] == "Halfway (α = 0.5) the train loss is 1.5 at width 581 and 0.8 at width 2,048."
    assert "most at width 1,091: 0.4 at α = 0.5, 0.9 trained." in said[3]
    from overparam.analysis.landscape_report import fmt_num, fmt_size

    assert (fmt_num(12345.6), fmt_num(0.0123), fmt_size(1091), fmt_size(1091.0), fmt_size("a")) == \
        ("12,300", "0.0123", "1,091", "1,091", "a")
