"""Single-variable power law with offset, and Kaplan et al.'s joint law in (N, D).

Both are fitted by least squares on log-loss residuals, log L̂ - log L, with Levenberg-Marquardt from a
small grid of data-scaled starts; the lowest cost wins (``least_squares.py``: the fit and the
bootstrap). Fitting in log space weighs a 1 % miss the same at every scale.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy.special import expit

from overparam.analysis.scaling.least_squares import Batched, LeastSquaresFitter, logaddexp
from overparam.errors import OverparamError

X_COLUMNS = {"params": "params", "tokens": "tokens", "flops": "flops"}


def check_x(x: str) -> None:
    if x not in X_COLUMNS:
        raise OverparamError(f"x must be one of {', '.join(X_COLUMNS)}, got {x!r}")


class PowerLawFitter(LeastSquaresFitter):
    """L(X) = E + A / X^α, X one of params (N), tokens (D) or flops (C) (Kaplan et al. 2020 with offset).

    Log-sum-exp form: log L = LSE(a - α log X, e), with A = exp(a), E = exp(e) (so E, A > 0).
    """

    law = "power"
    param_names = ("E", "A", "alpha")

    def __init__(self, x: str = "params", bootstrap: int = 0, seed: int = 0) -> None:
        self.x = x
        self.bootstrap = bootstrap
        self.seed = seed

    @property
    def x_column(self) -> str:
        return self.x

    def _check_options(self) -> None:
        super()._check_options()
        check_x(self.x)

    def _terms(self, theta, lx):
        a, e, alpha = theta
        return a - alpha * lx, np.full_like(lx, e)

    def _batched(self, data: pd.DataFrame) -> Batched:
        lx, ll = np.log(data[self.x].to_numpy()), np.log(data["loss"].to_numpy())

        def model(thetas, jacobian=True):
            a, e, alpha = (thetas[:, i, None] for i in range(3))
            t = a - alpha * lx  # log A/X^α, (k, n)
            r = logaddexp(t, e) - ll
            if not jacobian:
                return r, None
            p = expit(t - e)  # weight of the A/X^α term
            return r, np.stack([p, 1 - p, -p * lx], axis=1)

        return model

    def _grid(self, data: pd.DataFrame) -> np.ndarray:
        return self._starts(np.log(data[self.x].to_numpy()), data["loss"].to_numpy())

    @staticmethod
    def _starts(lx: np.ndarray, loss: np.ndarray) -> np.ndarray:
        """α on a grid; E a fraction of the smallest loss; A so the curve passes the median point."""
        rows = []
        for alpha, frac in itertools.product((0.1, 0.3, 0.6, 1.0), (1e-3, 0.5, 0.9)):
            e0 = frac * loss.min()
            a0 = np.log(max(np.median(loss) - e0, 1e-6 * loss.min())) + alpha * np.median(lx)
            rows.append([a0, np.log(e0), alpha])
        return np.array(rows)

    @np.errstate(over="ignore")  # a resample's wild exponent: inf, printed as null
    def _predict(self, theta, data):
        return np.exp(logaddexp(*self._terms(theta, np.log(data[self.x].to_numpy()))))

    @np.errstate(over="ignore")  # log A beyond float range (a bootstrap resample far off): A = inf, null in JSON
    def _named(self, theta):
        return {"E": float(np.exp(theta[1])), "A": float(np.exp(theta[0])), "alpha": float(theta[2])}

    def size_curve(self, x: np.ndarray) -> np.ndarray:
        """L as a function of the fitted variable alone (inf or nan where the constants overflow)."""
        self._check_fitted()
        p = self.params_
        with np.errstate(over="ignore", invalid="ignore"):
            return p["E"] + p["A"] * np.asarray(x, float) ** -p["alpha"]


class KaplanFitter(LeastSquaresFitter):
    """L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D (Kaplan et al. 2020, eq. 1.5).

    Log form: log L = α_D · LSE((α_N/α_D)(log N_c - log N), log D_c - log D); θ = (log N_c, log D_c,
    α_N, α_D). No irreducible term: Kaplan's fits were far from it.
    """

    law = "kaplan"
    param_names = ("Nc", "Dc", "alpha_N", "alpha_D")
    x_column = "params"

    def __init__(self, bootstrap: int = 0, seed: int = 0) -> None:
        self.bootstrap = bootstrap
        self.seed = seed

    @staticmethod
    def _uv(theta, ln, ld):
        lnc, ldc, an, ad = theta
        return (an / ad) * (lnc - ln), ldc - ld

    def _batched(self, data: pd.DataFrame) -> Batched:
        ln, ld = np.log(data["params"].to_numpy()), np.log(data["tokens"].to_numpy())
        ll = np.log(data["loss"].to_numpy())

        def model(thetas, jacobian=True):
            lnc, ldc, an, ad = (thetas[:, i, None] for i in range(4))
            u, v = (an / ad) * (lnc - ln), ldc - ld
            s = logaddexp(u, v)
            r = ad * s - ll
            if not jacobian:
                return r, None
            p = expit(u - v)  # softmax weight of the N term
            return r, np.stack([an * p, ad * (1 - p), p * (lnc - ln), s - p * u], axis=1)

        return model

    def _grid(self, data: pd.DataFrame) -> np.ndarray:
        """81 starts: N_c, D_c 1-10 e-folds beyond the largest N, D; exponents 0.05-0.3."""
        ln, ld = np.log(data["params"].to_numpy()), np.log(data["tokens"].to_numpy())
        grid = itertools.product(ln.max() + np.array([1.0, 5.0, 10.0]), ld.max() + np.array([1.0, 5.0, 10.0]),
                                 (0.05, 0.1, 0.3), (0.05, 0.1, 0.3))
        return np.array(list(grid))

    @np.errstate(over="ignore")
    def _predict(self, theta, data):
        uv = self._uv(theta, np.log(data["params"].to_numpy()), np.log(data["tokens"].to_numpy()))
        return np.exp(theta[3] * logaddexp(*uv))

    @np.errstate(over="ignore")  # a resample's log N_c beyond float range: inf, null in JSON
    def _named(self, theta):
        return {"Nc": float(np.exp(theta[0])), "Dc": float(np.exp(theta[1])),
                "alpha_N": float(theta[2]), "alpha_D": float(theta[3])}

    def size_curve(self, n: np.ndarray) -> np.ndarray:
        """L(N) with unlimited data: (N_c / N)^α_N."""
        self._check_fitted()
        with np.errstate(over="ignore", invalid="ignore"):
            return (self.params_["Nc"] / np.asarray(n, float)) ** self.params_["alpha_N"]
