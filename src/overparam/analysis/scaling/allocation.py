"""Chinchilla Approaches 1 and 2 (Hoffmann et al. 2022, §3.1 and §3.2): compute-optimal N*(C), D*(C).

Both end in power laws N*(C) = k_N C^a and D*(C) = k_D C^b, fitted by ordinary least squares in
log-log; they differ in how the optimal (C, N, D) points are found. ``predict`` returns N*(C) at each
row's ``flops``; ``params_`` holds a, b, k_N (``k_params``), k_D (``k_tokens``).

Bootstrap: a resample is its drawn points with their counts as weights (the optima of a resample depend
only on which points it drew and how often), so no resampled table is built; budgets are found, and
parabolas fitted, for all budgets at once from per-budget weighted sums.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from overparam.analysis.scaling.base import ScalingLawFitter
from overparam.analysis.scaling.bootstrap import resample_blocks
from overparam.errors import OverparamError


def loglog_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(slope, log intercept) of log y = log k + slope log x by least squares."""
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    return float(slope), float(intercept)


class _AllocationFitter(ScalingLawFitter):
    kind = "allocation"
    param_names = ("a", "b", "k_params", "k_tokens")

    def min_points(self) -> int:
        return 3

    def _optima(self, data: pd.DataFrame, weights: np.ndarray | None = None) -> tuple[pd.DataFrame, list[float]]:
        """Rows (flops, params, tokens) of the compute-optimal points in ``data``; budgets skipped.

        ``weights``: how often each row counts (a bootstrap resample's draws), None for once each.
        """
        raise NotImplementedError

    def _solve(self, data: pd.DataFrame, start: np.ndarray | None, weights: np.ndarray | None = None) -> np.ndarray:
        opt = self._optima(data, weights)[0]
        if len(opt) < 2 or opt["flops"].nunique() < 2:
            raise OverparamError(f"{self.law}: found {len(opt)} compute-optimal point(s), need 2 at "
                                 "different compute budgets")
        a, log_kn = loglog_fit(opt["flops"].to_numpy(), opt["params"].to_numpy())
        b, log_kd = loglog_fit(opt["flops"].to_numpy(), opt["tokens"].to_numpy())
        return np.array([a, b, log_kn, log_kd])

    def _bootstrap_thetas(self, data: pd.DataFrame, rng: np.random.Generator) -> list[np.ndarray]:
        out = []
        for counts in resample_blocks(rng, len(data), int(self.bootstrap)):
            for w in counts:
                drawn = w > 0
                try:
                    out.append(self._solve(data[drawn].reset_index(drop=True), None, w[drawn]))
                except OverparamError:
                    continue  # a degenerate resample (e.g. too few distinct budgets): skip it
        return out

    def _finish(self, data: pd.DataFrame) -> None:
        self.optima_, self.skipped_budgets_ = self._optima(data)

    def _named(self, theta):
        return {"a": float(theta[0]), "b": float(theta[1]), "k_params": float(np.exp(theta[2])),
                "k_tokens": float(np.exp(theta[3]))}

    def _predict(self, theta, data):
        return np.exp(theta[2]) * data["flops"].to_numpy() ** theta[0]

    def allocation(self, flops) -> tuple[np.ndarray, np.ndarray]:
        """(N*(C), D*(C)) from the fitted power laws."""
        self._check_fitted()
        c = np.asarray(flops, float)
        return np.exp(self.theta_[2]) * c ** self.theta_[0], np.exp(self.theta_[3]) * c ** self.theta_[1]


class EnvelopeFitter(_AllocationFitter):
    """Approach 1: the lower envelope of loss against compute.

    Hoffmann et al. take, at each FLOP count, the run with the lowest loss over all training curves.
    With one final loss per run (a CSV, a sweep's final metrics) the envelope is the Pareto frontier:
    the runs, by increasing compute, whose loss is below every cheaper run's.
    """

    law = "chinchilla-envelope"

    def _optima(self, data, weights=None):
        # a point drawn twice is on the frontier once: its copy is not below it (weights do not matter)
        data = data.sort_values(["flops", "loss"], kind="stable")
        best = np.minimum.accumulate(data["loss"].to_numpy())
        on_frontier = data["loss"].to_numpy() < np.concatenate([[np.inf], best[:-1]])
        frontier = data[on_frontier]
        return frontier[["flops", "params", "tokens"]].reset_index(drop=True), []


class IsoFLOPFitter(_AllocationFitter):
    """Approach 2: IsoFLOP profiles. Per compute budget, fit L = p2 (log N)² + p1 log N + p0 and take
    its minimum N* = exp(-p1 / (2 p2)), D* = C / (6 N*).

    Budgets are found by grouping runs whose compute lies within ``budget_tol`` decades of the group's
    smallest; a budget needs at least 3 distinct sizes and an upward parabola (p2 > 0), else it is
    skipped (its compute is listed in ``skipped_budgets_``).
    """

    law = "chinchilla-isoflop"

    def __init__(self, budget_tol: float = 0.05, bootstrap: int = 0, seed: int = 0) -> None:
        self.budget_tol = budget_tol
        self.bootstrap = bootstrap
        self.seed = seed

    def _check_options(self) -> None:
        super()._check_options()
        if not self.budget_tol >= 0:
            raise OverparamError(f"budget_tol must be >= 0 decades, got {self.budget_tol!r}")

    def budgets(self, flops: np.ndarray) -> np.ndarray:
        """Group id per row: sorted log10 compute split where it passes the group start + budget_tol."""
        lc = np.log10(flops)
        order = np.argsort(lc, kind="stable")
        v = lc[order]
        ids, i, current = np.empty(len(lc), int), 0, 0
        while i < len(v):  # one step per budget, not per run
            j = int(np.searchsorted(v, v[i] + self.budget_tol, side="right"))
            ids[order[i:j]] = current
            current, i = current + 1, j
        return ids

    def _optima(self, data, weights=None):
        """Per budget, the weighted least-squares parabola in x = log N, centred on the budget's mean x
        (well conditioned normal equations), solved for every budget at once."""
        ids = self.budgets(data["flops"].to_numpy())
        k = int(ids.max()) + 1
        w = np.ones(len(data)) if weights is None else np.asarray(weights, float)
        x, y = np.log(data["params"].to_numpy()), data["loss"].to_numpy()

        def total(v):
            return np.bincount(ids, weights=w * v, minlength=k)

        n_w = total(np.ones_like(x))
        budget = np.exp(total(np.log(data["flops"].to_numpy())) / n_w)  # geometric mean of the group
        xc = x - (total(x) / n_w)[ids]
        m = np.stack([np.stack([total(xc ** (i + j)) for j in range(3)], axis=-1) for i in range(3)], axis=1)
        rhs = np.stack([total(xc ** i * y) for i in range(3)], axis=-1)
        sizes = _distinct_per_group(ids, data["params"].to_numpy(), k)
        ok = sizes >= 3
        coef = np.full((k, 3), np.nan)  # (q0, q1, q2) of q0 + q1 xc + q2 xc² per budget
        if ok.any():
            coef[ok] = np.linalg.solve(m[ok], rhs[ok][..., None])[..., 0]
        ok &= coef[:, 2] > 0  # an upward parabola has a minimum
        with np.errstate(invalid="ignore", divide="ignore"):
            n_opt = np.exp(total(x)[ok] / n_w[ok] - coef[ok, 1] / (2 * coef[ok, 2]))
        rows = pd.DataFrame({"flops": budget[ok], "params": n_opt, "tokens": budget[ok] / (6 * n_opt)})
        return rows, [float(c) for c in budget[~ok]]


def _distinct_per_group(ids: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
    """Number of distinct ``values`` in each group id 0..k-1."""
    _, rank = np.unique(values, return_inverse=True)  # integer keys sort ~10x faster than float pairs
    pairs = np.unique(ids.astype(np.int64) * (int(rank.max()) + 1) + rank)
    return np.bincount(pairs // (int(rank.max()) + 1), minlength=k)
