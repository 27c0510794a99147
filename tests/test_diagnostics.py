"""``train.diagnostics``: norms, sharpness and trace recorded per run, and the report's implicit section.

Independent truths: for a least-squares model the Hessian is exactly (2/n)ΦᵀΦ and GD from zero
ends at Φ⁺y; a ReLU network under full-batch GD at lr 0.16 sits at λ_max ≈ 2/lr = 12.5 (Cohen et
al. 2021; the setup of ``sharpness_over_training``'s docstring); a run without diagnostics trains
the same trajectory bit for bit; power iteration re-measures what Lanczos recorded.
"""

import numpy as np
import pytest
import torch

from overparam.analysis.implicit_sweep import late_reading
from overparam.analysis.landscape import load_run_models
from overparam.errors import SpecError
from overparam.report.html import build_report
from overparam.report.implicit_section import implicit_section
from overparam.report.sections import SweepContext
from overparam.spec import Spec, resolve_config, run_id
from overparam.store import load_curves, load_runs
from overparam.sweep.grouping import plan_groups
from overparam.sweep.runner import run_sweep
from overparam.train import curvature

torch.set_num_threads(1)

BASE = {"task": {"kind": "digits", "train_size": 200}, "model": {"family": "mlp", "width": 8}, "train": {"steps": 10}}
EOS = {"name": "eos", "task": {"kind": "teacher", "teacher": "relu", "dim": 20, "train_size": 200, "test_size": 200},
       "model": {"family": "mlp", "width": 64},
       "train": {"optimizer": "gd", "lr": 0.16, "steps": 300, "eval_every": 50, "diagnostics": ["sharpness", "norms"]}}


def test_default_names_no_run_and_order_does_not_matter():
    plain = run_id(resolve_config(BASE))
    assert run_id(resolve_config({**BASE, "train": {"steps": 10, "diagnostics": []}})) == plain
    a = run_id(resolve_config({**BASE, "train": {"steps": 10, "diagnostics": ["sharpness", "norms"]}}))
    b = run_id(resolve_config({**BASE, "train": {"steps": 10, "diagnostics": ["norms", "sharpness"]}}))
    assert a == b != plain


@pytest.mark.parametrize("diagnostics, fragment", [
    (["norms", "sharp"], "train.diagnostics: unknown diagnostic 'sharp' (known: norms, sharpness, trace)"),
    (["trace", "trace"], "train.diagnostics: 'trace' is listed twice"),
    ("norms", "train.diagnostics: expected list"),
    ([3], "unknown diagnostic 3"),
])
def test_bad_diagnostics_name_the_entry(diagnostics, fragment):
    with pytest.raises(SpecError, match=None) as err:
        Spec({**BASE, "train": {"diagnostics": diagnostics}})
    assert fragment in str(err.value)


def test_language_models_record_norms_only():
    lm = {"task": {"kind": "markov"}, "model": {"family": "gpt", "n_layer": 1, "d_model": 16, "n_head": 2,
                                                 "context": 16}}
    Spec({**lm, "train": {"diagnostics": ["norms"]}})
    with pytest.raises(SpecError, match="train.diagnostics: sharpness needs a task with inputs"):
        Spec({**lm, "train": {"diagnostics": ["norms", "sharpness"]}})


def test_sharpness_runs_train_alone_and_norms_runs_still_fuse():
    from overparam.data import load_task

    base = {**EOS, "train": {"optimizer": "gd"}}
    task = load_task(resolve_config(base)["task"])
    for diagnostics, fused in ((["norms", "trace"], True), (["sharpness"], False)):
        spec = Spec({**base, "train": {"optimizer": "gd", "diagnostics": diagnostics},
                     "vary": {"model.width": [4, 8]}})
        groups = plan_groups(spec.runs(), "on", torch.device("cpu"), tasks=lambda key: task)
        assert [g.fused for g in groups] == ([True] if fused else [False, False])


def test_fused_runs_get_their_final_diagnostics(tmp_path):
    """Norms and trace are measured after training on every path: here a fused group of two widths."""
    spec = {**EOS, "train": {"optimizer": "gd", "lr": 0.05, "steps": 20, "diagnostics": ["norms", "trace"]},
            "vary": {"model.width": [4, 8]}}
    run_sweep(spec, tmp_path, progress=False, fuse="on")
    for _, run in load_runs(tmp_path).iterrows():
        init, final, task, _ = load_run_models(tmp_path, run["id"])
        assert run["distance_from_init"] == curvature.distance_from_init(final, init) > 0
        assert run["init_norm"] == curvature.param_norm(init) and run["distance_to_min_norm"] is None
        trace = curvature.trace_estimate(curvature.HessianOperator(final, task), 32, seed=0)
        assert (run["hessian_trace"], run["hessian_trace_se"]) == pytest.approx(trace, rel=1e-5)


def test_least_squares_diagnostics_are_exact(tmp_path):
    """GD (float64, from zero) and closed form on an overparameterized linear model: both end at
    Φ⁺y, and λ_max, tr H are those of (2/n)ΦᵀΦ; the sharpness curve is flat."""
    spec = {"name": "ls", "task": {"kind": "teacher", "dim": 50, "train_size": 20, "test_size": 50},
            "model": {"family": "linear"},
            "train": {"optimizer": "gd", "lr": 0.15, "steps": 600, "eval_every": 200, "dtype": "float64",
                      "diagnostics": ["norms", "sharpness", "trace"]},
            "vary": {"model.width": [40, 50], "train.optimizer": ["gd", "min_norm"]}}
    run_sweep(spec, tmp_path, progress=False)
    runs, curves = load_runs(tmp_path), load_curves(tmp_path)
    assert (runs["status"] == "done").all() and len(runs) == 4
    _, _, task, _ = load_run_models(tmp_path, runs["id"].iloc[0])
    x = task.x_train
    for _, run in runs.iterrows():
        phi = x[:, :run["model.width"]]
        h = 2 * phi.T @ phi / len(phi)
        assert run["distance_to_min_norm"] < 1e-8
        assert run["min_norm_norm"] == pytest.approx(np.linalg.norm(np.linalg.pinv(phi) @ task.y_train), rel=1e-10)
        assert run["distance_from_init"] == pytest.approx(run["param_norm"], rel=1e-10) and run["init_norm"] == 0
        assert run["sharpness"] == pytest.approx(np.linalg.eigvalsh(h).max(), rel=1e-6)
        assert abs(run["hessian_trace"] - np.trace(h)) < 4 * run["hessian_trace_se"]
        sharp = curves[(curves["run_id"] == run["id"]) & (curves["name"] == "sharpness")].sort_values("step")
        assert sharp["value"].to_numpy() == pytest.approx([run["sharpness"]] * len(sharp), rel=1e-6)
        if run["train.optimizer"] == "gd":
            assert run["stability_threshold"] == pytest.approx(2 / 0.15)
            assert sharp["step"].tolist() == [0, 200, 400, 600]
        else:
            assert np.isnan(run["stability_threshold"]) and sharp["step"].tolist() == [0]
    section = implicit_section(SweepContext(tmp_path))
    assert section.title == "Implicit regularization"
    assert any("training found the min-norm interpolant" in s for s in section.sentences)


def test_edge_of_stability_is_recorded_and_reported(tmp_path):
    eos, plain = tmp_path / "eos", tmp_path / "plain"
    run_sweep({**EOS, "vary": {"train.lr": [0.04, 0.16]}}, eos, progress=False)
    runs, curves = load_runs(eos), load_curves(eos)
    fast = runs[runs["train.lr"] == 0.16].iloc[0]
    sharp = curves[(curves["run_id"] == fast["id"]) & (curves["name"] == "sharpness")].sort_values("step")
    assert sharp["step"].tolist() == [0, 50, 100, 150, 200, 250, 300]
    late = sharp[sharp["step"] >= 150]["value"].to_numpy()
    assert np.all(np.abs(late / 12.5 - 1) < 0.03)  # at the edge of stability: λ_max ≈ 2/lr
    assert fast["stability_threshold"] == pytest.approx(12.5) and fast["sharpness"] == sharp["value"].iloc[-1]
    _, final, task, _ = load_run_models(eos, fast["id"])
    power = curvature.hessian_top_eigenvalues(final, task, method="power", tol=1e-7, max_iter=3000)
    assert power[0] == pytest.approx(fast["sharpness"], rel=1e-3)
    # measuring changes nothing: the same run without diagnostics trains the same trajectory
    run_sweep({**EOS, "train": {**EOS["train"], "diagnostics": []}}, plain, progress=False, fuse="off")
    alone = load_runs(plain).iloc[0]
    assert alone["train_loss"] == fast["train_loss"] and alone["test_loss"] == fast["test_loss"]
    build_report(eos)
    page = (eos / "report.html").read_text()
    assert "Implicit regularization" in page and "training ran at the edge of stability" in page
    assert "1.00× the 2/lr = 12.5 line" in page and "Larger learning rates ended flatter" in page


def test_batch_size_comparison_reads_the_stored_medians(tmp_path):
    spec = {**EOS, "model": {"family": "mlp", "width": 16},
            "train": {"optimizer": "sgd", "lr": 0.05, "steps": 40, "eval_every": 20, "diagnostics": ["sharpness"]},
            "vary": {"train.batch_size": [8, 200], "seed": [0, 1]}}
    run_sweep(spec, tmp_path, progress=False)
    runs = load_runs(tmp_path)
    med = runs.groupby("train.batch_size")["sharpness"].median()
    trend = "sharper" if med[200] > med[8] else "flatter"
    section = implicit_section(SweepContext(tmp_path))
    expected = (f"Larger batches ended {trend}: λ_max {med[200]:.3g} at batch 200 vs {med[8]:.3g} at batch 8; "
                f"λ_max / (2/lr) = {med[8] / 40:.2f}, {med[200] / 40:.2f} in the same order.")
    assert expected in section.sentences
    assert [f[0] for f in section.figures] == ["implicit_sharpness_time.png", "implicit_sharpness_batch.png"]
    assert section.summary["batch"][0]["rows"][0]["sharpness"]["n"] == 2


def test_late_reading_of_a_sharpness_curve():
    steps = np.array([0, 10, 20, 30, 40])
    row = late_reading(steps, np.array([5.0, 9.0, 10.2, 9.8, 10.0]), threshold=10.0)
    assert row["initial"] == 5.0 and row["peak"] == 10.2 and row["peak_step"] == 20 and row["final"] == 10.0
    assert row["late"] == 10.0 and row["ratio"] == 1.0 and row["regime"] == "edge" and not row["rising"]
    below = late_reading(steps, np.array([1.0, 2.0, 3.0, 4.0, 5.0]), threshold=20.0)
    assert below["late"] == 4.0 and below["ratio"] == 0.2 and below["regime"] == "below" and below["rising"]
    assert late_reading(steps, np.ones(5), threshold=None)["regime"] is None


def test_late_ratio_follows_a_moving_step_size():
    """Under decay 2/lr(t) rises: the late ratio compares each step with its own line."""
    steps = np.array([0, 10, 20, 30, 40])
    sharp = np.array([5.0, 10.0, 12.0, 15.0, 20.0])
    lines = np.array([10.0, 10.0, 12.0, 15.0, 25.0])  # 2/lr(t) of a decaying lr
    row = late_reading(steps, sharp, threshold=10.0, thresholds=lines)
    assert row["threshold_moves"] and row["ratio"] == pytest.approx(1.0)  # median of 1, 1, 0.8
    assert row["regime"] == "edge" and row["late"] == 15.0
    flat = late_reading(steps, sharp, threshold=10.0, thresholds=np.full(5, 10.0))
    assert not flat["threshold_moves"] and flat["ratio"] == 1.5  # a constant lr: late λ_max over 2/lr


def test_sharpness_curve_records_the_line_of_each_steps_lr(tmp_path):
    from overparam.options import resolve_section
    from overparam.train import recipe
    from overparam.train.optim import lr_at

    spec = {**EOS, "model": {"family": "mlp", "width": 8},
            "train": {"optimizer": "gd", "lr": 0.1, "momentum": 0.5, "steps": 40, "warmup_steps": 10,
                      "schedule": "linear", "eval_every": 10, "diagnostics": ["sharpness"]}}
    run_sweep(spec, tmp_path, progress=False)
    run, curves = load_runs(tmp_path).iloc[0], load_curves(tmp_path)
    lines = curves[curves["name"] == "stability_threshold"].sort_values("step")
    train = resolve_section("train", recipe.OPTIONS, spec["train"])
    assert lines["step"].tolist() == [0, 10, 20, 30, 40]  # step 0: the first step's lr (warmup: 0.01)
    expected = [3.0 / lr_at(max(s - 1, 0), train) for s in lines["step"]]  # (2 + 2β)/lr(t), β = 0.5
    assert lines["value"].to_numpy() == pytest.approx(expected, rel=1e-12)
    assert run["stability_threshold"] == pytest.approx(30.0)  # the metric keeps the peak lr's line
    section = implicit_section(SweepContext(tmp_path))
    assert any("the 2/lr line of each step's learning rate" in s for s in section.sentences)
