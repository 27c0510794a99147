"""The science of the seed, as measurements: theory beside measurement, epoch-wise peaks, explicit
and implicit regularization, the landscape. Each check compares with an independent truth: a
closed form, numpy's linear algebra, a dense autograd Hessian, or the numbers the trainer stored."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from overparam.analysis import implicit
from overparam.analysis.epochwise import curve_peak, epochwise_peaks
from overparam.analysis.landscape import linear_path_from_store, load_run_models, steps_to_threshold
from overparam.analysis.regularization import peak_ratio, regularization_curves
from overparam.analysis.theory import finite_risk
from overparam.data import load_task
from overparam.report.sections import BUILDERS, SweepContext
from overparam.report.theory_section import theory_comparison, theory_section
from overparam.spec import resolve_config
from overparam.store import load_curves, load_runs
from overparam.sweep.runner import run_sweep

torch.set_num_threads(1)


def teacher(**kw):
    return {"kind": "teacher", "sigma2": 0.25, "test_size": 1000, **kw}


# ---------------------------------------------------------------- 1. theory beside measurement


def test_teacher_sweep_matches_finite_risk(tmp_path):
    """Min-norm least squares on all dim coordinates, 30 data draws per dim: the seed mean is within
    4 standard errors of the exact inverse-Wishart expectation (finite_risk) at every p = dim."""
    n, dims = 40, [10, 20, 30, 55, 70, 100]
    spec = {"name": "finite", "task": teacher(train_size=n), "model": {"family": "linear"},
            "train": {"optimizer": "min_norm", "checkpoint": False},
            "vary": {"task.dim": dims, "task.seed": list(range(30))}}
    run_sweep(spec, tmp_path, progress=False)
    runs = load_runs(tmp_path)
    for p, frame in runs.groupby("task.dim"):
        vals = frame["test_loss"].to_numpy()
        mean, se = vals.mean(), vals.std(ddof=1) / math.sqrt(len(vals))
        exact = finite_risk(n, p, r2=1.0, sigma2=0.25)
        assert abs(mean - exact) < 4 * se, (p, mean, exact, se)
    doc = theory_comparison(runs)
    assert doc["kinds"] == ["finite"] and len(doc["groups"]) == 1  # task.dim is the size axis here
    for q in doc["groups"][0]["points"]:
        assert q["theory"] == pytest.approx(finite_risk(n, q["p"], r2=1.0, sigma2=0.25), rel=1e-12)


def test_theory_section_on_a_width_sweep(tmp_path):
    """Widths below dim: the weak-features risk with the teacher's own β; section text and figure."""
    spec = {"name": "weak", "task": teacher(dim=80, train_size=40), "model": {"family": "linear"},
            "train": {"optimizer": "min_norm", "checkpoint": False},
            "vary": {"model.width": [10, 20, 30, 50, 60, 80], "task.seed": list(range(16))}}
    run_sweep(spec, tmp_path, progress=False)
    section = theory_section(SweepContext(Path(tmp_path)))
    summary = section.summary["groups"][0]
    assert summary["kind"] == "finite" and summary["n_points"] == 6
    assert summary["median_abs_gap"] < 0.10 and summary["within_3se"] == summary["n_with_se"]
    assert section.figures[0][1][:4] == b"\x89PNG"
    assert any("agree" in s for s in section.sentences)


def test_cheap_teacher_load_gives_the_same_beta():
    """The theory reads β from a 1-example load of the task: it must be the β of the full task."""
    opts = resolve_config({"task": teacher(dim=30, train_size=50, seed=3, outputs=2),
                           "model": {"family": "linear"}})["task"]
    full = load_task(opts).info["beta"]
    cheap = load_task({**opts, "train_size": 1, "test_size": 1}).info["beta"]
    assert np.array_equal(full, cheap)


def test_theory_declines_without_a_formula():
    base = {"status": "done", "task.kind": "teacher", "task.teacher": "linear", "model.family": "rff",
            "model.features": "fourier", "model.bias": False, "train.optimizer": "min_norm",
            "test_loss": 1.0, "train_loss": 0.0}
    doc = theory_comparison(pd.DataFrame([base]))
    assert doc["kinds"] == [] and "Fourier" in doc["reason"]
    doc = theory_comparison(pd.DataFrame([{**base, "model.family": "linear", "train.optimizer": "adamw",
                                           "train.weight_decay": 0.1}]))
    assert doc["kinds"] == [] and "AdamW" in doc["reason"]


# ---------------------------------------------------------------- 3. explicit regularization


def test_tuned_ridge_removes_the_peak(tmp_path):
    spec = {"name": "ridge", "task": teacher(dim=60, train_size=30), "model": {"family": "linear"},
            "train": {"optimizer": "ridge", "checkpoint": False},
            "vary": {"model.width": [10, 20, 26, 30, 34, 40, 60], "train.ridge": [0.0, 0.01, 0.1, 1.0],
                     "task.seed": list(range(4))}}
    run_sweep(spec, tmp_path, progress=False)
    doc = regularization_curves(tmp_path)
    group = doc["groups"][0]
    assert doc["reg_axis"] == "train.ridge" and doc["size_axis"] == "model.width"
    assert group["had_peak"] and group["ratio_unregularized"] > 5 and group["peak_size_unregularized"] == 30
    assert group["removed"] and group["ratio_envelope"] < 1.05
    runs = load_runs(tmp_path)
    at30 = runs[runs["model.width"] == 30].groupby("train.ridge")["test_loss"].mean()
    assert group["envelope"][group["sizes"].index(30)] == pytest.approx(at30.min())
    assert group["early"] is None  # closed form stores one point per run: no early stopping to read
    assert {"theory_section", "regularization_section", "epochwise_section"} <= {b.__name__ for b in BUILDERS}
    from overparam.report.regularization_section import regularization_section

    section = regularization_section(SweepContext(Path(tmp_path)))
    assert section.title == "Explicit regularization" and section.figures[0][1][:4] == b"\x89PNG"
    assert any("removes it" in s for s in section.sentences)


def test_regularization_splits_by_another_regularizer_with_one_run_per_cell():
    curves_by_wd = {0.0: [1.0, 0.8, 2.0, 0.5], 0.1: [0.9, 0.7, 0.6, 0.55]}
    rows = [{"id": f"{wd}-{dr}-{w}", "status": "done", "model.width": w, "params": w, "train.weight_decay": wd,
             "train.dropout": dr, "seed": 0, "test_error": v + dr / 5}
            for wd, vals in curves_by_wd.items() for dr in (0.0, 0.5) for w, v in zip([1, 2, 3, 4], vals)]
    empty = pd.DataFrame(columns=["run_id", "step", "name", "value"])
    doc = regularization_curves((pd.DataFrame(rows), empty))
    assert doc["reg_axis"] == "train.weight_decay" and doc["metric"] == "test_error"
    groups = {g["fixed"]["train.dropout"]: g for g in doc["groups"]}
    assert groups[0.0]["ratio_unregularized"] == pytest.approx(2.0 / 0.8)
    assert groups[0.5]["ratio_unregularized"] == pytest.approx(2.1 / 0.9)
    assert all(g["removed"] and g["ratio_envelope"] == 1.0 for g in groups.values())
    assert groups[0.0]["envelope"] == pytest.approx([0.9, 0.7, 0.6, 0.5])
    assert groups[0.0]["envelope_lambda"] == [0.1, 0.1, 0.1, 0.0]
    assert groups[0.0]["std"]["0"] == [None] * 4  # one run per cell: no spread, and no KeyError


def test_peak_ratio():
    assert peak_ratio([3, 2, 1]) == (1.0, None)
    assert peak_ratio([1, 2, 3]) == (1.0, None)
    assert peak_ratio([2, 1, 4, 0.5]) == (pytest.approx(4.0), 2)  # 4 over max(min left = 1, min right = 0.5)
    assert peak_ratio([1, 3, 2, 2.5, 0.5])[0] == pytest.approx(3.0)


# ---------------------------------------------------------------- 2. epoch-wise double descent


def test_curve_peak_reads_a_second_descent_over_time():
    steps = np.array([0, 1, 2, 4, 8, 16, 32, 64, 128])
    dd = np.array([1.0, 0.6, 0.4, 0.45, 0.6, 0.5, 0.35, 0.3, 0.31])
    r = curve_peak(steps, dd)
    assert r["second_descent"] and r["peak_step"] == 8 and r["min_before_step"] == 2
    assert r["min_after_step"] == 64 and r["min_after"] == 0.3 and r["best_value"] == 0.3
    overfit = np.array([1.0, 0.6, 0.4, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8])  # U shape: no second descent
    r = curve_peak(steps, overfit)
    assert not r["second_descent"] and r["best_step"] == 4 and r["final_value"] == 0.8
    assert not curve_peak(steps, np.linspace(1, 0.1, 9))["second_descent"]
    assert not curve_peak(steps, dd, rise=0.6)["second_descent"]  # the bump is 0.15 over 0.6: 25 %


def test_epochwise_peaks_per_run_and_per_size():
    runs = pd.DataFrame({"id": ["a", "b", "c"], "status": "done", "model.width": [4, 4, 8], "seed": [0, 1, 0],
                         "params": [10, 10, 20]})
    steps = [1, 2, 4, 8, 16]
    rows = []
    for rid, vals in {"a": [1, 0.5, 0.8, 0.4, 0.4], "b": [1, 0.5, 0.9, 0.4, 0.3], "c": [1, 0.5, 0.4, 0.3, 0.2]}.items():
        rows += [(rid, s, "test_error", v) for s, v in zip(steps, vals)]
    curves = pd.DataFrame(rows, columns=["run_id", "step", "name", "value"])
    doc = epochwise_peaks((runs, curves))
    assert doc["metric"] == "test_error" and doc["axis"] == "model.width"
    by_size = {r["size"]: r for r in doc["sizes"]}
    assert by_size[4]["second_descent"] and by_size[4]["peak_step"] == 4
    assert by_size[4]["peak_value"] == pytest.approx(0.85) and by_size[4]["min_after"] == pytest.approx(0.35)
    assert not by_size[8]["second_descent"] and doc["n_with_second_descent"] == 1
    assert {r["run_id"]: r["second_descent"] for r in doc["runs"]} == {"a": True, "b": True, "c": False}


# ---------------------------------------------------------------- 2 + 5. a gradient-trained sweep


@pytest.fixture(scope="module")
def gd_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("gd")
    spec = {"name": "gd", "task": teacher(dim=40, train_size=30, test_size=400), "model": {"family": "linear"},
            "train": {"optimizer": "gd", "lr": 0.05, "steps": 300, "eval_log_points": 12, "dtype": "float64"},
            "vary": {"model.width": [5, 10, 20, 40]}}
    run_sweep(spec, out, progress=False)
    return out


def test_epochwise_section_draws_the_heatmap(gd_sweep):
    from overparam.report.epochwise_section import epochwise_section

    section = epochwise_section(SweepContext(Path(gd_sweep)))
    assert section is not None and section.figures[0][1][:4] == b"\x89PNG"
    assert section.summary["metric"] == "test_loss" and len(section.summary["sizes"]) == 4
    assert section.sentences


def test_steps_to_threshold_from_stored_curves(gd_sweep):
    curves, runs = load_curves(gd_sweep), load_runs(gd_sweep)
    doc = steps_to_threshold(gd_sweep, threshold=0.5)
    for row in doc["runs"]:
        c = curves[(curves["run_id"] == row["run_id"]) & (curves["name"] == "train_loss")].sort_values("step")
        hit = c[c["value"] <= 0.5]
        assert row["step"] == (int(hit["step"].iloc[0]) if len(hit) else None)
    widths = {s["size"]: s for s in doc["sizes"]}
    assert widths[5]["n_reached"] == 0  # 5 of 40 coordinates: the unseen signal alone costs > 0.5
    assert widths[40]["n_reached"] == 1 and set(widths) == set(runs["model.width"])


def test_linear_path_endpoints_and_convexity(gd_sweep):
    runs, curves = load_runs(gd_sweep), load_curves(gd_sweep)
    rid = runs.loc[runs["model.width"] == 20, "id"].iloc[0]
    path = linear_path_from_store(gd_sweep, rid, alphas=(0.0, 0.25, 0.5, 0.75, 1.0))
    c = curves[(curves["run_id"] == rid) & (curves["name"] == "train_loss")].set_index("step")["value"]
    assert path["train_loss"][0] == pytest.approx(c.loc[0], rel=1e-10)  # the rebuilt init is the run's init
    assert path["train_loss"][-1] == pytest.approx(runs.set_index("id").at[rid, "train_loss"], rel=1e-10)
    assert path["barrier"] <= 1e-12 and path["monotonic"]  # a quadratic in α with its minimum near α = 1


# ---------------------------------------------------------------- 4. implicit regularization


def test_gd_from_zero_converges_to_the_min_norm_solution(tmp_path):
    spec = {"name": "mn", "task": teacher(dim=50, train_size=20, test_size=50), "model": {"family": "linear"},
            "train": {"optimizer": "gd", "lr": 0.1, "steps": 600, "dtype": "float64"}}
    run_sweep(spec, tmp_path, progress=False)
    rid = load_runs(tmp_path)["id"].iloc[0]
    init, final, task, _ = load_run_models(tmp_path, rid)
    w = final.readout.weight.detach().numpy().T
    assert np.linalg.norm(w - np.linalg.pinv(task.x_train) @ task.y_train) < 1e-8
    diag = implicit.diagnose_run(tmp_path, rid, k=2)
    assert diag["distance_to_min_norm"] < 1e-8
    assert diag["distance_from_init"] == pytest.approx(diag["param_norm"])  # zero init
    h = 2 * task.x_train.T @ task.x_train / len(task.x_train)
    assert diag["hessian_top"] == pytest.approx(np.linalg.eigvalsh(h)[::-1][:2], rel=1e-9)
    assert diag["stability_threshold"] == pytest.approx(2 / 0.1)


def test_hvp_spectrum_of_least_squares():
    """H = (2/n) XᵀX for L = (1/n)‖Xw − y‖²; chunked products (chunk 7 of n = 30) change nothing."""
    task = load_task(resolve_config({"task": teacher(dim=25, train_size=30), "model": {"family": "linear"}})["task"])
    from overparam.models import family_module
    from overparam.train.run import shape_of

    model = family_module("linear").build({"width": None, "bias": False}, shape_of(task), 0).double()
    with torch.no_grad():
        model.readout.weight.normal_()
    x = task.x_train
    exact = np.linalg.eigvalsh(2 * x.T @ x / len(x))[::-1]
    lanczos = implicit.hessian_top_eigenvalues(model, task, k=4, chunk=7)
    assert lanczos == pytest.approx(exact[:4], rel=1e-10)
    power = implicit.hessian_top_eigenvalues(model, task, k=2, method="power", tol=1e-13, max_iter=20000)
    assert power == pytest.approx(exact[:2], rel=1e-6)
    trace, se = implicit.hessian_trace(model, task, samples=200, chunk=7)
    assert abs(trace - exact.sum()) < 4 * se and se < 0.1 * exact.sum()


def test_hvp_spectrum_matches_the_dense_autograd_hessian():
    """A 2-layer tanh network with 218 parameters: eigsh's extreme eigenvalues equal those of the
    Hessian that torch.autograd.functional.hessian builds entry by entry."""
    from torch.func import functional_call

    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((40, 6))
    y = np.random.default_rng(1).standard_normal((40, 2))
    from overparam.data.base import TaskData

    task = TaskData(kind="regression", x_train=x, y_train=y, x_test=x, y_test=y)
    model = torch.nn.Sequential(torch.nn.Linear(6, 24), torch.nn.Tanh(), torch.nn.Linear(24, 2)).double()
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert theta.numel() == 218
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def loss(flat: torch.Tensor) -> torch.Tensor:
        parts, i = {}, 0
        for name, shape in zip(names, shapes):
            size = math.prod(shape)
            parts[name] = flat[i:i + size].view(shape)
            i += size
        out = functional_call(model, parts, (xt,))
        return ((out - yt) ** 2).sum(dim=1).mean()

    dense = torch.autograd.functional.hessian(loss, theta).numpy()
    exact = np.linalg.eigvalsh(0.5 * (dense + dense.T))
    top = implicit.hessian_top_eigenvalues(model, task, k=5, chunk=16)
    assert top == pytest.approx(exact[::-1][:5], rel=1e-7, abs=1e-9)
    bottom = implicit.hessian_top_eigenvalues(model, task, k=2, which="SA")
    assert sorted(bottom) == pytest.approx(sorted(exact[:2]), rel=1e-7, abs=1e-9)
    assert implicit.HessianOperator(model, task).dense() == pytest.approx(dense, abs=1e-10)


def test_sharpness_over_training_is_constant_for_least_squares():
    task = load_task(resolve_config({"task": teacher(dim=15, train_size=40), "model": {"family": "linear"}})["task"])
    from overparam.models import family_module
    from overparam.train.run import shape_of

    model = family_module("linear").build({"width": None, "bias": False}, shape_of(task), 0).double()
    out = implicit.sharpness_over_training(model, task, {"optimizer": "gd", "lr": 0.05, "steps": 20}, every=10,
                                           method="lanczos")
    top = np.linalg.eigvalsh(2 * task.x_train.T @ task.x_train / 40).max()
    assert out["step"] == [0, 10, 20] and out["sharpness"] == pytest.approx([top] * 3, rel=1e-8)
    assert out["threshold"] == pytest.approx(40.0) and out["train_loss"][-1] < out["train_loss"][0]
    assert out["late_ratio"] == pytest.approx(top / 40.0, rel=1e-8)  # far below the edge of stability
