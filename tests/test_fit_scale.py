"""Scaling-law fits that stay linear in their points (analysis/scaling/bootstrap.py), held against the
slow way of computing the same thing: the multi-start search on every point, one Levenberg-Marquardt
refit per resample, the resamples drawn one at a time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import least_squares

from overparam.analysis.scaling import (
    BrokenPowerLawFitter,
    ChinchillaFitter,
    IsoFLOPFitter,
    KaplanFitter,
    PowerLawFitter,
    bootstrap,
)
from overparam.analysis.scaling.axes import budgets


def points(n: int, seed: int = 0, law: str = "chinchilla") -> pd.DataFrame:
    """log-uniform N in [1e7, 1e10], D in [1e9, 1e12]; 1 % log-normal noise around a known law."""
    rng = np.random.default_rng(seed)
    N = np.exp(rng.uniform(np.log(1e7), np.log(1e10), n))
    D = np.exp(rng.uniform(np.log(1e9), np.log(1e12), n))
    loss = 1.8 + 480 * N ** -0.34 + (2000 * D ** -0.37 if law == "chinchilla" else 0.0)
    return pd.DataFrame({"params": N, "tokens": D, "loss": loss * np.exp(0.01 * rng.standard_normal(n))})


def test_resample_blocks_draw_what_one_draw_per_resample_draws():
    n, R = 37, 23
    rng = np.random.default_rng(5)
    want = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(R)])
    for block in (n, 5 * n, 10**6):  # one resample per block, five, all at once
        got = np.concatenate(list(bootstrap.resample_blocks(np.random.default_rng(5), n, R, block)))
        assert np.array_equal(got, want)


def test_search_rows_are_all_points_up_to_the_limit_and_a_fixed_subsample_beyond():
    assert np.array_equal(bootstrap.search_rows(100), np.arange(100))
    rows = bootstrap.search_rows(5000)
    assert len(rows) == bootstrap.SEARCH_POINTS == len(set(rows)) and np.array_equal(rows, bootstrap.search_rows(5000))


def test_chinchilla_searched_on_a_subsample_reaches_the_full_search_optimum(monkeypatch):
    pts = points(600)
    fast = ChinchillaFitter().fit(pts)
    assert fast.search_["points_searched"] == bootstrap.SEARCH_POINTS
    monkeypatch.setattr(bootstrap, "SEARCH_POINTS", 10**6)
    monkeypatch.setattr("overparam.analysis.scaling.chinchilla.search_rows", lambda n: np.arange(n))
    full = ChinchillaFitter().fit(pts)
    assert full.search_["points_searched"] == 600
    for k, v in full.params_.items():
        assert fast.params_[k] == pytest.approx(v, rel=1e-6), k


@pytest.mark.parametrize("make", [lambda b: PowerLawFitter(bootstrap=b, seed=3),
                                  lambda b: KaplanFitter(bootstrap=b, seed=3),
                                  lambda b: BrokenPowerLawFitter(bootstrap=b, seed=3)])
def test_least_squares_refits_are_each_resamples_own_optimum(make):
    """Each batched, preconditioned refit lands where Levenberg-Marquardt on that resample's drawn points
    lands (its objective no higher, its constants the same)."""
    law = "power" if make(0).law in ("power", "bnsl") else "chinchilla"
    pts = points(400, seed=1, law=law)
    if make(0).law == "bnsl":  # a break the data pin down: the slope steepens past N = 1e8.5, 0.2 % noise
        pts["loss"] = (1.8 + 480 * pts["params"] ** -0.34 * (1 + pts["params"] / 10**8.5) ** -0.3) * np.exp(
            0.002 * np.random.default_rng(2).standard_normal(len(pts)))
    fitter = make(12).fit(pts)
    residual, jacobian = fitter._residuals(pts)
    rng = np.random.default_rng(3)
    for theta, sample in zip(fitter._bootstrap_thetas(pts, np.random.default_rng(3)), range(12), strict=True):
        drawn = pts.iloc[rng.integers(0, len(pts), len(pts))].reset_index(drop=True)
        r, j = fitter._residuals(drawn)
        lm = least_squares(r, fitter.theta_, jac=j, method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15)
        cost = 0.5 * float(np.sum(r(theta) ** 2))
        assert cost <= lm.cost * (1 + 1e-9) + 1e-15, sample
        # the constants too, the break's sharpness (log f, weakly determined) to 0.1 %
        assert theta == pytest.approx(lm.x, rel=1e-3 if fitter.law == "bnsl" else 1e-5, abs=1e-7), sample


def test_the_chinchilla_bootstrap_does_not_depend_on_the_block_of_resamples(monkeypatch):
    pts = points(300, seed=4)
    whole = ChinchillaFitter(bootstrap=20, seed=1).fit(pts)
    original = bootstrap.resample_blocks
    monkeypatch.setattr("overparam.analysis.scaling.chinchilla.resample_blocks",
                        lambda rng, n, resamples: original(rng, n, resamples, 7 * n))  # 7 resamples per block
    blocked = ChinchillaFitter(bootstrap=20, seed=1).fit(pts)
    assert blocked.params_ == whole.params_
    for a, b in zip(blocked.bootstrap_params_, whole.bootstrap_params_, strict=True):
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-9), k


def test_isoflop_weights_equal_the_resampled_table():
    """A resample's optima from counts equal the optima of the table with its drawn rows repeated."""
    rng = np.random.default_rng(0)
    rows = []
    for c in (1e18, 1e19, 1e20):
        for n in np.geomspace(1e7, 1e9, 7):
            rows.append({"params": n, "tokens": c / (6 * n), "flops": c,
                         "loss": 2 + 400 * n**-0.34 + 400 * (c / (6 * n)) ** -0.28 + 0.01 * rng.random()})
    data = pd.DataFrame(rows)
    fitter = IsoFLOPFitter()
    draw = np.random.default_rng(1).integers(0, len(data), len(data))
    counts = np.bincount(draw, minlength=len(data)).astype(float)
    drawn = counts > 0
    weighted = fitter._optima(data[drawn].reset_index(drop=True), counts[drawn])[0]
    repeated = fitter._optima(data.iloc[draw].reset_index(drop=True))[0]
    by_hand = []
    for c in sorted(set(data["flops"][drawn])):
        g = data.iloc[draw][data.iloc[draw]["flops"] == c]
        if g["params"].nunique() >= 3:
            p2, p1, _ = np.polyfit(np.log(g["params"]), g["loss"], 2)
            if p2 > 0:
                by_hand.append(np.exp(-p1 / (2 * p2)))
    assert weighted.to_numpy() == pytest.approx(repeated.to_numpy(), rel=1e-9)
    assert weighted["params"].to_numpy() == pytest.approx(by_hand, rel=1e-8)


def test_budgets_group_as_the_one_value_at_a_time_rule_does():
    def one_at_a_time(values, decades=0.05):
        groups: list[list[float]] = []
        for x in np.sort(np.log10(values)):
            if groups and x - groups[-1][0] <= decades:
                groups[-1].append(x)
            else:
                groups.append([x])
        return [float(10 ** np.mean(g)) for g in groups]

    rng = np.random.default_rng(0)
    for _ in range(50):
        values = 10 ** rng.choice(np.round(rng.uniform(0, 3, 30), 2), 200)
        assert budgets(values) == one_at_a_time(values)


def test_ten_thousand_points_with_a_bootstrap_fit_in_seconds():
    import time

    pts = points(10_000, seed=7)
    start = time.process_time()
    fit = PowerLawFitter(bootstrap=200, seed=0).fit(pts[["params", "tokens", "loss"]])
    assert time.process_time() - start < 20  # 10^4 points x 200 refits: ~1 s here
    assert fit.ci_["alpha"][0] < fit.params_["alpha"] < fit.ci_["alpha"][1]
