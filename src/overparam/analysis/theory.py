"""Closed-form test-risk curves of over-parameterized least squares, to overlay on measured sweeps.

Notation: n samples, p features, gamma = p/n, r2 = ||beta||^2 (signal energy), sigma2 = noise variance.
"Risk" is always the *excess* test risk E[(f(x) - f_hat(x))^2]: the noise sigma2 of a fresh label is
not included, so predicting 0 costs r2. Every formula has the shape r2 * B + sigma2 * V, and each
curve computes its two coefficients (bias B, variance V) once; `curve` reports both terms.

Pure numpy/scipy: this module is imported by the CLI and the report, neither of which needs torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import integrate, optimize, special

from overparam.errors import OverparamError

DEFAULT_GRID_POINTS = 50  # points of an A:B grid when K is not given
GEOMETRIC_SPAN = 10.0  # an A:B grid is geometric when B/A exceeds this, linear otherwise

ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda z: np.maximum(z, 0.0),
    "tanh": np.tanh,
    "sigmoid": special.expit,
    "softplus": lambda z: np.logaddexp(0.0, z),
    "erf": special.erf,
    "silu": lambda z: z * special.expit(z),
}


# ---------------------------------------------------------------- input checks and output shape


def _check_nonneg(**values: float) -> None:
    for name, v in values.items():
        if not math.isfinite(v) or v < 0:
            raise OverparamError(f"{name} must be a finite number >= 0, got {v}")


def _as_positive(name: str, x: ArrayLike) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    bad = ~(np.isfinite(arr) & (arr > 0))
    if np.any(bad):
        raise OverparamError(f"{name} must be finite and > 0, got {arr[bad].ravel()[0]}")
    return arr


def _out(x: np.ndarray) -> Any:
    """A float for scalar input, an array otherwise."""
    return float(x) if np.ndim(x) == 0 else x


# ---------------------------------------------------------------- ridgeless, isotropic, asymptotic


def _ridgeless_terms(gamma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        under = gamma < 1
        bias = np.where(under, 0.0, 1.0 - 1.0 / gamma)
        var = np.where(under, gamma / (1.0 - gamma), 1.0 / (gamma - 1.0))
    var = np.where(gamma == 1, np.inf, var)
    return bias, var


def ridgeless_risk(gamma: ArrayLike, r2: float = 1.0, sigma2: float = 1.0) -> Any:
    """Excess risk of min-norm least squares, isotropic features, n, p -> inf with p/n -> gamma.

    Why: the textbook double-descent curve; the peak at gamma = 1 is where X has a tiny singular value.
    Formula (Hastie, Montanari, Rosset, Tibshirani 2019, "Surprises in high-dimensional ridgeless
    least squares interpolation", Thm 1):
        gamma < 1:  sigma2 * gamma / (1 - gamma)
        gamma > 1:  r2 * (1 - 1/gamma) + sigma2 / (gamma - 1)
        gamma = 1:  inf
    For r2 > sigma2 the gamma > 1 branch is smallest at gamma = sqrt(SNR) / (sqrt(SNR) - 1), SNR = r2/sigma2.
    """
    _check_nonneg(r2=r2, sigma2=sigma2)
    bias, var = _ridgeless_terms(_as_positive("gamma", gamma))
    return _out(r2 * bias + sigma2 * var)


# ---------------------------------------------------------------- finite n, p, Gaussian design


def _finite_terms(n: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        under, over = p <= n - 2, p >= n + 2
        bias = np.where(over, 1.0 - n / p, 0.0)
        var = np.where(under, p / (n - p - 1), np.where(over, n / (p - n - 1), np.inf))
    return bias, var


def finite_risk(n: ArrayLike, p: ArrayLike, r2: float = 1.0, sigma2: float = 1.0) -> Any:
    """Exact expected excess risk of min-norm least squares with x ~ N(0, I_p), any fixed beta.

    Why: the asymptotic curve's finite-size version; it is what a `teacher` sweep at one n measures.
    Formula (inverse-Wishart means; Breiman & Freedman 1983; Belkin, Hsu, Xu 2019, "Two models of
    double descent for weak features", Thm 1 with all features used):
        p <= n - 2:  sigma2 * p / (n - p - 1)
        p >= n + 2:  r2 * (1 - n/p) + sigma2 * n / (p - n - 1)
        otherwise:   inf (the expectation diverges)
    p may be any real number (gamma * n), so the curve can be drawn continuously.
    """
    _check_nonneg(r2=r2, sigma2=sigma2)
    bias, var = _finite_terms(_as_positive("n", n), _as_positive("p", p))
    return _out(r2 * bias + sigma2 * var)


def _weak_terms(n: np.ndarray, p: np.ndarray, total: float, r2: float, sigma2: float):
    seen = r2 * p / total  # ||beta_P||^2: beta's energy spread evenly over the `total` features
    unseen = r2 - seen  # ||beta_Pc||^2 acts as extra label noise for the learner
    bias, var = _finite_terms(n, p)
    return unseen + seen * bias, (unseen + sigma2) * var


def weak_features_risk(
    n: ArrayLike, p: ArrayLike, total: float, r2: float = 1.0, sigma2: float = 1.0
) -> Any:
    """Excess risk when the learner sees only p of `total` i.i.d. N(0, 1) features of a linear target.

    Why: a model that grows by adding features (not a fixed-dimension problem) still double-descends;
    the omitted features' signal behaves as noise. Excess means over sigma2, the risk of the true beta.
    Formula (Belkin, Hsu, Xu 2019, "Two models of double descent for weak features", Thm 1), with
    beta's energy spread evenly, ||beta_P||^2 = r2 p/total and ||beta_Pc||^2 = r2 (1 - p/total):
        p <= n - 2:  ||beta_Pc||^2 + (||beta_Pc||^2 + sigma2) * p / (n - p - 1)
        p >= n + 2:  ||beta_Pc||^2 + ||beta_P||^2 (1 - n/p) + (||beta_Pc||^2 + sigma2) * n / (p - n - 1)
    At p = total this is `finite_risk`.
    """
    _check_nonneg(r2=r2, sigma2=sigma2)
    p_arr = _as_positive("p", p)
    if not total > 0 or np.any(p_arr > total):
        raise OverparamError(
            f"weak features need 0 < p <= total features (total={total}, max p={p_arr.max()})")
    bias, var = _weak_terms(_as_positive("n", n), p_arr, float(total), r2, sigma2)
    return _out(bias + var)


# ---------------------------------------------------------------- ridge, isotropic, asymptotic


def mp_stieltjes(lam: ArrayLike, gamma: ArrayLike) -> tuple[Any, Any]:
    """m(-lam) and m'(-lam) of the Marchenko-Pastur law with ratio gamma (spectrum of X^T X / n).

    m(z) = int dF(s) / (s - z) solves gamma z m^2 + (z - 1 + gamma) m + 1 = 0; at z = -lam < 0,
        m = 2 / (a + sqrt(a^2 + 4 gamma lam)),  a = 1 - gamma + lam   (the cancellation-free root),
        m' = (gamma m^2 + m) / (2 gamma lam m + a)                     (implicit differentiation).
    """
    lam, gamma = np.broadcast_arrays(np.asarray(lam, float), np.asarray(gamma, float))
    a = 1.0 - gamma + lam
    m = 2.0 / (a + np.sqrt(a * a + 4.0 * gamma * lam))
    dm = (gamma * m * m + m) / (2.0 * gamma * lam * m + a)
    return _out(m), _out(dm)


def _ridge_terms(gamma: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lam^2 m', gamma (m - lam m')); for gamma > 1 through the companion transform v of X X^T / n.

    m has a pole (1 - 1/gamma)/lam from the zero eigenvalues when gamma > 1, and m - lam m' then
    cancels it catastrophically at small lam. With v(z) = gamma m(z) - (1 - gamma)/z, regular at 0,
    and v(z) = m_{1/gamma}(z/gamma) / gamma, the terms become (1 - 1/gamma) + lam^2 v'/gamma and v - lam v'.
    """
    gamma, lam = np.broadcast_arrays(gamma, lam)
    m, dm = (np.asarray(x) for x in mp_stieltjes(lam, gamma))
    under = (lam * lam * dm, gamma * (m - lam * dm))
    m1, dm1 = (np.asarray(x) for x in mp_stieltjes(lam / gamma, 1.0 / gamma))
    v, dv = m1 / gamma, dm1 / gamma**2
    over = (1.0 - 1.0 / gamma + lam * lam * dv / gamma, v - lam * dv)
    return np.where(gamma > 1, over[0], under[0]), np.where(gamma > 1, over[1], under[1])


def ridge_risk(gamma: ArrayLike, lam: ArrayLike, r2: float = 1.0, sigma2: float = 1.0) -> Any:
    """Excess risk of ridge regression, beta_hat = argmin ||y - X b||^2 / n + lam ||b||^2, x ~ N(0, I_p).

    Why: shows how a penalty removes the gamma = 1 peak; lam -> 0 recovers `ridgeless_risk`.
    Formula (Hastie, Montanari, Rosset, Tibshirani 2019, Thm 5 / Cor 5, isotropic case), with m the
    Marchenko-Pastur Stieltjes transform (`mp_stieltjes`):
        r2 * lam^2 * m'(-lam) + sigma2 * gamma * (m(-lam) - lam * m'(-lam))
    """
    _check_nonneg(r2=r2, sigma2=sigma2)
    lam_arr = np.asarray(lam, dtype=float)
    if not np.all(np.isfinite(lam_arr)) or np.any(lam_arr < 0):
        raise OverparamError(f"lam must be finite and >= 0, got {lam}")
    gamma_arr = _as_positive("gamma", gamma)
    if np.all(lam_arr == 0):
        return ridgeless_risk(gamma_arr, r2, sigma2)
    bias, var = _ridge_terms(gamma_arr, lam_arr)
    return _out(r2 * bias + sigma2 * var)


def optimal_ridge_lambda(gamma: ArrayLike, r2: float = 1.0, sigma2: float = 1.0) -> Any:
    """The risk-minimizing penalty lam* = sigma2 * gamma / r2 (objective normalized by n).

    Why: with isotropic beta the ridge estimator at lam* is the Bayes posterior mean.
    Formula: Dobriban & Wager 2018, "High-dimensional asymptotics of prediction: ridge regression
    and classification"; Hastie et al. 2019, Cor 5.
    """
    _check_nonneg(r2=r2, sigma2=sigma2)
    if r2 == 0:
        raise OverparamError("optimal ridge needs r2 > 0 (with no signal, lam* is infinite)")
    return _out(sigma2 * _as_positive("gamma", gamma) / r2)


def optimal_ridge_risk(gamma: ArrayLike, r2: float = 1.0, sigma2: float = 1.0) -> Any:
    """Excess risk of ridge at lam* = sigma2 * gamma / r2: a curve increasing in gamma, with no peak.

    Why: Nakkiran, Venkat, Kakade, Ma 2020 ("Optimal regularization can mitigate double descent")
    show that tuning the penalty makes the isotropic curve monotone: double descent is a symptom of
    under-regularization. Formula: at lam* the bias and variance terms of `ridge_risk` combine to
        sigma2 * gamma * m(-lam*)     (Hastie et al. 2019, Cor 5; Dobriban & Wager 2018).
    """
    gamma_arr = _as_positive("gamma", gamma)
    lam = np.asarray(optimal_ridge_lambda(gamma_arr, r2, sigma2))
    if sigma2 == 0:  # lam* = 0: min-norm interpolation is optimal without noise
        return ridgeless_risk(gamma_arr, r2, 0.0)
    m, _ = mp_stieltjes(lam, gamma_arr)
    return _out(sigma2 * gamma_arr * np.asarray(m))


# ---------------------------------------------------------------- random features (Mei & Montanari)


def activation_constants(activation: str | Callable[[np.ndarray], np.ndarray]) -> tuple[float, float, float]:
    """(mu0, mu1, mu_star) of an activation under G ~ N(0, 1).

    mu0 = E[s(G)], mu1 = E[G s(G)], mu_star^2 = E[s(G)^2] - mu0^2 - mu1^2: the constant, linear and
    nonlinear parts of the activation (Mei & Montanari 2019, Assumption 1). ReLU in closed form
    (1/sqrt(2 pi), 1/2, sqrt(1/4 - 1/(2 pi))); others by adaptive quadrature.
    """
    if activation == "relu":
        return 1 / math.sqrt(2 * math.pi), 0.5, math.sqrt(0.25 - 1 / (2 * math.pi))
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise OverparamError(f"unknown activation '{activation}' (choose from {', '.join(ACTIVATIONS)})")
        activation = ACTIVATIONS[activation]
    fn = activation

    def gauss_mean(g: Callable[[float], float]) -> float:
        dens = 1 / math.sqrt(2 * math.pi)
        return integrate.quad(lambda z: g(z) * dens * math.exp(-z * z / 2), -np.inf, np.inf, limit=200)[0]

    def s(z: float) -> float:
        return float(fn(np.asarray(z)))

    mu0 = gauss_mean(s)
    mu1 = gauss_mean(lambda z: z * s(z))
    second = gauss_mean(lambda z: s(z) ** 2)
    return mu0, mu1, math.sqrt(max(second - mu0**2 - mu1**2, 0.0))


def _rf_chi_ridgeless(psi1: np.ndarray, psi2: np.ndarray, zeta: float) -> np.ndarray:
    psi = np.minimum(psi1, psi2)
    u = psi * zeta**2 - zeta**2 - 1
    return -(u + np.sqrt(u * u + 4 * psi * zeta**2)) / (2 * zeta**2)


def _rf_chi_ridge(psi1: float, psi2: float, zeta: float, lam_bar: float) -> float:
    """chi = nu1 nu2 at xi = i s, s = sqrt(psi1 psi2 lam_bar), from the fixed point on the imaginary axis.

    With nu1 = i a, nu2 = i b (a, b > 0) the equations read a (s + b (1 + c)) = psi1 and
    b (s + a (1 + c)) = psi2, c = zeta^2 / (1 + zeta^2 a b). Their difference gives b = a - (psi1 - psi2)/s,
    leaving one increasing equation in a, solved by bracketing; chi = -a b.
    """
    s = math.sqrt(psi1 * psi2 * lam_bar)
    shift = (psi1 - psi2) / s
    lo = max(shift, 0.0)

    def excess(a: float) -> float:
        ab = a * (a - shift)
        return a * s + ab + zeta**2 * ab / (1 + zeta**2 * ab) - psi1

    a = optimize.brentq(excess, lo, lo + psi1 / s + 1.0, xtol=1e-14, rtol=1e-13, maxiter=500)
    return -a * (a - shift)


def _rf_terms(psi1: np.ndarray, psi2: np.ndarray, zeta: float, chi: np.ndarray):
    z2, z4, z6 = zeta**2, zeta**4, zeta**6
    pp = psi1 * psi2
    c2, c3, c4, c5 = chi**2, chi**3, chi**4, chi**5
    e0 = (-c5 * z6 + 3 * c4 * z4 + (pp - psi2 - psi1 + 1) * c3 * z6 - 2 * c3 * z4 - 3 * c3 * z2
          + (psi1 + psi2 - 3 * pp + 1) * c2 * z4 + 2 * c2 * z2 + c2 + 3 * pp * chi * z2 - pp)
    e1 = psi2 * c3 * z4 - psi2 * c2 * z2 + pp * chi * z2 - pp
    e2 = (c5 * z6 - 3 * c4 * z4 + (psi1 - 1) * c3 * z6 + 2 * c3 * z4 + 3 * c3 * z2
          + (-psi1 - 1) * c2 * z4 - 2 * c2 * z2 - c2)
    with np.errstate(divide="ignore", invalid="ignore"):
        return e1 / e0, e2 / e0


def random_features_terms(
    psi1: ArrayLike, psi2: ArrayLike, activation: str | Callable = "relu", lam: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(B, V) of random-features ridge regression; risk = r2 B + (sigma2 + fstar2) V + fstar2."""
    if not math.isfinite(lam) or lam < 0:
        raise OverparamError(f"lam must be finite and >= 0, got {lam}")
    psi1, psi2 = np.broadcast_arrays(_as_positive("psi1", psi1), _as_positive("psi2", psi2))
    _, mu1, mu_star = activation_constants(activation)
    if mu_star < 1e-9 or abs(mu1) < 1e-9:
        raise OverparamError(
            f"activation needs a linear and a nonlinear part (mu1={mu1:.3g}, mu_star={mu_star:.3g})")
    zeta = abs(mu1) / mu_star
    if lam == 0:
        chi = _rf_chi_ridgeless(psi1, psi2, zeta)
    else:
        chi = np.vectorize(lambda a, b: _rf_chi_ridge(a, b, zeta, lam / mu_star**2))(psi1, psi2)
    bias, var = _rf_terms(psi1, psi2, zeta, np.asarray(chi, dtype=float))
    if lam == 0:  # the interpolation peak: E0 -> 0 there, rounding would give a huge finite number
        bias, var = (np.where(psi1 == psi2, np.inf, x) for x in (bias, var))
    return bias, var


def random_features_risk(
    psi1: ArrayLike,
    psi2: ArrayLike,
    activation: str | Callable = "relu",
    r2: float = 1.0,
    sigma2: float = 1.0,
    lam: float = 0.0,
    fstar2: float = 0.0,
) -> Any:
    """Excess risk of ridge(less) regression on N random features s(<theta_a, x>/sqrt(d)).

    Why: a two-layer network with a frozen first layer, the simplest nonlinear model with an exact
    double-descent curve; its peak sits at N = n (psi1 = psi2), not at the input dimension.
    Setting (Mei & Montanari 2019, "The generalization error of random features regression: precise
    asymptotics and double descent curve"): x, theta_a uniform on the sphere of radius sqrt(d);
    y = <beta, x> + f_NL(x) + noise with ||beta||^2 = r2, E f_NL^2 = fstar2, noise variance sigma2;
    a_hat = argmin (1/n) sum_i (y_i - sum_a a_a s(<theta_a, x_i>/sqrt d))^2 + (N lam / d) ||a||^2;
    psi1 = N/d, psi2 = n/d; zeta = mu1/mu_star (`activation_constants`), lam_bar = lam / mu_star^2.
    Formula (Thm 1, and Thm 3 for lam -> 0):
        risk = r2 B + (sigma2 + fstar2) V + fstar2,   B = E1/E0,  V = E2/E0, polynomials in chi:
        E0 = -chi^5 z^6 + 3 chi^4 z^4 + (psi1 psi2 - psi2 - psi1 + 1) chi^3 z^6 - 2 chi^3 z^4
             - 3 chi^3 z^2 + (psi1 + psi2 - 3 psi1 psi2 + 1) chi^2 z^4 + 2 chi^2 z^2 + chi^2
             + 3 psi1 psi2 chi z^2 - psi1 psi2
        E1 = psi2 chi^3 z^4 - psi2 chi^2 z^2 + psi1 psi2 chi z^2 - psi1 psi2
        E2 = chi^5 z^6 - 3 chi^4 z^4 + (psi1 - 1) chi^3 z^6 + 2 chi^3 z^4 + 3 chi^3 z^2
             - (psi1 + 1) chi^2 z^4 - 2 chi^2 z^2 - chi^2          (z = zeta)
        ridgeless: chi = -[(psi z^2 - z^2 - 1) + sqrt((psi z^2 - z^2 - 1)^2 + 4 psi z^2)] / (2 z^2),
                   psi = min(psi1, psi2);
        ridge: chi = nu1 nu2 at xi = i sqrt(psi1 psi2 lam_bar), where
                   nu1 = psi1 / (-xi - nu2 - z^2 nu2 / (1 - z^2 nu1 nu2)), and symmetrically for nu2.
    The risk is infinite at psi1 = psi2 when lam = 0.
    """
    _check_nonneg(r2=r2, sigma2=sigma2, fstar2=fstar2)
    bias, var = random_features_terms(psi1, psi2, activation, lam)
    return _out(r2 * bias + (sigma2 + fstar2) * var + fstar2)


# ---------------------------------------------------------------- grids and JSON documents


def parse_gamma_grid(text: str, points: int = DEFAULT_GRID_POINTS) -> np.ndarray:
    """Parse `A:B[:K]` (K points from A to B) or `g1,g2,...` into a sorted array of gammas > 0.

    An A:B grid is geometric when B/A > 10 (double-descent curves span decades), linear otherwise;
    K defaults to 50. A single number is a one-point grid.
    """
    text = text.strip()
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) not in (2, 3):
                raise ValueError
            lo, hi = float(parts[0]), float(parts[1])
            count = int(parts[2]) if len(parts) == 3 else points
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise ValueError
            if count < 2 or not lo < hi:
                raise OverparamError(f"gamma grid '{text}': need A < B and K >= 2 points")
            geometric = lo > 0 and hi / lo > GEOMETRIC_SPAN
            grid = (np.geomspace if geometric else np.linspace)(lo, hi, count)
        else:
            grid = np.array([float(v) for v in text.split(",")])
    except ValueError:
        raise OverparamError(f"bad gamma grid '{text}': use A:B[:K] (e.g. 0.1:10:50) or g1,g2,... "
                             "(e.g. 0.5,2,4)") from None
    if grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid <= 0):
        raise OverparamError(f"gamma grid '{text}': every gamma must be finite and > 0 (try 0.05:3)")
    return np.unique(grid)


def _points(gammas: np.ndarray, bias: np.ndarray, var: np.ndarray, extra: dict[str, Any]) -> list[dict]:
    def num(x: float) -> float | None:
        return float(x) if math.isfinite(x) else None

    rows = []
    for i, g in enumerate(gammas):
        b, v = float(bias[i]), float(var[i])
        risk = b + v
        row = {"gamma": float(g), "risk": num(risk), "bias": num(b), "variance": num(v)}
        row.update({k: num(float(np.asarray(x)[i])) for k, x in extra.items()})
        rows.append(row)
    return rows


_Terms = tuple[Any, Any, dict[str, Any], dict[str, Any]]  # bias, variance, params used, extra columns


def _need(name: str, params: dict[str, Any], key: str, example: str) -> float:
    if params.get(key) is None:
        raise OverparamError(f"the {name} curve needs {key}, e.g. {example}")
    return float(params[key])


def _curve_ridgeless(g: np.ndarray, r2: float, sigma2: float, params: dict[str, Any]) -> _Terms:
    bias, var = _ridgeless_terms(g)
    return r2 * bias, sigma2 * var, {}, {}


def _curve_finite(g: np.ndarray, r2: float, sigma2: float, params: dict[str, Any]) -> _Terms:
    n = _need("finite", params, "n", "--n 100")
    bias, var = _finite_terms(_as_positive("n", n), g * n)
    return r2 * bias, sigma2 * var, {"n": n}, {"p": g * n}


def _curve_weak(g: np.ndarray, r2: float, sigma2: float, params: dict[str, Any]) -> _Terms:
    n = _need("weak-features", params, "n", "--n 100")
    total = _need("weak-features", params, "total", "--total 400")
    weak_features_risk(n, g * n, total, r2, sigma2)  # validates p <= total
    bias, var = _weak_terms(_as_positive("n", n), g * n, total, r2, sigma2)
    return bias, var, {"n": n, "total": total}, {"p": g * n}


def _curve_ridge(g: np.ndarray, r2: float, sigma2: float, params: dict[str, Any]) -> _Terms:
    lam = _need("ridge", params, "lam", "--lam 0.1 (ridge-optimal picks it)")
    ridge_risk(g, lam, r2, sigma2)  # validates lam
    bias, var = _ridge_terms(g, np.full_like(g, lam)) if lam > 0 else _ridgeless_terms(g)
    return r2 * bias, sigma2 * var, {"lam": lam}, {}


def _curve_ridge_optimal(g: np.ndarray, r2: float, sigma2: float, params: dict[str, Any]) -> _Terms:
    lam = np.asarray(optimal_ridge_lambda(g, r2, sigma2))
    with np.errstate(divide="ignore", invalid="ignore"):  # sigma2 = 0 gives lam* = 0: ridgeless
        bias, var = _ridge_terms(g, lam) if sigma2 > 0 else _ridgeless_terms(g)
    return r2 * bias, sigma2 * var, {}, {"lam": lam}


def _curve_random_features(g: np.ndarray, r2: float, sigma2: float, params: dict[str, Any]) -> _Terms:
    psi2 = float(params.get("psi2") or 2.0)
    lam = float(params.get("lam") or 0.0)
    fstar2 = float(params.get("fstar2") or 0.0)
    activation = params.get("activation") or "relu"
    _check_nonneg(fstar2=fstar2)
    bias, var = random_features_terms(g * psi2, psi2, activation, lam)
    used = {"psi2": psi2, "lam": lam, "fstar2": fstar2, "activation": str(activation)}
    return r2 * bias + fstar2, (sigma2 + fstar2) * var, used, {"psi1": g * psi2}


_BUILDERS = {
    "ridgeless": _curve_ridgeless,
    "finite": _curve_finite,
    "weak-features": _curve_weak,
    "ridge": _curve_ridge,
    "ridge-optimal": _curve_ridge_optimal,
    "random-features": _curve_random_features,
}
CURVES = tuple(_BUILDERS)


def curve(name: str, gammas: ArrayLike, **params: Any) -> dict[str, Any]:
    """The JSON document `{"curve": name, "params": {...}, "points": [{"gamma", "risk", ...}]}`.

    gamma means p/n for the linear curves and N/n (features per sample) for random-features, whose
    psi2 = n/d is a parameter (psi1 = gamma * psi2). Params: r2, sigma2 (all; default 1); n (finite,
    weak-features); total (weak-features); lam (ridge; random-features, default 0); psi2 (default 2),
    activation (default relu), fstar2 (default 0) for random-features. Each point also carries bias
    and variance (risk = bias + variance) and the curve's own coordinates (p, lam, psi1).
    Infinite risks are None (JSON null), so the document is ready for json.dumps.
    """
    if name not in _BUILDERS:
        raise OverparamError(f"unknown theory curve '{name}' (choose from {', '.join(CURVES)})")
    g = _as_positive("gamma", gammas).ravel()
    r2 = float(1.0 if params.get("r2") is None else params["r2"])
    sigma2 = float(1.0 if params.get("sigma2") is None else params["sigma2"])
    _check_nonneg(r2=r2, sigma2=sigma2)
    bias, var, used, extra = _BUILDERS[name](g, r2, sigma2, params)
    points = _points(g, np.asarray(bias), np.asarray(var), extra)
    return {"curve": name, "params": {"r2": r2, "sigma2": sigma2, **used}, "points": points}
