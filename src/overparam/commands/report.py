"""``overparam report DIR``: rebuild DIR/report.html (and figures, summary.json) from the store."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("report", help="rebuild the self-contained HTML report of a sweep directory",
                       epilog="example: overparam report runs/dd && xdg-open runs/dd/report.html")
    p.add_argument("dir", help="sweep directory, or a demo directory holding several")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from overparam.report.html import build_report

    path = build_report(args.dir)
    print(f"report: {path}", file=sys.stderr)
    return 0
