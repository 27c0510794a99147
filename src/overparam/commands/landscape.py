"""``overparam landscape DIR``: steps to a train-loss threshold and the init-to-solution path, per width."""

from __future__ import annotations

import argparse

EXAMPLE = """examples:
  overparam landscape runs/dd
  overparam landscape runs/dd --threshold 0.1 --max-runs all --json
  overparam landscape runs/dd --threshold-frac 0.25 --alphas=-0.5:1.5:41   # "=" before a leading minus

Needs curves with at least 3 evaluated steps (train.eval_every or train.eval_log_points) and
checkpoints (train.checkpoint, the default). Writes DIR/analyses/landscape.json (the --json
document), which the report's "Loss landscape vs width" section reads; the store is only read.
Without --threshold the threshold is the lowest value that at least half the sizes reached
(each in at least half its seeds), rounded up to 2 significant digits."""


def _max_runs(text: str) -> int | str:
    from overparam.errors import OverparamError

    if text.strip().lower() == "all":
        return "all"
    try:
        value = int(text)
    except ValueError:
        raise OverparamError(f"--max-runs: expected a positive integer or all, got {text!r}") from None
    if value < 1:
        raise OverparamError(f"--max-runs: expected a positive integer or all, got {text!r}")
    return value


def register(sub) -> None:
    p = sub.add_parser("landscape", help="steps to a train-loss threshold and the loss along init→trained, per width",
                       description="How fast each width fits (first evaluated step at or below a train-loss "
                       "threshold, from the stored curves) and the loss along the straight line from the "
                       "initial to the trained weights (Goodfellow et al. 2015): its barrier above the chord "
                       "and whether it falls monotonically (Lucas et al. 2021).",
                       epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", help="sweep directory")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--threshold", type=float, metavar="X", help="absolute threshold on the metric")
    which.add_argument("--threshold-frac", type=float, metavar="F",
                       help="threshold as a fraction 0 < F <= 1 of the median initial value")
    p.add_argument("--metric", choices=("train_loss", "train_error"), default="train_loss",
                   help="the curve the threshold applies to (default train_loss)")
    p.add_argument("--alphas", default="0:1:21", metavar="A:B:K",
                   help="K evenly spaced α from A to B along (1-α)·init + α·trained; must hit 0 and 1 "
                        "(default 0:1:21)")
    p.add_argument("--max-runs", type=_max_runs, default=None, metavar="N",
                   help="runs that get a linear path (default: one per size, its lowest seed; all: every run "
                        "with a checkpoint); a cap keeps evenly spaced sizes")
    p.add_argument("--json", action="store_true", help="print the document written to analyses/ (and nothing "
                   "else) on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from overparam.analysis.landscape_report import analyze_landscape, parse_alphas
    from overparam.cli import print_json, print_reading
    from overparam.sweep.runner import set_cpu_threads

    alphas = parse_alphas(args.alphas)
    set_cpu_threads(torch.device("cpu"))  # small models: one thread (OVERPARAM_THREADS), as a sweep uses
    doc = analyze_landscape(args.dir, threshold=args.threshold, threshold_frac=args.threshold_frac,
                            metric=args.metric, alphas=alphas, max_runs=args.max_runs)
    if args.json:
        print_json(doc)
        return 0
    print_reading(table(doc), doc["sentences"])
    print(f"wrote {doc['directory']}/analyses/landscape.json ({doc['seconds']:.1f} s)")
    return 0


def table(doc: dict) -> str:
    """Per size: steps to the threshold (median over seeds), the final value, and the path's barrier."""
    from statistics import median

    from overparam.analysis.landscape_report import size_word

    paths: dict = {}
    for p in doc["paths"]:
        paths.setdefault(p["size"], []).append(p)
    half = doc["alphas"].index(0.5) if 0.5 in doc["alphas"] else None
    finals: dict = {}
    for r in doc["steps"]["runs"]:
        if r["final"] is not None:
            finals.setdefault(r.get(doc["axis"], r["params"]), []).append(r["final"])
    several = any(len(v) > 1 for v in paths.values())
    rows = [(size_word(doc["axis"]), "params", "reached", "median step", "final", "max barrier" if several else
             "barrier", "monotonic",
             "loss at α=0.5" if half is not None else "")]
    for s in doc["steps"]["sizes"]:
        mine = paths.get(s["size"], [])
        vals = finals.get(s["size"], [])
        barrier = max((p["barrier"] for p in mine), default=None)
        rows.append((str(s["size"]), f"{s['params']:,}", f"{s['n_reached']}/{s['n_runs']}",
                     "never" if s["median_step"] is None else f"{s['median_step']:,.0f}",
                     f"{median(vals):.4g}" if vals else "",
                     "" if barrier is None else f"{barrier:.3g}",
                     f"{sum(p['monotonic'] for p in mine)}/{len(mine)}" if mine else "",
                     f"{mine[0]['train_loss'][half]:.4g}" if mine and half is not None else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
