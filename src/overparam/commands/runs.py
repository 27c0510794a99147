"""``overparam runs DIR``: the runs and their metrics."""

from __future__ import annotations

import argparse
import sys

CORE_METRICS = ("train_error", "test_error", "train_loss", "test_loss")


def register(sub) -> None:
    p = sub.add_parser("runs", help="list the runs of a sweep and their metrics",
                       epilog="example: overparam runs runs/dd --json | jq '.runs[0]'")
    p.add_argument("dir", help="sweep directory")
    p.add_argument("--json", action="store_true", help="print {\"runs\": [...]} (DESIGN.md contract)")
    p.add_argument("--format", choices=("table", "csv", "json", "parquet"), default="table",
                   help="table (default), csv or json on stdout, parquet with --output")
    p.add_argument("--output", default=None, help="write to this file instead of stdout")
    p.add_argument("--status", default=None, choices=("pending", "running", "done", "diverged", "failed"))
    p.add_argument("--check", action="store_true",
                   help="list what is damaged in the directory (store pages and rows, checkpoints, snapshots, "
                        "saved analyses); exit 2 when something is")
    p.set_defaults(func=run)


def runs_document(directory: str, status: str | None = None) -> dict:
    """The ``runs --json`` document: config is the resolved spec of each run."""
    from overparam.store import open_store

    with open_store(directory) as store:
        runs = store.runs(status)
    out = []
    for r in runs:
        metrics = {k: r["metrics"].get(k) for k in CORE_METRICS}
        metrics.update({k: v for k, v in r["metrics"].items() if k not in metrics})
        out.append({"id": r["id"], "status": r["status"], "config": r["config"], "params": r["params"],
                    "flops": r["flops"], "seconds": r["seconds"], "error": r["error"], "metrics": metrics})
    return {"runs": out}


def run(args: argparse.Namespace) -> int:
    from overparam.cli import print_json
    from overparam.errors import OverparamError
    from overparam.flags import check_output_file

    if args.output is not None:
        check_output_file("--output", args.output)
    if args.check:
        return _check(args)
    if args.json or args.format == "json":
        doc = runs_document(args.dir, args.status)
        if args.output:
            import json

            with open(args.output, "w") as fh:
                json.dump(doc, fh, indent=2, default=str)
        else:
            print_json(doc)
        return 0
    from overparam.store import load_runs

    frame = load_runs(args.dir, args.status)
    if args.format == "parquet":
        if not args.output:
            raise OverparamError("--format parquet needs --output FILE")
        try:
            frame.to_parquet(args.output)
        except ImportError as exc:
            raise OverparamError("parquet needs pyarrow: pip install pyarrow") from exc
        return 0
    if args.format == "csv":
        frame.to_csv(args.output or sys.stdout, index=False)
        return 0
    if frame.empty:
        print("no runs")
        return 0
    axes = [c for c in frame.columns if ("." in c or c == "seed") and frame[c].astype(str).nunique() > 1]
    cols = ["id", "status", *axes, "params", *[m for m in CORE_METRICS if m in frame and frame[m].notna().any()]]
    text = frame[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}")
    if args.output:
        with open(args.output, "w") as fh:
            fh.write(text + "\n")
    else:
        print(text)
    return 0


def _check(args: argparse.Namespace) -> int:
    """``--check``: the damage listed on stdout (or as JSON), exit 2 with one error line when there is any."""
    from overparam.cli import print_json
    from overparam.errors import OverparamError
    from overparam.store_check import check_lines, check_sweep

    doc = check_sweep(args.dir)
    if args.json:
        print_json({"check": doc})
    else:
        print("\n".join(check_lines(doc)))
    if not doc["ok"]:
        raise OverparamError(f"{args.dir}: {len(doc['damage'])} damaged part(s), listed on stdout; rerun the sweep "
                             f"into a fresh --out to rebuild what cannot be read")
    return 0
