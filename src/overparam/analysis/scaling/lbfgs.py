"""Batched L-BFGS: many independent small minimizations advanced together in numpy.

Why it exists: Approach 3 (Besiroglu et al. 2024) runs L-BFGS from a grid of ~4,500 starts, and again
for every bootstrap resample. One ``scipy.optimize.minimize`` call per start pays ~0.1 ms of Python
overhead per iteration per start (minutes in all); here one iteration of all K problems is a single
vectorized objective evaluation on a (K, n_points) array, so a start costs a few microseconds of
arithmetic per iteration, and problems that have converged leave the batch.

Algorithm, per problem (Nocedal & Wright 2006, *Numerical Optimization*): direction p = -H g by the
two-loop recursion (Alg. 7.4) over the last ``m`` pairs (s, y), initial scale γ = sᵀy / yᵀy;
backtracking line search (Alg. 3.1, quadratic interpolation, step clipped to [0.1 t, 0.5 t]) from t = 1
until the Armijo condition f(x + t p) <= f(x) + c1 t gᵀp holds. Without a Wolfe search sᵀy > 0 is not
guaranteed, so a pair is stored only when sᵀy > 1e-10 ‖s‖ ‖y‖ (keeps H positive definite). A problem
stops when ‖g‖∞ <= gtol, when an iteration lowers f by less than ftol (1 + |f|), or when its line
search fails (no decrease along a descent direction: it is at a minimum to working precision).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# fun(x (k, d), idx (k,)) -> (f (k,), g (k, d)): objective and gradient of problems idx at x.
BatchedObjective = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class BatchResult:
    x: np.ndarray  # (K, d) final points
    fun: np.ndarray  # (K,) objective there
    n_iter: np.ndarray  # (K,) iterations used
    converged: np.ndarray  # (K,) stopped by a tolerance rather than by max_iter


def _two_loop(g: np.ndarray, S: np.ndarray, Y: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """-H g for each row; S, Y (k, m, d) oldest..newest, rho = 1/sᵀy or 0 for an empty slot."""
    q = g.copy()
    m = S.shape[1]
    alphas = np.empty(rho.shape)
    for i in range(m - 1, -1, -1):
        alphas[:, i] = rho[:, i] * np.einsum("kd,kd->k", S[:, i], q)
        q -= alphas[:, i, None] * Y[:, i]
    sy = np.einsum("kd,kd->k", S[:, -1], Y[:, -1])
    yy = np.einsum("kd,kd->k", Y[:, -1], Y[:, -1])
    gamma = np.where(rho[:, -1] > 0, sy / np.where(yy > 0, yy, 1.0), 1.0)
    r = gamma[:, None] * q
    for i in range(m):
        beta = rho[:, i] * np.einsum("kd,kd->k", Y[:, i], r)
        r += S[:, i] * (alphas[:, i] - beta)[:, None]
    return -r


def _line_search(fun, idx, x, f, p, gp, t0, c1, max_backtracks):
    """Backtracking Armijo search for problems idx; returns (x_new, f_new, g_new, ok)."""
    k = len(idx)
    t = t0.copy()
    x_new, f_new = x.copy(), f.copy()
    g_new = np.zeros_like(x)
    ok = np.zeros(k, bool)
    pending = np.arange(k)
    for _ in range(max_backtracks):
        xt = x[pending] + t[pending, None] * p[pending]
        ft, gt = fun(xt, idx[pending])
        good = np.isfinite(ft) & (ft <= f[pending] + c1 * t[pending] * gp[pending])
        done = pending[good]
        x_new[done], f_new[done], g_new[done], ok[done] = xt[good], ft[good], gt[good], True
        bad, ftb = pending[~good], ft[~good]
        if bad.size == 0:
            break
        tb = t[bad]
        # minimizer of the quadratic through f(0), f'(0) = gp, f(t); clipped to [0.1 t, 0.5 t]
        denom = 2.0 * (ftb - f[bad] - gp[bad] * tb)
        with np.errstate(invalid="ignore", divide="ignore"):
            t_quad = -gp[bad] * tb**2 / denom
        t_quad = np.where(np.isfinite(t_quad), t_quad, 0.1 * tb)
        t[bad] = np.clip(t_quad, 0.1 * tb, 0.5 * tb)
        pending = bad
    return x_new, f_new, g_new, ok


def minimize_batched(
    fun: BatchedObjective,
    x0: np.ndarray,
    *,
    m: int = 10,
    max_iter: int = 500,
    gtol: float = 1e-9,
    ftol: float = 1e-13,
    c1: float = 1e-4,
    max_backtracks: int = 30,
    stall_window: int = 0,
    stall_rtol: float = 1e-6,
) -> BatchResult:
    """Minimize K independent objectives from the K rows of ``x0`` with L-BFGS, all at once."""
    x = np.array(x0, dtype=float)
    K, d = x.shape
    f, g = fun(x, np.arange(K))
    S, Y, rho = np.zeros((K, m, d)), np.zeros((K, m, d)), np.zeros((K, m))
    n_iter = np.zeros(K, int)
    converged = ~np.isfinite(f) | (np.abs(g).max(axis=1) <= gtol)
    active = ~converged
    fresh = np.ones(K, bool)  # no curvature pair yet: scale the first step by 1/‖g‖∞
    f_ref = f.copy()  # objective stall_window iterations ago
    for it in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        gi = g[idx]
        p = _two_loop(gi, S[idx], Y[idx], rho[idx])
        gp = np.einsum("kd,kd->k", p, gi)
        uphill = ~(gp < 0)
        if uphill.any():  # H lost positive definiteness: restart from steepest descent
            p[uphill], gp[uphill] = -gi[uphill], -np.einsum("kd,kd->k", gi[uphill], gi[uphill])
            rho[idx[uphill]] = 0.0
            fresh[idx[uphill]] = True
        t0 = np.where(fresh[idx], np.minimum(1.0, 1.0 / np.abs(gi).max(axis=1)), 1.0)
        x_new, f_new, g_new, ok = _line_search(fun, idx, x[idx], f[idx], p, gp, t0, c1, max_backtracks)
        n_iter[idx] += 1
        # a failed search means no decrease along a descent direction: converged to precision
        converged[idx[~ok]] = True
        active[idx[~ok]] = False
        acc = idx[ok]
        s, y = x_new[ok] - x[acc], g_new[ok] - g[acc]
        sy = np.einsum("kd,kd->k", s, y)
        store = sy > 1e-10 * np.linalg.norm(s, axis=1) * np.linalg.norm(y, axis=1)
        upd = acc[store]
        S[upd], Y[upd], rho[upd] = np.roll(S[upd], -1, 1), np.roll(Y[upd], -1, 1), np.roll(rho[upd], -1, 1)
        S[upd, -1], Y[upd, -1], rho[upd, -1] = s[store], y[store], 1.0 / sy[store]
        fresh[upd] = False
        decrease = f[acc] - f_new[ok]
        x[acc], f[acc], g[acc] = x_new[ok], f_new[ok], g_new[ok]
        stop = (np.abs(g[acc]).max(axis=1) <= gtol) | (decrease <= ftol * (1.0 + np.abs(f[acc])))
        converged[acc[stop]] = True
        active[acc[stop]] = False
        if stall_window and (it + 1) % stall_window == 0:
            stalled = active & (f_ref - f <= stall_rtol * (1.0 + np.abs(f)))
            active[stalled] = False
            f_ref = f.copy()
    return BatchResult(x=x, fun=f, n_iter=n_iter, converged=converged)
