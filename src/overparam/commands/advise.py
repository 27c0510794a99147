"""``overparam advise (DIR | --csv FILE) (--compute C | --target-loss L)``: model size and tokens."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
From an Approach 3 fit (L = E + A/N^alpha + B/D^beta, see `overparam fit --help`) with bootstrap
intervals:
  --compute C      the compute-optimal params N and tokens D for C FLOPs (C = 6 N D):
                   N = G (C/6)^a, D = (C/6)^b / G, a = beta/(alpha+beta), b = alpha/(alpha+beta)
                   (Hoffmann et al. 2022), and the loss they reach;
  --target-loss L  the compute-optimal N and D that reach loss L (the least compute that does),
                   and min_params, the smallest model that reaches L at all (with unlimited tokens).

Both need points that vary model size and tokens (3 or more distinct values of each). On a sweep that
varied only one (a width sweep at one token budget), --compute is refused, naming the missing axis,
and --target-loss gives the smallest size that reaches L at that budget, from L(N) alone.

A sweep that varies more than size and data (a text task.mix of specialists and generic models, a
label-noise or weight-decay axis) holds one task per setting: advise answers for one, chosen with
--setting KEY=VALUE, and refuses to pool them.
"""


def register(sub) -> None:
    from overparam.commands.fit import add_source_args

    p = sub.add_parser("advise", help="compute-optimal params and tokens for a budget or a target loss",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="example: overparam advise --csv points.csv --compute 1e21 --json")
    add_source_args(p)
    goal = p.add_mutually_exclusive_group(required=True)
    goal.add_argument("--compute", type=float, metavar="FLOPS", help="training compute budget in FLOPs")
    goal.add_argument("--target-loss", type=float, metavar="L", help="the loss to reach")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from overparam.analysis.scaling import advise
    from overparam.cli import print_json
    from overparam.commands.fit import load_source

    setting, points = load_source(args)
    doc = advise(points, compute=args.compute, target_loss=args.target_loss, bootstrap=args.bootstrap,
                 seed=args.seed)
    if setting is not None:  # one setting chosen (--setting) of several: say which
        doc["setting"] = setting.fixed
    if args.json:
        print_json(doc)
        return 0
    if setting is not None:
        print(f"setting {setting.label}")
    ci = doc["ci"]

    def show(key: str, unit: str) -> str:
        iv = f" [{ci[key][0]:.3g}, {ci[key][1]:.3g}]" if key in ci else ""
        return f"  {key:<17} {doc[key]:.4g}{iv} {unit}".rstrip()

    if doc.get("note"):
        print(f"note: {doc['note']}")
    for warning in (doc.get("fit") or {}).get("warnings", []):
        print(f"warning: {warning}")
    if "compute" in doc:
        print(f"compute-optimal allocation for C = {doc['compute']:.3g} FLOPs "
              f"({doc['extrapolation_factor']:.3g}x the largest compute in the data):")
        lines = [show("params", "params"), show("tokens", "tokens"), show("tokens_per_param", ""),
                 show("loss", "(predicted)")]
    elif doc.get("law") == "power":
        (axis, value), = doc["fixed"].items()
        what = "model" if doc["x"] == "params" else "token budget"
        print(f"the smallest {what} that reaches loss {doc['target_loss']:g} at this sweep's {value:.4g} {axis}, "
              f"from L({'N' if doc['x'] == 'params' else 'D'}) alone:")
        lines = [show("params", "params"), show("tokens", "tokens"), show("flops", "FLOPs")]
        if "reachable_fraction" in doc:
            lines.append(f"  reachable in {100 * doc['reachable_fraction']:.1f} % of the bootstrap fits")
    else:
        print(f"to reach loss {doc['target_loss']:g} with the least compute "
              f"({doc['extrapolation_factor']:.3g}x the largest compute in the data):")
        lines = [show("params", "params"), show("tokens", "tokens"), show("flops", "FLOPs"),
                 show("tokens_per_param", "")]
        if "min_params" in doc and doc.get("law") != "power":
            lines.append(show("min_params", "params (with unlimited tokens)"))
        if "reachable_fraction" in doc:
            lines.append(f"  reachable in {100 * doc['reachable_fraction']:.1f} % of the bootstrap fits")
    print("\n".join(lines))
    return 0
