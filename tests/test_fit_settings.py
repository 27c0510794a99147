"""`overparam fit` and `advise` on a sweep with several settings: one law per setting, never one across them.

Sweeps are written through the store with test losses drawn from a known law per setting (a setting is
another task: here its irreducible loss E differs), so each setting's fit must recover its own constants,
while a fit across both would land between them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_scaling_report import TRUTH, write_sweep

from overparam.analysis.scaling import fit_scaling_law, points_from_sweep
from overparam.analysis.scaling.settings import sweep_settings
from overparam.cli import main
from overparam.spec import Spec
from overparam.store import Store

SHIFT = 0.6  # nats added to every loss of the second learning rate: another task, E = 1.8 instead of 1.2


@pytest.fixture(scope="module")
def two_settings(tmp_path_factory):
    return write_sweep(tmp_path_factory.mktemp("fit") / "lr", extra={"train.lr": [1e-3, 3e-3]},
                       shift=lambda c: SHIFT if c["train"]["lr"] == 3e-3 else 0.0)


def cli(args, capsys) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_each_setting_gets_its_own_law_and_none_is_pooled(two_settings, capsys):
    code, out, err = cli(["fit", str(two_settings), "--bootstrap", "20", "--json"], capsys)
    assert code == 0 and err == ""
    doc = json.loads(out)
    assert not {"law", "params", "ci"} & set(doc)  # no pooled fit at the top level
    assert doc["split"]["axes"] == ["train.lr"] and doc["split"]["n_settings"] == doc["split"]["n_fitted"] == 2
    by_lr = {row["setting"]["train.lr"]: row for row in doc["settings"]}
    assert set(by_lr) == {1e-3, 3e-3}
    for lr, shift in ((1e-3, 0.0), (3e-3, SHIFT)):
        row = by_lr[lr]
        assert row["law"] == "chinchilla" and row["n_points"] == 20 and row["label"] == f"train.lr = {lr:g}"
        assert row["params"]["E"] == pytest.approx(TRUTH["E"] + shift, rel=0.05)
        for k in ("alpha", "beta"):
            assert row["params"][k] == pytest.approx(TRUTH[k], abs=0.03)
    assert doc["n_points"] == 40
    # the per-setting block is exactly the single fit of that setting's points (same keys, same numbers)
    axes, settings = sweep_settings(two_settings)
    from overparam.analysis.scaling.points import points_from_runs

    alone = fit_scaling_law(points_from_runs(settings[0].runs, two_settings), bootstrap=20, x=None).to_dict()
    first = doc["settings"][0]
    assert {k: v for k, v in first.items() if k not in ("setting", "label", "n_runs")}.keys() == alone.keys()
    assert first["params"] == pytest.approx(alone["params"])
    # the report's scaling section splits the same way and fits the same law to each setting
    from overparam.analysis.scaling_report import analyze_scaling_sweep

    report = analyze_scaling_sweep(two_settings, bootstrap=20, write=False)
    assert [s["label"] for s in report["settings"]] == [row["label"] for row in doc["settings"]]
    for mine, theirs in zip(doc["settings"], report["settings"], strict=True):
        assert mine["params"] == pytest.approx(theirs["fit"]["params"], rel=1e-9)
    # what the split avoids: one law over both settings recovers neither task's E
    pooled = fit_scaling_law(points_from_sweep(two_settings), bootstrap=0).params["E"]
    assert min(abs(pooled - TRUTH["E"]), abs(pooled - TRUTH["E"] - SHIFT)) > 0.1


def test_text_output_names_each_setting(two_settings, capsys):
    code, out, _ = cli(["fit", str(two_settings), "--bootstrap", "0"], capsys)
    assert code == 0
    assert out.startswith("2 settings of train.lr: one law per setting")
    blocks = out.split("\n\nsetting ")[1:]
    assert [b.splitlines()[0] for b in blocks] == ["train.lr = 0.001 (20 runs)", "train.lr = 0.003 (20 runs)"]
    assert all("chinchilla fit on 20 points" in b for b in blocks)


def test_setting_picks_one_and_keeps_the_single_shape(two_settings, capsys):
    code, out, _ = cli(["fit", str(two_settings), "--bootstrap", "0", "--json", "--setting", "train.lr=0.003"],
                       capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc["setting"] == {"train.lr": 0.003} and doc["n_points"] == 20
    assert doc["params"]["E"] == pytest.approx(TRUTH["E"] + SHIFT, rel=0.05)
    for bad, words in (("train.lr=0.5", "no finished run"), ("model.depth=2", "not a setting"),
                       ("train.lr", "expected KEY=VALUE")):
        code, out, err = cli(["fit", str(two_settings), "--setting", bad], capsys)
        assert code == 2 and out == "" and err.count("\n") == 1 and words in err, err


def test_advise_refuses_to_pool_settings_and_answers_for_one(two_settings, capsys):
    code, out, err = cli(["advise", str(two_settings), "--compute", "1e12", "--bootstrap", "0"], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "train.lr (2 settings" in err and "--setting 'train.lr=0.001'" in err
    code, out, _ = cli(["advise", str(two_settings), "--compute", "1e12", "--bootstrap", "0", "--json",
                        "--setting", "train.lr=0.001"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc["setting"] == {"train.lr": 0.001}
    from overparam.analysis.scaling import advise

    truth = advise(points_from_sweep(two_settings).iloc[::2], compute=1e12, bootstrap=0)  # lr alternates
    assert doc["params"] == pytest.approx(truth["params"]) and doc["tokens"] == pytest.approx(truth["tokens"])
    code, _, err = cli(["fit", "--csv", "x.csv", "--setting", "train.lr=0.001"], capsys)
    assert code == 2 and "has no settings" in err


def test_a_one_setting_sweep_keeps_its_json_exactly(tmp_path, capsys):
    directory = write_sweep(tmp_path / "one")
    code, out, _ = cli(["fit", str(directory), "--bootstrap", "10", "--json"], capsys)
    assert code == 0
    doc = json.loads(out)
    truth = json.loads(json.dumps(fit_scaling_law(points_from_sweep(directory), bootstrap=10, x=None).to_dict()))
    assert list(doc) == list(truth) and doc["params"] == pytest.approx(truth["params"])


def mlp_sweep(directory, noise_levels, optimizer="adam", vary_n=False, family="mlp", widths=(4, 8, 16, 32, 64),
              failed=lambda width, noise: False):
    """A non-language width sweep (no tokens) with a label-noise axis: test loss = E(noise) + 2/width^0.5."""
    vary = {"model.width": list(widths), "task.label_noise": noise_levels}
    if vary_n:
        vary["task.train_size"] = [100, 200, 400]
    spec = Spec({"name": "mlp-noise", "task": {"kind": "digits", "train_size": 200},
                 "model": {"family": family, **({"depth": 1} if family == "mlp" else {})},
                 "train": {"optimizer": optimizer, "steps": 100, "batch_size": 32}, "vary": vary})
    with Store.create(directory) as store:
        store.set_meta("size_axes", spec.size_axes())
        store.add_runs(spec.runs())
        for run in spec.runs():
            w, noise = run.config["model"]["width"], run.config["task"]["label_noise"]
            n = run.config["task"]["train_size"]
            loss = 0.5 + 3 * noise + 2.0 / w ** 0.5 + (5.0 / n ** 0.5 if vary_n else 0.0)
            store.record(run.id, "failed" if failed(w, noise) else "done", 100 * w, 1e3 * w,
                         {"test_loss": loss, "train_loss": loss}, [], 0.1)
    return directory


def test_a_label_noise_axis_splits_a_width_sweep(tmp_path, capsys):
    directory = mlp_sweep(tmp_path / "mlp", [0.0, 0.2])
    code, out, _ = cli(["fit", str(directory), "--bootstrap", "0", "--json"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc["split"]["axes"] == ["task.label_noise"]
    for row in doc["settings"]:
        noise = row["setting"]["task.label_noise"]
        assert row["law"] == "power" and row["x"] == "params" and row["n_points"] == 5
        # L = E + A/N^α with N = 100 w: E = 0.5 + 3 noise, α = 0.5, A = 2·√100 = 20 (exact data)
        assert row["params"]["E"] == pytest.approx(0.5 + 3 * noise, abs=1e-4)
        assert row["params"]["alpha"] == pytest.approx(0.5, abs=1e-3)


def test_train_size_is_the_data_axis_of_a_closed_form_sweep_not_a_setting(tmp_path):
    directory = mlp_sweep(tmp_path / "cf", [0.1], optimizer="min_norm", vary_n=True, family="rff")
    axes, settings = sweep_settings(directory)
    assert axes == [] and len(settings) == 1
    directory = mlp_sweep(tmp_path / "sgd", [0.1], vary_n=True)  # with sgd, n is another data set, D = steps·B
    axes, settings = sweep_settings(directory)
    assert axes == ["task.train_size"] and [s.fixed["task.train_size"] for s in settings] == [100, 200, 400]
    assert np.all([len(s.runs) == 5 for s in settings])


def test_settings_that_cannot_be_fitted_are_named_and_none_fitted_is_an_error(tmp_path, capsys):
    directory = mlp_sweep(tmp_path / "two", [0.0, 0.2], widths=(4, 8))  # 2 sizes per setting: no law in N
    code, out, err = cli(["fit", str(directory), "--bootstrap", "0"], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "no setting can be fitted" in err and "task.label_noise = 0:" in err and "task.label_noise = 0.2:" in err
    directory = mlp_sweep(tmp_path / "part", [0.0, 0.2], failed=lambda w, noise: noise == 0.2 and w > 8)
    code, out, _ = cli(["fit", str(directory), "--bootstrap", "0", "--json"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc["split"] == {**doc["split"], "n_settings": 2, "n_fitted": 1} and doc["n_points"] == 5
    fitted, skipped = doc["settings"]
    assert fitted["params"]["E"] == pytest.approx(0.5, abs=1e-4) and skipped["n_runs"] == 2
    assert "3 distinct" in skipped["skipped"] or "at least 3" in skipped["skipped"], skipped["skipped"]
