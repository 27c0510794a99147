"""Closed-form least squares against independent computations (numpy's pinv, the normal equations)."""

import numpy as np
import pytest
import torch

from overparam.options import resolve_section
from overparam.train.closed_form import solve
from overparam.train.recipe import OPTIONS


def recipe(**kw):
    return resolve_section("train", OPTIONS, {"optimizer": "min_norm", **kw})


@pytest.mark.parametrize("n, p", [(40, 10), (40, 40), (40, 200)])
@pytest.mark.parametrize("solver", ["svd", "lstsq", "pinv"])
def test_min_norm_equals_numpy_pinv(n, p, solver):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((n, p)), rng.standard_normal((n, 3))
    w, info = solve(torch.from_numpy(x), torch.from_numpy(y), recipe(solver=solver))
    expected = np.linalg.pinv(x) @ y
    assert np.abs(w.numpy() - expected).max() < 1e-8 * max(1.0, np.abs(expected).max())
    s = np.linalg.svd(x, compute_uv=False)
    assert info["condition_number"] == pytest.approx(s[0] / s[-1], rel=1e-8)
    assert info["singular_min"] == pytest.approx(s[-1], rel=1e-8)


def test_ridge_equals_normal_equations():
    rng = np.random.default_rng(1)
    n, p, lam = 30, 50, 0.3
    x, y = rng.standard_normal((n, p)), rng.standard_normal((n, 2))
    w, _ = solve(torch.from_numpy(x), torch.from_numpy(y), recipe(optimizer="ridge", ridge=lam))
    # minimizer of (1/n)|Xw - y|^2 + lam |w|^2
    expected = np.linalg.solve(x.T @ x + n * lam * np.eye(p), x.T @ y)
    assert np.abs(w.numpy() - expected).max() < 1e-10


def test_interpolates_when_overparameterized_and_is_min_norm():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((20, 60)), rng.standard_normal((20, 1))
    w, info = solve(torch.from_numpy(x), torch.from_numpy(y), recipe())
    assert np.abs(x @ w.numpy() - y).max() < 1e-10
    assert info["rank"] == 20
    null = np.linalg.svd(x)[2][20:]  # rows spanning the null space of x
    assert np.abs(null @ w.numpy()).max() < 1e-10  # no component in the null space: minimum norm


def test_large_rcond_cuts_singular_values():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((30, 30))
    _, exact = solve(torch.from_numpy(x), torch.from_numpy(np.ones((30, 1))), recipe())
    _, cut = solve(torch.from_numpy(x), torch.from_numpy(np.ones((30, 1))), recipe(rcond=0.1))
    assert exact["rank"] == 30 and cut["rank"] < 30
