"""Broken neural scaling law (Caballero, Gupta, Rish, Krueger 2022, "Broken Neural Scaling Laws", eq. 1).

    y = a + b x^(-c0) Π_{i=1..n} (1 + (x / d_i)^(1/f_i))^(-c_i f_i)

Each break i bends the log-log slope from -(c0 + … + c_{i-1}) to -(c0 + … + c_i) around x = d_i, with
sharpness 1/f_i. Slopes of either sign are allowed, so a curve may rise and then fall (a double-descent
bump); that is what a single power law cannot fit. Log form, with a = exp(la), b = exp(lb),
d_i = exp(ld_i), f_i = exp(lf_i), z_i = (log x - ld_i) / f_i and softplus(z) = log(1 + e^z):

    log y = LSE(la, lb - c0 log x - Σ_i c_i f_i softplus(z_i))

fitted by least squares on log residuals (Levenberg-Marquardt, analytic Jacobian) from a grid of
starts: break positions at quantiles of log x, a few slopes and sharpnesses.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from overparam.analysis.scaling.least_squares import Batched, LeastSquaresFitter, logaddexp
from overparam.analysis.scaling.power import check_x
from overparam.errors import OverparamError


def _softplus(z):
    return logaddexp(0.0, z)


class BrokenPowerLawFitter(LeastSquaresFitter):
    """BNSL with ``breaks`` breaks in one variable ``x`` (params, tokens or flops)."""

    law = "bnsl"

    def __init__(self, x: str = "params", breaks: int = 1, bootstrap: int = 0, seed: int = 0) -> None:
        self.x = x
        self.breaks = breaks
        self.bootstrap = bootstrap
        self.seed = seed

    @property
    def param_names(self) -> tuple[str, ...]:  # type: ignore[override]
        per = [(f"c{i}", f"d{i}", f"f{i}") for i in range(1, int(self.breaks) + 1)]
        return ("a", "b", "c0", *itertools.chain(*per))

    @property
    def x_column(self) -> str:  # type: ignore[override]
        return self.x

    def _check_options(self) -> None:
        super()._check_options()
        check_x(self.x)
        if not isinstance(self.breaks, (int, np.integer)) or not 1 <= self.breaks <= 3:
            raise OverparamError(f"breaks must be 1, 2 or 3, got {self.breaks!r}")

    @staticmethod
    def _curves(thetas, lx):
        """(log y, T, z, f, softplus(z)) of parameter rows ``thetas`` (k, p): log y and T (the power-law
        term's log) (k, n), z and softplus(z) (k, breaks, n), f (k, breaks), as in the module docstring."""
        la, lb, c0 = thetas[:, 0, None], thetas[:, 1, None], thetas[:, 2, None]
        c, ld, lf = thetas[:, 3::3], thetas[:, 4::3], thetas[:, 5::3]
        f = np.exp(np.clip(lf, -20.0, 20.0))  # sharpness 1/f: beyond e^±20 the break is a kink/flat
        z = (lx - ld[..., None]) / f[..., None]
        sp = _softplus(z)
        t = lb - c0 * lx - (c[..., None] * f[..., None] * sp).sum(1)
        return logaddexp(la, t), t, z, f, sp

    def _log_curve(self, theta, lx):
        """``_curves`` of one parameter vector: log y, T (n,), z (breaks, n), f (breaks,)."""
        return tuple(v[0] for v in self._curves(np.asarray(theta, float)[None], lx)[:4])

    def _batched(self, data: pd.DataFrame) -> Batched:
        lx, ly = np.log(data[self.x].to_numpy()), np.log(data["loss"].to_numpy())

        def model(thetas, jacobian=True):
            log_y, t, z, f, sp = self._curves(thetas, lx)
            if not jacobian:
                return log_y - ly, None
            # ∂ log y / ∂ T = e^(T - log y), the power-law term's weight against the offset a
            w = np.exp(t - log_y)
            sg = np.exp(z - sp)  # the logistic σ(z) = e^z / (1 + e^z)
            cols = [1 - w, w, -w * lx]
            c = thetas[:, 3::3]
            for i in range(c.shape[1]):
                ci, fi = c[:, i, None], f[:, i, None]
                cols += [-w * fi * sp[:, i], w * ci * sg[:, i], -w * ci * fi * (sp[:, i] - z[:, i] * sg[:, i])]
            return log_y - ly, np.stack(cols, axis=1)

        return model

    def _grid(self, data: pd.DataFrame) -> np.ndarray:
        return self._starts(np.log(data[self.x].to_numpy()), np.log(data["loss"].to_numpy()))

    def _short_nfev(self, x0: np.ndarray) -> int:
        return 10 * len(x0)

    def _starts(self, lx: np.ndarray, ly: np.ndarray) -> np.ndarray:
        """Breaks at quantiles of log x; slopes and sharpness from small grids; a below the minimum."""
        k = int(self.breaks)
        la = np.log(0.5) + ly.min()
        qs = np.quantile(lx, np.linspace(0.15, 0.85, 4))
        i0 = int(np.argmin(lx))
        rows = []
        for c0, c1, lf in itertools.product((-0.5, 0.1, 0.5), (-0.5, 0.3, 1.0), (np.log(0.3), 0.0)):
            for ld in itertools.combinations(qs, k):
                theta = [la, 0.0, c0]
                for i in range(k):
                    theta += [c1 if i == 0 else 0.3, ld[i], lf]
                theta = np.array(theta)
                # lb so that the curve passes through the point of smallest x
                t0 = self._log_curve(theta, lx[i0:i0 + 1])[1][0]
                y0 = np.exp(ly[i0]) - np.exp(la)
                theta[1] = np.log(max(y0, 1e-3 * np.exp(ly.min()))) - t0
                rows.append(theta)
        return np.array(rows)

    def min_points(self) -> int:
        return 3 + 3 * int(self.breaks)

    def _predict(self, theta, data):
        return np.exp(self._log_curve(theta, np.log(data[self.x].to_numpy()))[0])

    @np.errstate(over="ignore")  # a break far beyond the data: d = inf, printed as null
    def _named(self, theta):
        out = {"a": float(np.exp(theta[0])), "b": float(np.exp(theta[1])), "c0": float(theta[2])}
        for i in range(int(self.breaks)):
            c, ld, lf = theta[3 + 3 * i: 6 + 3 * i]
            f = np.exp(np.clip(lf, -20.0, 20.0))
            out |= {f"c{i + 1}": float(c), f"d{i + 1}": float(np.exp(ld)), f"f{i + 1}": float(f)}
        return out

    def size_curve(self, x: np.ndarray) -> np.ndarray:
        """y as a function of the fitted variable."""
        self._check_fitted()
        x = np.asarray(x, float)
        return np.exp(self._log_curve(self.theta_, np.log(x.ravel()))[0]).reshape(x.shape)
