"""``overparam report DIR``: rebuild DIR/report.html (and figures, summary.json) from the store."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("report", help="rebuild the self-contained HTML report of a sweep directory",
                       epilog="example: overparam report runs/dd && xdg-open runs/dd/report.html")
    p.add_argument("dir", help="sweep directory, or a demo directory holding several")
    p.add_argument("--out", default=None, metavar="FOLDER",
                   help="write report.html, figures/ and summary.json here instead of DIR (e.g. DIR is read-only)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from overparam.errors import OverparamError
    from overparam.report.html import build_report

    if args.out is not None and not args.out.strip():
        raise OverparamError("--out: empty path")
    try:
        path = build_report(args.dir, out=args.out)
    except OSError as exc:
        where = exc.filename or args.out or args.dir
        hint = "" if args.out else "; write it elsewhere with --out FOLDER"
        raise OverparamError(f"cannot write the report: {where}: {exc.strerror or exc}{hint}") from None
    print(f"report: {path}", file=sys.stderr)
    return 0
