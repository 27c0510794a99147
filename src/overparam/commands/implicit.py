"""``overparam implicit DIR --run ID``: implicit-regularization diagnostics of one finished run."""

from __future__ import annotations

import argparse

MAX_TRACE_PROBES = 10_000  # Hutchinson's error falls as 1/sqrt(N): 10,000 probes give ~1 %; each costs an HVP


def register(sub) -> None:
    p = sub.add_parser("implicit", help="norms, distance to the min-norm solution, Hessian spectrum of one run",
                       description="Rebuild a finished run from its config and checkpoint and measure what "
                       "training chose: parameter norm, distance from init, distance to the min-norm "
                       "interpolant (models linear in their parameters), top Hessian eigenvalues by "
                       "Hessian-vector products (Lanczos), Hutchinson's trace, and 2/lr for gd/sgd "
                       "(edge of stability, Cohen et al. 2021). To record these for every run of a sweep (and "
                       "get the report's implicit-regularization section), set train.diagnostics: [norms, "
                       "sharpness, trace] in the spec.",
                       epilog="example: overparam implicit runs/dd --run 1d7e64525ed2 --k 3 --trace 50 --json")
    p.add_argument("dir", help="sweep directory")
    p.add_argument("--run", required=True, metavar="ID", help="run id (see `overparam runs DIR`)")
    p.add_argument("--k", type=int, default=1, help="top Hessian eigenvalues to compute (default 1)")
    p.add_argument("--trace", type=int, default=0, metavar="N",
                   help="Hutchinson probes for the Hessian trace (0: skip; needs N >= 2)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from overparam.analysis.implicit import diagnose_run
    from overparam.cli import print_json
    from overparam.errors import OverparamError
    from overparam.store import open_store

    if args.k < 1 or args.k > 100:
        raise OverparamError(f"--k: expected 1..100, got {args.k}")
    if args.trace < 0 or args.trace == 1 or args.trace > MAX_TRACE_PROBES:
        raise OverparamError(f"--trace: expected 0 or a number of probes in 2..{MAX_TRACE_PROBES:,}, got {args.trace}")
    with open_store(args.dir) as store:
        runs = {r["id"]: r["status"] for r in store.runs()}
    if runs.get(args.run) != "done":
        what = "no such run" if args.run not in runs else f"the run is {runs[args.run]}, not done"
        raise OverparamError(f"--run {args.run}: {what} in {args.dir}")
    doc = diagnose_run(args.dir, args.run, k=args.k, trace_samples=args.trace)
    if args.json:
        print_json(doc)
        return 0
    reasons = doc.pop("why_null", {})
    for key, value in doc.items():
        if value is None:
            value = f"n/a: {reasons.get(key, 'not measured for this run')}"
        elif isinstance(value, float):
            value = f"{value:.6g}"
        elif isinstance(value, list):
            value = ", ".join(f"{v:.6g}" for v in value)
        print(f"{key:22s} {value}")
    return 0
