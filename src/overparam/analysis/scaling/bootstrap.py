"""What keeps a scaling-law fit linear in its points: searches on a subsample, resamples as weights,
and refits preconditioned by the full-data Hessian.

A fit with a bootstrap pays for two things that grow with the number of points n: a multi-start search
(thousands of starts x n points per iteration for Approach 3) and R refits (R = 1,000 by default).

- **Search on at most** :data:`SEARCH_POINTS` **points.** A multi-start search only has to find the
  basin of the optimum; with more points than that it runs on a fixed random subsample (seed 0) of
  them, and its best end points are then refined on every point. Up to ``SEARCH_POINTS`` points it is
  the search on all of them, as before. (A sweep's curves give 10^4-10^5 points; the landscape of 256
  of them has the same basins.)
- **Resamples are counts.** A bootstrap resample (Efron 1979) is the vector w of how often each point
  was drawn, and its refit minimizes sum_i w_i loss_i: a block of resamples is one batched problem
  (``lbfgs.minimize_batched``). Blocks are sized so that a (block, n) array stays small, and drawn
  from the generator in the same order as one draw of all R x n indices (numpy's bounded integers
  give the same stream in pieces), so the resamples do not depend on the block size.
- **Refits are preconditioned.** A resample's optimum lies O(n^-1/2) from the full-data optimum θ̂,
  and its Hessian H_r = sum_i w_i H_i averages the per-point Hessians of the full data's H with weights
  of mean 1. In z = Λ^1/2 Vᵀ (θ - θ̂), where H = V Λ Vᵀ, the refit's Hessian is I + O(n^-1/2): the
  first L-BFGS step -g is Newton's, and a refit takes a few evaluations of n points however badly θ
  is scaled (the intercept a and exponent α of a - α log N, log N ≈ 20, are nearly collinear). This
  is the one-step / k-step bootstrap idea (Andrews 2002, Econometrica 70:119) carried to convergence,
  so each refit is still the resample's own optimum.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from overparam.analysis.scaling.lbfgs import BatchedObjective, BatchResult, minimize_batched

SEARCH_POINTS = 256  # points a multi-start search runs on; more are subsampled (the Chinchilla set has 240)
RESAMPLE_BLOCK = 1 << 22  # resamples x points per block of the bootstrap (32 MiB of float64 counts)
LSQ_BLOCK = 1 << 18  # Jacobian entries (problems x points x parameters) per evaluation block (2 MiB)


def search_rows(n: int, limit: int = SEARCH_POINTS) -> np.ndarray:
    """Sorted indices of the points a multi-start search uses: all n up to ``limit``, else ``limit`` of
    them drawn without replacement by a generator of seed 0 (the same subsample on every call)."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, size=limit, replace=False))


def resample_blocks(rng: np.random.Generator, n: int, resamples: int,
                    block_elements: int = RESAMPLE_BLOCK) -> Iterator[np.ndarray]:
    """Bootstrap resamples of n points as (block, n) float count matrices, ``resamples`` rows in all.

    Row r counts the n indices rng.integers(0, n, n) of resample r: the draws are those of one call
    ``rng.integers(0, n, resamples * n)`` whatever the block size.
    """
    block = max(1, min(resamples, block_elements // max(n, 1)))
    for lo in range(0, resamples, block):
        b = min(block, resamples - lo)
        drawn = rng.integers(0, n, b * n) + np.repeat(np.arange(b) * n, n)
        yield np.bincount(drawn, minlength=b * n).reshape(b, n).astype(float)


def fd_hessian(grad: Callable[[np.ndarray], np.ndarray], theta: np.ndarray, rel_step: float = 1e-5) -> np.ndarray:
    """Symmetric Hessian at ``theta`` by central differences of ``grad`` ((k, d) rows -> (k, d) gradients),
    step ``rel_step`` x max(1, |θ_j|) per coordinate; all 2d points in one call."""
    theta = np.asarray(theta, float)
    d = len(theta)
    steps = rel_step * np.maximum(1.0, np.abs(theta))
    shifts = np.diag(steps)
    g = grad(np.concatenate([theta + shifts, theta - shifts]))
    h = (g[:d] - g[d:]) / (2.0 * steps[:, None])
    return 0.5 * (h + h.T)


class Preconditioner:
    """Variables z = Λ^1/2 Vᵀ (θ - center) from H = V Λ Vᵀ, in which the Hessian H becomes I.

    Eigenvalues below 1e-12 of the largest are raised to it (a flat direction stays flat in z: its
    gradient is zero there); a Hessian that is not finite or has no positive eigenvalue gives z = θ -
    center (no scaling).
    """

    def __init__(self, center: np.ndarray, hessian: np.ndarray) -> None:
        self.center = np.asarray(center, float)
        d = len(self.center)
        h = 0.5 * (hessian + hessian.T) if np.isfinite(hessian).all() else np.eye(d)
        lam, vec = np.linalg.eigh(h)
        if not lam.max() > 0:
            lam, vec = np.ones(d), np.eye(d)
        lam = np.maximum(lam, 1e-12 * lam.max())
        self.forward = np.sqrt(lam)[:, None] * vec.T  # z = forward (θ - c)
        self.back = vec / np.sqrt(lam)  # θ = c + back z

    def to_z(self, theta: np.ndarray) -> np.ndarray:
        return (np.asarray(theta, float) - self.center) @ self.forward.T

    def to_theta(self, z: np.ndarray) -> np.ndarray:
        return self.center + z @ self.back.T

    def wrap(self, fun: BatchedObjective) -> BatchedObjective:
        """``fun`` of θ rows as a function of z rows: f unchanged, ∂f/∂z = backᵀ ∂f/∂θ."""

        def in_z(z: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            f, g = fun(self.to_theta(z), idx)
            return f, g @ self.back

        return in_z


def refine(fun: BatchedObjective, starts: np.ndarray, precondition: Preconditioner, **options) -> BatchResult:
    """``minimize_batched`` from ``starts`` (θ rows) in the preconditioned variables, full first steps;
    the result's ``x`` is in θ."""
    res = minimize_batched(precondition.wrap(fun), precondition.to_z(starts), scale_first=False, **options)
    res.x = precondition.to_theta(res.x)
    return res


def least_squares_objective(model: Callable[[np.ndarray, bool], tuple[np.ndarray, Any]],
                            weights: np.ndarray) -> BatchedObjective:
    """fun(x, idx) for ``minimize_batched``: problem i minimizes ½ Σ_j w_ij r_j(x)² (w = ``weights[i]``),
    gradient J(x)ᵀ (w ∘ r). ``model(X, True)`` gives the residuals (k, n) and Jacobians (k, d, n) of
    parameter rows X, evaluated for blocks of rows (at most ``LSQ_BLOCK`` Jacobian entries at a time);
    a non-finite value gives f = inf, which the line search rejects."""
    n = weights.shape[1]

    def fun(x: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f, g = np.empty(len(x)), np.zeros_like(x)
        per = max(1, LSQ_BLOCK // (n * x.shape[1]))
        with np.errstate(all="ignore"):  # a wild trial step overflows: rejected below
            for lo in range(0, len(x), per):
                sl = slice(lo, lo + per)
                r, jac = model(x[sl], True)
                wr = weights[idx[sl]] * r
                f[sl] = 0.5 * np.einsum("kn,kn->k", wr, r)  # einsum: a threaded BLAS product costs ~20 ns a point
                g[sl] = np.einsum("kdn,kn->kd", jac, wr)
        bad = ~np.isfinite(f) | ~np.isfinite(g).all(axis=1)
        f[bad] = np.inf
        return f, g

    return fun
