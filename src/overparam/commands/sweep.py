"""``overparam sweep SPEC --out DIR``: run or resume a sweep."""

from __future__ import annotations

import argparse
import sys


def register(sub) -> None:
    p = sub.add_parser("sweep", help="run (or resume) a sweep", description="Train every run of SPEC into DIR; "
                       "rerunning resumes: finished runs are never retrained.",
                       epilog="example: overparam sweep examples/digits-double-descent.yaml --out runs/dd")
    p.add_argument("spec", help="spec file (YAML)")
    p.add_argument("--out", required=True, metavar="DIR", help="sweep directory (created if missing)")
    p.add_argument("--executor", default="local", choices=("local", "ray"))
    p.add_argument("--address", default=None, help="Ray cluster address (with --executor ray)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--fuse", default="auto", choices=("auto", "on", "off"),
                   help="train groups of runs as one fused model (off: one at a time, the reference)")
    p.add_argument("--mlflow", default=None, metavar="URI",
                   help="also log every run to MLflow (file:///path/mlruns, http://host:5000; [mlflow] extra)")
    p.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="also write TensorBoard event files, a folder per run ([tensorboard] extra)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from overparam.errors import OverparamError
    from overparam.integrations import make_sinks
    from overparam.sweep.runner import run_sweep

    options = {"address": args.address} if args.executor == "ray" else {}
    summary = run_sweep(args.spec, args.out, executor=args.executor, device=args.device, fuse=args.fuse,
                        progress=not args.no_progress and not args.json, executor_options=options,
                        sinks=make_sinks(mlflow=args.mlflow, tensorboard=args.tensorboard))
    bad = summary.diverged + summary.failed
    if args.json:
        from overparam.cli import print_json

        print_json(summary.as_dict())
    elif not bad:
        print(f"{summary.planned} runs in {args.out}: {summary.already_done} already done, "
              f"{summary.trained} trained now", file=sys.stderr)
    if bad:
        what = []
        if summary.diverged:
            what.append(f"{len(summary.diverged)} diverged (non-finite loss: {', '.join(summary.diverged[:3])})")
        if summary.failed:
            what.append(f"{len(summary.failed)} failed ({', '.join(summary.failed[:3])})")
        raise OverparamError(f"{' and '.join(what)} of {summary.planned} runs; the other results are stored "
                             f"(see `overparam runs {args.out}`)")
    return 0
