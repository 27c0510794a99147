"""``overparam analyze DIR``: interpolation threshold, test-error peak, both minima, per curve."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("analyze", help="find the interpolation threshold and the double-descent peak",
                       epilog="example: overparam analyze runs/dd --json")
    p.add_argument("dir", help="sweep directory")
    p.add_argument("--eps", type=float, default=0.0,
                   help="train-error tolerance of the interpolation threshold (default 0: every label fitted)")
    p.add_argument("--threshold-on", choices=("auto", "error", "loss"), default="auto",
                   help="train metric that defines interpolation (auto: loss for closed-form least squares "
                   "and regression, error otherwise)")
    p.add_argument("--stat", choices=("mean", "median"), default="mean", help="aggregate over seeds")
    p.add_argument("--include-unstable", action="store_true", help="keep runs flagged unstable")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from overparam.analysis.double_descent import analyze_double_descent
    from overparam.cli import print_json
    from overparam.errors import OverparamError

    if args.eps < 0 or args.eps != args.eps:
        raise OverparamError(f"--eps: expected a number >= 0, got {args.eps}")
    doc = analyze_double_descent(args.dir, eps=args.eps, stat=args.stat, include_unstable=args.include_unstable,
                                 threshold_on=args.threshold_on)
    if args.json:
        print_json(doc)
        return 0
    from overparam.report.reading import read_curve

    from overparam.store import load_runs

    runs = load_runs(args.dir)
    family = runs["model.family"].iloc[0] if "model.family" in runs else None
    n_train = int(runs["task.train_size"].iloc[0]) if "task.train_size" in runs else None
    for curve in doc["curves"]:
        fixed = ", ".join(f"{k}={v}" for k, v in curve["fixed"].items())
        print(f"curve over {curve['axis']}" + (f" ({fixed})" if fixed else "") + ":")
        for sentence in read_curve(curve, family, n_train):
            print(f"  {sentence}")
    return 0
