"""``overparam sweep SPEC --out DIR``: run or resume a sweep."""

from __future__ import annotations

import argparse
import contextlib
import sys

RAY_ONLY = ("address", "num_cpus", "max_retries")


def register(sub) -> None:
    p = sub.add_parser("sweep", help="run (or resume) a sweep", description="Train every run of SPEC into DIR; "
                       "rerunning resumes: finished runs are never retrained, and a run killed mid-training "
                       "goes on from its last snapshot.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n"
                              "  overparam sweep examples/digits-double-descent.yaml --out runs/dd\n"
                              "  overparam sweep spec.yaml --out runs/x --executor ray --num-cpus 8\n"
                              "  overparam sweep spec.yaml --out runs/x --executor ray --address HEAD_IP:6379 "
                              "--device cuda --snapshot-dir /shared/snapshots\n"
                              "(docs/scale-out.md: clusters, retries, snapshots)")
    p.add_argument("spec", help="spec file (YAML)")
    p.add_argument("--out", required=True, metavar="DIR", help="sweep directory (created if missing)")
    p.add_argument("--executor", default="local", choices=("local", "ray"),
                   help="local: train here, one fused group after another (default); ray: each group is a Ray "
                        "task on a cluster (--address) or a private local Ray (--num-cpus), retried if its "
                        "worker dies")
    p.add_argument("--address", default=None, help="Ray cluster address (with --executor ray; without it a "
                   "private local Ray starts)")
    p.add_argument("--num-cpus", type=int, default=None, metavar="N",
                   help="CPUs of the local Ray (--executor ray without --address; default: all)")
    p.add_argument("--max-retries", type=int, default=None, metavar="N",
                   help="reruns of a group whose Ray worker died (default 2); it resumes from its snapshot")
    p.add_argument("--snapshot-every", default=None, metavar="WHEN",
                   help="save training state every N steps (500), every span of training (60s, 5m) or off; "
                        "a killed run resumes from it (default 60s)")
    p.add_argument("--snapshot-dir", default=None, metavar="DIR",
                   help="where workers write snapshots (default DIR/checkpoints/partial; with --address: "
                        "storage every node mounts at this path, else snapshots are off)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where runs train: auto = cuda when this machine has a GPU, else cpu (default); on cpu "
                        "each process uses one torch thread (OVERPARAM_THREADS for more); with --executor ray, "
                        "cuda means the workers' GPUs")
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
    from overparam.spec_input import read_spec

    if not args.out.strip():
        raise OverparamError("--out: empty path; name the sweep directory (e.g. --out runs/x)")
    spec = read_spec(args.spec)  # torch-free: a hostile spec is refused in a fraction of a second

    from overparam.integrations import make_sinks
    from overparam.sweep.runner import run_sweep
    from overparam.sweep.snapshots import DEFAULT_EVERY

    options = {key: getattr(args, key) for key in RAY_ONLY if getattr(args, key) is not None}
    if args.executor != "ray" and options:
        flag = "--" + next(iter(options)).replace("_", "-")
        raise OverparamError(f"{flag}: only with --executor ray")
    every = args.snapshot_every if args.snapshot_every is not None else DEFAULT_EVERY
    from overparam.stdout_guard import stdout_to_stderr

    with stdout_to_stderr() if args.json else contextlib.nullcontext():  # Ray's logs must not precede the JSON
        summary = run_sweep(spec, args.out, executor=args.executor, device=args.device, fuse=args.fuse,
                            progress=not args.no_progress and not args.json, executor_options=options,
                            sinks=make_sinks(mlflow=args.mlflow, tensorboard=args.tensorboard),
                            snapshot_every=every, snapshot_dir=args.snapshot_dir)
    bad = summary.diverged + summary.failed
    if args.json:
        from overparam.cli import print_json

        print_json(summary.as_dict())
    elif not bad:
        if args.no_progress:  # with a progress bar the sweep printed them as it planned
            for note in summary.notes:
                print(f"overparam: note: {note}", file=sys.stderr)
        print(f"{summary.planned} runs in {args.out}: {summary.already_done} already done, "
              f"{summary.trained} trained now", file=sys.stderr)
        if summary.trained and args.address and args.snapshot_dir is None and every != "off":
            print("note: training snapshots were off (a cluster's workers may not share this disk): give "
                  "--snapshot-dir on storage every node mounts so that a retried group resumes", file=sys.stderr)
    if bad:
        what = []
        if summary.diverged:
            what.append(f"{len(summary.diverged)} diverged (non-finite loss: {', '.join(summary.diverged[:3])})")
        if summary.failed:
            what.append(f"{len(summary.failed)} failed ({', '.join(summary.failed[:3])})")
        raise OverparamError(f"{' and '.join(what)} of {summary.planned} runs; the other results are stored "
                             f"(see `overparam runs {args.out}`)")
    return 0
