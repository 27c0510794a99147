"""Which runs train together. A group is the unit an executor schedules (locally or on Ray).

Runs fuse (``overparam.train.fused``) when they share task inputs, model shape (all but the
width), optimizer, steps, batch size, evaluation schedule and dtype (``layout.fuse_key``);
they may differ in width, seed, lr, weight decay, momentum, schedule, dropout, clipping and
label-noise draw. Closed-form runs and families without a fused engine never fuse.

``--fuse off``: every run alone (the reference). ``on``: every fusable class fused (split only
to bound memory). ``auto``: fused where the cost model below predicts it pays.

Cost model (seconds per optimizer step; B = batch, F = training FLOPs per example, M members):

    loop   Σ_i ( LOOP_STEP + B·F_i / LOOP_RATE )
    fused  GROUP_STEP + buckets·BUCKET_STEP + M·MEMBER_STEP + Σ_i B·F_i^padded / FUSED_RATE

A group fuses when fused ≤ ``MARGIN`` × loop. CPU constants: process time per step, measured
on the 2-core development machine (1 thread, under load from other jobs, so absolute values
are inflated by ~1.5× but ratios hold): a loop step of a width-8 MLP (digits, batch 128, Adam)
costs 1.4 ms, of width 64–256 1.7–1.8 ms; a fused step of 2 members in one bucket 1.3 ms, of
8 members 1.9 ms, of 32 members 4.7 ms; each extra bucket adds 0.4 ms. Matmul-bound members
run at a lower FLOP rate in the loop (example-major layers: sweep64's MFU was 19 % looped,
33 % fused); two width-4096 members fused ran 1.10× faster, widths 2048/3000/4096 1.28×,
512/4096 1.27×. So on CPU fusion pays for every group of two or more members; auto declines
only where the model predicts less than a 10 % gain (and on CUDA, whose constants are estimates).
Members whose step is large (``LARGE_STEP_FLOPS``: 8 MLPs of depth 2 and width 4096 at batch
1024 fused 0.92× the loop) run the loop at the fused rate, so only the overheads differ and
auto trains them one at a time.

``gpt`` has its own constants (``GPT_COST``, ``_gpt_step_costs``): a CPU step is compute-bound
once members reach d_model ≈ 64 with 1024 tokens per step, where distinct shapes are at parity
(gpt8: 0.99–1.02×) and a shared shape gains little (4 × d_model 64: 1.12–1.14×), so auto fuses
gpt runs on CPU where members share shapes (8 × d_model 32, 64 tokens: 3.8–4.5×).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch

from overparam.data.base import TaskData
from overparam.spec import Run
from overparam.train.fused.layout import functional_engine

# Calibrated on CPU (see module doc); CUDA numbers are launch-bound estimates (kernel ≈ 5 µs,
# a loop step ≈ 60 launches, a graphed fused step ≈ one replay plus ~20 kernel nodes per bucket).
COST = {
    "cpu": {"LOOP_STEP": 1.4e-3, "GROUP_STEP": 0.9e-3, "BUCKET_STEP": 0.4e-3, "MEMBER_STEP": 0.1e-3,
            "LOOP_RATE": 3e10, "FUSED_RATE": 4e10},
    "cuda": {"LOOP_STEP": 3e-4, "GROUP_STEP": 5e-5, "BUCKET_STEP": 2e-5, "MEMBER_STEP": 1e-6,
             "LOOP_RATE": 2e13, "FUSED_RATE": 5e13},
}
# gpt (train/fused_gpt.py): per-step overhead grows with layers; a bucket of one member runs its own
# module's code (what the loop runs, minus the per-model optimizer), so only shared shapes batch.
# CPU: process time, 1 thread, 2-core machine under load; CUDA: launch-count estimates (unmeasured).
GPT_COST = {
    "cpu": {"LOOP_STEP": 1.2e-3, "LOOP_LAYER": 2.0e-3, "BUCKET_STEP": 1.5e-3, "BUCKET_LAYER": 1.5e-3,
            "MEMBER_LAYER": 0.35e-3, "LOOP_RATE": 3e10, "FUSED_RATE": 3e10},
    "cuda": {"LOOP_STEP": 6e-4, "LOOP_LAYER": 7e-4, "BUCKET_STEP": 1e-4, "BUCKET_LAYER": 1.5e-4,
             "MEMBER_LAYER": 1e-6, "LOOP_RATE": 3e13, "FUSED_RATE": 3e13},
}
# User models through torch.func (train/fused/functional.py). CPU: process time per step, 1 thread, 2-core machine
# under load, width-64 MLPs on digits at batch 128 (the mlp module as a factory): the loop 1.0 ms per member; a
# vmap step of 1, 2, 8, 32 members 1.7, 1.8, 2.6, 6.3 ms. CUDA: estimates (unmeasured).
FUNCTIONAL_COST = {
    "cpu": {"LOOP_STEP": 1.0e-3, "GROUP_STEP": 1.5e-3, "MEMBER_STEP": 0.1e-3, "LOOP_RATE": 3e10, "FUSED_RATE": 4e10},
    "cuda": {"LOOP_STEP": 3e-4, "GROUP_STEP": 1e-3, "MEMBER_STEP": 2e-6, "LOOP_RATE": 2e13, "FUSED_RATE": 3e13},
}
# A member step of at least this many training FLOPs keeps the loop's GEMMs as busy as fused ones:
# measured on CPU, width-4096 one-hidden-layer members (0.23 GFLOP a step) still fused 1.10× faster,
# heavy8's depth-2 width-4096 members at batch 1024 (110 GFLOP) fused 0.92× (slower); between the two.
LARGE_STEP_FLOPS = 5e9
MARGIN = 0.9  # fuse only for a predicted gain of at least 10 %: the model is coarse
GROUP_MEMORY = {"cpu": 2 << 30, "cuda": None}  # bytes per fused group; CUDA: 40 % of the device
MAX_MEMBERS = 1024  # per group: bounds per-step host work (dropout draws, batch stacking)
ASSUMED_GPU_MEMORY = 16 << 30  # bytes per GPU when this machine has none to measure (a cluster's driver)


@dataclass
class Group:
    runs: list[Run]
    fused: bool = False


def plan_groups(runs: list[Run], fuse: str, device: torch.device,
                tasks: Callable[[str], TaskData] | None = None, notes: list[str] | None = None) -> list[Group]:
    """Groups for ``runs`` under ``--fuse auto|on|off``, in the order runs first appear.

    ``tasks`` maps a task key (``sweep.plan.task_key``) to its data; without it tasks are
    loaded here (the cost model needs input and output sizes). ``notes`` gets one line per class
    of runs that could have fused but cannot (a user model vmap cannot run), saying why.
    """
    if fuse not in ("auto", "on", "off"):
        raise ValueError(f"fuse: expected auto, on or off, got {fuse!r}")
    if fuse == "off":
        return [Group([run]) for run in runs]
    from overparam.train.fused.layout import CONV_FAMILIES, fusable, fuse_key

    classes: dict[str, list[Run]] = defaultdict(list)
    groups: list[Group] = []
    for run in runs:
        # a sharpness curve is measured inside the loop, between steps: those runs train alone
        if fusable(run.config) and not _measures_sharpness(run):
            classes[fuse_key(run.config)].append(run)
        else:
            groups.append(Group([run]))
    load = tasks or _task_loader()
    unfused: dict[tuple[str, str], int] = defaultdict(int)  # (family, why) -> runs: one note each
    for members in classes.values():
        task = load(_task_key(members[0]))
        family = members[0].config["model"]["family"]
        if functional_engine(family):  # the vmap engine, where it can run the module (checked once per shape)
            from overparam.train.fused.functional import unfusable

            reason = unfusable(members[0].config, task, device) if len(members) > 1 else None
            if reason:
                unfused[family, reason] += len(members)
                groups.extend(Group([run]) for run in members)
                continue
        elif (family == "gpt") != (task.kind == "lm") or (family in CONV_FAMILIES and task.kind != "classification"):
            groups.extend(Group([run]) for run in members)  # no engine for the pair (conv: classification only)
            continue
        for chunk in _chunks(members, task, device):
            conv = chunk[0].config["model"]["family"] in CONV_FAMILIES  # grouped convs: no padding, never slower
            if len(chunk) > 1 and (fuse == "on" or conv or pays(chunk, task, device)):
                groups.append(Group(chunk, fused=True))
            else:
                groups.extend(Group([run]) for run in chunk)
    if notes is not None:
        notes.extend(f"{n} runs of {name} train one at a time, not fused: {why}" for (name, why), n in unfused.items())
    first = {run.id: i for i, run in enumerate(runs)}
    return sorted(groups, key=lambda g: min(first[r.id] for r in g.runs))


def _measures_sharpness(run: Run) -> bool:
    return "sharpness" in (run.config["train"].get("diagnostics") or ())


def _task_key(run: Run) -> str:
    from overparam.sweep.plan import task_key

    return task_key(run.config)


def _task_loader() -> Callable[[str], TaskData]:
    from overparam.data import load_task

    cache: dict[str, TaskData] = {}

    def load(key: str) -> TaskData:
        if key not in cache:
            cache[key] = load_task(json.loads(key))
        return cache[key]

    return load


def _chunks(members: list[Run], task: TaskData, device: torch.device) -> list[list[Run]]:
    """Split a fusable class so that each group's memory stays bounded (widest members first)."""
    from overparam.sweep.plan import memory_estimate
    from overparam.train.fused.layout import MAX_WASTE

    limit = GROUP_MEMORY.get(device.type)
    if limit is None:
        if device.type != "cuda":
            limit = GROUP_MEMORY["cpu"]
        else:  # --device cuda on a driver without one: the GPUs are the cluster's (--address)
            total = torch.cuda.get_device_properties(device).total_memory if torch.cuda.is_available() \
                else ASSUMED_GPU_MEMORY
            limit = int(0.4 * total)
    need = {run.id: MAX_WASTE * memory_estimate(run.config, task) for run in members}
    chunks: list[list[Run]] = [[]]
    used = 0.0
    for run in sorted(members, key=lambda r: -need[r.id]):
        if chunks[-1] and (used + need[run.id] > limit or len(chunks[-1]) >= MAX_MEMBERS):
            chunks.append([])
            used = 0.0
        chunks[-1].append(run)
        used += need[run.id]
    return chunks


def step_costs(runs: list[Run], task: TaskData, device: torch.device) -> tuple[float, float]:
    """(loop, fused) predicted seconds per optimizer step of ``runs`` (see the module doc)."""
    from overparam.models import family_module
    from overparam.train.fused.engine import TILED_MIN_BUCKETS
    from overparam.train.fused.layout import own_width, padded_width, plan_layout
    from overparam.train.fused.tiled import TILE
    from overparam.train.run import shape_of

    c = COST.get(device.type, COST["cuda"])
    shape = shape_of(task)
    configs = [r.config for r in runs]
    if configs[0]["model"]["family"] == "gpt":
        return _gpt_step_costs(configs, shape, GPT_COST.get(device.type, GPT_COST["cuda"]))
    if functional_engine(configs[0]["model"]["family"]):
        return _functional_step_costs(configs, task, FUNCTIONAL_COST.get(device.type, FUNCTIONAL_COST["cuda"]))
    train = configs[0]["train"]
    batch = task.n_train if train["optimizer"] == "gd" else min(train["batch_size"], task.n_train)
    family = family_module(configs[0]["model"]["family"])

    def flops(config, width=None) -> float:
        model = config["model"] if width is None else {**config["model"], "width": width}
        return float(family.flops_per_example(model, shape)) * batch

    def looped(config) -> float:  # a big enough member step runs the loop's GEMMs at the fused rate
        f = flops(config)
        return c["LOOP_STEP"] + f / (c["FUSED_RATE"] if f >= LARGE_STEP_FLOPS else c["LOOP_RATE"])

    loop = sum(looped(cfg) for cfg in configs)
    buckets = len(plan_layout(configs, shape, device.type).buckets)
    model = configs[0]["model"]
    tiles = device.type == "cuda" and model["family"] == "mlp" and model["depth"] == 1 \
        and buckets > TILED_MIN_BUCKETS  # members side by side: one bucket's kernels (train/fused/tiled.py)
    if tiles:
        buckets = 1
        padded = sum(flops(cfg, -(-own_width(cfg, shape) // TILE) * TILE) for cfg in configs)
    else:
        padded = sum(flops(cfg, padded_width(cfg, shape, device.type)) for cfg in configs)
    fused = c["GROUP_STEP"] + buckets * c["BUCKET_STEP"] + len(configs) * c["MEMBER_STEP"] + padded / c["FUSED_RATE"]
    return loop, fused


def _gpt_step_costs(configs: list[dict], shape, c: dict[str, float]) -> tuple[float, float]:
    """(loop, fused) seconds per step of gpt runs; B·T tokens per step, buckets by shape.

        loop   Σ_i (LOOP_STEP + L_i·LOOP_LAYER + B·T·F_i / LOOP_RATE)
        fused  Σ_buckets (BUCKET_STEP + L_b·(BUCKET_LAYER + M_b·MEMBER_LAYER)) + Σ_i B·T·F_i / FUSED_RATE

    On CPU both rates are one: batched matmuls run no faster than the loop's (measured), so what
    fusion saves is the per-step, per-layer overhead the constants count.
    """
    from overparam.models import gpt
    from overparam.train.fused_gpt import shape_key

    train, context = configs[0]["train"], configs[0]["model"]["context"]
    tokens = train["batch_size"] * context
    flops = sum(tokens * float(gpt.flops_per_example(cfg["model"], shape)) for cfg in configs)
    loop = sum(c["LOOP_STEP"] + cfg["model"]["n_layer"] * c["LOOP_LAYER"] for cfg in configs) + flops / c["LOOP_RATE"]
    sizes: dict[tuple, int] = defaultdict(int)
    for cfg in configs:
        sizes[shape_key(cfg["model"])] += 1
    fused = sum(c["BUCKET_STEP"] + key[0] * (c["BUCKET_LAYER"] + size * c["MEMBER_LAYER"])
                for key, size in sizes.items())
    return loop, fused + flops / c["FUSED_RATE"]


def _functional_step_costs(configs: list[dict], task: TaskData, c: dict[str, float]) -> tuple[float, float]:
    """(loop, fused) seconds per step of user-model runs (``train/fused/functional.py``); members share a shape:

        loop   Σ_i (LOOP_STEP + B·F / LOOP_RATE)
        fused  GROUP_STEP + M·MEMBER_STEP + M·B·F / FUSED_RATE
    """
    from overparam.models import family_module
    from overparam.train.run import shape_of

    train = configs[0]["train"]
    if task.kind == "lm":  # FLOPs per example are per token: B windows of T tokens
        batch = train["batch_size"] * configs[0]["model"]["context"]
    else:
        batch = task.n_train if train["optimizer"] == "gd" else min(train["batch_size"], task.n_train)
    per = float(family_module(configs[0]["model"]["family"]).flops_per_example(configs[0]["model"], shape_of(task)))
    work = len(configs) * batch * per
    loop = len(configs) * c["LOOP_STEP"] + work / c["LOOP_RATE"]
    return loop, c["GROUP_STEP"] + len(configs) * c["MEMBER_STEP"] + work / c["FUSED_RATE"]


def pays(runs: list[Run], task: TaskData, device: torch.device) -> bool:
    """True when the fused step is predicted at least 10 % faster than the loop's steps."""
    loop, fused = step_costs(runs, task, device)
    return fused <= MARGIN * loop
