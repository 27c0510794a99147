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
    from overparam.analysis.epochwise import epochwise_peaks
    from overparam.store import load_curves, load_runs

    runs, curves = load_runs(args.dir), load_curves(args.dir)
    if curves["step"].nunique() >= 3:  # curves over training time: epoch-wise double descent too
        epochwise = epochwise_peaks((runs, curves))
        doc["epochwise"] = {k: v for k, v in epochwise.items() if k != "runs"}
    from overparam.analysis.in_context import blocks

    measured = blocks(args.dir)  # in_context, few_shot, position, specialization: only the ones this sweep has
    doc.update(measured)
    if args.json:
        print_json(doc)
        return 0
    from overparam.report.reading import read_curve
    family = runs["model.family"].iloc[0] if "model.family" in runs else None
    size = runs["task.train_size"].iloc[0] if "task.train_size" in runs else None
    n_train = int(size) if size is not None and size == size else None  # null (image tasks: all of it), NaN
    for curve in doc["curves"]:
        fixed = ", ".join(f"{k}={v}" for k, v in curve["fixed"].items())
        print(f"curve over {curve['axis']}" + (f" ({fixed})" if fixed else "") + ":")
        for sentence in read_curve(curve, family, n_train):
            print(f"  {sentence}")
    from overparam.report.in_context_reading import print_blocks

    print_blocks(measured)
    if "epochwise" in doc:
        ew = doc["epochwise"]
        print(f"epoch-wise: {ew['n_with_second_descent']} of {len(ew['sizes'])} sizes show a second descent "
              f"of {ew['metric'].replace('_', ' ')} over training time")
    return 0
