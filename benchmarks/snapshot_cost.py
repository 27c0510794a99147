"""What training snapshots cost: per-step overhead when none is due, and the time to write one.

    python benchmarks/snapshot_cost.py [--repeat 5] [--steps 2000]

1. Overhead on a small run (digits, MLP width 64, batch 128, Adam, ``--steps`` steps, one
   thread): ``train_run`` without snapshots, with the default policy (``60s``: nothing is
   written in a run this short, so this is the per-step check alone) and with one snapshot
   every 100 steps. Alternating runs; mean ± std and best of the seconds per run, the ratios of
   the bests, and the cost of one ``Snapshots.step`` call that writes nothing (timeit).
2. Writing one snapshot (model + Adam moments + random streams, safetensors, fsync) of MLPs of
   2M, 6M and 14M parameters: what ``MAX_COST`` stretches the 60 s interval for.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import timeit
from pathlib import Path

import torch

from overparam.data import load_task
from overparam.spec import resolve_config
from overparam.train.optim import build_optimizer
from overparam.train.run import train_run
from overparam.train.snapshot import MAX_COST, Snapshots, TrainingState, model_state

CPU = torch.device("cpu")


def small_run(steps: int) -> dict:
    return resolve_config({"task": {"kind": "digits", "train_size": 1000}, "model": {"family": "mlp", "width": 64},
                           "train": {"optimizer": "adam", "steps": steps, "batch_size": 128, "eval_every": 500}})


def overhead(steps: int, repeat: int, folder: Path) -> None:
    cfg = small_run(steps)
    task = load_task(cfg["task"])
    modes = {
        "off": lambda: None,
        "60s (default)": lambda: Snapshots(folder / "a.safetensors", [("run", cfg)], CPU, every_seconds=60),
        "every 100 steps": lambda: Snapshots(folder / "b.safetensors", [("run", cfg)], CPU, every_steps=100),
    }
    times: dict[str, list[float]] = {name: [] for name in modes}
    train_run(cfg, task, CPU)  # warm-up
    for _ in range(repeat):
        for name, make in modes.items():
            for path in folder.glob("*.safetensors"):
                path.unlink()  # each run starts from step 0
            start = time.perf_counter()
            train_run(cfg, task, CPU, make())
            times[name].append(time.perf_counter() - start)
    base = min(times["off"])
    for name, seconds in times.items():
        mean, std = statistics.mean(seconds), statistics.stdev(seconds) if len(seconds) > 1 else 0.0
        print(f"{name:>16}: {mean:.3f} ± {std:.3f} s per run of {steps} steps, best {min(seconds):.3f} s "
              f"({min(seconds) / base:.3f}× off)")
    snap = modes["60s (default)"]()
    state = TrainingState({"w": torch.zeros(1)})
    snap.resume(state, [])
    calls = 200_000
    per_call = timeit.timeit(lambda: snap.step(1, state, []), number=calls) / calls
    print(f"a check that writes nothing: {per_call * 1e9:.0f} ns per step, {per_call / (base / steps):.2e} of a step")


def write_cost(folder: Path) -> None:
    for width in (1000, 3162, 7071):  # one hidden layer of width w on 1000 inputs: ≈ 2·1000·w parameters
        model = torch.nn.Sequential(torch.nn.Linear(1000, width), torch.nn.ReLU(), torch.nn.Linear(width, 1000))
        opt = build_optimizer(list(model.parameters()), {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0})
        model(torch.randn(4, 1000)).sum().backward()
        opt.step()  # Adam's moments exist now
        params = sum(p.numel() for p in model.parameters())
        cfg = {"train": {"steps": 10}}
        snap = Snapshots(folder / f"w{width}.safetensors", [("run", cfg)], CPU)
        state = model_state(model, opt, CPU)
        seconds = []
        for _ in range(3):
            start = time.perf_counter()
            snap.save(1, state, [])
            seconds.append(time.perf_counter() - start)
        size = (folder / f"w{width}.safetensors").stat().st_size
        took = min(seconds)
        print(f"{params / 1e6:5.1f}M params: snapshot of {size / 2**20:4.0f} MiB written in {took:.3f} s (best of 3); "
              f"time-based interval max(60, {took:.3f} / {MAX_COST}) = {max(60.0, took / MAX_COST):.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        overhead(args.steps, args.repeat, Path(tmp))
        write_cost(Path(tmp))


if __name__ == "__main__":
    main()
