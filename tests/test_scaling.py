"""Scaling-law fitters against known truths: synthetic points from known constants, the closed-form
compute-optimal allocation, and Besiroglu et al.'s published Approach 3 refit of the Chinchilla points."""

from __future__ import annotations

import inspect
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from readings import nested

from overparam.analysis.scaling import (
    LAWS,
    BrokenPowerLawFitter,
    ChinchillaFitter,
    EnvelopeFitter,
    IsoFLOPFitter,
    KaplanFitter,
    NotFittedError,
    PowerLawFitter,
    allocation_exponents,
    allocation_for_loss,
    diminishing_returns,
    fit_scaling_law,
    load_epoch_chinchilla,
    load_points,
    optimal_allocation,
    points_from_sweep,
)
from overparam.cli import main
from overparam.errors import OverparamError

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EPOCH_CSV = SHARED_DATA / "chinchilla_epoch_svg.csv"
HOFFMANN = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}  # Hoffmann et al. 2022
HOFFMANN_ROW = tuple(HOFFMANN.values())  # (E, A, B, alpha, beta): the order of ChinchillaFitter(init=...)


def chinchilla_loss(p, n, d):
    return p["E"] + p["A"] * n ** -p["alpha"] + p["B"] * d ** -p["beta"]


def grid_points(p=HOFFMANN, noise=0.0, seed=0, n_sizes=8, n_tokens=6) -> pd.DataFrame:
    """Every (N, D) on log grids N ∈ [1e7, 1e10], D ∈ [1e9, 1e12]; loss × (1 + noise · N(0, 1))."""
    sizes, tokens = np.geomspace(1e7, 1e10, n_sizes), np.geomspace(1e9, 1e12, n_tokens)
    n, d = (a.ravel() for a in np.meshgrid(sizes, tokens))
    loss = chinchilla_loss(p, n, d) * (1 + noise * np.random.default_rng(seed).standard_normal(n.size))
    return pd.DataFrame({"params": n, "tokens": d, "loss": loss})


def isoflop_points(p=HOFFMANN, budgets=(1e18, 1e19, 1e20, 1e21), sizes=9) -> pd.DataFrame:
    """IsoFLOP profiles: per budget C, N around the optimum (±1 decade), D = C / (6N)."""
    rows = []
    for c in budgets:
        n_opt, _ = optimal_allocation(p, c)
        for n in n_opt * np.geomspace(0.1, 10, sizes):
            d = c / (6 * n)
            rows.append({"params": n, "tokens": d, "flops": c, "loss": chinchilla_loss(p, n, d)})
    return pd.DataFrame(rows)


def assert_rel(got: dict, want: dict, rtol: float) -> None:
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=rtol), (k, got[k], v)


# -- recovery of known constants -----------------------------------------------------------------


@pytest.mark.parametrize("x", ["params", "tokens", "flops"])
def test_power_law_recovers_noise_free_constants(x):
    pts = grid_points()
    pts["flops"] = 6 * pts["params"] * pts["tokens"]
    truth = {"E": 1.7, "A": 250.0, "alpha": 0.3}
    pts["loss"] = truth["E"] + truth["A"] * pts[x] ** -truth["alpha"]
    assert_rel(PowerLawFitter(x=x).fit(pts).params_, truth, 1e-4)


def test_chinchilla_recovers_noise_free_constants():
    fitter = ChinchillaFitter().fit(grid_points())
    assert_rel(fitter.params_, HOFFMANN, 1e-4)
    assert fitter.search_["starts"] >= 4000


def test_chinchilla_noisy_exponents_within_002():
    fitter = ChinchillaFitter().fit(grid_points(noise=0.005, seed=1, n_sizes=10, n_tokens=8))
    assert abs(fitter.params_["alpha"] - HOFFMANN["alpha"]) < 0.02
    assert abs(fitter.params_["beta"] - HOFFMANN["beta"]) < 0.02


@pytest.mark.parametrize("far", [
    (0.2, 1e5, 1e5, 0.8, 0.8),  # E, A, B, alpha, beta: every constant off by 2.4x to 250x
    (3.0, 50.0, 50.0, 0.1, 0.1),  # E above every loss, exponents 3x too small
])
def test_chinchilla_far_start_reaches_the_optimum(far):
    fitter = ChinchillaFitter(init=[far]).fit(grid_points())
    assert fitter.search_["starts"] == 1
    assert_rel(fitter.params_, HOFFMANN, 1e-4)


def test_kaplan_recovers_its_constants():
    truth = {"Nc": 8.8e13, "Dc": 5.4e13, "alpha_N": 0.076, "alpha_D": 0.095}  # Kaplan et al. 2020
    pts = grid_points()
    pts["loss"] = ((truth["Nc"] / pts["params"]) ** (truth["alpha_N"] / truth["alpha_D"])
                   + truth["Dc"] / pts["tokens"]) ** truth["alpha_D"]
    assert_rel(KaplanFitter().fit(pts).params_, truth, 1e-4)


def bnsl_curve(t, x):
    return t["a"] + t["b"] * x ** -t["c0"] * (1 + (x / t["d1"]) ** (1 / t["f1"])) ** (-t["c1"] * t["f1"])


@pytest.mark.parametrize("truth", [
    {"a": 0.5, "b": 20.0, "c0": 0.2, "c1": 0.5, "d1": 1e6, "f1": 0.5},  # monotone, steeper after the break
    {"a": 0.3, "b": 0.05, "c0": -0.3, "c1": 0.8, "d1": 1e5, "f1": 0.3},  # rises, then falls: not monotone
])
def test_bnsl_recovers_its_constants(truth):
    x = np.geomspace(1e3, 1e9, 40)
    pts = pd.DataFrame({"params": x, "tokens": x, "loss": bnsl_curve(truth, x)})
    if truth["c0"] < 0:
        assert np.diff(pts["loss"]).max() > 0 > np.diff(pts["loss"]).min()
    assert_rel(BrokenPowerLawFitter().fit(pts).params_, truth, 1e-4)


def test_isoflop_and_envelope_find_the_allocation_exponent():
    pts = isoflop_points()
    a_true = allocation_exponents(HOFFMANN)["a"]
    iso = IsoFLOPFitter().fit(pts)
    assert len(iso.optima_) == 4
    assert iso.params_["a"] == pytest.approx(a_true, abs=0.02)  # parabolas in log N: approximate optima
    assert iso.params_["a"] + iso.params_["b"] == pytest.approx(1.0, abs=1e-9)  # D* = C / (6 N*)
    env = EnvelopeFitter().fit(pts)
    assert 0.3 < env.params_["a"] < 0.8  # the frontier is coarse: one point per budget at best


# -- compute-optimal allocation ---------------------------------------------------------------------


def test_optimal_allocation_minimizes_loss_at_fixed_compute():
    c = 1e22
    n_opt, d_opt = optimal_allocation(HOFFMANN, c)
    assert 6 * n_opt * d_opt == pytest.approx(c, rel=1e-12)
    n = n_opt * np.geomspace(0.5, 2, 201)
    losses = chinchilla_loss(HOFFMANN, n, c / (6 * n))
    assert n[np.argmin(losses)] == pytest.approx(n_opt, rel=0.01)
    # the target-loss inverse gives back the same allocation
    n_back, d_back = allocation_for_loss(HOFFMANN, chinchilla_loss(HOFFMANN, n_opt, d_opt))
    assert (n_back, d_back) == (pytest.approx(n_opt, rel=1e-9), pytest.approx(d_opt, rel=1e-9))


def test_diminishing_returns_matches_closed_form():
    fitter = PowerLawFitter().fit(grid_points())  # L(N) = E + A / N^alpha, data unconstrained
    p = fitter.params_
    g = 0.005
    closed = (p["A"] * (1 - 2 ** -p["alpha"]) / g) ** (1 / p["alpha"])
    assert diminishing_returns(fitter, grid_points(), g)["value"] == pytest.approx(closed, rel=1e-6)


# -- Besiroglu et al. 2024: Approach 3 on the Chinchilla points ------------------------------------

PUBLISHED = {"alpha": (0.348, 0.317, 0.373), "beta": (0.366, 0.331, 0.415), "E": (1.817, 1.769, 1.871)}


@pytest.mark.skipif(not EPOCH_CSV.is_file(), reason=f"{EPOCH_CSV} absent (the repo's sibling shared/data)")
def test_chinchilla_replication_lands_inside_published_intervals():
    pts = load_epoch_chinchilla(EPOCH_CSV)
    assert len(pts) == 240
    fitter = ChinchillaFitter(bootstrap=100, seed=0).fit(pts)  # 1,000 in benchmarks/fit_speed.py
    for name, (point, lo, hi) in PUBLISHED.items():
        assert lo <= fitter.params_[name] <= hi, (name, fitter.params_[name])
        assert fitter.params_[name] == pytest.approx(point, abs=0.002)
        ci = fitter.ci_[name]
        assert ci[0] < point < ci[1]
    assert fitter.params_["A"] == pytest.approx(482, rel=0.05)
    assert fitter.params_["B"] == pytest.approx(2085, rel=0.05)
    n, d = optimal_allocation(fitter.params_, 5.76e23)  # Chinchilla's own budget: 70B params, 1.4T tokens
    assert 15 < d / n < 25


# -- the fitter contract (scikit-learn style), one test over every fitter ------------------------


@pytest.fixture(scope="module")
def contract_points():
    return isoflop_points(sizes=7)


@pytest.mark.parametrize("law", sorted(LAWS))
def test_fitter_contract(law, contract_points):
    cls = LAWS[law]
    defaults = {k: v.default for k, v in inspect.signature(cls.__init__).parameters.items() if k != "self"}
    fitter = cls()
    assert vars(fitter) == defaults == fitter.get_params()  # __init__ stores its kwargs, nothing else
    with pytest.raises(NotFittedError, match=cls.__name__):
        fitter.predict(contract_points)
    with pytest.raises(OverparamError):
        cls().fit(contract_points.iloc[:1])
    assert fitter.fit(contract_points) is fitter
    learned = set(vars(fitter)) - set(defaults)
    assert learned and all(k.endswith("_") for k in learned), learned
    assert set(fitter.params_) == set(fitter.param_names)
    pred = fitter.predict(contract_points)
    assert pred.shape == (len(contract_points),) and np.isfinite(pred).all()


@pytest.mark.parametrize("make", [
    lambda: PowerLawFitter(bootstrap=50, seed=7),
    lambda: ChinchillaFitter(init=[HOFFMANN_ROW, (2.0, 300.0, 300.0, 0.3, 0.3)], bootstrap=50, seed=7),
])
def test_bootstrap_is_deterministic_and_brackets_the_estimate(make):
    pts = grid_points(noise=0.01, seed=3)
    a, b = make().fit(pts), make().fit(pts)
    assert a.params_ == b.params_ and a.ci_ == b.ci_
    assert len(a.bootstrap_params_) == 50
    assert a.ci_["alpha"][0] < a.params_["alpha"] < a.ci_["alpha"][1]


# -- points: loading and validation ----------------------------------------------------------------


def write(tmp_path, text: str | bytes, name="p.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_tokens_and_flops_fill_each_other(tmp_path):
    pts = load_points(write(tmp_path, "params,flops,loss\n100,6000,3.0\n200,24000,2.5\n"))
    assert list(pts["tokens"]) == [10.0, 20.0]
    pts = load_points(write(tmp_path, "params,tokens,loss\n100,10,3.0\n200,20,2.5\n"))
    assert list(pts["flops"]) == [6000.0, 24000.0]


BAD_CSVS = {
    "missing column": ("params,loss\n1,2\n3,4\n", "tokens"),
    "nan": ("params,tokens,loss\n1e6,1e9,3.0\n2e6,,2.5\n", "row 2"),
    "negative": ("params,tokens,loss\n1e6,1e9,3.0\n2e6,-1e9,2.5\n", "must be > 0"),
    "zero": ("params,tokens,loss\n1e6,1e9,0\n2e6,1e9,2.5\n", "must be > 0"),
    "one row": ("params,tokens,loss\n1e6,1e9,3.0\n", "at least"),
    "not a csv": (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe\x00binary", "CSV|missing column"),
    "empty": ("", "empty"),
    "header only": ("params,tokens,loss\n", "no data rows"),
    "text": ("params,tokens,loss\n1e6,abc,3\n2e6,1e9,2\n", "non-numeric"),
}


@pytest.mark.parametrize("case", sorted(BAD_CSVS))
def test_bad_csv_is_one_line_error_exit_2(case, tmp_path, capsys):
    text, words = BAD_CSVS[case]
    path = write(tmp_path, text)
    with pytest.raises(OverparamError, match=words):
        load_points(path)
    assert main(["fit", "--csv", str(path), "--law", "power", "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("overparam: error:") and err.count("\n") == 1


def test_points_from_sweep_uses_done_runs(monkeypatch):
    import overparam.store

    runs = pd.DataFrame({"status": ["done", "failed", "done", "done"], "params": [1e6, 2e6, 4e6, 8e6],
                         "flops": [6e15, 1.2e16, 2.4e16, 4.8e16], "test_loss": [3.0, np.nan, 2.5, 2.2]})
    monkeypatch.setattr(overparam.store, "load_runs", lambda directory: runs)
    pts = points_from_sweep("ignored")
    assert list(pts["loss"]) == [3.0, 2.5, 2.2]
    expected = np.array([6e15, 2.4e16, 4.8e16]) / (6 * np.array([1e6, 4e6, 8e6]))
    np.testing.assert_allclose(pts["tokens"], expected)


# -- the command line --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("fit") / "points.csv"
    grid_points(noise=0.003, seed=2, n_sizes=6, n_tokens=5).to_csv(path, index=False)
    return path


def run_json(args, capsys):
    assert main(args) == 0
    out, err = capsys.readouterr()
    return json.loads(out)


def test_cli_fit_chinchilla_json(csv_path, capsys):
    doc = run_json(["fit", "--csv", str(csv_path), "--bootstrap", "20", "--json"], capsys)
    assert doc["law"] == "chinchilla" and doc["n_points"] == 30
    assert set(doc["params"]) == set(doc["ci"]) == {"E", "A", "B", "alpha", "beta"}
    assert all(lo <= hi for lo, hi in doc["ci"].values())
    assert {"params", "tokens", "tokens_per_param"} <= set(doc["compute_optimal"])
    assert doc["backtest"]["n_test"] > 0 and doc["diminishing_returns"]["value"] > 0


@pytest.mark.parametrize("law, names", [
    ("power", {"E", "A", "alpha"}), ("kaplan", {"Nc", "Dc", "alpha_N", "alpha_D"}),
    ("bnsl", {"a", "b", "c0", "c1", "d1", "f1"}),
])
def test_cli_fit_other_laws_json(law, names, csv_path, capsys):
    doc = run_json(["fit", "--csv", str(csv_path), "--law", law, "--bootstrap", "10", "--json"], capsys)
    assert doc["law"] == law and set(doc["params"]) == names and set(doc["ci"]) == names


def test_cli_fit_isoflop_json(tmp_path, capsys):
    path = tmp_path / "iso.csv"
    isoflop_points().to_csv(path, index=False)
    argv = ["fit", "--csv", str(path), "--law", "chinchilla-isoflop", "--bootstrap", "0", "--json"]
    doc = run_json(argv, capsys)
    assert set(doc["params"]) == {"a", "b", "k_params", "k_tokens"} and len(doc["optima"]) == 4


def test_cli_fit_human_output(csv_path, capsys):
    assert main(["fit", "--csv", str(csv_path), "--law", "power", "--bootstrap", "10"]) == 0
    assert "alpha" in capsys.readouterr().out


def test_cli_advise_compute_and_target(csv_path, capsys):
    base = ["advise", "--csv", str(csv_path), "--bootstrap", "20", "--json"]
    doc = run_json(base + ["--compute", "1e23"], capsys)
    assert {"params", "tokens", "tokens_per_param", "ci"} <= set(doc)
    assert 6 * doc["params"] * doc["tokens"] == pytest.approx(1e23, rel=1e-9)
    assert doc["ci"]["params"][0] <= doc["params"] <= doc["ci"]["params"][1]
    doc = run_json(base + ["--target-loss", "2.0"], capsys)
    assert {"params", "tokens", "tokens_per_param", "flops", "min_params"} <= set(doc)
    assert doc["min_params"] < doc["params"]


def test_advise_unreachable_loss_and_usage_errors(csv_path, capsys):
    assert main(["advise", "--csv", str(csv_path), "--target-loss", "1.0", "--bootstrap", "0"]) == 2
    assert "irreducible" in capsys.readouterr().err
    for argv in (["advise", "--csv", str(csv_path), "--compute", "-1"],
                 ["advise", "--csv", str(csv_path)],  # neither --compute nor --target-loss
                 ["fit", "--csv", str(csv_path), "--law", "chinchilla", "--x", "tokens"],
                 ["fit", "somedir", "--csv", str(csv_path)]):
        assert main(argv) == 2, argv
        assert capsys.readouterr().err.startswith("overparam: error:")


def test_fit_scaling_law_is_exported():
    import overparam

    assert overparam.fit_scaling_law is fit_scaling_law


# -- only the laws the points' axes identify -------------------------------------------------------

# A width sweep of a one-hidden-layer MLP on digits (overparam demo --quick, trained-mlp): one budget of
# examples, D = C / (6N) drifting 3 % with N through the bias FLOPs, and a test loss that rises again.
MLP_WIDTH_SWEEP = pd.DataFrame({
    "params": [310, 835, 2110, 5560, 14560, 38410],
    "tokens": [146663.2, 149737.0, 150833.7, 151279.4, 151447.9, 151512.5],
    "loss": [0.965881, 0.531709, 0.585479, 0.660816, 0.628539, 0.645120]})


def one_axis_points(axis: str = "params", drift: float = 0.03) -> pd.DataFrame:
    """L = 2 + 400/N^0.4 at one token budget (tokens drifting by ``drift``), or the same law in D at one size."""
    x = np.geomspace(1e4, 1e7, 7)
    other = 1e6 * (1 + drift * np.linspace(-1, 1, len(x)))
    loss = 2.0 + 400.0 * x ** -0.4
    cols = {"params": x, "tokens": other} if axis == "params" else {"params": other, "tokens": x}
    return pd.DataFrame({**cols, "loss": loss})


@pytest.mark.parametrize("axis", ["params", "tokens"])
def test_a_one_axis_sweep_fits_the_power_law_in_that_axis(axis):
    fit = fit_scaling_law(one_axis_points(axis), bootstrap=0)
    assert (fit.law, fit.extras["x"]) == ("power", axis)
    assert_rel(fit.params, {"E": 2.0, "A": 400.0, "alpha": 0.4}, 1e-4)
    other = "token budget" if axis == "params" else "model size"
    assert f"one {other}" in fit.extras["note"] and fit.extras["axes"][axis] == 7
    with pytest.raises(OverparamError, match="axis is missing"):
        fit_scaling_law(one_axis_points(axis), law="chinchilla", bootstrap=0)


def test_two_budgets_fit_L_of_N_at_the_larger_one():
    pts = grid_points(n_sizes=5, n_tokens=2)
    fit = fit_scaling_law(pts, bootstrap=0)
    big = pts[pts["tokens"] == pts["tokens"].max()]
    assert fit.law == "power" and fit.n_points == len(big) == 5
    # at fixed D the law is E' + A/N^α with E' = E + B/D^β: the power law recovers exactly that
    e_at_d = HOFFMANN["E"] + HOFFMANN["B"] * pts["tokens"].max() ** -HOFFMANN["beta"]
    assert_rel(fit.params, {"E": e_at_d, "A": HOFFMANN["A"], "alpha": HOFFMANN["alpha"]}, 1e-4)


def test_no_axis_with_three_values_is_refused():
    pts = grid_points(n_sizes=2, n_tokens=2)
    with pytest.raises(OverparamError, match="2 model sizes .* and 2 token budgets"):
        fit_scaling_law(pts, bootstrap=0)


def test_fit_and_advise_on_a_width_sweep_say_what_they_cannot_know(tmp_path, capsys):
    path = tmp_path / "mlp.csv"
    MLP_WIDTH_SWEEP.to_csv(path, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning (overflow, divide by zero) may reach the terminal
        doc = run_json(["fit", "--csv", str(path), "--bootstrap", "200", "--json"], capsys)
        assert (doc["law"], doc["x"], set(doc["params"])) == ("power", "params", {"E", "A", "alpha"})
        assert any("not monotone" in w for w in doc["warnings"])
        assert main(["fit", "--csv", str(path), "--bootstrap", "200"]) == 0
        out, err = capsys.readouterr()
        assert err == "" and "only L(N) is identified" in out and "B " not in out
        assert not any(nested(line) for line in out.splitlines()), out
        for argv, needle in ((["fit", "--law", "chinchilla"], "the token axis is missing"),
                             (["fit", "--law", "kaplan"], "the token axis is missing"),
                             (["fit", "--law", "power", "--x", "tokens"], "one token budget"),
                             (["advise", "--compute", "1e12"], "the token axis is missing")):
            assert main([argv[0], "--csv", str(path), "--bootstrap", "50", *argv[1:]]) == 2, argv
            err = capsys.readouterr().err
            assert err.startswith("overparam: error:") and needle in err and err.count("\n") == 1, err
        target = 0.62
        doc = run_json(["advise", "--csv", str(path), "--target-loss", str(target), "--bootstrap", "0",
                        "--json"], capsys)
    p = doc["fit"]["params"]
    assert doc["law"] == "power" and doc["params"] == pytest.approx((p["A"] / (target - p["E"])) ** (1 / p["alpha"]))
    assert doc["tokens"] == pytest.approx(np.exp(np.log(MLP_WIDTH_SWEEP["tokens"]).mean()))  # the one budget


def test_the_readme_points_csv_fits_the_law_it_was_made_from(tmp_path, capsys):
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"```csv\n(.*?)```", readme, re.S)[1]
    path = tmp_path / "points.csv"
    path.write_text(block)
    doc = run_json(["fit", "--csv", str(path), "--law", "chinchilla", "--bootstrap", "0", "--json"], capsys)
    assert doc["n_points"] == 9
    assert_rel(doc["params"], {"alpha": HOFFMANN["alpha"], "beta": HOFFMANN["beta"]}, 0.02)  # 3-decimal losses


def test_a_non_language_sweep_counts_the_examples_it_trained_on(monkeypatch):
    """D for a digits or teacher sweep is the examples seen, never flops / (6N): a closed-form fit's FLOPs
    grow like N²·n, which would make a width sweep look like it varied the data."""
    import overparam.store

    runs = pd.DataFrame({"status": ["done"] * 4, "params": [10, 100, 1000, 5000],
                         "flops": [1e5, 1e7, 1e9, 2.5e10], "test_loss": [1.0, 0.8, 0.7, 0.65],
                         "train.optimizer": ["min_norm", "min_norm", "adam", "gd"],
                         "train.steps": [1, 1, 300, 50], "train.batch_size": [128, 128, 64, 128],
                         "task.train_size": [500, 500, 500, 500]})
    monkeypatch.setattr(overparam.store, "load_runs", lambda directory: runs)
    assert points_from_sweep("ignored")["tokens"].tolist() == [500, 500, 300 * 64, 50 * 500]
