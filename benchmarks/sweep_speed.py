"""Fused vs per-model training time on the same sweep, in the same process.

    python benchmarks/sweep_speed.py [--quick] [--configs sweep64,seeds256,gpt8] [--device cpu]
                                     [--kernels auto,buckets,tiles]

For each config: the per-model loop (what ``--fuse off`` runs: ``train_run`` one run after
another), the fused engine (``--fuse on``'s groups), their ratio, and model-FLOP utilization
(the runs' training FLOPs, as the families count them, per second, over the fp32 matmul peak
measured in this process; on a GPU also bf16 autocast against the bf16 peak). ``auto`` says
what ``--fuse auto`` would choose. The last line holds the ratios alone.

``--kernels`` times the fused engine once per network kind for one-hidden-layer MLP groups
(``auto``, ``buckets``: one batched matmul per padded-width bucket, ``tiles``: members side by
side, a fixed handful of kernels per step; ``train.fused.engine._network``), and counts the
torch operators one fused step dispatches (``ops/step``, from the profiler, views excluded):
on a GPU each is a kernel launch, which is what bounds a fused step of small members there.

Configs (digits: 64 inputs, 10 classes, 1000 training examples; batch 128; Adam):
  sweep64   64 one-hidden-layer MLPs, widths geometric 8…4096, 200 steps
  seeds256  256 MLPs of width 64 that differ only in seed (init and batch order), 200 steps
  seeds256-user  the same 256 MLPs as a user's factory (benchmarks/user_mlp.py:make_mlp, the mlp family's
            module): fused by the generic torch.func engine (train/fused/functional.py); the last line
            then gives its fused time over the hand-written engine's on seeds256 (the issue asks <= 2x on CPU)
  gpt8      8 GPTs on the embedded text (bytes), d_model 64…256 (≈ geometric, multiples of 4),
            2 layers, 4 heads, context 64, 16 windows per step, AdamW, 200 steps (distinct shapes:
            one bucket each, so on a CPU only the optimizer and the step's overhead are shared)
  lm16-user 16 seeds of a one-layer transformer written as a user would (benchmarks/user_lm.py:make_lm, width
            32, 2 heads, attention as plain matmuls) on the embedded text (bytes), context 32, 8 windows per
            step, AdamW: the generic engine on a language task (train/fused/functional_lm.py)
  gpt16     16 seeds of the gpt family (1 layer, d_model 32, 2 heads), same task and recipe: the hand-written
            engine (train/fused_gpt.py)
  gpt16-user  the same gpt module as a user's factory (user_lm.py:make_gpt): the generic engine, whose vmap
            runs F.scaled_dot_product_attention member by member on CPU
  heavy8    8 MLPs of depth 2 and width 4096 on a 256-input teacher (8,192 examples, 10 outputs,
            MSE), batch 1024, evaluated once: the compute-heavy variant (≈ 0.9 TFLOP per step),
            meant for a GPU, where its MFU is read against the bf16 peak
Timings on a shared machine are noisy: ``--repeat`` keeps the best of several alternating runs.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from overparam.data import load_task
from overparam.spec import Spec
from overparam.sweep.grouping import plan_groups
from overparam.train.fused import train_group
from overparam.train.fused.functional import train_functional_group
from overparam.train.fused.layout import CONV_FAMILIES, functional_engine
from overparam.train.fused_cnn import train_cnn_group
from overparam.train.fused_gpt import train_gpt_group
from overparam.train.run import resolve_device, run_size, train_run

TASK = {"kind": "digits", "train_size": 1000}
HEAVY_TASK = {"kind": "teacher", "dim": 256, "outputs": 10, "train_size": 8192, "test_size": 1024}
GPT_WIDTHS = [64, 80, 96, 116, 140, 172, 212, 256]  # 64·4^(i/7) rounded to multiples of n_head = 4


def config_spec(name: str, steps: int) -> dict[str, Any]:
    train = {"optimizer": "adam", "lr": 1e-3, "steps": steps, "batch_size": 128}
    if name == "sweep64":
        return {"name": name, "task": TASK, "model": {"family": "mlp", "depth": 1},
                "vary": {"model.width": {"geometric": [8, 4096], "count": 64}}, "train": train}
    if name == "seeds256":
        return {"name": name, "task": TASK, "model": {"family": "mlp", "depth": 1, "width": 64},
                "vary": {"seed": list(range(256))}, "train": train}
    if name == "seeds256-user":  # the generic engine on the same arithmetic as seeds256
        model = {"family": f"{Path(__file__).with_name('user_mlp.py')}:make_mlp", "depth": 1, "width": 64}
        return {"name": name, "task": TASK, "model": model, "vary": {"seed": list(range(256))}, "train": train}
    if name == "small64":  # the "sweeps of small members (width <= 128)"
        return {"name": name, "task": TASK, "model": {"family": "mlp", "depth": 1},
                "vary": {"model.width": {"geometric": [2, 128], "count": 64}}, "train": train}
    if name == "gpt8":
        return {"name": name, "task": {"kind": "text"},
                "model": {"family": "gpt", "n_layer": 2, "n_head": 4, "context": 64},
                "vary": {"model.d_model": GPT_WIDTHS},
                "train": {"optimizer": "adamw", "lr": 3e-3, "steps": steps, "batch_size": 16, "warmup_steps": 10}}
    if name in ("lm16-user", "gpt16", "gpt16-user"):  # language tasks: 16 seeds of one shape
        lm_train = {"optimizer": "adamw", "lr": 3e-3, "steps": steps, "batch_size": 8}
        factories = {"lm16-user": ("make_lm", {"width": 32, "heads": 2}),
                     "gpt16-user": ("make_gpt", {"n_layer": 1, "d_model": 32, "n_head": 2})}
        if name == "gpt16":
            model = {"family": "gpt", "n_layer": 1, "d_model": 32, "n_head": 2}
        else:
            factory, keys = factories[name]
            model = {"family": f"{Path(__file__).with_name('user_lm.py')}:{factory}", **keys}
        return {"name": name, "task": {"kind": "text"}, "model": {**model, "context": 32},
                "vary": {"seed": list(range(16))}, "train": lm_train}
    if name == "heavy8":  # the compute-heavy variant (batch 1024): for the bf16-peak target on a GPU
        return {"name": name, "task": HEAVY_TASK, "model": {"family": "mlp", "depth": 2, "width": 4096},
                "vary": {"seed": list(range(8))},
                "train": {**train, "batch_size": 1024, "eval_every": 0, "eval_log_points": 0}}
    raise SystemExit(f"unknown config {name!r} (known: sweep64, seeds256, seeds256-user, small64, gpt8, lm16-user, "
                     f"gpt16, gpt16-user, heavy8)")


def train_fused(configs, task, device, autocast: str | None = None, kernel: str = "auto"):
    """The fused engine of the group's family (as ``sweep.work`` dispatches, without its fallback)."""
    family = configs[0]["model"]["family"]
    if functional_engine(family):
        return train_functional_group(configs, task, device)
    if family == "gpt":
        return train_gpt_group(configs, task, device, autocast=autocast)
    if family in CONV_FAMILIES:
        return train_cnn_group(configs, task, device, autocast=autocast)
    return train_group(configs, task, device, autocast=autocast, kernel=kernel)


METADATA_OPS = {"aten::view", "aten::as_strided", "aten::t", "aten::transpose", "aten::expand", "aten::empty",
                "aten::empty_strided", "aten::unsqueeze", "aten::squeeze", "aten::alias", "aten::split",
                "aten::narrow", "aten::slice", "aten::select", "aten::reshape", "aten::_unsafe_view",
                "aten::permute", "aten::detach", "aten::lift_fresh", "aten::resolve_conj", "aten::resolve_neg",
                "aten::result_type", "aten::_reshape_alias", "aten::item", "aten::_local_scalar_dense"}


def ops_per_step(configs, task, device, kernel: str, steps: int = 10) -> float:
    """Torch operators called per fused step (views excluded): from Python or autograd, not those an
    operator calls inside itself. The difference of two runs that differ only in length (``steps``
    and 2·``steps``, evaluated at the same points), over ``steps``."""
    from torch.profiler import ProfilerActivity, profile

    counts = []
    for n in (steps, 2 * steps):
        short = [{**c, "train": {**c["train"], "steps": n, "eval_every": 0, "eval_log_points": 0}} for c in configs]
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            train_fused(short, task, device, kernel=kernel)
        counts.append(sum(1 for e in prof.events() if e.name.startswith("aten::") and e.name not in METADATA_OPS
                          and not (e.cpu_parent is not None and e.cpu_parent.name.startswith("aten::"))))
    return (counts[1] - counts[0]) / steps


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 1024, reps: int = 10) -> float:
    """Best-of-``reps`` FLOP/s of an n×n matmul: the ceiling MFU is measured against."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b
    sync(device)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(4):
            a @ b
        sync(device)
        best = min(best, (time.perf_counter() - start) / 4)
    return 2 * n**3 / best


def time_loop(runs, task, device) -> float:
    start = time.perf_counter()
    for run in runs:
        train_run(run.config, task, device)
    sync(device)
    return time.perf_counter() - start


def time_fused(groups, task, device, autocast: str | None = None, kernel: str = "auto") -> float:
    """Seconds for every group; the engine's warnings (a refused grouped-matmul probe says why)
    are printed to stdout, once each, so that a run's log keeps them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        for group in groups:
            if group.fused:
                train_fused([r.config for r in group.runs], task, device, autocast=autocast, kernel=kernel)
            else:
                train_run(group.runs[0].config, task, device)
        sync(device)
        elapsed = time.perf_counter() - start
    for message in dict.fromkeys(str(w.message) for w in caught):
        print(f"  warning ({kernel}{', ' + autocast if autocast else ''}): {message}")
    return elapsed


def warm_up(device: torch.device) -> None:
    """First calls import and initialise lazily (torch.optim pulls in seconds of modules): not timed."""
    spec = config_spec("seeds256", 3)
    spec["vary"] = {"seed": [0, 1]}
    runs = Spec(spec).runs()
    task = load_task(runs[0].config["task"])
    time_loop(runs, task, device)
    time_fused([g for g in plan_groups(runs, "on", device, tasks=lambda _key: task)], task, device)
    user = Spec({**spec, "model": config_spec("seeds256-user", 3)["model"]}).runs()  # torch.func's first calls
    time_fused(plan_groups(user, "on", device, tasks=lambda _key: task), task, device)
    lm = Spec({"task": {"kind": "markov", "vocab_size": 8, "train_size": 2000, "test_size": 200},
               "model": {"family": "gpt", "n_layer": 1, "d_model": 16, "n_head": 2, "context": 8},
               "vary": {"seed": [0, 1]}, "train": {"optimizer": "adamw", "steps": 3, "batch_size": 4}}).runs()
    lm_task = load_task(lm[0].config["task"])
    time_loop(lm, lm_task, device)
    time_fused(plan_groups(lm, "on", device, tasks=lambda _key: lm_task), lm_task, device)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 steps instead of 200 (CPU)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--configs", default="sweep64,seeds256")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--repeat", type=int, default=1, help="alternate loop and fused N times, keep the best")
    parser.add_argument("--kernels", default="auto",
                        help="fused networks to time for one-hidden-layer MLPs: auto, buckets, tiles (comma-separated)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    steps = args.steps or (30 if args.quick else 200)
    warm_up(device)
    peak32 = matmul_peak(device, torch.float32)
    peak16 = matmul_peak(device, torch.bfloat16) if device.type == "cuda" else None
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"fp32 matmul peak {peak32 / 1e9:.1f} GFLOP/s"
          + (f", bf16 {peak16 / 1e12:.1f} TFLOP/s" if peak16 else "") + f"; {steps} steps")
    kernels = args.kernels.split(",")
    header = f"{'config':<16} {'runs':>5} {'groups':>7} {'auto':>9} {'loop s':>8} {'fused s':>8} " \
             f"{'ratio':>6} {'MFU loop':>9} {'MFU fused':>10} {'ops/step':>9}"
    print(header)
    print("-" * len(header))
    ratios, fused_times = [], {}
    for name in args.configs.split(","):
        spec = Spec(config_spec(name, steps))
        runs = spec.runs()
        task = load_task(runs[0].config["task"])
        flops = sum(run_size(r.config, task)[1] for r in runs)
        groups = plan_groups(runs, "on", device, tasks=lambda _key, t=task: t)
        auto = plan_groups(runs, "auto", device, tasks=lambda _key, t=task: t)
        fused_auto = sum(len(g.runs) for g in auto if g.fused)
        mlp1 = runs[0].config["model"]["family"] == "mlp" and runs[0].config["model"].get("depth") == 1
        names = kernels if mlp1 else ["auto"]
        loop_s, fused_s = float("inf"), dict.fromkeys(names, float("inf"))
        for _ in range(args.repeat):
            loop_s = min(loop_s, time_loop(runs, task, device))
            for kernel in names:
                fused_s[kernel] = min(fused_s[kernel], time_fused(groups, task, device, kernel=kernel))
        fused_times[name] = fused_s[names[0]]
        for kernel in names:
            ratio = loop_s / fused_s[kernel]
            label = name if kernel == "auto" else f"{name}/{kernel}"
            ratios.append(f"{label}={ratio:.2f}x")
            biggest = max((g for g in groups if g.fused), key=lambda g: len(g.runs))
            ops = ops_per_step([r.config for r in biggest.runs], task, device, kernel) if mlp1 else float("nan")
            print(f"{label:<16} {len(runs):>5} {sum(g.fused for g in groups):>7} {f'{fused_auto}/{len(runs)}':>9} "
                  f"{loop_s:>8.2f} {fused_s[kernel]:>8.2f} {ratio:>5.2f}x {flops / loop_s / peak32:>8.1%} "
                  f"{flops / fused_s[kernel] / peak32:>9.1%} {ops:>9.0f}")
        if peak16:
            bf16_s = time_fused(groups, task, device, autocast="bf16")
            ratios.append(f"{name}-bf16={loop_s / bf16_s:.2f}x")
            print(f"{name + '-bf16':<16} {'':>5} {'':>7} {'':>9} {'':>8} {bf16_s:>8.2f} "
                  f"{loop_s / bf16_s:>5.2f}x {'':>9} {flops / bf16_s / peak16:>9.1%} (of bf16 peak)")
    print("ratios: " + " ".join(ratios))
    if {"gpt16", "gpt16-user"} <= fused_times.keys():
        print(f"generic engine / hand-written engine, fused seconds: "
              f"{fused_times['gpt16-user'] / fused_times['gpt16']:.2f}x (gpt16-user / gpt16)")
    if {"seeds256", "seeds256-user"} <= fused_times.keys():
        print(f"generic engine / hand-written engine, fused seconds: "
              f"{fused_times['seeds256-user'] / fused_times['seeds256']:.2f}x (seeds256-user / seeds256)")


if __name__ == "__main__":
    main()
