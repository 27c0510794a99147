"""Fused vs one-at-a-time training of a conv width sweep (``cnn`` or ``resnet18k``, the deep-double-descent widths).

The same runs, trained twice: one model at a time with ``train/loop.train_model`` (what
``--fuse off`` does), and all widths as one program with ``train/fused_cnn.train_cnn_group``.
Prints seconds, the ratio, and model FLOP utilization (training FLOPs by the family's
convention / seconds / the measured peak of a large matmul on the same device and dtype).

    python benchmarks/cnn_speed.py                 # GPU: the 11 widths, 2 epochs of the CIFAR-10 subset
    python benchmarks/cnn_speed.py --quick         # CPU: k <= 8, 2,000 images (1,000 test), 6 steps
    python benchmarks/cnn_speed.py --autocast bf16 # fused convs in bf16 (the loop stays fp32)
    python benchmarks/cnn_speed.py --family resnet18k  # ResNet18 widths 1..64, batch 128, Adam lr 1e-4

Data: ``--data`` or ``../shared/data/cifar10_subset.npz``; random CIFAR-shaped images when
neither exists (timing only). Settings follow examples/cifar10-cnn-double-descent.yaml:
Adam, lr 1e-3, batch 512, 15 % label noise (``--family resnet18k``:
examples/cifar10-resnet18k-double-descent.yaml, Adam lr 1e-4, batch 128).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from overparam.data import load_task
from overparam.data.base import TaskData
from overparam.models import family_module
from overparam.spec import resolve_config
from overparam.train.fused_cnn import train_cnn_group
from overparam.train.run import resolve_device, shape_of, train_run

WIDTHS = {"cnn": [1, 2, 4, 6, 8, 10, 12, 16, 24, 32, 64], "resnet18k": [1, 2, 4, 8, 16, 32, 64]}
RECIPE = {"cnn": (1e-3, 512), "resnet18k": (1e-4, 128)}  # (Adam lr, batch) of each family's example spec
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10_subset.npz"


def make_task(path: Path, n: int | None, n_test: int | None, noise: float) -> tuple[dict, TaskData]:
    spec = {"kind": "cifar10", "path": str(path), "train_size": n, "test_size": n_test, "label_noise": noise}
    if path.is_file():
        return spec, load_task(resolve_config({"task": spec, "model": {"family": "cnn"}})["task"])
    rng = np.random.default_rng(0)  # no data here: random images of the right shape time the same
    n = n or 10000
    x = rng.standard_normal((n, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, n)
    n_test = n_test or 5000
    return spec, TaskData("classification", x, y, x[:n_test], y[:n_test], 10, y.copy(), info={})


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_flops(device: torch.device, dtype: torch.dtype) -> float:
    """FLOP/s of a large square matmul: the ceiling the MFU is read against."""
    n = 4096 if device.type == "cuda" else 512
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    start, reps = time.perf_counter(), 20 if device.type == "cuda" else 3
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="CPU-sized: k <= 8, 2,000 images (1,000 test), 6 steps")
    p.add_argument("--family", default="cnn", choices=tuple(WIDTHS))
    p.add_argument("--device", default="auto")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--widths", type=lambda s: [int(v) for v in s.split(",")], default=None)
    p.add_argument("--train-size", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default: 2 epochs)")
    p.add_argument("--batch-size", type=int, default=None, help="default: 512 (cnn), 128 (resnet18k)")
    p.add_argument("--eval-every", type=int, default=0)
    p.add_argument("--autocast", default="off", choices=("off", "bf16"))
    p.add_argument("--no-graphs", action="store_true", help="fused step eagerly (no CUDA graph)")
    p.add_argument("--skip-loop", action="store_true", help="time the fused program only")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    device = resolve_device("cpu" if args.quick and args.device == "auto" else args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)
    else:
        torch.backends.cudnn.benchmark = True  # both paths: fastest conv algorithm per shape
    lr, default_batch = RECIPE[args.family]
    widths = args.widths or ([w for w in WIDTHS[args.family] if w <= 8] if args.quick else WIDTHS[args.family])
    n = args.train_size or (2000 if args.quick else None)
    spec, task = make_task(args.data, n, 1000 if args.quick else None, 0.15)
    batch = min(args.batch_size or default_batch, task.n_train)
    steps = args.steps or (6 if args.quick else 2 * math.ceil(task.n_train / batch))
    train = {"optimizer": "adam", "lr": lr, "batch_size": batch, "steps": steps, "eval_every": args.eval_every,
             "checkpoint": False}
    configs = [resolve_config({"task": spec, "model": {"family": args.family, "width": k}, "train": train})
               for k in widths]
    graphs = False if args.no_graphs else None
    autocast = None if args.autocast == "off" else args.autocast

    # warm up both paths (CUDA context, cuDNN autotuning, first-call costs) on two short runs
    warm = [resolve_config({**c, "train": {**c["train"], "steps": 3}}) for c in configs[:2]]
    train_cnn_group(warm, task, device, graphs=graphs, autocast=autocast)
    if not args.skip_loop:
        train_run(warm[0], task, device)
    sync(device)

    start = time.perf_counter()
    fused = train_cnn_group(configs, task, device, graphs=graphs, autocast=autocast)
    sync(device)
    fused_s = time.perf_counter() - start
    loop_s, per_width = None, {}
    if not args.skip_loop:
        for c in configs:
            start = time.perf_counter()
            train_run(c, task, device)
            sync(device)
            per_width[c["model"]["width"]] = time.perf_counter() - start
        loop_s = sum(per_width.values())
    family = family_module(args.family)
    flops = sum(family.flops_per_example(c["model"], shape_of(task)) for c in configs) * steps * batch
    peak = peak_flops(device, torch.bfloat16 if autocast else torch.float32)
    out = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "family": args.family, "widths": widths, "train_size": task.n_train, "batch_size": batch, "steps": steps,
           "autocast": args.autocast, "graphs": device.type == "cuda" and not args.no_graphs,
           "fused_s": round(fused_s, 3), "loop_s": None if loop_s is None else round(loop_s, 3),
           "ratio": None if loop_s is None else round(loop_s / fused_s, 2),
           "loop_per_width_s": {k: round(v, 3) for k, v in per_width.items()},
           "training_gflop": round(flops / 1e9, 1), "peak_gflops": round(peak / 1e9, 1),
           "mfu_fused": round(flops / fused_s / peak, 4),
           "mfu_loop": None if loop_s is None else round(flops / loop_s / peak, 4),
           "fused_test_error": {c["model"]["width"]: round(r.metrics["test_error"], 4) for c, r in zip(configs, fused)}}
    if args.json:
        print(json.dumps(out))
        return
    print(f"{out['device']}: {args.family}, {len(widths)} widths {widths}, {steps} steps of {batch} "
          f"on {task.n_train} images")
    if loop_s is not None:
        print("one at a time: " + ", ".join(f"k={k} {v:.2f}s" for k, v in per_width.items()))
        print(f"loop {loop_s:.2f} s   fused {fused_s:.2f} s   ratio {loop_s / fused_s:.1f}x")
    else:
        print(f"fused {fused_s:.2f} s")
    print(f"{flops / 1e9:,.0f} GFLOP of training; matmul peak {peak / 1e9:,.0f} GFLOP/s; "
          f"MFU fused {out['mfu_fused']:.1%}" + (f", loop {out['mfu_loop']:.1%}" if loop_s else ""))


if __name__ == "__main__":
    main()
