"""Train a group of runs as one program; each member ends exactly as ``train_model`` would end it.

One step: every member's forward on its batch, the loss Σ_i mean_loss_i, one backward (the sum
gives each member the gradient of its own loss), per-member clipping and NaN/inf detection, one
elementwise optimizer step. A member whose loss (or, when it clips, gradient norm) is not finite
is frozen at that step (learning rate 0) and reported ``diverged`` with ``diverged_at``, as the
loop reports it; the others go on untouched (nothing crosses between members: each bucket's
matmul is a separate GEMM per member, and everything else is elementwise or per member).

Divergence is tracked on the device (no host sync per step, so the step can be a CUDA graph);
the host reads it at evaluation steps and at the end.
"""

from __future__ import annotations

import math
import warnings
from itertools import islice
from typing import Any

import torch

from overparam.data.base import TaskData
from overparam.models import family_module
from overparam.train.batches import eval_steps
from overparam.train.evaluate import loss_kind
from overparam.train.fused.data import GroupData, group_batches, member_losses, member_tasks
from overparam.train.fused.evaluate import evaluate_group
from overparam.train.fused.layout import fusable, fuse_key, plan_layout
from overparam.train.fused.nets import FusedNet, build_net
from overparam.train.fused.optim import BETAS, FusedOptimizer
from overparam.train.optim import lr_at
from overparam.train.precision import autocast_region, run_autocast
from overparam.train.result import TrainResult, finished
from overparam.train.run import run_dtype, shape_of
from overparam.train.snapshot import Snapshots, fused_state

KERNELS = ("auto", "buckets", "tiles", "jagged")  # train_group(kernel=...): see ``_network``
TILED_MIN_BUCKETS = 2  # auto on CUDA: more buckets than this and one-hidden-layer groups go side by side


def check_group(configs: list[dict[str, Any]]) -> None:
    """Refuse a group whose members cannot share one program (a planning bug if it happens)."""
    if not configs:
        raise ValueError("fused group: no runs")
    key = fuse_key(configs[0])
    for config in configs:
        if not fusable(config):
            raise ValueError(f"fused group: {config['model']['family']}/{config['train']['optimizer']} "
                             f"does not fuse")
        if fuse_key(config) != key:
            raise ValueError("fused group: members differ in a setting that must be shared "
                             "(task inputs, model shape, optimizer, steps, batch size, evals, dtype)")


class DropoutMasks:
    """Each member's masks drawn exactly as its unfused run draws them.

    The loop seeds the global generator with the run's seed and ``nn.Dropout`` draws
    ``bernoulli_(1 − p)`` of shape (B, width) per hidden layer per step, in forward order; a
    private ``torch.Generator`` seeded the same way yields the same stream. (On CUDA, the
    unfused loop's fused dropout kernel draws differently: masks there are equally
    distributed, not identical.)
    """

    def __init__(self, net: FusedNet, trains: list[dict[str, Any]], seeds: list[int], device: torch.device,
                 dtype: torch.dtype):
        self.net, self.device, self.dtype = net, device, dtype
        self.p = [t["dropout"] for t in trains]
        self.gens = []
        for seed, p in zip(seeds, self.p, strict=True):
            gen = torch.Generator(device=device) if p > 0 else None
            if gen is not None:
                gen.manual_seed(seed)
            self.gens.append(gen)

    @property
    def active(self) -> bool:
        return any(p > 0 for p in self.p)

    def draw(self, batch: int) -> list[list[torch.Tensor]]:
        """Per bucket, per hidden layer: (Mb, W, B) noise (1 for members without dropout)."""
        layout, depth = self.net.layout, self.net.depth
        masks = []
        for bucket in layout.buckets:
            layers = [torch.ones(bucket.size, bucket.width, batch, dtype=self.dtype, device=self.device)
                      for _ in range(depth)]
            masks.append(layers)
        for slot in range(layout.size):
            if self.gens[slot] is None:
                continue
            b = next(i for i, k in enumerate(layout.buckets) if k.start <= slot < k.stop)
            j, width, keep = slot - layout.buckets[b].start, layout.widths[slot], 1 - self.p[slot]
            for layer in range(depth):
                noise = torch.empty(batch, width, dtype=self.dtype, device=self.device)
                masks[b][layer][j, :width] = noise.bernoulli_(keep, generator=self.gens[slot]).div_(keep).T
        return masks


class Step:
    """Forward, backward, clip, detect, update: the part a CUDA graph captures.

    State kept on the device: ``active`` (M,) and ``diverged_at`` (M,), 0 while alive.
    """

    def __init__(self, net: FusedNet, opt: FusedOptimizer, data: GroupData, kind: str,
                 autocast: torch.dtype | None):
        self.net, self.opt, self.data, self.kind, self.autocast = net, opt, data, kind, autocast
        members, device = net.layout.size, data.x_train.device
        self.active = torch.ones(members, dtype=torch.bool, device=device)
        self.diverged_at = torch.zeros(members, dtype=torch.float64, device=device)

    def __call__(self, idx: torch.Tensor, ctl: torch.Tensor, masks=None, bias=None) -> None:
        """``ctl`` (M + 1,) float64: each member's lr at this step, then the step number."""
        net, members = self.net, self.net.layout.size
        with autocast_region(idx.device, self.autocast):
            out = net.train_forward(idx, masks)  # (M, K, B)
        out = out.to(net.params.flat.dtype)  # the loss in train.dtype, as the loop takes it
        losses = member_losses(out, self.data.labels(idx, members), self.kind, self.data)  # (M,)
        net.params.flat.grad = None
        losses.sum().backward()  # d(Σ loss_i)/d(loss_i) = 1: each member gets its own gradient
        losses = losses.detach()
        ok = torch.isfinite(losses)
        if self.opt.clipping:
            norms = self.opt.clip_(net.params.flat.grad)
            ok &= torch.isfinite(norms) | ~self.opt.has_clip  # the loop checks the norm only when clipping
        newly = self.active & ~ok
        self.diverged_at.copy_(torch.where(newly, ctl[members], self.diverged_at))  # in place: graphs read it
        self.active &= ok
        self.opt.step(self._lr(ctl[:members] * self.active), bias)

    def _lr(self, lr: torch.Tensor) -> float | torch.Tensor:
        """A float when all members share one lr (eager only: reading it syncs), else (M,)."""
        if self.opt.eager and bool((lr == lr[0]).all()):
            return float(lr[0])
        return lr


def choose_kernel(kernel: str, one_layer: bool, dropout: bool, device_type: str, buckets: int,
                  autocast: bool, grouped_mm: bool) -> str:
    """The network a group trains on: ``buckets``, ``tiles`` or ``jagged`` (see ``_network``)."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel: expected one of {', '.join(KERNELS)}, got {kernel!r}")
    if kernel in ("tiles", "jagged") and not one_layer:
        raise ValueError(f"kernel {kernel}: only one-hidden-layer MLPs")
    if kernel == "jagged" and dropout:
        raise ValueError("kernel jagged: only groups without dropout")
    if kernel != "auto":
        return kernel
    if not one_layer or device_type != "cuda":
        return "buckets"
    if autocast and grouped_mm and not dropout:
        return "jagged"
    return "tiles" if buckets > TILED_MIN_BUCKETS else "buckets"


def _network(slots: list[dict[str, Any]], members: list[torch.nn.Module], layout, data: GroupData,
             dtype: torch.dtype, device: torch.device, autocast: torch.dtype | None, kernel: str) -> FusedNet:
    """Buckets, or for a one-hidden-layer MLP group members side by side (``tiles``, ``jagged``).

    ``auto`` on CUDA: the jagged grouped-matmul network under bf16 autocast where torch has a
    grouped matmul and ``jagged.probe`` agrees with the bucketed network on this group's data,
    else tiles when the group spans more than ``TILED_MIN_BUCKETS`` buckets (a step of a few
    kernels instead of a dozen per bucket). On CPU ``auto`` keeps buckets: there the widest
    members' matmuls bound the step, and the per-bucket GEMMs beat tiles of 8 units
    (benchmarks/sweep_speed.py --kernels). ``tiles``, ``jagged`` force a path (on CPU jagged
    runs through a loop of matmuls: for tests); ``buckets`` never leaves the buckets.
    """
    from overparam.train.fused import jagged
    from overparam.train.fused.tiled import TiledMLP

    model, shape_in, shape_out = slots[0]["model"], data.x_train.shape[1], net_outputs(data)
    one_layer = model["family"] == "mlp" and model["depth"] == 1
    dropout = any(c["train"]["dropout"] > 0 for c in slots)
    choice = choose_kernel(kernel, one_layer, dropout, device.type, len(layout.buckets), autocast is not None,
                           jagged.native_available(device))
    if choice == "tiles":
        return TiledMLP(members, layout, shape_in, shape_out, dtype, device)
    bucketed = build_net(model["family"], members, layout, model, shape_in, shape_out, dtype, device)
    if choice == "buckets":
        return bucketed
    net = jagged.JaggedMLP(members, layout, shape_in, shape_out, dtype, device)
    x = data.x_train[:256]  # (B, d)
    tol = 5e-2 if autocast is not None else 1e-9  # bf16 has 8 mantissa bits
    why = jagged.probe(net, bucketed, members, x, tol) or \
        jagged.probe(net, bucketed, members, x.expand(layout.size, *x.shape), tol)
    if why is None:
        return net
    if kernel == "jagged":
        raise ValueError(f"kernel jagged: disagrees with the bucketed network ({why})")
    fallback = "tiles" if len(layout.buckets) > TILED_MIN_BUCKETS else "buckets"
    warnings.warn(f"fused group: grouped matmul unusable here ({why}); using {fallback}", stacklevel=3)
    return TiledMLP(members, layout, shape_in, shape_out, dtype, device) if fallback == "tiles" else bucketed


def net_outputs(data: GroupData) -> int:
    """K: classes, or regression targets."""
    return data.n_classes if data.classification else data.y_train.shape[-1]


def train_group(configs: list[dict[str, Any]], task: TaskData, device: torch.device, *,
                autocast: str | None = None, graphs: bool | None = None, kernel: str = "auto",
                snapshots: Snapshots | None = None) -> list[TrainResult]:
    """Train ``configs`` (resolved run configs; ``task`` is the first one's) as one program.

    Returns one ``TrainResult`` per config, in order, with ``train_model``'s metrics, curve and
    state-dict structure, plus ``metrics["fused"] = True`` and ``metrics["group_size"]``.
    ``autocast``: "bf16" or "off" overrides ``train.autocast`` (benchmarks). ``graphs`` (default: on
    CUDA without dropout) captures the step as a CUDA graph. ``kernel``: see ``_network``.
    ``snapshots``: the group's training snapshots (``train.snapshot``), resumed from when present.
    """
    check_group(configs)
    shape, train0 = shape_of(task), configs[0]["train"]
    dtype, family = run_dtype(train0), configs[0]["model"]["family"]
    layout = plan_layout(configs, shape, device.type)
    slots = [configs[i] for i in layout.order]
    tasks = member_tasks(configs, task)
    data = GroupData([tasks[i] for i in layout.order], device, dtype)
    fam = family_module(family)
    members = [fam.build(c["model"], shape, c["seed"], dropout=c["train"]["dropout"]).to(dtype=dtype)
               for c in slots]
    trains = [c["train"] for c in slots]
    precision = run_autocast(train0, autocast)
    net = _network(slots, members, layout, data, dtype, device, precision, kernel)
    net.bind(data.x_train)
    opt = FusedOptimizer(net.params.flat, net.params.run_owner, net.params.run_len, trains)
    kind = loss_kind(task, train0)
    step_fn = Step(net, opt, data, kind, precision)
    if graphs is None:
        graphs = device.type == "cuda" and not any(t["dropout"] > 0 for t in trains)
    masks = DropoutMasks(net, trains, [c["seed"] for c in slots], device, dtype) if family == "mlp" else None
    if masks is not None and not masks.active:
        masks = None
    runner = step_fn
    if graphs:
        from overparam.train.fused.cuda import GraphedStep

        runner = GraphedStep(step_fn)

    steps = train0["steps"]
    batch = data.n_train if train0["optimizer"] == "gd" else train0["batch_size"]
    checkpoints = set(eval_steps(steps, train0["eval_every"], train0["eval_log_points"]))
    curves: list[list[tuple[int, dict[str, float]]]] = [[] for _ in slots]

    def record(step: int) -> None:
        alive = step_fn.active.tolist()
        for slot, row in enumerate(evaluate_group(net, data, kind)):
            if alive[slot]:
                curves[slot].append((step, row))

    if 0 in checkpoints:
        record(0)
    schedule = _LrTable(trains)
    snap = snapshots or Snapshots.off()
    state = fused_state(step_fn, masks)
    start, curves = snap.resume(state, curves)  # the last snapshot's step and curves (0 and [] without one)
    opt.step_count = step = start
    batches = islice(group_batches(data.n_train, batch, steps, [c["seed"] for c in slots], device), start, None)
    for step, idx in enumerate(batches, start=start + 1):
        ctl = torch.tensor([*schedule.at(step - 1), float(step)], dtype=torch.float64)
        bias = (1 - BETAS[0] ** step, (1 - BETAS[1] ** step) ** 0.5)
        runner(idx, ctl.to(device), masks.draw(idx.shape[-1]) if masks is not None else None, bias)
        if step in checkpoints:
            record(step)
        snap.step(step, state, curves)
    return _results(configs, layout.order, members, net, curves, step_fn, step)


class _LrTable:
    """Each member's ``lr_at(step)``, computed once per distinct schedule (members share most)."""

    def __init__(self, trains: list[dict[str, Any]]):
        keys = [(t["lr"], t["warmup_steps"], t["schedule"], t["steps"]) for t in trains]
        self.distinct = sorted(set(keys))
        self.trains = [trains[keys.index(k)] for k in self.distinct]
        self.where = [self.distinct.index(k) for k in keys]

    def at(self, step: int) -> list[float]:
        values = [lr_at(step, t) for t in self.trains]
        return [values[i] for i in self.where]


def _results(configs: list[dict[str, Any]], order: tuple[int, ...], members: list[torch.nn.Module],
             net: FusedNet, curves: list[list[tuple[int, dict[str, float]]]], step_fn: Step,
             last_step: int) -> list[TrainResult]:
    """Per member, what ``train_model`` returns: done with state, or diverged without."""
    diverged_at = [int(v) for v in step_fn.diverged_at.tolist()]
    results: list[TrainResult | None] = [None] * len(configs)
    extra = {"fused": True, "group_size": len(configs)}
    for slot, index in enumerate(order):
        curve = curves[slot]
        if diverged_at[slot]:
            last = {**(dict(curve[-1][1]) if curve else {}), "diverged_at": diverged_at[slot], **extra}
            results[index] = TrainResult("diverged", last, curve, None,
                                         f"non-finite loss at step {diverged_at[slot]}")
            continue
        metrics = {**dict(curve[-1][1]), **extra}
        if not all(math.isfinite(metrics[k]) for k in ("train_loss", "test_loss")):
            metrics["diverged_at"] = last_step
            results[index] = TrainResult("diverged", metrics, curve, None,
                                         "non-finite loss at the final evaluation")
            continue
        module = members[slot]
        net.params.write_back(slot, module)
        results[index] = finished(module, metrics, curve)
    return results
