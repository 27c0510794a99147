"""``overparam report DIR``: rebuild DIR/report.html (and figures, summary.json) from the store."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    from overparam.analysis.defaults import EPS, TOLERANCE

    p = sub.add_parser("report", help="rebuild the self-contained HTML report of a sweep directory",
                       epilog="example: overparam report runs/dd && xdg-open runs/dd/report.html")
    p.add_argument("dir", help="sweep directory, or a demo directory holding several")
    p.add_argument("--out", default=None, metavar="FOLDER",
                   help="write report.html, figures/ and summary.json here instead of DIR (e.g. DIR is read-only)")
    p.add_argument("--eps", type=float, default=EPS,
                   help=f"train-error tolerance of the interpolation threshold (default {EPS:g}, as analyze)")
    p.add_argument("--tolerance", type=float, default=TOLERANCE,
                   help=f"the answer's tolerance around the best test error (default {TOLERANCE:g}, as analyze)")
    p.add_argument("--stat", choices=("mean", "median"), default="mean",
                   help="statistic over seeds for every reading and curve of the page")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from overparam.commands.analyze import check_number
    from overparam.errors import OverparamError
    from overparam.report.html import build_report
    from overparam.report.sections import ReportSettings

    check_number("--eps", args.eps)
    check_number("--tolerance", args.tolerance)
    if args.out is not None and not args.out.strip():
        raise OverparamError("--out: empty path")
    settings = ReportSettings(eps=args.eps, tolerance=args.tolerance, stat=args.stat)
    try:
        path = build_report(args.dir, settings=settings, out=args.out)
    except OSError as exc:
        where = exc.filename or args.out or args.dir
        hint = "" if args.out else "; write it elsewhere with --out FOLDER"
        raise OverparamError(f"cannot write the report: {where}: {exc.strerror or exc}{hint}") from None
    print(f"report: {path}", file=sys.stderr)
    return 0
