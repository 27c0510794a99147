"""Belkin et al. 2019's model-wise double descent, measured: random Fourier features on digits,
min-norm least squares in float64, n = 500 training samples (the demo's setting, smaller grid)."""

import numpy as np
import pytest

from overparam.analysis.double_descent import analyze_double_descent
from overparam.store import load_runs
from overparam.sweep.runner import run_sweep

N = 500
SPEC = {"name": "rff", "task": {"kind": "digits", "train_size": N},
        "model": {"family": "rff", "features": "fourier"},
        "train": {"optimizer": "min_norm", "checkpoint": False},
        "vary": {"model.width": [25, 60, 120, 250, 450, 500, 550, 1000, 2500, 5000], "seed": [0, 1, 2]}}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("rff")
    run_sweep(SPEC, out, progress=False)
    return out


def median_error(runs, width):
    return float(np.median(runs.loc[runs["model.width"] == width, "test_error"]))


def test_peak_at_the_number_of_samples(sweep):
    curve = analyze_double_descent(sweep, stat="median")["curves"][0]
    assert 0.9 * N <= curve["peak_size"] <= 1.1 * N
    assert curve["threshold_size"] == N  # exact interpolation starts at N = n
    assert curve["second_descent"]


def test_peak_is_three_times_both_minima(sweep):
    runs = load_runs(sweep)
    at_n = median_error(runs, N)
    assert at_n >= 3 * median_error(runs, 10 * N)
    best_small = min(median_error(runs, w) for w in (25, 60, 120, 250))
    assert at_n >= 3 * best_small


def test_train_error_is_zero_past_the_threshold(sweep):
    runs = load_runs(sweep)
    over = runs[runs["model.width"] >= N]
    assert (over["train_error"] == 0).all()
    assert (over["train_loss"] < 1e-12).all()
    under = runs[runs["model.width"] < N]
    assert (under["train_loss"] > 1e-6).all()


def test_conditioning_is_recorded_and_worst_at_the_peak(sweep):
    runs = load_runs(sweep)
    cond = runs.groupby("model.width")["condition_number"].median()
    assert cond.idxmax() == N
    assert cond[N] > 100 * cond[5000]
    assert (runs["singular_min"] > 0).all()
