"""``fit_scaling_law``: pick a law, fit it with bootstrap intervals, and say how far to trust it.

Besides the constants, a fit reports (i) an extrapolation backtest: refit without the largest sizes
and predict them, (ii) the point of diminishing returns: the size beyond which another doubling buys
less than ``min_gain`` loss, with the other resource unlimited, (iii) for Chinchilla laws the
compute-optimal allocation at the largest compute in the data.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import brentq

from overparam.analysis.scaling.allocation import EnvelopeFitter, IsoFLOPFitter
from overparam.analysis.scaling.base import ScalingLawFitter, percentile_ci
from overparam.analysis.scaling.bnsl import BrokenPowerLawFitter
from overparam.analysis.scaling.chinchilla import ChinchillaFitter, allocation_exponents, optimal_allocation
from overparam.analysis.scaling.points import prepare_points
from overparam.analysis.scaling.power import KaplanFitter, PowerLawFitter
from overparam.errors import OverparamError

LAWS: dict[str, type[ScalingLawFitter]] = {
    "chinchilla": ChinchillaFitter,  # Approach 3 (Besiroglu et al. 2024 refit), the default
    "chinchilla-envelope": EnvelopeFitter,  # Approach 1
    "chinchilla-isoflop": IsoFLOPFitter,  # Approach 2
    "kaplan": KaplanFitter,
    "power": PowerLawFitter,
    "bnsl": BrokenPowerLawFitter,
}


def make_fitter(law: str, **options: Any) -> ScalingLawFitter:
    """A fitter for ``law``; options left as None take the fitter's default."""
    if law not in LAWS:
        raise OverparamError(f"unknown law {law!r}; choose one of {', '.join(LAWS)}")
    cls = LAWS[law]
    accepted = inspect.signature(cls.__init__).parameters
    given = {k: v for k, v in options.items() if v is not None}
    wrong = sorted(set(given) - set(accepted))
    if wrong:
        raise OverparamError(f"option(s) {', '.join(wrong)} do not apply to law {law!r}")
    return cls(**given)


@dataclass
class ScalingFit:
    """The result of :func:`fit_scaling_law`; ``to_dict()`` is the ``overparam fit --json`` document."""

    law: str
    params: dict[str, float]
    ci: dict[str, list[float]]
    n_points: int
    bootstrap: int
    fitter: ScalingLawFitter
    extras: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"law": self.law, "params": self.params, "ci": self.ci, "n_points": self.n_points,
                "bootstrap": self.bootstrap, **self.extras}


def fit_scaling_law(points: pd.DataFrame, law: str = "auto", bootstrap: int = 1000, seed: int = 0, *,
                    backtest: bool = True, holdout: float = 0.2, min_gain: float = 0.01,
                    **options: Any) -> ScalingFit:
    """Fit ``law`` to ``points`` (params, tokens, loss[, flops]) with ``bootstrap`` resamples.

    ``law="auto"``: the law the points' axes identify (``axes.choose``): Chinchilla's L(N, D) when
    model size and tokens both vary, the power law in the one that does otherwise (with ``x``
    given: the power law in ``x``). A named law the points do not identify is refused, naming the
    missing axis. ``options`` go to the fitter (``x`` for power/bnsl, ``breaks`` for bnsl,
    ``budget_tol`` for the IsoFLOP approach). Deterministic: the same points, options and seed give
    the same numbers.
    """
    from overparam.analysis.scaling import axes

    data = prepare_points(points)
    extras: dict[str, Any] = {"axes": {k: len(v) for k, v in axes.axes(data).items()}}
    if law in ("auto", None):
        if options.get("x") is not None:
            law = "power"
        else:
            chosen = axes.choose(data)
            law, data = chosen["law"], chosen["rows"]
            if chosen["x"] is not None:
                options = {**options, "x": chosen["x"]}
                extras["note"] = chosen["reason"]
    if law in LAWS:
        axes.check(data, law, options.get("x"))
    fitter = make_fitter(law, bootstrap=bootstrap, seed=seed, **options).fit(data)
    if hasattr(fitter, "search_"):
        extras["search"] = fitter.search_
    if fitter.kind == "allocation":
        extras["compute_optimal"] = _allocation_summary(fitter, data)
        extras["optima"] = fitter.optima_.to_dict(orient="records")
        if fitter.skipped_budgets_:
            extras["skipped_budgets"] = fitter.skipped_budgets_
    else:
        if isinstance(fitter, ChinchillaFitter):
            extras["compute_optimal"] = _chinchilla_summary(fitter, float(data["flops"].max()))
        extras["backtest"] = extrapolation_backtest(fitter, data, holdout) if backtest else None
        extras["diminishing_returns"] = diminishing_returns(fitter, data, min_gain)
    if "x" in options:
        extras["x"] = options["x"]
    extras["warnings"] = fit_warnings(fitter, data)
    return ScalingFit(law=law, params=fitter.params_, ci=getattr(fitter, "ci_", {}),
                      n_points=fitter.n_points_, bootstrap=int(bootstrap), fitter=fitter, extras=extras)


EXPONENTS = ("alpha", "beta", "alpha_N", "alpha_D")


def fit_warnings(fitter: ScalingLawFitter, data: pd.DataFrame, rise: float = 0.05) -> list[str]:
    """What makes a fit untrustworthy, in words: an exponent whose 95 % interval is wider than the
    estimate itself, and a power law fitted to a loss that rises again at the largest sizes (it
    cannot follow a double-descent curve; the broken power law can)."""
    out = []
    ci = getattr(fitter, "ci_", {})
    for name in EXPONENTS:
        value, pair = fitter.params_.get(name), ci.get(name)
        if value is None or not pair or not all(np.isfinite(pair)):
            if value is not None and pair:
                out.append(f"the exponent {name} is not determined: its 95 % interval reaches beyond float range")
            continue
        if pair[1] - pair[0] > abs(value):
            out.append(f"the exponent {name} is barely determined: its 95 % interval [{pair[0]:.3g}, {pair[1]:.3g}] "
                       f"is wider than the estimate {value:.3g}")
    if fitter.law == "power":
        from overparam.analysis.scaling.axes import SAME_DECADES

        col = fitter.x_column
        key = np.round(np.log10(data[col].to_numpy()) / SAME_DECADES)
        means = data.groupby(key)["loss"].mean()
        xs = data.groupby(key)[col].mean()
        best = int(np.argmin(means.to_numpy()))
        last = float(means.iloc[-1])
        if best < len(means) - 1 and last > float(means.iloc[best]) * (1 + rise):
            out.append(f"the loss is not monotone in {col}: lowest ({float(means.iloc[best]):.4g}) at "
                       f"{float(xs.iloc[best]):,.0f}, {last:.4g} at the largest ({float(xs.iloc[-1]):,.0f}); a power "
                       f"law cannot follow a curve that rises again (double descent: see `overparam analyze`; "
                       f"--law bnsl fits a broken power law)")
    return out


def _chinchilla_summary(fitter: ChinchillaFitter, flops: float) -> dict[str, Any]:
    """Compute-optimal N, D and D/N at ``flops``, the exponents a, b, G, with bootstrap intervals."""

    def derived(p):
        n, d = optimal_allocation(p, flops)
        return {**allocation_exponents(p), "params": float(n), "tokens": float(d),
                "tokens_per_param": float(d / n)}

    out: dict[str, Any] = {"flops": flops, **derived(fitter.params_)}
    if getattr(fitter, "bootstrap_params_", None):
        out["ci"] = percentile_ci([derived(p) for p in fitter.bootstrap_params_])
    return out


def _allocation_summary(fitter, data) -> dict[str, Any]:
    flops = float(data["flops"].max())
    n, d = fitter.allocation(flops)
    return {"flops": flops, "params": float(n), "tokens": float(d), "tokens_per_param": float(d / n)}


def extrapolation_backtest(fitter: ScalingLawFitter, data: pd.DataFrame,
                           holdout: float = 0.2) -> dict[str, Any]:
    """Refit without the largest ``holdout`` fraction of distinct sizes, predict them, report the error.

    Size is the fitter's variable (``params`` for the joint laws). Errors are relative: L̂ / L - 1.
    """
    col = fitter.x_column
    sizes = np.unique(data[col].to_numpy())
    k = max(1, int(round(holdout * len(sizes))))
    if len(sizes) < 3:
        return {"skipped": f"only {len(sizes)} distinct {col}"}
    cut = sizes[-k]
    train, test = data[data[col] < cut], data[data[col] >= cut]
    clone = type(fitter)(**{**fitter.get_params(), "bootstrap": 0})
    if len(train) < max(2, clone.min_points()):
        return {"skipped": f"{len(train)} points below the held-out sizes, {clone.min_points()} needed"}
    try:
        clone.fit(train)
    except OverparamError as exc:
        return {"skipped": str(exc)}
    rel = clone.predict(test) / test["loss"].to_numpy() - 1.0
    return {"x": col, "held_out_from": float(cut), "n_train": len(train), "n_test": len(test),
            "mean_abs_rel_error": float(np.mean(np.abs(rel))),
            "max_abs_rel_error": float(np.max(np.abs(rel))),
            "mean_rel_error": float(np.mean(rel)), "train_params": clone.params_}


def diminishing_returns(fitter: ScalingLawFitter, data: pd.DataFrame,
                        min_gain: float = 0.01) -> dict[str, Any]:
    """Smallest size x* beyond which L(x) - L(2x) < ``min_gain`` for good (other resource unlimited).

    For L = E + A/x^α this is x* = (A (1 - 2^-α) / g)^(1/α); it is found numerically for every law
    on a log grid from 1e-3x the smallest to 1e12x the largest size, refined by Brent's method.
    """
    if not min_gain > 0:
        raise OverparamError(f"min_gain must be > 0, got {min_gain!r}")
    col = fitter.x_column
    out: dict[str, Any] = {"x": col, "min_gain": float(min_gain)}
    xs = np.logspace(np.log10(data[col].min()) - 3, np.log10(data[col].max()) + 12, 3000)

    def excess(x):
        with np.errstate(invalid="ignore"):  # inf - inf where a degenerate fit overflows: nan, never "above"
            return fitter.size_curve(x) - fitter.size_curve(2 * x) - min_gain

    above = np.flatnonzero(excess(xs) >= 0)
    if above.size == 0:
        out |= {"value": None, "note": f"every doubling past {xs[0]:.3g} already gains < {min_gain}"}
    elif above[-1] == len(xs) - 1:
        out |= {"value": None, "note": f"doubling still gains >= {min_gain} at {xs[-1]:.3g}"}
    else:
        i = above[-1]
        x_star = float(np.exp(brentq(lambda lx: excess(np.exp(lx)), np.log(xs[i]), np.log(xs[i + 1]))))
        out |= {"value": x_star, "loss_there": float(fitter.size_curve(x_star))}
    return out
