"""Runs of any one module shape trained as one program with ``torch.func`` (DESIGN.md "Speed: fused sweeps").

For families without a hand-written engine (the user's own factories): the members (same model
keys; they may differ in seed, lr, weight decay, momentum, schedule, clipping, dropout and
label-noise draw) are built one by one, exactly as the loop builds them, and their parameters
stacked along a leading member axis, as views of one flat leaf (the hand-written engines' layout,
so ``fused.optim.FusedOptimizer`` steps every member with its own lr, weight decay, momentum and
clipping, and ``fused.buffered.Step`` detects a non-finite loss and freezes that member alone).
One step is ``vmap(functional_call(module, member's parameters, member's batch))`` over the
members (``torch.func.stack_module_state``'s recipe), Σ members' mean losses, one backward.

**Exactness.** Each member computes what ``train.loop.train_model`` computes for it alone: the
same init (its own ``family.build``), batches (``batch_indices`` per seed), augmentation draws,
dropout masks (below) and loss; only the order of float additions inside batched kernels may
differ (``tests/test_user_model.py`` holds fused == loop to 1e-10 in float64).

**Dropout.** ``nn.Dropout`` modules are replaced, in the group's shared module, by a stand-in that
multiplies by the member's mask for that call. The loop seeds torch's global generator with the
run's seed and each ``nn.Dropout`` call draws ``bernoulli_(1 − p)`` of its input's shape in
forward order; the engine learns that order and those shapes from one unbatched forward per batch
size and draws each member's masks from a private generator seeded the same way, with the p of
the member's own module: the same masks on CPU.

**What cannot fuse** (:func:`unfusable`), checked once per group shape before training, so the
sweep trains those runs with the loop and says why once: members whose modules differ in
structure or parameter shapes; modules updating buffers in training (BatchNorm's running
statistics: vmap cannot write one member's statistics); forwards that vmap cannot run
(data-dependent control flow on tensor values, in-place updates of captured tensors, random draws
other than ``nn.Dropout``, e.g. ``F.dropout`` or ``torch.rand`` inside ``forward``, or attention
dropout inside ``F.scaled_dot_product_attention``).

**Language tasks** (token windows, next-token loss) train through the same network, step and
dropout masks in ``fused.functional_lm``; this module's checks and results serve both.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import warnings
from collections.abc import Callable
from itertools import islice
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from overparam.data.base import TaskData
from overparam.models import family_module
from overparam.models.base import generator
from overparam.train.batches import batch_indices, eval_steps
from overparam.train.evaluate import CHUNK, loss_kind
from overparam.train.fused.buffered import Step
from overparam.train.fused.data import member_tasks
from overparam.train.fused.evaluate import wrong_counts
from overparam.train.fused.optim import BETAS, FusedOptimizer
from overparam.train.optim import lr_at
from overparam.train.precision import run_autocast
from overparam.train.result import TrainResult, finished
from overparam.train.run import run_dtype, shape_of
from overparam.train.snapshot import Snapshots, TrainingState, fused_state

_NO_BATCHING_RULE = "There is a performance drop because we have not yet implemented the batching rule"
EVAL_MACS = 1 << 30  # multiply-adds per evaluation chunk, all members together (bounds activations)
_REASONS: dict[str, str | None] = {}  # group shape -> why it cannot fuse (None: it can)


class Unfusable(ValueError):
    """The members cannot share one vmap program; the message says why (the sweep prints it)."""


# -- dropout: each member's masks, as its own loop draws them -------------------------------------------

class _Masks:
    """The masks of the current forward (one per dropout call, in order), a recorder of the calls
    (``record``), or neither (no member drops anything: the stand-ins pass their input through)."""

    def __init__(self, masks: list[torch.Tensor] | None, record: bool = False):
        self.masks, self.record, self.calls, self.next = masks, record, [], 0


_ACTIVE: list[_Masks] = []


@contextlib.contextmanager
def _using(masks: _Masks):
    _ACTIVE.append(masks)
    try:
        yield masks
    finally:
        _ACTIVE.pop()


class MaskedDropout(nn.Module):
    """Stands in for ``nn.Dropout`` ``name`` in the group's module: ``x · mask`` with the member's mask.

    ``p`` is the replaced module's, for code that reads it rather than calling the module (transformers'
    gpt2 passes its attention dropout's p to ``F.scaled_dot_product_attention``: 0 fuses; above 0 it draws
    inside the kernel, which vmap refuses, so such runs train with the loop)."""

    def __init__(self, name: str, p: float):
        super().__init__()
        self.name, self.p = name, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not _ACTIVE:
            return x
        current = _ACTIVE[-1]
        if current.record:  # which module, on what shape and dtype
            current.calls.append((self.name, tuple(x.shape), x.dtype))
            return x
        if current.masks is None:
            return x
        mask = current.masks[current.next]
        current.next += 1
        return x * mask


def _with_masked_dropout(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose ``nn.Dropout`` submodules are :class:`MaskedDropout` stand-ins."""
    module = copy.deepcopy(module)
    for name, sub in list(module.named_modules()):
        if isinstance(sub, nn.Dropout) and name:
            parent, _, leaf = name.rpartition(".")
            setattr(module.get_submodule(parent) if parent else module, leaf, MaskedDropout(name, sub.p))
    return module


class DropoutMasks:
    """Per member, the masks of each dropout call of a step, drawn as its unfused run draws them."""

    def __init__(self, members: list[nn.Module], seeds: list[int], device: torch.device):
        self.members, self.device = members, device
        self.gens = [torch.Generator().manual_seed(s) if any(isinstance(m, nn.Dropout) and m.p > 0
                                                          for m in member.modules()) else None
                     for member, s in zip(members, seeds, strict=True)]

    @property
    def active(self) -> bool:
        return any(g is not None for g in self.gens)

    def draw(self, calls: list[tuple[str, tuple[int, ...], torch.dtype]]) -> list[torch.Tensor]:
        """One stacked (M, *shape) mask per call: ``bernoulli_(1 − p) / (1 − p)``, ones where p = 0."""
        out = []
        for name, shape, dtype in calls:
            rows = []
            for member, gen in zip(self.members, self.gens, strict=True):
                p = member.get_submodule(name).p
                if gen is None or p == 0:
                    rows.append(torch.ones(shape, dtype=dtype))
                else:  # nn.Dropout on CPU: empty_like(x).bernoulli_(1 − p).div_(1 − p), then x · noise
                    rows.append(torch.empty(shape, dtype=dtype).bernoulli_(1 - p, generator=gen).div_(1 - p))
            out.append(torch.stack(rows).to(self.device))
        return out


# -- the group's network -------------------------------------------------------------------------------

def _signature(module: nn.Module) -> list[tuple]:
    """What must agree between members: module types, parameter and buffer names, shapes, dtypes."""
    mods = [(name, type(m).__name__) for name, m in module.named_modules()]
    params = [(n, tuple(p.shape), p.dtype, p.requires_grad) for n, p in module.named_parameters()]
    buffers = [(n, tuple(b.shape), b.dtype) for n, b in module.named_buffers()]
    return [*mods, *params, *buffers]


def structure_problem(members: list[nn.Module]) -> str | None:
    """Why these members cannot share one module's code, or None."""
    first = _signature(members[0])
    if any(_signature(m) != first for m in members[1:]):
        return "the members' modules differ in structure or parameter shapes"
    for name, module in members[0].named_modules():
        if isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats:
            return (f"{type(module).__name__} {name or 'the model'!r} updates running statistics in training, which "
                    f"vmap cannot write per member")
    if not any(p.requires_grad for p in members[0].parameters()):
        return "the model has no trainable parameters"
    return None


class FunctionalNet(nn.Module):
    """Members' trainable parameters stacked (M, *shape) as views of one flat leaf; one shared module's code.

    ``seed_of[slot]``: the member's row in the stacked batches (S, B, …), one row per distinct seed.
    Frozen parameters (``requires_grad`` False) and buffers are stacked as constants.
    """

    def __init__(self, members: list[nn.Module], seed_of: list[int], dtype: torch.dtype, device: torch.device):
        super().__init__()
        self.seed_of = seed_of
        self.base = _with_masked_dropout(members[0]).to(device)
        self.names = [n for n, p in members[0].named_parameters() if p.requires_grad]
        self.shapes = [tuple(dict(members[0].named_parameters())[n].shape) for n in self.names]
        m = len(members)
        pieces, owners, lengths = [], [], []
        for name in self.names:
            stacked = torch.stack([m_.get_parameter(name).detach() for m_ in members]).to(dtype)  # (M, *shape)
            pieces.append(stacked.reshape(-1))
            owners += range(m)
            lengths += [stacked[0].numel()] * m
        self.flat = nn.Parameter(torch.cat(pieces).to(device))  # (P,)
        self.register_buffer("run_owner", torch.tensor(owners, device=device))  # (R,) slot per run
        self.register_buffer("run_len", torch.tensor(lengths, device=device))  # (R,) elements per run
        frozen = [n for n, p in members[0].named_parameters() if not p.requires_grad]
        self.constants = {n: torch.stack([dict(m_.named_parameters())[n].detach() for m_ in members]).to(device)
                          for n in frozen}
        self.constants.update({n: torch.stack([dict(m_.named_buffers())[n] for m_ in members]).to(device)
                               for n, _ in members[0].named_buffers()})
        self.constants = {n: (t.to(dtype) if t.is_floating_point() else t) for n, t in self.constants.items()}
        self.rows = torch.tensor(seed_of, device=device)  # (M,)
        self.identity = list(seed_of) == list(range(len(seed_of)))  # member i reads seed row i: no copy
        self._calls: dict[tuple, list] = {}

    def views(self) -> dict[str, torch.Tensor]:
        """Parameter name -> (M, *shape) view of the flat leaf."""
        pieces = self.flat.split([len(self.seed_of) * math.prod(s) for s in self.shapes])
        return {n: p.view(len(self.seed_of), *s) for n, p, s in zip(self.names, pieces, self.shapes, strict=True)}

    def dropout_calls(self, x: torch.Tensor) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
        """The dropout calls of one training forward on one member's batch like ``x`` (B, …), in order."""
        key = (tuple(x.shape), x.dtype)
        if key not in self._calls:
            one = {n: v[0] for n, v in self.views().items()}
            one.update({n: v[0] for n, v in self.constants.items()})
            recorder = _Masks(None, record=True)
            with torch.no_grad(), _using(recorder):
                self.base.train()
                functional_call(self.base, one, (x,))
            self._calls[key] = recorder.calls
        return self._calls[key]

    def forward(self, x: torch.Tensor, training: bool, masks: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Outputs (M, B, …) of every member on ``x``: (S, B, …) per-seed batches, or (B, …) shared by all."""
        self.base.train(training)
        state = {**self.views(), **self.constants}
        if training and len(x) > 1:  # one row per distinct seed: each member its own
            x_in, x_dim = (x if self.identity else x.index_select(0, self.rows)), 0
        elif training:
            x_in, x_dim = x[0], None
        else:
            x_in, x_dim = x, None

        def one(params: dict[str, torch.Tensor], xb: torch.Tensor, mk: list[torch.Tensor] | None) -> torch.Tensor:
            with _using(_Masks(mk)):
                return functional_call(self.base, params, (xb,))

        with warnings.catch_warnings():  # vmap runs such an op member by member: correct, the speed is measured
            warnings.filterwarnings("ignore", message=_NO_BATCHING_RULE)
            return vmap(one, in_dims=(0, x_dim, 0 if masks else None), randomness="error")(state, x_in, masks or None)

    @torch.no_grad()
    def write_back(self, slot: int, module: nn.Module) -> None:
        """Copy member ``slot``'s trained parameters into its own unfused module."""
        for name, view in self.views().items():
            module.get_parameter(name).copy_(view[slot])

    def buffers_state(self) -> list[torch.Tensor]:
        return []  # no buffer changes in training (a module that changes them does not fuse)


class GroupStep(Step):
    """``fused.buffered.Step`` (clip, detect, freeze, update) with this engine's losses (regression too)."""

    def __init__(self, net: FunctionalNet, opt: FusedOptimizer, kind: str, classification: bool, n_classes: int | None,
                 autocast: torch.dtype | None):
        super().__init__(net, opt, kind, autocast)
        self.classification, self.n_classes = classification, n_classes

    def losses(self, x: torch.Tensor, y: torch.Tensor, masks=None) -> torch.Tensor:
        from overparam.train import precision

        with precision.autocast_region(x.device, self.autocast):
            out = self.net(x, True, masks)  # (M, B, K)
        return member_losses(out.to(self.net.flat.dtype), y, self.kind, self.n_classes)


def example_losses(out: torch.Tensor, y: torch.Tensor, kind: str, n_classes: int | None) -> torch.Tensor:
    """(M, B) per-example losses as ``evaluate.batch_loss`` takes their mean: outputs (M, B, K), labels (M, B[, K])."""
    if kind == "cross_entropy":  # classes on dim 1, examples last: CPU's log-softmax runs along B (6x faster)
        return F.cross_entropy(out.transpose(1, 2), y, reduction="none")
    target = F.one_hot(y, n_classes).to(out.dtype) if n_classes and y.dtype == torch.int64 else y
    return ((out - target) ** 2).sum(dim=2)


def member_losses(out: torch.Tensor, y: torch.Tensor, kind: str, n_classes: int | None) -> torch.Tensor:
    return example_losses(out, y, kind, n_classes).mean(dim=1)


# -- can a group fuse? -------------------------------------------------------------------------------------

def _probe(members: list[nn.Module], x: torch.Tensor, y: torch.Tensor, losses: Callable, dtype: torch.dtype) -> None:
    """One forward and backward of a two-member group on a small batch: raises what vmap cannot run.

    ``losses(outputs (2, B, …), labels (2, B, …))`` -> (2,): the task's per-member training loss."""
    net = FunctionalNet(members, [0, 1], dtype, x.device)
    masks = DropoutMasks(members, [0, 1], x.device)
    batch = torch.stack([x, x.flip(0)])  # (2, B, …): each member its own rows
    mk = masks.draw(net.dropout_calls(x)) if masks.active else None
    out = net(batch, True, mk)
    losses(out.to(dtype), torch.stack([y, y.flip(0)])).sum().backward()
    net(x, False)


def unfusable(config: dict[str, Any], task: TaskData, device: torch.device) -> str | None:
    """Why runs of this config's shape cannot train as one vmap program, or None (checked once per shape)."""
    key = json.dumps([config["model"], config["train"]["dropout"] > 0, config["train"]["dtype"],
                      list(task.input_shape), task.kind, task.n_classes, task.vocab_size, str(device)],
                     sort_keys=True, default=str)
    if key not in _REASONS:
        _REASONS[key] = _reason(config, task, device)
    return _REASONS[key]


def _reason(config: dict[str, Any], task: TaskData, device: torch.device) -> str | None:
    family, shape, train = family_module(config["model"]["family"]), shape_of(task), config["train"]
    dtype = run_dtype(train)
    if task.kind == "lm":
        from overparam.train.fused import functional_lm

        example = functional_lm.probe_batch(config, task, device)
        if example is None:  # a run the loop refuses too: the engine raises the same error when it trains
            return None
        (x, y), losses = example, functional_lm.member_lm_losses
    else:
        n = min(len(task.x_train), 4)
        x = torch.as_tensor(task.x_train[:n], dtype=dtype, device=device)
        y = torch.as_tensor(task.y_train[:n], dtype=torch.int64 if task.kind == "classification" else dtype,
                            device=device)
        kind, n_classes = loss_kind(task, train), task.n_classes if task.kind == "classification" else None
        losses = lambda out, labels: member_losses(out, labels, kind, n_classes)  # noqa: E731
    members = [family.build(config["model"], shape, s, dropout=train["dropout"]).to(device, dtype) for s in (0, 1)]
    problem = structure_problem(members)
    if problem:
        return problem
    try:
        _probe(members, x, y, losses, dtype)
    except Exception as exc:  # vmap's refusals are RuntimeErrors, the module's own code may raise anything
        first = " ".join(str(exc).split("\n")[0].split())[:200]
        if "random operation" in first:
            return ("vmap cannot run the model's forward: it draws random numbers other than through nn.Dropout "
                    "modules (torch.rand, F.dropout, or attention dropout inside F.scaled_dot_product_attention), "
                    "which vmap cannot draw as each run alone does")
        return f"vmap cannot run the model's forward ({type(exc).__name__}: {first})"
    return None


# -- training --------------------------------------------------------------------------------------------

@torch.no_grad()
def evaluate_members(net: FunctionalNet, data: dict[str, torch.Tensor], kind: str, n_classes: int | None,
                     rows: int) -> list[dict[str, Any]]:
    """Per slot, ``evaluate.evaluate``'s metrics: every member on each split, ``rows`` examples per pass."""
    members = len(net.seed_of)

    def split(x: torch.Tensor, labels: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        sums = [(torch.zeros(members, dtype=torch.float64, device=x.device),
                 torch.zeros(members, dtype=torch.float64, device=x.device)) for _ in labels]
        for start in range(0, len(x), rows):
            out = net(x[start:start + rows], False)  # (M, C, K)
            for (loss, wrong), y in zip(sums, labels, strict=True):
                yb = y[:, start:start + rows]  # (M, C[, K])
                loss += example_losses(out, yb, kind, n_classes).sum(dim=1).double()
                if n_classes:
                    wrong += wrong_counts(out.transpose(1, 2), yb).double()  # argmax's decision, faster on CPU
        return [(loss / len(x), wrong / len(x) if n_classes else None) for loss, wrong in sums]

    train = split(data["x_train"], [data["y_train"], *([data["y_train_clean"]] if "y_train_clean" in data else [])])
    (trl, tre), (tel, tee) = train[0], split(data["x_test"], [data["y_test"]])[0]
    out = []
    for i in range(members):
        row = {"train_loss": float(trl[i]), "test_loss": float(tel[i]),
               "train_error": float(tre[i]) if tre is not None else None,
               "test_error": float(tee[i]) if tee is not None else None}
        if len(train) > 1:
            row["train_error_clean"] = float(train[1][1][i])
        out.append(row)
    return out


def _eval_rows(config: dict[str, Any], task: TaskData, members: int) -> int:
    macs = max(1, family_module(config["model"]["family"]).flops_per_example(config["model"], shape_of(task)) // 6)
    return max(1, min(CHUNK, EVAL_MACS // (members * macs)))


def train_functional_group(configs: list[dict[str, Any]], task: TaskData, device: torch.device, *,
                           snapshots: Snapshots | None = None) -> list[TrainResult]:
    """Train ``configs`` (resolved run configs sharing ``layout.fuse_key``) as one vmap program.

    Returns one ``TrainResult`` per config, in order, as ``train_model`` returns it (metrics, curve,
    the unfused module's state dict) plus ``fused`` and ``group_size``. Raises :class:`Unfusable`
    (a ``ValueError``: the executor then trains the runs one at a time) when the members cannot share
    a program. ``snapshots``: the group's training snapshots, resumed from when present.
    """
    if task.kind == "lm":  # token windows and the next-token loss: the same network, step and masks
        from overparam.train.fused.functional_lm import train_functional_lm_group

        return train_functional_lm_group(configs, task, device, snapshots=snapshots)
    train0 = configs[0]["train"]
    family, shape, dtype = family_module(configs[0]["model"]["family"]), shape_of(task), run_dtype(train0)
    classification = task.kind == "classification"
    n_classes = task.n_classes if classification else None
    seeds = sorted({c["seed"] for c in configs})
    members = [family.build(c["model"], shape, c["seed"], dropout=c["train"]["dropout"]).to(dtype) for c in configs]
    problem = structure_problem(members)
    if problem:
        raise Unfusable(problem)
    net = FunctionalNet(members, [seeds.index(c["seed"]) for c in configs], dtype, device)
    trains = [c["train"] for c in configs]
    opt = FusedOptimizer(net.flat, net.run_owner, net.run_len, trains)
    kind = loss_kind(task, train0)
    step_fn = GroupStep(net, opt, kind, classification, n_classes, run_autocast(train0))
    tasks = member_tasks(configs, task)
    ydtype = torch.int64 if classification else dtype
    as_t = lambda a, dt=dtype: torch.as_tensor(a, dtype=dt, device=device)  # noqa: E731
    data = {"x_train": as_t(task.x_train), "x_test": as_t(task.x_test)}
    data["y_train"] = torch.stack([as_t(t.y_train, ydtype) for t in tasks])  # (M, n[, K]): noise per member
    data["y_test"] = as_t(task.y_test, ydtype).expand(len(configs), *task.y_test.shape)
    if classification and task.y_train_clean is not None:
        data["y_train_clean"] = as_t(task.y_train_clean, ydtype).expand(len(configs), *task.y_train_clean.shape)
    masks = DropoutMasks(members, [c["seed"] for c in configs], device)
    n, steps = len(task.x_train), train0["steps"]
    batch = n if train0["optimizer"] == "gd" else min(train0["batch_size"], n)
    augment = getattr(task, "augment_fn", None)
    aug_gens = [generator(s, "augment") for s in seeds] if augment is not None else []
    checkpoints = set(eval_steps(steps, train0["eval_every"], train0["eval_log_points"]))
    curves: list[list[tuple[int, dict[str, Any]]]] = [[] for _ in configs]
    rows = _eval_rows(configs[0], task, len(configs))

    def record(step: int) -> None:
        alive = step_fn.active.tolist()
        for slot, row in enumerate(evaluate_members(net, data, kind, n_classes, rows)):
            if alive[slot]:
                curves[slot].append((step, row))

    if 0 in checkpoints:
        record(0)
    snap = snapshots or Snapshots.off()
    state = group_state(step_fn, masks, aug_gens)
    start, curves = snap.resume(state, curves)  # the last snapshot's step and curves (0 and [] without one)
    opt.step_count = step = start
    streams = [batch_indices(n, batch, steps, s) for s in seeds]
    row_of = torch.tensor(net.seed_of, device=device)
    for step, idxs in enumerate(islice(zip(*streams), start, None), start=start + 1):
        idx = torch.stack(idxs).to(device)  # (S, B)
        xs = data["x_train"][idx]  # (S, B, …): one gather for every seed
        if augment is not None:
            xs = torch.stack([augment(x, g) for x, g in zip(xs, aug_gens, strict=True)])
        y = _gather(data["y_train"], idx[row_of])  # (M, B[, K])
        lrs = [lr_at(step - 1, t) for t in trains]
        ctl = torch.tensor([*lrs, step, 1 - BETAS[0] ** step, (1 - BETAS[1] ** step) ** 0.5], dtype=torch.float64)
        mk = masks.draw(net.dropout_calls(xs[0])) if masks.active else None
        step_fn(xs, y, ctl.to(device), mk)
        if step in checkpoints:
            record(step)
        snap.step(step, state, curves)
    return member_results(configs, members, net, curves, step_fn, step)


def _gather(y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows ``idx`` (M, B) of each member's labels ``y`` (M, n[, K])."""
    if y.dim() == 2:
        return torch.gather(y, 1, idx)
    return torch.gather(y, 1, idx[..., None].expand(-1, -1, y.shape[-1]))


def group_state(step_fn: GroupStep, masks: DropoutMasks, aug_gens: list[torch.Generator]) -> TrainingState:
    """``fused_state`` (flat parameters, moments, divergence) plus each member's dropout generator and each
    seed's augmentation generator: everything the remaining steps depend on."""
    state = fused_state(step_fn)
    state.generators.update({f"dropout/{slot}": g for slot, g in enumerate(masks.gens) if g is not None})
    state.generators.update({f"augment/{row}": g for row, g in enumerate(aug_gens)})
    return state


def member_results(configs: list[dict[str, Any]], members: list[nn.Module], net: FunctionalNet,
             curves: list[list[tuple[int, dict[str, Any]]]], step_fn: GroupStep, last: int,
             constants: dict[str, Any] | None = None) -> list[TrainResult]:
    """Per member what ``train_model`` (``train_lm``) returns: done with its state, or diverged without.

    ``constants``: metrics every finished member gets (a language task's ``entropy_rate``)."""
    diverged_at = [int(v) for v in step_fn.diverged_at.tolist()]
    extra = {"fused": True, "group_size": len(configs)}
    results = []
    for slot, curve in enumerate(curves):
        final = curve[-1][1] if curve else {}
        if diverged_at[slot] or not all(math.isfinite(final.get(k, math.nan)) for k in ("train_loss", "test_loss")):
            at = diverged_at[slot] or last
            metrics = {**dict(final), "diverged_at": at, **extra}
            results.append(TrainResult("diverged", metrics, curve, None, f"non-finite loss at step {at}"))
            continue
        net.write_back(slot, members[slot])
        results.append(finished(members[slot], {**dict(final), **(constants or {}), **extra}, curve))
    return results
