"""Closed-form risk curves against Monte-Carlo simulations of the estimators, and their own identities.

Monte-Carlo sizes are small (the file runs in seconds on one core); each tolerance says where it comes
from: the simulation's standard error, or the finite-size gap of an asymptotic formula.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import optimize

from overparam.analysis import theory as T
from overparam.cli import main
from overparam.errors import OverparamError

# ---------------------------------------------------------------- simulations (independent truth)


def _min_norm_risk(rng, n: int, p: int, r2: float, sigma2: float, lam: float = 0.0, seen: int | None = None):
    """One draw of ||beta_hat - beta||^2 (plus unseen signal) for x ~ N(0, I); `seen` features used."""
    seen = p if seen is None else seen
    x = rng.standard_normal((n, p))
    beta = rng.standard_normal(p)
    beta *= math.sqrt(r2) / np.linalg.norm(beta)
    y = x @ beta + math.sqrt(sigma2) * rng.standard_normal(n)
    xs = x[:, :seen]
    if lam == 0 and seen > n:  # min-norm interpolation through the n x n Gram matrix
        beta_hat = xs.T @ np.linalg.solve(xs @ xs.T, y)
    elif lam == 0:
        beta_hat = np.linalg.solve(xs.T @ xs, xs.T @ y)
    else:
        beta_hat = np.linalg.solve(xs.T @ xs / n + lam * np.eye(seen), xs.T @ y / n)
    return np.sum((beta_hat - beta[:seen]) ** 2) + np.sum(beta[seen:] ** 2)


def _mean_se(draws):
    draws = np.asarray(draws)
    return draws.mean(), draws.std(ddof=1) / math.sqrt(len(draws))


def _sphere(rng, m: int, d: int):
    g = rng.standard_normal((m, d))
    return math.sqrt(d) * g / np.linalg.norm(g, axis=1, keepdims=True)


def _rf_risk(rng, psi1, psi2, d, activation, r2, sigma2, lam, n_test=1000):
    """One draw of the random-features test error, in Mei & Montanari's setting and normalization."""
    n, big_n = round(psi2 * d), round(psi1 * d)
    act = T.ACTIVATIONS[activation]
    x, theta, x_test = _sphere(rng, n, d), _sphere(rng, big_n, d), _sphere(rng, n_test, d)
    beta = rng.standard_normal(d)
    beta *= math.sqrt(r2) / np.linalg.norm(beta)
    y = x @ beta + math.sqrt(sigma2) * rng.standard_normal(n)
    z, z_test = act(x @ theta.T / math.sqrt(d)), act(x_test @ theta.T / math.sqrt(d))
    if lam == 0 and big_n > n:  # min-norm interpolation through the n x n Gram matrix (fast, well posed)
        a = z.T @ np.linalg.solve(z @ z.T, y)
    elif lam == 0:
        a = np.linalg.solve(z.T @ z, z.T @ y)
    else:
        a = np.linalg.solve(z.T @ z / n + big_n * lam / d * np.eye(big_n), z.T @ y / n)
    return np.mean((x_test @ beta - z_test @ a) ** 2)


# ---------------------------------------------------------------- ridgeless and finite


@pytest.mark.parametrize("n,p", [(40, 12), (40, 30), (40, 60), (40, 120)])
def test_finite_matches_monte_carlo(n, p):
    rng = np.random.default_rng(p)
    mean, se = _mean_se([_min_norm_risk(rng, n, p, 1.0, 0.25) for _ in range(400)])
    expected = T.finite_risk(n, p, 1.0, 0.25)
    assert abs(mean - expected) < 4 * se, (mean, se, expected)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_ridgeless_matches_monte_carlo(gamma):
    rng = np.random.default_rng(1)
    n = 200
    mean, se = _mean_se([_min_norm_risk(rng, n, int(gamma * n), 1.0, 0.25) for _ in range(30)])
    expected = T.ridgeless_risk(gamma, 1.0, 0.25)
    # finite-n gap: finite_risk(200, 100) is 0.2513 against 0.25 asymptotically
    assert abs(mean - expected) < 4 * se + 0.01, (mean, se, expected)


def test_finite_tends_to_ridgeless():
    gammas = np.array([0.2, 0.7, 1.5, 4.0])
    finite = T.finite_risk(1e7, gammas * 1e7, 2.0, 0.5)
    np.testing.assert_allclose(finite, T.ridgeless_risk(gammas, 2.0, 0.5), rtol=1e-5)


def test_ridgeless_identities():
    r2, sigma2 = 1.0, 0.25
    assert T.ridgeless_risk(1e-9, r2, sigma2) < 1e-8
    assert T.ridgeless_risk(1e9, r2, sigma2) == pytest.approx(r2, rel=1e-6)
    assert math.isinf(T.ridgeless_risk(1.0, r2, sigma2))
    assert T.ridgeless_risk(1 - 1e-6, r2, sigma2) > 1e4 and T.ridgeless_risk(1 + 1e-6, r2, sigma2) > 1e4
    snr = r2 / sigma2
    best = optimize.minimize_scalar(lambda g: T.ridgeless_risk(g, r2, sigma2), bounds=(1.001, 100),
                                    method="bounded", options={"xatol": 1e-9})
    assert best.x == pytest.approx(math.sqrt(snr) / (math.sqrt(snr) - 1), rel=1e-5)
    grid = np.geomspace(1e-3, 1e3, 500)
    grid = grid[grid != 1]
    bias, var = T._ridgeless_terms(grid)
    assert np.all(var > 0) and np.all((bias >= 0) & (bias < 1))
    assert np.all(np.diff(T.ridgeless_risk(grid[grid < 1], r2, sigma2)) > 0)  # variance grows toward the peak


def test_finite_branches_and_sign():
    n = 50
    assert math.isinf(T.finite_risk(n, n - 1)) and math.isinf(T.finite_risk(n, n + 1))
    p = np.arange(1, 400)
    risk = T.finite_risk(n, p, 1.0, 0.5)
    finite = np.isfinite(risk)
    assert np.all(risk[finite] > 0)
    assert T.finite_risk(n, 10, 1.0, 0.0) == 0.0  # no noise, under-parameterized: exact recovery
    assert T.finite_risk(n, 200, 1.0, 0.0) == pytest.approx(1 - n / 200)  # the projection's bias


def test_weak_features_matches_monte_carlo_and_reduces_to_finite():
    rng = np.random.default_rng(3)
    n, total = 40, 120
    for seen in (20, 80):
        mean, se = _mean_se([_min_norm_risk(rng, n, total, 1.0, 0.25, seen=seen) for _ in range(300)])
        # a rotation-invariant beta of norm r2 has E||beta_P||^2 = r2 p / total, as the formula assumes
        expected = T.weak_features_risk(n, seen, total, 1.0, 0.25)
        assert abs(mean - expected) < 4 * se, (seen, mean, se, expected)
    assert T.weak_features_risk(n, 90, 90, 1.3, 0.4) == pytest.approx(T.finite_risk(n, 90, 1.3, 0.4))
    with pytest.raises(OverparamError):
        T.weak_features_risk(n, 130, total)


# ---------------------------------------------------------------- ridge and optimal ridge


def test_stieltjes_matches_spectrum_and_derivative():
    rng = np.random.default_rng(4)
    n, gamma, lam = 400, 0.5, 0.3
    x = rng.standard_normal((n, int(gamma * n)))
    spectrum = np.linalg.eigvalsh(x.T @ x / n)
    m, dm = T.mp_stieltjes(lam, gamma)
    assert m == pytest.approx(np.mean(1 / (spectrum + lam)), rel=0.01)
    assert dm == pytest.approx(np.mean(1 / (spectrum + lam) ** 2), rel=0.02)


@pytest.mark.parametrize("gamma,lam", [(0.5, 0.1), (1.0, 0.5), (2.0, 0.1)])
def test_ridge_matches_monte_carlo(gamma, lam):
    rng = np.random.default_rng(5)
    n = 200
    mean, se = _mean_se([_min_norm_risk(rng, n, int(gamma * n), 1.0, 0.25, lam=lam) for _ in range(20)])
    expected = T.ridge_risk(gamma, lam, 1.0, 0.25)
    assert abs(mean - expected) < 4 * se + 0.02 * expected, (mean, se, expected)


def test_ridge_limits():
    gammas = np.array([0.3, 0.9, 1.1, 3.0])
    np.testing.assert_allclose(T.ridge_risk(gammas, 1e-9, 1.0, 0.25), T.ridgeless_risk(gammas, 1.0, 0.25),
                               rtol=1e-5)
    np.testing.assert_allclose(T.ridge_risk(gammas, 1e9, 1.0, 0.25), 1.0, rtol=1e-6)  # beta_hat -> 0
    assert np.all(T.ridge_risk(np.geomspace(0.01, 100, 200), 0.05, 1.0, 0.25) > 0)
    assert T.ridge_risk(1.0, 0.0, 1.0, 0.25) == math.inf


@pytest.mark.parametrize("gamma", [0.3, 1.0, 4.0])
def test_optimal_lambda_minimizes_ridge_risk(gamma):
    r2, sigma2 = 1.0, 0.25
    best = optimize.minimize_scalar(lambda t: T.ridge_risk(gamma, math.exp(t), r2, sigma2), bounds=(-12, 6),
                                    method="bounded", options={"xatol": 1e-8})
    assert math.exp(best.x) == pytest.approx(T.optimal_ridge_lambda(gamma, r2, sigma2), rel=1e-3)
    assert T.optimal_ridge_risk(gamma, r2, sigma2) == pytest.approx(best.fun, rel=1e-9)


def test_optimal_ridge_is_monotone_and_below_both_baselines():
    grid = np.geomspace(0.01, 100, 400)
    for r2, sigma2 in ((1.0, 0.25), (1.0, 1.0), (3.0, 0.1)):
        risk = T.optimal_ridge_risk(grid, r2, sigma2)
        assert np.all(np.diff(risk) > 0)  # no double descent once lam is tuned (Nakkiran et al. 2020)
        assert np.all(risk <= np.minimum(T.ridgeless_risk(grid, r2, sigma2), r2) + 1e-12)
        assert risk[-1] == pytest.approx(r2, rel=0.02)
        assert risk[0] == pytest.approx(sigma2 * grid[0], rel=0.05)
    noiseless = T.optimal_ridge_risk(grid, 1.0, 0.0)  # lam* = 0: the ridgeless bias
    np.testing.assert_allclose(noiseless, T.ridgeless_risk(grid, 1.0, 0.0))
    np.testing.assert_allclose(noiseless, T.optimal_ridge_risk(grid, 1.0, 1e-10), atol=1e-6)


# ---------------------------------------------------------------- random features


def test_activation_constants():
    relu = T.activation_constants("relu")
    numeric = T.activation_constants(lambda z: np.maximum(z, 0.0))
    np.testing.assert_allclose(relu, numeric, rtol=1e-6)
    mu0, mu1, mu_star = T.activation_constants("tanh")
    assert abs(mu0) < 1e-10 and 0.55 < mu1 < 0.65 and mu_star > 0
    with pytest.raises(OverparamError):
        T.random_features_risk(1.0, 2.0, activation=lambda z: 2 * z)  # linear: no nonlinear part


@pytest.mark.parametrize("activation,psi1,lam", [("relu", 0.6, 0.0), ("relu", 6.0, 0.0), ("tanh", 4.0, 0.1)])
def test_random_features_matches_monte_carlo(activation, psi1, lam):
    rng = np.random.default_rng(6)
    d, psi2, r2, sigma2 = 100, 2.0, 1.0, 0.25
    mean, se = _mean_se([_rf_risk(rng, psi1, psi2, d, activation, r2, sigma2, lam) for _ in range(10)])
    expected = T.random_features_risk(psi1, psi2, activation, r2, sigma2, lam=lam)
    # asymptotic formula at d = 100: allow the simulation's error plus an 8 % finite-size gap
    assert abs(mean - expected) < 3 * se + 0.08 * expected, (mean, se, expected)


def test_random_features_identities():
    psi2 = 2.0
    psi1 = np.array([0.1, 0.5, 1.5, 1.9, 2.1, 3.0, 10.0])
    closed = T.random_features_terms(psi1, psi2)
    via_fixed_point = T.random_features_terms(psi1, psi2, lam=1e-9)
    np.testing.assert_allclose(via_fixed_point, closed, rtol=1e-4)
    bias, var = closed
    under = psi1 < psi2  # N < n: the variance of least squares on N features, N/(n - N)
    np.testing.assert_allclose(var[under], psi1[under] / (psi2 - psi1[under]), rtol=1e-9)
    assert np.all(var > 0) and np.all(bias > 0)  # both terms blow up at N = n, so neither is bounded by r2
    assert math.isinf(T.random_features_risk(2.0, 2.0))
    assert T.random_features_risk(1e-6, psi2, r2=1.0, sigma2=0.5) == pytest.approx(1.0, rel=1e-4)
    ridge = T.random_features_risk(psi1, psi2, sigma2=0.5, lam=0.1)
    assert np.all(np.isfinite(ridge)) and np.all(ridge > 0)
    assert T.random_features_risk(3.0, psi2, fstar2=0.2) > T.random_features_risk(3.0, psi2) + 0.2


# ---------------------------------------------------------------- grid parsing and documents


def test_parse_gamma_grid():
    np.testing.assert_allclose(T.parse_gamma_grid("0.5:2:4"), [0.5, 1.0, 1.5, 2.0])
    np.testing.assert_allclose(T.parse_gamma_grid("0.1:10:3"), [0.1, 1.0, 10.0])  # geometric: B/A > 10
    assert len(T.parse_gamma_grid("0.1:3")) == T.DEFAULT_GRID_POINTS
    np.testing.assert_allclose(T.parse_gamma_grid("4, 0.5,2"), [0.5, 2, 4])
    for bad in ("", "a:b", "1:2:3:4", "2:1", "0:2", "1:2:1", "-1,2", "1,,2", "nan", "1:inf"):
        with pytest.raises(OverparamError):
            T.parse_gamma_grid(bad)


def test_curve_document():
    doc = T.curve("ridgeless", [0.5, 1.0, 2.0], r2=1.0, sigma2=0.25)
    assert doc["curve"] == "ridgeless" and doc["params"] == {"r2": 1.0, "sigma2": 0.25}
    risks = [p["risk"] for p in doc["points"]]
    assert risks[1] is None and risks[0] == pytest.approx(0.25) and risks[2] == pytest.approx(0.75)
    json.dumps(doc, allow_nan=False)
    for point in T.curve("ridge-optimal", [0.5, 2.0])["points"]:
        assert point["risk"] == pytest.approx(point["bias"] + point["variance"])
        assert point["lam"] == pytest.approx(point["gamma"])
    rf = T.curve("random-features", [0.5, 2.0], psi2=3.0)
    assert [p["psi1"] for p in rf["points"]] == [1.5, 6.0]
    with pytest.raises(OverparamError):
        T.curve("nope", [1.0])
    with pytest.raises(OverparamError):
        T.curve("finite", [1.0])


# ---------------------------------------------------------------- command line


def test_cli_json(capsys):
    assert main(["theory", "finite", "--gamma", "0.5,1,2", "--n", "100", "--snr", "4", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["curve"] == "finite"
    assert [p["gamma"] for p in doc["points"]] == [0.5, 1.0, 2.0]
    assert doc["points"][1]["risk"] is None
    assert doc["points"][0]["risk"] == pytest.approx(0.25 * 50 / 49)
    assert all(set(p) >= {"gamma", "risk"} for p in doc["points"])


def test_cli_random_features_and_table(capsys):
    assert main(["theory", "random-features", "--gamma", "0.5:4:3", "--psi2", "3", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["params"]["psi2"] == 3.0 and len(doc["points"]) == 3
    assert main(["theory", "ridgeless", "--gamma", "0.5,1,2"]) == 0
    out = capsys.readouterr().out
    assert "gamma" in out and "inf" in out and "1.5" in out


@pytest.mark.parametrize("argv", [
    ["theory", "ridgeless", "--gamma", "2:1"],
    ["theory", "ridgeless", "--gamma", "0.5", "--sigma2", "-1"],
    ["theory", "finite", "--gamma", "0.5"],
    ["theory", "ridge", "--gamma", "0.5"],
    ["theory", "ridgeless", "--gamma", "0.5", "--snr", "4", "--r2", "2"],
    ["theory", "ridgeless", "--gamma", "0.5", "--lam", "1"],
    ["theory", "random-features", "--gamma", "0.5", "--activation", "nope"],
    ["theory", "nope", "--gamma", "0.5"],
])
def test_cli_bad_input_exits_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("overparam: error:") and err.count("\n") == 1
