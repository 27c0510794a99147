"""The laws fitted by least squares on log-loss residuals (power, Kaplan, BNSL): the shared fit and bootstrap.

Fit: Levenberg-Marquardt (scipy ``least_squares(method="lm")``, analytic Jacobian) from each start of a
law's grid for a short run on the search points (``bootstrap.search_rows``: all points up to 256, else a
fixed subsample), then the 3 lowest continued to convergence on every point; the lowest cost wins.

Bootstrap: a resample with counts w minimizes ½ Σ_i w_i r_i(θ)², the same sum as over its drawn points.
All resamples of a block are refitted together from the full-data optimum θ̂ by batched L-BFGS in the
variables where the Hessian at θ̂ is the identity (``bootstrap.Preconditioner``), so a refit takes a
few evaluations of the residuals instead of a Levenberg-Marquardt run per resample. A refit still
running after ``REFIT_ITER`` iterations (a long flat valley, e.g. a break the data barely see) is
finished by Levenberg-Marquardt, which follows such valleys better, for at most
``REFIT_LM_EVALUATIONS`` evaluations: a valley that still goes on (a break that runs off the end of the
resample's data, where the loss keeps falling by ever less) has no minimum in reach, and its end
point is kept; the constants it moves are the ones whose intervals say "not determined".
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from overparam.analysis.scaling.base import ScalingLawFitter, best_of
from overparam.analysis.scaling.bootstrap import (
    Preconditioner,
    fd_hessian,
    least_squares_objective,
    refine,
    resample_blocks,
    search_rows,
)

REFIT_ITER = 500  # L-BFGS iterations of a bootstrap refit before Levenberg-Marquardt finishes it
REFIT_LM_EVALUATIONS = 200  # and that finish's evaluations (a valley with no minimum in reach ends there)
Residuals = tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]
# (k, d) parameter rows, with the Jacobian? -> residuals (k, n) and Jacobians (k, d, n) (or None); the
# Jacobian of one row, transposed, is the column-major (n, d) array MINPACK works on, without a copy
Batched = Callable[[np.ndarray, bool], tuple[np.ndarray, "np.ndarray | None"]]


def logaddexp(x, y) -> np.ndarray:
    """log(e^x + e^y) as max(x, y) + log1p(e^-|x - y|): ``np.logaddexp``'s value to 1 ulp, without its
    scalar loop (7x faster on 10^5 points here); same infinities (equal infinite arguments give them)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    with np.errstate(invalid="ignore"):
        m = np.maximum(x, y)
        d = -np.abs(x - y)  # nan where x = y = ±inf
        np.exp(d, out=d)
        np.log1p(d, out=d)
        return np.where(np.isnan(d), m, m + d)


def lm_solve(residual, jacobian, x0: np.ndarray, max_nfev: int = 2000) -> tuple[float, np.ndarray]:
    """Levenberg-Marquardt to machine precision; returns (sum of squared residuals / 2, x)."""
    with np.errstate(all="ignore"):  # a wild trial step overflows; LM then shrinks its trust region
        res = least_squares(residual, x0, jac=jacobian, method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15,
                            max_nfev=max_nfev)
    return float(res.cost), res.x


class LeastSquaresFitter(ScalingLawFitter):
    """Base of the least-squares laws: subclasses give residuals, a grid of starts and ``_named``."""

    def _batched(self, data: pd.DataFrame) -> Batched:
        """model(Θ (k, d), jacobian) -> residuals log L̂ - log L (k, n) over the rows of ``data`` for every
        parameter row, and their Jacobians (k, d, n) when asked: one numpy evaluation for many θ."""
        raise NotImplementedError

    def _residuals(self, data: pd.DataFrame) -> Residuals:
        """(residual(θ) -> (n,), jacobian(θ) -> (n, d)) for one θ, what Levenberg-Marquardt calls."""
        model = self._batched(data)

        def residual(theta):
            return model(np.asarray(theta, float)[None], False)[0][0]

        def jacobian(theta):
            return model(np.asarray(theta, float)[None], True)[1][0].T

        return residual, jacobian

    def _grid(self, data: pd.DataFrame) -> np.ndarray:
        """Rows of starting points for the multi-start fit."""
        raise NotImplementedError

    def _short_nfev(self, x0: np.ndarray) -> int:
        """Evaluations of a start's short run (α -> 0 runs away slowly: a long run there is wasted)."""
        return 100

    def _solve(self, data: pd.DataFrame, start: np.ndarray | None) -> np.ndarray:
        residual, jacobian = self._residuals(data)
        if start is not None:
            return best_of(start[None], lambda x0: lm_solve(residual, jacobian, x0))
        rows = search_rows(len(data))
        short = self._residuals(data.iloc[rows].reset_index(drop=True)) if len(rows) < len(data) else (
            residual, jacobian)
        return best_of(self._grid(data), lambda x0: lm_solve(*short, x0, self._short_nfev(x0)),
                       polish=lambda x0: lm_solve(residual, jacobian, x0))

    def _bootstrap_thetas(self, data: pd.DataFrame, rng: np.random.Generator) -> list[np.ndarray]:
        model = self._batched(data)
        full = least_squares_objective(model, np.ones((1, len(data))))
        # the Hessian of ½ Σ r², not Gauss-Newton's JᵀJ: a law that misses the data (Kaplan has no E)
        # leaves residuals whose curvature JᵀJ omits
        hessian = fd_hessian(lambda x: full(x, np.zeros(len(x), int))[1], self.theta_)
        precondition = Preconditioner(self.theta_, hessian)
        out: list[np.ndarray] = []
        for counts in resample_blocks(rng, len(data), int(self.bootstrap)):
            fun = least_squares_objective(model, counts)
            starts = np.repeat(self.theta_[None], len(counts), 0)
            res = refine(fun, starts, precondition, max_iter=REFIT_ITER, gtol=1e-12, ftol=1e-12)
            for i in np.flatnonzero(~res.converged):  # a flat valley L-BFGS crawls along: LM finishes it
                res.x[i] = self._weighted_lm(data, counts[i], res.x[i])
            out.extend(res.x)
        return out

    def _weighted_lm(self, data: pd.DataFrame, counts: np.ndarray, start: np.ndarray) -> np.ndarray:
        """Levenberg-Marquardt on ½ Σ w r² (residuals scaled by √w) from ``start``."""
        residual, jacobian = self._residuals(data)
        root = np.sqrt(counts)
        return lm_solve(lambda th: root * residual(th), lambda th: root[:, None] * jacobian(th), start,
                        REFIT_LM_EVALUATIONS)[1]
