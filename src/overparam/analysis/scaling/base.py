"""The fitter contract (scikit-learn style) shared by every scaling law.

- ``__init__`` only stores its keyword arguments; ``fit(points)`` validates and returns ``self``;
- learned state ends in ``_``: ``theta_`` (internal vector), ``params_`` (named constants),
  ``n_points_``, and with ``bootstrap > 0`` also ``bootstrap_params_`` (one dict per resample) and
  ``ci_`` (name -> [lo, hi], the 2.5/97.5 percentiles);
- ``predict(points)`` refuses an unfitted object with :class:`NotFittedError`.

Bootstrap (Efron 1979, percentile intervals): resample the points with replacement and refit. The
default refit starts from the full-data optimum only (a local solve in the same basin); Approach 3
overrides it with a batched search (see ``chinchilla.py``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd

from overparam.analysis.scaling.points import prepare_points
from overparam.errors import OverparamError


class NotFittedError(ValueError, AttributeError):
    """``predict`` (or another learned quantity) was asked of a fitter before ``fit``."""


class ScalingLawFitter:
    """Base class: subclasses set ``law``, ``param_names`` and implement ``_solve`` and ``_predict``."""

    law: ClassVar[str] = ""
    param_names: ClassVar[tuple[str, ...]] = ()
    # kind "loss": predict gives the loss; "allocation": predict gives the compute-optimal params N*(C)
    kind: ClassVar[str] = "loss"

    def __init__(self, bootstrap: int = 0, seed: int = 0) -> None:
        self.bootstrap = bootstrap
        self.seed = seed

    # -- the contract -------------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """The constructor's keyword arguments (scikit-learn's ``get_params``, shallow)."""
        return {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}

    def fit(self, points: pd.DataFrame) -> ScalingLawFitter:
        """Fit the law to ``points`` (params, tokens, loss[, flops]); returns ``self``."""
        self._check_options()
        data = prepare_points(points, min_rows=max(2, self.min_points()))
        self.theta_ = self._solve(data, None)
        self.params_ = self._named(self.theta_)
        self.n_points_ = len(data)
        self._finish(data)
        if self.bootstrap:
            thetas = self._bootstrap_thetas(data, np.random.default_rng(self.seed))
            self.bootstrap_params_ = [self._named(t) for t in thetas]
            self.ci_ = percentile_ci(self.bootstrap_params_)
        return self

    def predict(self, points: pd.DataFrame) -> np.ndarray:
        """Loss at each row of ``points`` (allocation laws: compute-optimal params at its flops)."""
        self._check_fitted()
        return self._predict(self.theta_, prepare_points(points, need_loss=False, min_rows=1))

    # -- hooks -------------------------------------------------------------------------------
    def min_points(self) -> int:
        return len(self.param_names)

    def _check_options(self) -> None:
        if not isinstance(self.bootstrap, (int, np.integer)) or self.bootstrap < 0:
            raise OverparamError(f"bootstrap must be a non-negative integer, got {self.bootstrap!r}")

    def _solve(self, data: pd.DataFrame, start: np.ndarray | None) -> np.ndarray:
        """Best internal parameter vector for ``data``; ``start`` = warm start (bootstrap) or None."""
        raise NotImplementedError

    def _predict(self, theta: np.ndarray, data: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def _finish(self, data: pd.DataFrame) -> None:
        """Set extra learned attributes (``*_``) from the full data, before the bootstrap."""

    def _named(self, theta: np.ndarray) -> dict[str, float]:
        """Named constants (``param_names``) from the internal vector."""
        raise NotImplementedError

    def _bootstrap_thetas(self, data: pd.DataFrame, rng: np.random.Generator) -> list[np.ndarray]:
        n, out = len(data), []
        for _ in range(int(self.bootstrap)):
            sample = data.iloc[rng.integers(0, n, n)].reset_index(drop=True)
            try:
                out.append(self._solve(sample, self.theta_))
            except OverparamError:
                continue  # a degenerate resample (e.g. too few distinct budgets): skip it
        return out

    # -- helpers -----------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "theta_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit(points) first")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def percentile_ci(samples: list[dict[str, float]], level: float = 0.95) -> dict[str, list[float]]:
    """Percentile bootstrap interval per key: [q((1-level)/2), q((1+level)/2)] over finite samples."""
    if not samples:
        return {}
    lo, hi = 50 * (1 - level), 50 * (1 + level)
    out = {}
    for key in samples[0]:
        vals = np.array([s[key] for s in samples], dtype=float)
        vals = vals[np.isfinite(vals)]
        out[key] = [float(np.percentile(vals, lo)), float(np.percentile(vals, hi))] if vals.size else [
            float("nan"), float("nan")]
    return out


def best_of(starts: np.ndarray, solve_one, polish=None, keep: int = 3) -> np.ndarray:
    """Run ``solve_one(x0) -> (cost, x)`` from every row of ``starts``; the lowest finite cost wins.

    With ``polish`` (same signature), ``solve_one`` is a short run and the ``keep`` best end points
    are continued with ``polish``: starts that run away stop early instead of using the full budget.
    """
    ends = []
    for x0 in starts:
        try:
            cost, x = solve_one(x0)
        except (ValueError, FloatingPointError, np.linalg.LinAlgError):
            continue
        if np.isfinite(cost):
            ends.append((cost, x))
    if not ends:
        raise OverparamError("the fit failed from every starting point (are the points degenerate?)")
    ends.sort(key=lambda e: e[0])
    if polish is not None:
        return best_of(np.array([x for _, x in ends[:keep]]), polish)
    return ends[0][1]
