"""Chinchilla Approaches 1 and 2 (Hoffmann et al. 2022, §3.1 and §3.2): compute-optimal N*(C), D*(C).

Both end in power laws N*(C) = k_N C^a and D*(C) = k_D C^b, fitted by ordinary least squares in
log-log; they differ in how the optimal (C, N, D) points are found. ``predict`` returns N*(C) at each
row's ``flops``; ``params_`` holds a, b, k_N (``k_params``), k_D (``k_tokens``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from overparam.analysis.scaling.base import ScalingLawFitter
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

    def _optima(self, data: pd.DataFrame) -> tuple[pd.DataFrame, list[float]]:
        """Rows (flops, params, tokens) of the compute-optimal points in ``data``; budgets skipped."""
        raise NotImplementedError

    def _solve(self, data: pd.DataFrame, start: np.ndarray | None) -> np.ndarray:
        opt = self._optima(data)[0]
        if len(opt) < 2 or opt["flops"].nunique() < 2:
            raise OverparamError(f"{self.law}: found {len(opt)} compute-optimal point(s), need 2 at "
                                 "different compute budgets")
        a, log_kn = loglog_fit(opt["flops"].to_numpy(), opt["params"].to_numpy())
        b, log_kd = loglog_fit(opt["flops"].to_numpy(), opt["tokens"].to_numpy())
        return np.array([a, b, log_kn, log_kd])

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

    def _optima(self, data):
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
        ids, start, current = np.empty(len(lc), int), -np.inf, -1
        for i in order:
            if lc[i] > start + self.budget_tol:
                current, start = current + 1, lc[i]
            ids[i] = current
        return ids

    def _optima(self, data):
        rows, skipped = [], []
        for _, group in data.groupby(self.budgets(data["flops"].to_numpy())):
            c = float(np.exp(np.log(group["flops"]).mean()))  # the budget: geometric mean of the group
            if group["params"].nunique() < 3:
                skipped.append(c)
                continue
            p2, p1, _ = np.polyfit(np.log(group["params"]), group["loss"], 2)
            if p2 <= 0:
                skipped.append(c)
                continue
            n_opt = float(np.exp(-p1 / (2 * p2)))
            rows.append({"flops": c, "params": n_opt, "tokens": c / (6 * n_opt)})
        return pd.DataFrame(rows, columns=["flops", "params", "tokens"]), skipped
