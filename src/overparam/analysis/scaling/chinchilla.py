"""Chinchilla Approach 3, fitted the way Besiroglu et al. 2024 refit it, and compute-optimal allocation.

Law (Hoffmann et al. 2022, eq. 2): L(N, D) = E + A / N^α + B / D^β.

Fit (Besiroglu, Erdil, Barnett, You 2024, "Chinchilla Scaling: A replication attempt", §2): log-sum-exp
form log L̂ = LSE(a - α log N, b - β log D, e) with A = exp(a), B = exp(b), E = exp(e); minimize
Σ_i Huber_δ(log L̂_i - log L_i), δ = 1e-3, with L-BFGS from every point of the grid α, β ∈ {0, 0.5, …, 2},
e ∈ {-1, -0.5, …, 1}, a, b ∈ {0, 5, …, 25} (4,500 starts) and keep the best.
Huber_δ(r) = r²/2 if |r| <= δ else δ(|r| - δ/2); written c (r - c/2) with c = clip(r, -δ, δ).

How it is made fast (measured in ``benchmarks/fit_speed.py``: grid + 1,000 resamples in 4-12 s on a
shared 2-core machine, against ~2-3 minutes for the grid alone with one scipy L-BFGS-B call per start):

- All 4,500 starts run *together* through a batched L-BFGS (``lbfgs.py``): one numpy evaluation of the
  objective and gradient on a (starts, points) array per iteration, instead of one scipy call per start.
  The evaluation is bound by exp/log (2 exp + 1 log per point and start): it uses
  log L̂ = e + log(1 + exp(a - e - α log N) + exp(b - e - β log D)), one exp fewer than the max-shifted
  LSE; an overflow gives f = inf, which the line search rejects.
- Two precisions: the search from every start (at most ``search_iter`` iterations) runs in float32, where
  numpy's exp/log are SIMD (~4x cheaper than float64 on AVX2); the 8 best distinct end points are then
  refined in float64 (``max_iter``). On the Chinchilla points the optimum equals a float64-only search
  to 14 digits of the objective.
- A start whose objective fell by less than ``stall_rtol`` (1 + f) over ``stall_window`` iterations *and*
  is above ``stall_ratio`` x the best objective is stopped: starts where a term has vanished
  (A/N^α ≈ 0: the fit is a constant) crawl along that plateau at ~20x the best objective. The best
  start is never stopped, so a single start is never cut short.
- Bootstrap: each resample is a weight vector (counts) over the original points, so all resamples are
  one batch too. Each starts from (i) the full-data optimum, (ii) the other distinct local minima of
  the full-data search within 1.5x its objective, (iii) the grid point that is best *for that
  resample*, found for all resamples at once as W @ H.T (W: resample counts, H: Huber loss of every
  grid start at every point). Starting every resample from all 4,500 grid points would cost ~1,000x
  the full fit; the best end point of each resample is refined in float64.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from overparam.analysis.scaling.base import ScalingLawFitter
from overparam.analysis.scaling.bootstrap import (
    Preconditioner,
    fd_hessian,
    refine,
    resample_blocks,
    search_rows,
)
from overparam.analysis.scaling.lbfgs import minimize_batched
from overparam.errors import OverparamError

DELTA = 1e-3  # Huber δ on log residuals (Besiroglu et al. 2024)
# starts x points per block of the objective: the temporaries stay in cache and are reused (a fresh
# array of millions of elements costs page faults: ~6 ns an element, more than the exp it holds)
_BLOCK = 1 << 15


def besiroglu_grid() -> np.ndarray:
    """The 4,500 starts of Besiroglu et al. 2024, as rows (a, b, e, α, β)."""
    ab = np.arange(0.0, 30.0, 5.0)
    e = np.arange(-1.0, 1.5, 0.5)
    exps = np.arange(0.0, 2.5, 0.5)
    return np.array(list(itertools.product(ab, ab, e, exps, exps)))


def huber_terms(theta: np.ndarray, ln: np.ndarray, ld: np.ndarray, ll: np.ndarray, delta: float):
    """Per start and point: Huber loss h, clipped residual c, weights p1, p2 of the N and D terms.

    theta (k, 5) rows (a, b, e, α, β); ln, ld, ll (n,) logs of N, D, L, whose dtype sets the
    arithmetic's. Returns arrays (k, n).
    """
    with np.errstate(over="ignore", invalid="ignore"):  # far-off starts overflow float32: they lose, harmlessly
        a, b, e, alpha, beta = theta.astype(ln.dtype).T
        u1 = np.multiply.outer(-alpha, ln)
        u1 += (a - e)[:, None]
        np.exp(u1, out=u1)  # A N^-α / E
        u2 = np.multiply.outer(-beta, ld)
        u2 += (b - e)[:, None]
        np.exp(u2, out=u2)  # B D^-β / E
        s = u1 + u2
        s += 1.0
        r = np.log(s)  # log(1 + s) loses only absolute precision ~eps, as log1p would; it is cheaper
        r += e[:, None] - ll  # log L̂ - log L
        c = np.clip(r, -delta, delta)
        r -= 0.5 * c
        r *= c  # Huber loss
        u1 /= s  # ∂ log L̂ / ∂a
        u2 /= s  # ∂ log L̂ / ∂b
    return r, c, u1, u2


def objective(theta, ln, ld, ll, weights, delta):
    """Σ_i w_i Huber_δ(r_i) / δ and its gradient in (a, b, e, α, β); weights (k, n) or (n,).

    Returned in float64 whatever the arithmetic's dtype. Dividing by δ puts the objective near 1,
    where L-BFGS's tolerances are meaningful.
    """
    h, c, p1, p2 = huber_terms(theta, ln, ld, ll, delta)
    with np.errstate(invalid="ignore"):  # inf * 0 weight: nan, rejected by the line search
        h *= weights
        c *= weights / delta
    f = h.sum(axis=1, dtype=float) / delta
    p1 *= c
    p2 *= c
    s1, s2 = p1.sum(1, dtype=float), p2.sum(1, dtype=float)
    # einsum, not a BLAS matrix-vector product: threaded gemv on a long single row costs ~20 ns an element
    g = np.stack([s1, s2, c.sum(1, dtype=float) - s1 - s2, -np.einsum("kn,n->k", p1, ln),
                  -np.einsum("kn,n->k", p2, ld)], axis=1)
    return f, g.astype(float)


def _batched_objective(ln, ld, ll, weights, rows, delta, dtype=np.float64):
    """fun(x, idx) for minimize_batched: problem idx uses weights[rows[idx]] (one row per resample).

    Evaluated in blocks of at most ``_BLOCK`` starts x points (more points than that: one start at a
    time, the points in pieces whose sums add up), so the temporaries stay in cache and are reused.
    """
    ln, ld, ll, weights = (np.asarray(v, dtype) for v in (ln, ld, ll, weights))
    n = len(ll)
    per_block = max(1, _BLOCK // max(n, 1))  # starts per block
    cols = [slice(lo, lo + _BLOCK) for lo in range(0, n, _BLOCK)] if n > _BLOCK else [slice(None)]

    def fun(x, idx):
        f, g = np.zeros(len(x)), np.zeros((len(x), x.shape[1]))
        for lo in range(0, len(x), per_block):
            sl = slice(lo, lo + per_block)
            for cs in cols:
                w = weights[0, cs] if len(weights) == 1 else weights[rows[idx[sl]], cs]
                fb, gb = objective(x[sl], ln[cs], ld[cs], ll[cs], w, delta)
                f[sl] += fb
                g[sl] += gb
        return f, g

    return fun


def _logs(data: pd.DataFrame):
    return tuple(np.log(data[c].to_numpy()) for c in ("params", "tokens", "loss"))


class ChinchillaFitter(ScalingLawFitter):
    """Approach 3: L = E + A/N^α + B/D^β, Huber on log residuals, batched L-BFGS from a 4,500-point grid.

    ``init``: rows (E, A, B, α, β) to start from instead of the Besiroglu et al. grid; ``delta``: the
    Huber δ; ``search_iter`` / ``max_iter``: iteration caps of the float32 search and the float64
    refinement; ``stall_*``: the pruning of stalled starts (module docstring); ``bootstrap``: resamples
    for ``ci_``; ``seed``: their random generator. Learned: ``params_``, ``search_`` (starts, best
    objective Σ Huber, starts reaching it), ``local_minima_``, and with a bootstrap ``ci_``.
    """

    law = "chinchilla"
    param_names = ("E", "A", "B", "alpha", "beta")
    x_column = "params"

    def __init__(self, delta: float = DELTA, init=None, search_iter: int = 300, max_iter: int = 2000,
                 stall_window: int = 20, stall_rtol: float = 1e-4, stall_ratio: float = 1.5,
                 bootstrap: int = 0, seed: int = 0) -> None:
        self.delta = delta
        self.init = init
        self.search_iter = search_iter
        self.max_iter = max_iter
        self.stall_window = stall_window
        self.stall_rtol = stall_rtol
        self.stall_ratio = stall_ratio
        self.bootstrap = bootstrap
        self.seed = seed

    def _check_options(self) -> None:
        super()._check_options()
        if not self.delta > 0:
            raise OverparamError(f"delta must be > 0, got {self.delta!r}")

    def _starts(self) -> np.ndarray:
        if self.init is None:
            return besiroglu_grid()
        init = np.atleast_2d(np.asarray(self.init, dtype=float))
        if init.shape[1] != 5 or (init[:, :3] <= 0).any():
            raise OverparamError("init must be rows (E, A, B, alpha, beta) with E, A, B > 0")
        E, A, B, alpha, beta = init.T
        return np.stack([np.log(A), np.log(B), np.log(E), alpha, beta], axis=1)

    def _minimize(self, fun, starts, groups, max_iter, precondition=None):
        options = dict(max_iter=max_iter, gtol=1e-9, ftol=1e-13, stall_window=self.stall_window,
                       stall_rtol=self.stall_rtol, stall_ratio=self.stall_ratio, groups=groups)
        if precondition is not None:
            return refine(fun, starts, precondition, **options)
        return minimize_batched(fun, starts, **options)

    def _search(self, data, starts, weights=None, groups=None, precondition=None):
        """L-BFGS from every start in float32 on the search points, then the best per group refined in
        float64 on every point.

        weights (R, n) and groups (k,) map start k to resample groups[k]; None: one group, unit weights.
        The search points are all points up to ``SEARCH_POINTS``, else a fixed subsample
        (``bootstrap.search_rows``). The refinement starts from the 8 best distinct end points of a
        single group, or from the best end point of each resample (``precondition``: in its variables).
        Returns (x, f) of the refined points, the float32 result and the search points' indices.
        """
        ln, ld, ll = _logs(data)
        rows = search_rows(len(ll))
        w = np.ones((1, len(ll))) if weights is None else weights
        g = np.zeros(len(starts), int) if groups is None else groups
        coarse = self._minimize(_batched_objective(ln[rows], ld[rows], ll[rows], w[:, rows], g, self.delta,
                                                   np.float32), starts, g, self.search_iter)
        if groups is None:
            seeds = _distinct_minima(coarse.x, coarse.fun, keep=8)
            if len(seeds) == 0:
                raise OverparamError("chinchilla: the objective is not finite at any start")
            seed_groups = np.zeros(len(seeds), int)
        else:
            f = np.where(np.isfinite(coarse.fun), coarse.fun, np.inf).reshape(len(w), -1)
            seeds = coarse.x[np.arange(len(w)) * f.shape[1] + np.argmin(f, axis=1)]
            seed_groups = np.arange(len(w))
        fine = self._minimize(_batched_objective(ln, ld, ll, w, seed_groups, self.delta), seeds, seed_groups,
                              self.max_iter, precondition)
        return fine.x, fine.fun, coarse, rows

    def _solve(self, data: pd.DataFrame, start: np.ndarray | None) -> np.ndarray:
        starts = self._starts() if start is None else np.atleast_2d(start)
        x, f, coarse, rows = self._search(data, starts)
        best = int(np.argmin(np.where(np.isfinite(f), f, np.inf)))
        if start is None:
            # reached the best: within 1e-5 of the refined optimum (searched on a subsample: of the
            # search's own best, the only objective its end points can be compared with)
            ref = f[best] if len(rows) == len(data) else np.min(np.where(np.isfinite(coarse.fun), coarse.fun, np.inf))
            near = coarse.fun <= ref * (1 + 1e-5) + 1e-9
            self.search_ = {"starts": len(starts), "objective": float(f[best] * self.delta),
                            "starts_reaching_best": int(near.sum()), "points_searched": len(rows)}
            self.local_minima_ = _distinct_minima(x, f, tol=1e-2, keep=3, within=1.5)
        return x[best]

    def _bootstrap_thetas(self, data: pd.DataFrame, rng: np.random.Generator) -> list[np.ndarray]:
        """Every resample refitted from the full-data minima and its own best grid start (module
        docstring), in blocks of resamples; the float64 refinement preconditioned at θ̂."""
        ln, ld, ll = _logs(data)
        rows = search_rows(len(ll))
        grid = self._starts()
        per_block = max(1, _BLOCK // len(rows))
        H = np.concatenate([huber_terms(grid[i:i + per_block], ln[rows], ld[rows], ll[rows], self.delta)[0]
                            for i in range(0, len(grid), per_block)])
        H = np.where(np.isfinite(H), H, 1e300)
        full = _batched_objective(ln, ld, ll, np.ones((1, len(ll))), np.zeros(1, int), self.delta)
        hessian = fd_hessian(lambda x: full(x, np.zeros(len(x), int))[1], self.theta_)
        precondition = Preconditioner(self.theta_, hessian)
        out: list[np.ndarray] = []
        for W in resample_blocks(rng, len(ll), int(self.bootstrap)):
            R = len(W)
            best_grid = grid[np.argmin(W[:, rows] @ H.T, axis=1)]  # (R, 5): the best grid start per resample
            shared = np.repeat(self.local_minima_[None], R, 0)  # full-data optimum, other good minima
            starts = np.concatenate([shared, best_grid[:, None]], axis=1)  # (R, s, 5)
            groups = np.repeat(np.arange(R), starts.shape[1])
            x = self._search(data, starts.reshape(-1, 5), W, groups, precondition)[0]
            out.extend(x)
        return out

    @np.errstate(over="ignore", invalid="ignore")  # constants beyond float range: inf/nan, null in JSON
    def _predict(self, theta, data):
        a, b, e, alpha, beta = theta
        n, d = data["params"].to_numpy(), data["tokens"].to_numpy()
        return np.exp(e) + np.exp(a) * n**-alpha + np.exp(b) * d**-beta

    @np.errstate(over="ignore")  # a resample's log A beyond float range: A = inf, null in JSON
    def _named(self, theta):
        a, b, e, alpha, beta = (float(v) for v in theta)
        return {"E": np.exp(e), "A": np.exp(a), "B": np.exp(b), "alpha": alpha, "beta": beta}

    def size_curve(self, n: np.ndarray) -> np.ndarray:
        """L(N) with unlimited data: E + A / N^α (inf or nan where the constants overflow)."""
        self._check_fitted()
        p = self.params_
        with np.errstate(over="ignore", invalid="ignore"):
            return p["E"] + p["A"] * np.asarray(n, float) ** -p["alpha"]


def _distinct_minima(x: np.ndarray, f: np.ndarray, tol: float = 1e-3, keep: int = 8,
                     within: float = np.inf) -> np.ndarray:
    """Up to ``keep`` end points, best first, differing pairwise by > tol in some coordinate, with
    objective <= ``within`` x the best."""
    out: list[np.ndarray] = []
    order = np.argsort(np.where(np.isfinite(f), f, np.inf))
    for i in order:
        if not np.isfinite(f[i]) or f[i] > within * f[order[0]]:
            break
        if all(np.abs(x[i] - y).max() > tol for y in out):
            out.append(x[i])
            if len(out) == keep:
                break
    return np.array(out)


# -- compute-optimal allocation (Hoffmann et al. 2022, Appendix D.2) ----------------------------------


def allocation_exponents(p: dict[str, float]) -> dict[str, float]:
    """a = β/(α+β), b = α/(α+β), G = (αA / (βB))^(1/(α+β)): N_opt = G (C/6)^a, D_opt = (C/6)^b / G.

    A degenerate fit (B = 0, α + β = 0, a constant that overflowed) gives inf or nan, reported as null.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        s = np.float64(p["alpha"] + p["beta"])
        return {"a": float(p["beta"] / s) if s else math.nan, "b": float(p["alpha"] / s) if s else math.nan,
                "G": float((p["alpha"] * np.float64(p["A"]) / (p["beta"] * np.float64(p["B"]))) ** (1.0 / s))}


def optimal_allocation(p: dict[str, float], flops) -> tuple[np.ndarray, np.ndarray]:
    """(N_opt, D_opt) minimizing L(N, D) subject to 6 N D = C (Hoffmann et al. 2022, eq. 4)."""
    k = allocation_exponents(p)
    c6 = np.asarray(flops, float) / 6.0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return k["G"] * c6 ** k["a"], c6 ** k["b"] / k["G"]


def allocation_for_loss(p: dict[str, float], loss) -> tuple[np.ndarray, np.ndarray]:
    """Compute-optimal (N, D) whose predicted loss is ``loss`` (nan where loss <= E).

    At the optimum αA/N^α = βB/D^β (Lagrange condition of eq. 4), so L - E = (1 + α/β) A/N^α, giving
    N = [A (α+β) / (β (L-E))]^(1/α) and D = [B (α+β) / (α (L-E))]^(1/β).
    """
    gap = np.asarray(loss, float) - p["E"]
    gap = np.where(gap > 0, gap, np.nan)
    s = p["alpha"] + p["beta"]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # degenerate constants: inf/nan
        n = (p["A"] * s / (p["beta"] * gap)) ** (1.0 / p["alpha"])
        d = (p["B"] * s / (p["alpha"] * gap)) ** (1.0 / p["beta"])
    return n, d
