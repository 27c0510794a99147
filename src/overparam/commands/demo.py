"""``overparam demo``: the main job on embedded data, with its report."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the main job on embedded data and write a report",
                       description="Double descent with random features and a trained MLP on scikit-learn's "
                       "digits, a small language-model scaling sweep, compression, and the report.",
                       epilog="example: overparam demo --quick --out /tmp/op && open /tmp/op/report.html")
    p.add_argument("--out", default="demo-out", metavar="DIR", help="output directory (default: demo-out)")
    p.add_argument("--quick", action="store_true", help="a smaller version (≤ 90 s on 2 CPU cores)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--fuse", default="auto", choices=("auto", "on", "off"))
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from overparam.demo import run_demo

    report = run_demo(args.out, quick=args.quick, fuse=args.fuse, device=args.device,
                      progress=not args.no_progress)
    print(report.resolve())
    return 0
