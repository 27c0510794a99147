"""Batched L-BFGS: many independent small minimizations advanced together in numpy.

Why it exists: Approach 3 (Besiroglu et al. 2024) runs L-BFGS from a grid of ~4,500 starts, and again
for every bootstrap resample. One ``scipy.optimize.minimize`` call per start pays ~0.1 ms of Python
overhead per iteration per start (minutes in all); here one iteration of all K problems is a single
vectorized objective evaluation on a (K, n_points) array, so a start costs a few microseconds of
arithmetic per iteration, and problems that have stopped leave the batch.

Algorithm, per problem (Nocedal & Wright 2006, *Numerical Optimization*): direction p = -H g by the
two-loop recursion (Alg. 7.4) over the last ``m`` pairs (s, y), initial scale γ = sᵀy / yᵀy;
backtracking line search (Alg. 3.1, quadratic interpolation, step clipped to [0.1 t, 0.5 t]) from t = 1
until the Armijo condition f(x + t p) <= f(x) + c1 t gᵀp holds. Without a Wolfe search sᵀy > 0 is not
guaranteed, so a pair is kept only when sᵀy > 1e-10 ‖s‖ ‖y‖ (keeps H positive definite); a dropped
pair leaves an empty slot (ρ = 0). A problem stops when ‖g‖∞ <= gtol, when an iteration lowers f by
less than ftol (1 + |f|), or when its line search fails (no decrease along a descent direction: a
minimum to working precision).

Layout: the history is (m, K, d) with one ring position shared by all problems, so the recursion
reads contiguous (K, d) slices; finished problems are dropped from the working arrays when they
make up a tenth of them.
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
    converged: np.ndarray  # (K,) stopped by a tolerance, not by max_iter or pruning


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("kd,kd->k", a, b)


def _two_loop(g: np.ndarray, S: np.ndarray, Y: np.ndarray, rho: np.ndarray, head: int) -> np.ndarray:
    """-H g per row; S, Y (m, k, d), rho (m, k) = 1/sᵀy or 0 for an empty slot; newest at ``head``."""
    m = S.shape[0]
    q = g.copy()
    alphas = np.empty(rho.shape)
    slots = [(head - i) % m for i in range(m)]  # newest first
    for i, j in enumerate(slots):
        alphas[i] = rho[j] * _dot(S[j], q)
        q -= alphas[i, :, None] * Y[j]
    yy = _dot(Y[head], Y[head])
    gamma = np.where(rho[head] > 0, _dot(S[head], Y[head]) / np.where(yy > 0, yy, 1.0), 1.0)
    r = gamma[:, None] * q
    for i in range(m - 1, -1, -1):
        j = slots[i]
        beta = rho[j] * _dot(Y[j], r)
        r += S[j] * (alphas[i] - beta)[:, None]
    return -r


def _line_search(fun, ids, x, f, p, gp, t, c1, max_backtracks):
    """Backtracking Armijo search; returns (x_new, f_new, g_new, ok); rows not ok keep x and f."""
    x_new = x + t[:, None] * p
    f_new, g_new = fun(x_new, ids)
    ok = np.isfinite(f_new) & (f_new <= f + c1 * t * gp)
    pending = np.flatnonzero(~ok)
    for _ in range(max_backtracks):
        if pending.size == 0:
            break
        tb, fb = t[pending], f_new[pending]
        # minimizer of the quadratic through f(0), f'(0) = gp, f(t); clipped to [0.1 t, 0.5 t]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            t_quad = -gp[pending] * tb**2 / (2.0 * (fb - f[pending] - gp[pending] * tb))
        t[pending] = np.clip(np.where(np.isfinite(t_quad), t_quad, 0.1 * tb), 0.1 * tb, 0.5 * tb)
        xt = x[pending] + t[pending, None] * p[pending]
        ft, gt = fun(xt, ids[pending])
        good = np.isfinite(ft) & (ft <= f[pending] + c1 * t[pending] * gp[pending])
        x_new[pending], f_new[pending], g_new[pending] = xt, ft, gt
        ok[pending[good]] = True
        pending = pending[~good]
    x_new[~ok], f_new[~ok] = x[~ok], f[~ok]
    return x_new, f_new, g_new, ok


class _State:
    """Working arrays of the problems still running (rows ``ids`` of the batch)."""

    def __init__(self, x, f, g, m, groups):
        k, d = x.shape
        self.ids = np.arange(k)
        self.x, self.f, self.g, self.groups = x, f, g, groups
        self.S, self.Y, self.rho = np.zeros((m, k, d)), np.zeros((m, k, d)), np.zeros((m, k))
        self.fresh = np.ones(k, bool)  # no curvature pair yet: scale the first step by 1/‖g‖∞
        self.alive = np.ones(k, bool)
        self.f_ref = f.copy()  # objective at the last pruning check
        self.best = np.full(groups.max() + 1, np.inf)  # best objective per group, over all problems
        self.note_best()

    def note_best(self) -> None:
        np.minimum.at(self.best, self.groups, np.where(np.isfinite(self.f), self.f, np.inf))

    def compact(self, out: BatchResult) -> None:
        """Write every row's x, f to ``out`` and drop the finished rows."""
        out.x[self.ids], out.fun[self.ids] = self.x, self.f
        self.note_best()
        keep = self.alive
        for name in ("ids", "x", "f", "g", "groups", "fresh", "alive", "f_ref"):
            setattr(self, name, getattr(self, name)[keep])
        self.S, self.Y, self.rho = self.S[:, keep], self.Y[:, keep], self.rho[:, keep]


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
    stall_rtol: float = 1e-4,
    stall_ratio: float = 1.5,
    groups: np.ndarray | None = None,
    scale_first: bool = True,
) -> BatchResult:
    """Minimize K independent objectives from the K rows of ``x0`` with L-BFGS, all at once.

    Multi-start pruning (off unless ``stall_window`` > 0): every ``stall_window`` iterations, a problem
    is stopped when it lowered f by less than ``stall_rtol`` (1 + |f|) over the window *and* its f is
    above ``stall_ratio`` x the best f of its group (``groups``: problem -> group id, e.g. the
    resample it belongs to; default one group). The best start of a group is never pruned.

    ``scale_first``: the first step (and the first after a restart) is 1/‖g‖∞ long, a guess of scale for
    an unknown problem; False tries the full step -g first, right when the variables are preconditioned
    so that the Hessian is near the identity (``bootstrap.Preconditioner``): -g is then Newton's step.
    """
    x = np.array(x0, dtype=float)
    K = len(x)
    f, g = fun(x, np.arange(K))
    out = BatchResult(x=x.copy(), fun=f.copy(), n_iter=np.zeros(K, int), converged=np.zeros(K, bool))
    groups = np.zeros(K, int) if groups is None else np.asarray(groups)
    done = ~np.isfinite(f) | (np.abs(g).max(axis=1) <= gtol)
    out.converged[done] = True
    st = _State(x, f, g, m, groups)
    st.alive &= ~done
    head = m - 1
    for it in range(max_iter):
        if st.alive.sum() < 0.9 * len(st.alive):
            st.compact(out)
        a = np.flatnonzero(st.alive)
        if a.size == 0:
            break
        p = _two_loop(st.g, st.S, st.Y, st.rho, head)[a]
        ga = st.g[a]
        gp = _dot(p, ga)
        uphill = ~(gp < 0)
        if uphill.any():  # H lost positive definiteness: restart from steepest descent
            p[uphill], gp[uphill] = -ga[uphill], -_dot(ga[uphill], ga[uphill])
            st.rho[:, a[uphill]] = 0.0
            st.fresh[a[uphill]] = True
        t0 = np.where(st.fresh[a] & scale_first, np.minimum(1.0, 1.0 / np.abs(ga).max(axis=1)), 1.0)
        x_new, f_new, g_new, ok = _line_search(fun, st.ids[a], st.x[a], st.f[a], p, gp, t0, c1,
                                               max_backtracks)
        out.n_iter[st.ids[a]] += 1
        s, y = x_new - st.x[a], g_new - ga
        sy = _dot(s, y)
        keep = ok & (sy > 1e-10 * np.linalg.norm(s, axis=1) * np.linalg.norm(y, axis=1))
        head = (head + 1) % m
        st.S[head], st.Y[head], st.rho[head] = 0.0, 0.0, 0.0
        st.S[head, a[keep]], st.Y[head, a[keep]], st.rho[head, a[keep]] = s[keep], y[keep], 1.0 / sy[keep]
        st.fresh[a[keep]] = False
        decrease = st.f[a] - f_new
        st.x[a], st.f[a], st.g[a[ok]] = x_new, f_new, g_new[ok]
        # a failed line search: no decrease along a descent direction, a minimum to working precision
        stop = ~ok | (np.abs(st.g[a]).max(axis=1) <= gtol) | (decrease <= ftol * (1.0 + np.abs(f_new)))
        out.converged[st.ids[a[stop]]] = True
        st.alive[a[stop]] = False
        if stall_window and (it + 1) % stall_window == 0:
            _prune(st, stall_rtol, stall_ratio)
    st.compact(out)
    return out


def _prune(st: _State, rtol: float, ratio: float) -> None:
    """Stop problems that are slow and well above the best of their group (see minimize_batched)."""
    st.note_best()
    slow = st.f_ref - st.f <= rtol * (1.0 + np.abs(st.f))
    st.alive &= ~(slow & (st.f > ratio * st.best[st.groups]))
    st.f_ref = st.f.copy()
