"""What `overparam compress` spends its time on: seconds per method, at 1 and 2 torch threads, idle or loaded.

    python benchmarks/compress_speed.py [--width 2048] [--steps 2500] [--threads 1,2] [--load 0,1]
                                        [--distill] [--lottery]

Trains a small digits MLP sweep once (widths 8 … ``--width``, ``--steps`` Adam steps, one seed,
the README's `runs/mlp` recipe), then compresses its widest run with the README's first call
(``--prune 0.5,0.9 --quantize int8``), the default method set, and optionally distillation and
lottery tickets, once per (threads, load) setting. ``--load N`` keeps N busy-loop processes running
during the measurement, standing in for the other jobs of a shared machine (they are stopped at
the end). Prints, per setting, the seconds per method (building, fine-tuning and measuring its
models: the ``seconds`` of each entry, summed) and the wall time of the whole call.

On a 2-core machine, the first call took 9-10 s on one thread idle or loaded, but 104 s with torch's
default 2 threads and one busy core (one fine-tuning run of 625 steps took 88 s of it): OpenMP
workers spin at each barrier while the core they wait for runs another process. Hence one thread by
default, as a sweep trains.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

CALLS = {
    "README first call": {"prune": [0.5, 0.9], "quantize": ["int8"]},
    "default set": {},
}


def train_sweep(out: Path, width: int, steps: int) -> str:
    """A geometric width sweep on digits; returns the widest run's id."""
    import torch

    from overparam.store import load_runs
    from overparam.sweep.runner import run_sweep

    spec = {"name": "bench-mlp", "task": {"kind": "digits", "train_size": 500, "label_noise": 0.2, "seed": 0},
            "model": {"family": "mlp", "depth": 1},
            "vary": {"model.width": {"geometric": [8, width], "count": 6}},
            "train": {"optimizer": "adam", "lr": 3e-3, "steps": steps, "batch_size": 128, "eval_log_points": 8}}
    torch.set_num_threads(1)
    run_sweep(spec, out, progress=False)
    runs = load_runs(out)
    return str(runs.sort_values("params")["id"].iloc[-1])


def busy(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def per_method(doc: dict) -> dict[str, float]:
    seconds: dict[str, float] = defaultdict(float)
    for e in doc["models"]:
        seconds[e["method"]] += e.get("seconds", 0.0)
        if "onnxruntime" in e:
            seconds["onnx export"] += e["onnxruntime"].get("seconds", 0.0)
    return dict(seconds)


def main() -> None:
    from overparam.compress import compress_run

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=2500)
    ap.add_argument("--threads", default="1,2", help="torch thread counts to compare")
    ap.add_argument("--load", default="0,1", help="busy-loop processes running beside each measurement")
    ap.add_argument("--distill", action="store_true", help="also time distillation (a student of width 32)")
    ap.add_argument("--lottery", action="store_true", help="also time lottery tickets at 0.9")
    args = ap.parse_args()
    calls = dict(CALLS)
    if args.distill:
        calls["distillation"] = {"distill_widths": [32]}
    if args.lottery:
        calls["lottery ticket"] = {"lottery": [0.9]}
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(tmp) / "mlp"
        t0 = time.perf_counter()
        run_id = train_sweep(sweep, args.width, args.steps)
        print(f"sweep trained in {time.perf_counter() - t0:.1f} s; compressing run {run_id} "
              f"(width {args.width}, {args.steps} steps)", flush=True)
        for load in (int(v) for v in args.load.split(",")):
            for threads in (int(v) for v in args.threads.split(",")):
                for name, methods in calls.items():
                    workers = busy(load)
                    try:
                        t0 = time.perf_counter()
                        doc = compress_run(sweep, run_id, threads=threads, **methods)
                        wall = time.perf_counter() - t0
                    finally:
                        for w in workers:
                            w.kill()
                            w.wait()
                    parts = ", ".join(f"{m} {s:.1f} s" for m, s in per_method(doc).items())
                    print(f"{name:<18} threads {threads}, busy processes {load}: {wall:6.1f} s wall  ({parts})",
                          flush=True)


if __name__ == "__main__":
    main()
