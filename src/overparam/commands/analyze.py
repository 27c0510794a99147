"""``overparam analyze DIR``: the answer, then per curve the threshold, the peak and its verdict."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    from overparam.analysis.defaults import EPS, TOLERANCE

    p = sub.add_parser("analyze", help="the smallest size that does the job; interpolation threshold, "
                       "test-error peak and its verdict against the noise",
                       epilog="example: overparam analyze runs/dd --json")
    p.add_argument("dir", help="sweep directory")
    p.add_argument("--eps", type=float, default=EPS,
                   help=f"train-error tolerance of the interpolation threshold (default {EPS:g}, Nakkiran et al. "
                   "2019's effective model complexity; 0: every label fitted)")
    p.add_argument("--tolerance", type=float, default=TOLERANCE,
                   help=f"the answer: the smallest size within this of the best test error (absolute, default "
                   f"{TOLERANCE:g}) or test loss (relative, {TOLERANCE * 100:g} %%)")
    p.add_argument("--threshold-on", choices=("auto", "error", "loss"), default="auto",
                   help="train metric that defines interpolation (auto: loss for closed-form least squares "
                   "and regression, error otherwise)")
    p.add_argument("--stat", choices=("mean", "median"), default="mean", help="aggregate over seeds")
    p.add_argument("--include-unstable", action="store_true", help="keep runs flagged unstable")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def check_number(name: str, value: float) -> None:
    from overparam.errors import OverparamError

    if not value >= 0 or value == float("inf"):  # NaN fails the first test
        raise OverparamError(f"{name}: expected a number >= 0, got {value}")


def run(args: argparse.Namespace) -> int:
    from overparam.analysis.double_descent import analyze_double_descent, require_finished
    from overparam.cli import print_json
    from overparam.data import is_language_task
    from overparam.store import load_curves, load_runs

    check_number("--eps", args.eps)
    check_number("--tolerance", args.tolerance)
    runs = load_runs(args.dir)
    require_finished(runs, args.dir)
    doc = analyze_double_descent(args.dir, eps=args.eps, stat=args.stat, include_unstable=args.include_unstable,
                                 threshold_on=args.threshold_on, tolerance=args.tolerance)
    from overparam.analysis.epochwise import epochwise_peaks

    curves = load_curves(args.dir)
    if curves["step"].nunique() >= 3:  # curves over training time: epoch-wise double descent too
        epochwise = epochwise_peaks((runs, curves))
        doc["epochwise"] = {k: v for k, v in epochwise.items() if k != "runs"}
    from overparam.analysis.in_context import blocks

    measured = blocks(args.dir)  # in_context, few_shot, position, specialization: only the ones this sweep has
    doc.update(measured)
    if args.json:
        print_json(doc)
        return 0
    from overparam.analysis.claims import fmt_settings
    from overparam.report.reading import answer_claim, read_curve

    family = runs["model.family"].iloc[0] if "model.family" in runs else None
    answer = answer_claim(doc["answer"], family)
    if answer:
        print(answer["text"])
    print(f"(over seeds: the {args.stat}; --stat to change)")
    language = is_language_task({"kind": runs["task.kind"].iloc[0] if "task.kind" in runs else None,
                                 "text_column": runs["task.text_column"].iloc[0] if "task.text_column" in runs
                                 else None})
    if language:  # no error to interpolate: the loss against size and tokens is a scaling law's to read
        print_scaling(args.dir)
    else:
        for curve in doc["curves"]:
            fixed = fmt_settings(curve["fixed"], "=")
            print(f"curve over {curve['axis']}" + (f" ({fixed})" if fixed else "") + ":")
            for sentence in read_curve(curve, family):
                print(f"  {sentence}")
    from overparam.report.in_context_reading import print_blocks

    print_blocks(measured)
    if "epochwise" in doc and not language:
        from overparam.report.epochwise_section import counted

        ew = doc["epochwise"]
        noun, detail = counted(ew, doc["curves"][0]["axis"])
        print(f"epoch-wise: {ew['n_with_peak']} of {len(ew['sizes'])} {noun}"
              + (f" ({detail})" if detail else "") + f" show a bump of {ew['metric'].replace('_', ' ')} over "
              f"training time (a fall, a rise of {100 * ew['rise']:g} % and a fall back); in "
              f"{ew['n_with_second_descent']} both the rise and the fall exceed the noise (epoch-wise double descent)")
    return 0


def print_scaling(directory: str) -> None:
    """The scaling law's headline when ``overparam report`` or ``fit``'s analysis of these runs is stored,
    else which commands read it (fitting it here would cost seconds of bootstrap on every call)."""
    from overparam.analysis.scaling_report import load_fresh

    doc = load_fresh(directory)
    if doc is None:
        print(f"scaling law: not fitted here; overparam fit {directory} fits it to these runs, and overparam "
              f"report {directory} draws it with its intervals")
        return
    print("scaling law (analyses/scaling.json):")
    for sentence in doc["headline"]:
        print(f"  {sentence}")
