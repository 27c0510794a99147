"""``overparam fit (DIR | --csv FILE)``: a scaling-law fit with bootstrap intervals and a backtest."""

from __future__ import annotations

import argparse

LAW_CHOICES = ("auto", "chinchilla", "chinchilla-envelope", "chinchilla-isoflop", "kaplan", "power", "bnsl")

DESCRIPTION = """\
Fit a scaling law to finished runs (a sweep DIR) or to a CSV with columns params,tokens,loss
(optional flops; tokens = flops/(6 params) when only flops is given). Epoch AI's CSV of the
Chinchilla points (columns Model Size, Training FLOP, loss) is read too.

laws:
  auto                 the default: chinchilla when the points vary both model size and tokens (3 or
                       more distinct values of each); the power law in the one that varies otherwise
                       (a width sweep: L(N), at the largest token budget); an error when neither does
  chinchilla           L = E + A/N^alpha + B/D^beta, Approach 3 as Besiroglu et al. 2024 refit it
                       (Huber on log residuals, L-BFGS from 4,500 starts)
  chinchilla-envelope  Approach 1: the loss-compute envelope -> N*(C), D*(C) power laws
  chinchilla-isoflop   Approach 2: a parabola in log N per compute budget -> N*(C), D*(C)
  kaplan               L = [(Nc/N)^(alpha_N/alpha_D) + Dc/D]^alpha_D (Kaplan et al. 2020)
  power                L = E + A/X^alpha in one variable, X chosen by --x
  bnsl                 broken power law in --x (Caballero et al. 2022), for non-monotone curves

A law is fitted only where the points identify it: the joint laws need 3 or more distinct model sizes
and token budgets (values within 12 % count as one budget), power and bnsl 3 or more values of --x.
"""


def add_source_args(p: argparse.ArgumentParser) -> None:
    """DIR or --csv FILE (shared with ``advise``)."""
    from overparam.flags import MAX_BOOTSTRAP, MAX_SEED, int_in

    p.add_argument("dir", nargs="?", help="sweep directory (finished runs, loss = test_loss)")
    p.add_argument("--csv", metavar="FILE", help="CSV with columns params,tokens,loss[,flops]")
    p.add_argument("--drop-highest", type=int, default=0, metavar="K",
                   help="drop the K highest-loss points first (Besiroglu et al. drop 5 Chinchilla points)")
    p.add_argument("--bootstrap", type=int_in(0, MAX_BOOTSTRAP), default=1000, metavar="N",
                   help=f"bootstrap resamples for the intervals (default 1000; 0: none; at most {MAX_BOOTSTRAP:,})")
    p.add_argument("--seed", type=int_in(0, MAX_SEED), default=0, help="bootstrap seed (default 0)")


def load_source(args: argparse.Namespace):
    """The points named by DIR or --csv, validated."""
    from overparam.analysis.scaling.points import drop_highest_losses, load_points, points_from_sweep
    from overparam.errors import OverparamError

    if (args.dir is None) == (args.csv is None):
        raise OverparamError("give a sweep DIR or --csv FILE (exactly one)")
    if args.bootstrap < 0:
        raise OverparamError(f"--bootstrap: expected an integer >= 0, got {args.bootstrap}")
    if args.csv is not None:
        return load_points(args.csv, drop_highest=args.drop_highest)
    return drop_highest_losses(points_from_sweep(args.dir), args.drop_highest)


def register(sub) -> None:
    p = sub.add_parser("fit", help="fit a scaling law (Chinchilla, Kaplan, BNSL, power) with intervals",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="example: overparam fit --csv points.csv --law chinchilla --json")
    add_source_args(p)
    p.add_argument("--law", choices=LAW_CHOICES, default="auto",
                   help="the law (default auto: the one the points' axes identify)")
    p.add_argument("--x", choices=("params", "tokens", "flops"), default=None,
                   help="the variable of --law power or bnsl (default params)")
    p.add_argument("--breaks", type=int, default=None, help="breaks of --law bnsl (1-3, default 1)")
    p.add_argument("--budget-tol", type=float, default=None, metavar="DECADES",
                   help="--law chinchilla-isoflop: runs within this many decades of compute share a budget "
                   "(default 0.05)")
    p.add_argument("--holdout", type=float, default=0.2, metavar="FRAC",
                   help="backtest: refit without this fraction of the largest sizes, predict them "
                   "(default 0.2)")
    p.add_argument("--no-backtest", action="store_true", help="skip the extrapolation backtest")
    p.add_argument("--min-gain", type=float, default=0.01, metavar="G",
                   help="diminishing returns: the size beyond which doubling it gains < G loss "
                   "(default 0.01)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from overparam.analysis.scaling import fit_scaling_law
    from overparam.cli import print_json
    from overparam.errors import OverparamError

    if not 0 < args.holdout < 1:
        raise OverparamError(f"--holdout: expected a fraction in (0, 1), got {args.holdout}")
    points = load_source(args)
    fit = fit_scaling_law(points, law=args.law, bootstrap=args.bootstrap, seed=args.seed,
                          backtest=not args.no_backtest, holdout=args.holdout, min_gain=args.min_gain,
                          x=args.x, breaks=args.breaks, budget_tol=args.budget_tol)
    doc = fit.to_dict()
    if args.json:
        print_json(doc)
    else:
        print_summary(doc)
    return 0


def _g(v) -> str:
    return "-" if v is None else f"{v:.4g}"


def print_summary(doc: dict) -> None:
    """A few human lines: constants with intervals, allocation, backtest, diminishing returns."""
    boot = f", {doc['bootstrap']} bootstrap resamples (95 % intervals)" if doc["bootstrap"] else ""
    law = f"{doc['law']} in {doc['x']}" if doc.get("x") else doc["law"]
    print(f"{law} fit on {doc['n_points']} points{boot}")
    if doc.get("note"):
        print(f"  note: {doc['note']}")
    for name, value in doc["params"].items():
        ci = doc["ci"].get(name)
        print(f"  {name:<9} {_g(value):>10}" + (f"   [{_g(ci[0])}, {_g(ci[1])}]" if ci else ""))
    co = doc.get("compute_optimal")
    if co:
        print(f"compute-optimal at C = {co['flops']:.3g} FLOPs: N = {co['params']:.3g} params, "
              f"D = {co['tokens']:.3g} tokens, {co['tokens_per_param']:.3g} tokens/param")
    bt = doc.get("backtest")
    if bt and "skipped" not in bt:
        print(f"backtest: fit on {bt['x']} < {bt['held_out_from']:.3g} ({bt['n_train']} points), predict the "
              f"{bt['n_test']} larger: mean |error| {100 * bt['mean_abs_rel_error']:.2f} %, "
              f"max {100 * bt['max_abs_rel_error']:.2f} %")
    elif bt:
        print(f"backtest skipped: {bt['skipped']}")
    for warning in doc.get("warnings") or []:
        print(f"warning: {warning}")
    dr = doc.get("diminishing_returns")
    if dr:
        where = f"{dr['x']} = {dr['value']:.3g}" if dr.get("value") else dr.get("note", "")
        print(f"diminishing returns (another doubling gains < {dr['min_gain']:g}, other resource unlimited): "
              f"{where}")
