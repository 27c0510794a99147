"""`overparam theory`: closed-form risk curves (a thin layer over `overparam.analysis.theory`)."""

from __future__ import annotations

import argparse
import math
from typing import Any

from overparam.errors import OverparamError

HELP = "closed-form risk curves: ridgeless, finite, weak-features, ridge, ridge-optimal, random-features"

DESCRIPTION = """\
Print a closed-form excess test risk curve (risk = E[(f(x) - f_hat(x))^2], label noise excluded).

gamma is p/n (features per sample) for the linear curves, and N/n (random features per sample) for
random-features, at a fixed psi2 = n/d (--psi2), so that psi1 = N/d = gamma * psi2 and the peak is at 1.

Curves and their options:
  ridgeless         min-norm least squares, n, p -> inf (Hastie et al. 2019)
  finite            the same at finite n, exact Gaussian-design expectation; needs --n (p = gamma * n)
  weak-features     learner sees p of --total features (Belkin, Hsu, Xu 2019); needs --n and --total
  ridge             ridge regression at a fixed penalty; needs --lam (objective ||y - Xb||^2/n + lam ||b||^2)
  ridge-optimal     ridge at lam* = sigma2 * gamma / r2 (Nakkiran et al. 2020: no peak)
  random-features   ridge(less) regression on ReLU/tanh/... random features (Mei & Montanari 2019);
                    --psi2 (default 2), --activation (default relu), --lam (default 0: ridgeless)

Signal and noise: --r2 (||beta||^2, default 1) and --sigma2 (noise variance, default 1), or --snr S,
which means r2 = 1 and sigma2 = 1/S (risk in units of the null predictor's risk).
--gamma A:B[:K] gives K points (default 50), geometric when B/A > 10, linear otherwise; or g1,g2,...
"""

EPILOG = """\
examples:
  overparam theory ridgeless --gamma 0.1:10:9 --snr 4
  overparam theory finite --gamma 0.5,2,4 --n 100 --json
  overparam theory random-features --gamma 0.1:10 --psi2 3 --activation tanh --json
"""

# Options each curve accepts beyond --gamma and the signal/noise ones; anything else is an error.
CURVE_OPTIONS = {
    "ridgeless": set(),
    "finite": {"n"},
    "weak-features": {"n", "total"},
    "ridge": {"lam"},
    "ridge-optimal": set(),
    "random-features": {"psi2", "activation", "lam", "fstar2"},
}
REQUIRED = {"finite": {"n"}, "weak-features": {"n", "total"}, "ridge": {"lam"}}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "theory", help=HELP, description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("curve", choices=tuple(CURVE_OPTIONS), metavar="CURVE",
                        help="one of: " + ", ".join(CURVE_OPTIONS))
    parser.add_argument("--gamma", required=True, metavar="A:B[:K]|g1,g2,...",
                        help="the grid: p/n (N/n for random-features)")
    parser.add_argument("--snr", type=float, help="signal-to-noise r2/sigma2 (sets r2=1, sigma2=1/SNR)")
    parser.add_argument("--r2", type=float, help="signal energy ||beta||^2 (default 1)")
    parser.add_argument("--sigma2", type=float, help="label-noise variance (default 1)")
    parser.add_argument("--n", type=float, help="samples (finite, weak-features)")
    parser.add_argument("--total", type=float, help="total features of the target (weak-features)")
    parser.add_argument("--lam", type=float, help="ridge penalty (ridge; random-features, default 0)")
    parser.add_argument("--psi2", type=float, help="n/d (random-features; default 2)")
    parser.add_argument("--activation", help="relu (default), tanh, sigmoid, softplus, erf, silu")
    parser.add_argument("--fstar2", type=float, help="energy of the target's nonlinear part (default 0)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.set_defaults(func=run)


def _signal_noise(args: argparse.Namespace) -> tuple[float, float]:
    if args.snr is not None:
        if args.r2 is not None or args.sigma2 is not None:
            raise OverparamError("give either --snr or --r2/--sigma2, not both")
        if not (args.snr > 0 and math.isfinite(args.snr)):
            raise OverparamError(f"--snr must be > 0, got {args.snr}")
        return 1.0, 1.0 / args.snr
    r2 = 1.0 if args.r2 is None else args.r2
    sigma2 = 1.0 if args.sigma2 is None else args.sigma2
    for flag, value in (("--r2", r2), ("--sigma2", sigma2)):
        if not (value >= 0 and math.isfinite(value)):
            raise OverparamError(f"{flag} must be a finite number >= 0, got {value}")
    return r2, sigma2


def _curve_params(args: argparse.Namespace) -> dict[str, Any]:
    given = {k for k in ("n", "total", "lam", "psi2", "activation", "fstar2") if getattr(args, k) is not None}
    allowed = CURVE_OPTIONS[args.curve]
    stray = sorted(given - allowed)
    if stray:
        takes = ", ".join("--" + o for o in sorted(allowed)) or "no extra option"
        raise OverparamError(f"--{stray[0]} does not apply to the {args.curve} curve (it takes: {takes})")
    missing = sorted(REQUIRED.get(args.curve, set()) - given)
    if missing:
        raise OverparamError(f"the {args.curve} curve needs --{missing[0]}")
    for k in ("n", "total", "psi2"):
        if k in given and not (getattr(args, k) > 0 and math.isfinite(getattr(args, k))):
            raise OverparamError(f"--{k} must be > 0, got {getattr(args, k)}")
    return {k: getattr(args, k) for k in given}


def _fmt(x: Any) -> str:
    if x is None:
        return "inf"
    return x if isinstance(x, str) else f"{x:.4g}"


def _print_table(doc: dict[str, Any]) -> None:
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in doc["params"].items())
    print(f"{doc['curve']} ({params})")
    cols = list(doc["points"][0])
    print("  ".join(f"{c:>10}" for c in cols))
    for point in doc["points"]:
        print("  ".join(f"{_fmt(point[c]):>10}" for c in cols))


def run(args: argparse.Namespace) -> int:
    from overparam.analysis import theory
    from overparam.cli import print_json

    gammas = theory.parse_gamma_grid(args.gamma)
    r2, sigma2 = _signal_noise(args)
    doc = theory.curve(args.curve, gammas, r2=r2, sigma2=sigma2, **_curve_params(args))
    if args.json:
        print_json(doc)
    else:
        _print_table(doc)
    return 0
