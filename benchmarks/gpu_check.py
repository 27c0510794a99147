"""GPU correctness of the fused networks, in one short run (CI has no GPU; this is its stand-in).

    python benchmarks/gpu_check.py [--device cuda]

For a one-hidden-layer MLP width sweep (widths 3…700, two seeds, label noise) trained 40 Adam
steps: the loop one run at a time, then the fused engine with each network (``buckets``,
``tiles``, and ``jagged`` under bf16 where torch has a grouped matmul), with and without CUDA
graphs. Prints, per network, the largest gap in final train loss to the loop (fp32: the GEMMs'
blocking differs, so ~1e-5, not bits), whether a member at lr 1e3 (SGD, MSE) diverged alone while the others
stayed bit-identical to the group without it, and any warning the engine gave (a refused
grouped-matmul probe says why). Ends with one line: ``gpu_check: ok`` or what failed.

Bit-identity with and without a diverging neighbour is printed, not required: it holds for tiles,
but a bucket that shrinks from two members to one runs its GEMM through another BLAS path (on
this CPU the width-20 member's weights then differ by 2.2e-8 in fp32, 2.8e-17 in float64 at
batch 128); the float64 CI test pins the shapes where it holds.
"""

from __future__ import annotations

import argparse
import warnings

import torch

from overparam.data import load_task
from overparam.spec import Spec
from overparam.train.fused import train_group
from overparam.train.run import resolve_device, train_run

TASK = {"kind": "digits", "train_size": 1000, "label_noise": 0.1}
TRAIN = {"optimizer": "adam", "lr": 3e-3, "steps": 40, "batch_size": 128, "eval_every": 20}
FP32_TOL = 1e-3  # final train loss, absolute: fp32 on different GEMM blockings, 40 Adam steps


def runs(vary: dict, train: dict | None = None):
    return Spec({"task": TASK, "model": {"family": "mlp"}, "vary": vary, "train": {**TRAIN, **(train or {})}}).runs()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    sweep = runs({"model.width": [3, 17, 40, 100, 300, 700], "seed": [0, 1]})
    task = load_task(sweep[0].config["task"])
    loop = [train_run(r.config, task, device).metrics["train_loss"] for r in sweep]
    failures = []
    cases = [("buckets", None, False), ("buckets", None, True), ("tiles", None, False), ("tiles", None, True),
             ("tiles", "bf16", True), ("auto", "bf16", True)]
    cuda = device.type == "cuda"
    for kernel, autocast, graphs in cases:
        graphs = graphs and cuda
        label = f"{kernel:<8} autocast={autocast or 'off':<4} graphs={graphs}"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                got = train_group([r.config for r in sweep], task, device, kernel=kernel, autocast=autocast,
                                  graphs=graphs)
            except (RuntimeError, ValueError) as exc:
                failures.append(label)
                print(f"{label}  FAILED: {type(exc).__name__}: {exc}")
                continue
        gap = max(abs(g.metrics["train_loss"] - w) for g, w in zip(got, loop))
        tol = FP32_TOL if autocast is None else 5e-2
        ok = all(g.status == "done" for g in got) and gap < tol
        failures += [] if ok else [label]
        print(f"{label}  max |Δ train loss| vs loop {gap:.2e} (tol {tol:g})  {'ok' if ok else 'FAILED'}")
        for message in dict.fromkeys(str(w.message) for w in caught):
            print(f"    warning: {message}")
    sgd = {"optimizer": "sgd", "lr": 0.02, "loss": "mse"}
    calm = runs({"model.width": [4, 20, 64, 300]}, sgd)
    wild = runs({"model.width": [20], "train.lr": [1e3]}, sgd)
    for kernel in ("buckets", "tiles"):
        kw = {"kernel": kernel, "graphs": cuda}
        with_wild = train_group([r.config for r in calm + wild], task, device, **kw)
        without = train_group([r.config for r in calm], task, device, **kw)
        same = all(torch.equal(a.state[k], b.state[k]) for a, b in zip(with_wild, without) for k in a.state)
        gap = max(float((a.state[k] - b.state[k]).abs().max()) for a, b in zip(with_wild, without) for k in a.state)
        ok = with_wild[-1].status == "diverged" and all(r.status == "done" for r in with_wild[:-1]) and gap < 1e-5
        failures += [] if ok else [f"divergence {kernel}"]
        print(f"divergence {kernel:<8} wild member {with_wild[-1].status}; others bit-identical to the group "
              f"without it: {same} (max gap {gap:.1e})  {'ok' if ok else 'FAILED'}")
    print("gpu_check: " + ("ok" if not failures else "FAILED " + "; ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
