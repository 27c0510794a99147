"""A width sweep of a conv family (``cnn``, ``resnet18k``) trained as one program (DESIGN.md "Speed: fused sweeps").

Horizontal fusion (Wang et al. 2022, "Horizontally Fused Training Array", HFTA): Mb models of
one shape become one model whose convolutions are *grouped*. Members sit side by side along
the channel axis, member j owning channels [j·c, (j+1)·c) of every layer; a conv weight is the
members' weights stacked, (Mb·c_out, c_in, 3, 3), applied with ``groups=Mb``, so one call
computes the Mb convolutions and no member reads another's channels. BatchNorm over the Mb·c
channels normalizes each channel over the batch, i.e. keeps **each member's own statistics**
(and running averages); ReLU, pooling and residual additions act per channel; the head is a
batched matmul. The family's grouped forward lives in ``train/grouped_convs.py``.
When a bucket's members all see the same images (same seed: same batches, same augmentation)
its first conv is an ordinary conv with Mb·k outputs on the shared batch, without copying it.

Members are bucketed by exact width (grouped convs need equal groups; padding k = 1 to k = 64
would cost 64² / Σ k² ≈ 5× on the issue's sweep), one grouped network per bucket, all in one
step: one loss Σ_i loss_i, one backward, one elementwise optimizer step over a flat parameter
leaf (``train.fused.optim.FusedOptimizer``, per-member lr, weight decay, clipping). A member
whose loss (or clipped gradient norm) is not finite is frozen and reported ``diverged``.

Exactness: each member computes what ``train/loop.train_model`` computes for it alone (same
init, batches, augmentation draws, dropout masks on CPU, BatchNorm statistics), up to the
summation order inside the grouped kernels; ``tests/test_cnn.py`` and ``tests/test_resnet.py``
hold fused == sequential in float64. On CUDA the step (from a static batch buffer) is captured
as a CUDA graph, inputs go channels-last, and ``train.autocast: bf16`` (or ``autocast="bf16"``)
runs the convs in bf16.
"""

from __future__ import annotations

import math
from itertools import islice
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from overparam.data.base import TaskData
from overparam.models import family_module
from overparam.models.base import generator
from overparam.models.cnn import BN_EPS, BN_MOMENTUM
from overparam.train import precision
from overparam.train.batches import batch_indices, eval_steps
from overparam.train.evaluate import loss_kind
from overparam.train.fused.buffered import GraphedStep, Step, member_losses
from overparam.train.fused.data import member_tasks
from overparam.train.fused.layout import CONV_FAMILIES, fuse_key
from overparam.train.fused.optim import BETAS, FusedOptimizer
from overparam.train.grouped_convs import FEATURES, Body, body_for
from overparam.train.optim import lr_at
from overparam.train.result import TrainResult, finished
from overparam.train.run import run_dtype, shape_of
from overparam.train.snapshot import Snapshots, TrainingState, fused_state

EVAL_ELEMENTS = {"cpu": 1 << 26, "cuda": 1 << 28}  # widest activation per evaluation chunk, all members
# Every parameter piece of the flat leaf starts on this boundary: cuDNN's channels-last convs and
# BatchNorm read filters and BN weights with vector loads, and failed on an H100 ("unable to find
# an engine", "misaligned address") for buckets whose views sat at arbitrary element offsets.
ALIGN_BYTES = 128


class FusedCNN(nn.Module):
    """Buckets of equal-width members as grouped networks over one flat parameter leaf.

    ``members`` are in slot order (sorted by width); ``seed_of[slot]`` is the member's row in
    the stacked batch ``x`` (S, B, C, H, W) that ``forward`` takes (one row per distinct seed).
    ``body`` is the family's grouped forward up to the pooled features (``grouped_convs``).
    Each piece (one parameter of one bucket) is followed by zeros up to ``ALIGN_BYTES``; they get
    no gradient, so every optimizer leaves them at zero.
    """

    def __init__(self, members: list[nn.Module], seed_of: list[int], image: tuple[int, int, int],
                 dtype: torch.dtype, device: torch.device, body: Body):
        super().__init__()
        self.image, self.seed_of, self.body = image, seed_of, body
        widths = [m.width for m in members]
        self.buckets = [(w, widths.index(w), len(widths) - widths[::-1].index(w)) for w in sorted(set(widths))]
        self.names = [n for n, p in members[0].named_parameters() if p.requires_grad]
        align = max(1, ALIGN_BYTES // torch.empty((), dtype=dtype).element_size())  # elements
        pieces, owners, lengths, self.shapes, self.pads = [], [], [], [], []
        for _, start, stop in self.buckets:
            for name in self.names:
                stacked = torch.stack([dict(m.named_parameters())[name].detach() for m in members[start:stop]])
                pad = -stacked.numel() % align
                pieces += [stacked.to(dtype).reshape(-1), torch.zeros(pad, dtype=dtype)]
                self.shapes.append(tuple(stacked.shape))  # (Mb, *member shape)
                self.pads.append(pad)
                owners += range(start, stop)
                lengths += [stacked[0].numel()] * (stop - start)
                if pad:  # the zeros belong to the piece's last member: zero gradient, zero update
                    owners.append(stop - 1)
                    lengths.append(pad)
        self.flat = nn.Parameter(torch.cat(pieces).to(device))  # (P,)
        self.register_buffer("run_owner", torch.tensor(owners, device=device))  # (R,) slot per run
        self.register_buffer("run_len", torch.tensor(lengths, device=device))  # (R,) elements per run
        self.norms = [n for n, m in members[0].named_modules() if isinstance(m, nn.BatchNorm2d)]
        self.stats = [{n: (torch.cat([m.get_submodule(n).running_mean for m in members[a:b]]).to(device, dtype),
                           torch.cat([m.get_submodule(n).running_var for m in members[a:b]]).to(device, dtype))
                       for n in self.norms} for _, a, b in self.buckets]  # per bucket, BN name: (Mb·c,) pair
        self.tracked = 0  # BatchNorm's num_batches_tracked, the same for every member
        self.rows = [torch.tensor(seed_of[a:b], device=device) for _, a, b in self.buckets]  # per bucket: (Mb,)

    def views(self) -> list[dict[str, torch.Tensor]]:
        """Per bucket, parameter name -> (Mb, *member shape) view of the flat leaf."""
        out: list[dict[str, torch.Tensor]] = [{} for _ in self.buckets]
        chunks = self.flat.split([n for s, pad in zip(self.shapes, self.pads) for n in (math.prod(s), pad)])[::2]
        for i, (piece, shape) in enumerate(zip(chunks, self.shapes)):
            out[i // len(self.names)][self.names[i % len(self.names)]] = piece.view(shape)
        return out

    def forward(self, x: torch.Tensor, training: bool, masks: list[torch.Tensor | None] | None = None
                ) -> torch.Tensor:
        """Logits (M, B, K) from images ``x`` (S, B, C, H, W); in eval, S = 1 shared by all."""
        return torch.cat([self.bucket_forward(b, x, p, training, masks[b] if masks else None)
                          for b, p in enumerate(self.views())])

    def bucket_forward(self, b: int, x: torch.Tensor, p: dict[str, torch.Tensor], training: bool,
                       mask: torch.Tensor | None) -> torch.Tensor:
        _, start, stop = self.buckets[b]
        mb, batch, own = stop - start, x.shape[1], set(self.seed_of[start:stop])
        if len(x) == 1 or len(own) == 1:
            h, groups = x[0 if len(x) == 1 else self.seed_of[start]], 1  # (B, C, H, W): one conv, Mb·k outputs
        else:  # each member its own images: (B, Mb·C, H, W), member j on channels [jC, (j+1)C)
            h = x.index_select(0, self.rows[b]).transpose(0, 1).reshape(batch, mb * self.image[0], *self.image[1:])
            groups = mb
        if h.is_cuda:
            h = h.contiguous(memory_format=torch.channels_last)  # cuDNN's fast layout for convs
        else:  # NCHW on CPU, as models/resnet.py: oneDNN's channels-last 1×1 stride-2 backward is broken
            h = h.contiguous()

        def norm(name: str, z: torch.Tensor) -> torch.Tensor:  # BatchNorm2d over Mb·c channels
            mean, var = self.stats[b][name]
            return F.batch_norm(z, mean, var, p[f"{name}.weight"].reshape(-1), p[f"{name}.bias"].reshape(-1),
                                training, BN_MOMENTUM, BN_EPS)

        h = self.body(h, p, norm, mb, groups).view(batch, mb, -1).transpose(0, 1)  # (Mb, B, 8k): pooled
        if mask is not None:
            h = h * mask  # inverted-dropout noise, as nn.Dropout multiplies it
        return torch.baddbmm(p["head.bias"].unsqueeze(1), h, p["head.weight"].transpose(1, 2))  # (Mb, B, K)

    @torch.no_grad()
    def write_back(self, slot: int, module: nn.Module) -> None:
        """Copy member ``slot``'s parameters and BatchNorm buffers into its own unfused module."""
        b = next(i for i, (_, start, stop) in enumerate(self.buckets) if start <= slot < stop)
        j = slot - self.buckets[b][1]
        params = dict(module.named_parameters())
        for name, view in self.views()[b].items():
            params[name].copy_(view[j])
        for name in self.norms:
            norm, (mean, var) = module.get_submodule(name), self.stats[b][name]
            c = norm.num_features
            norm.running_mean.copy_(mean[j * c:(j + 1) * c])
            norm.running_var.copy_(var[j * c:(j + 1) * c])
            norm.num_batches_tracked.fill_(self.tracked)

    def buffers_state(self) -> list[torch.Tensor]:
        return [t for bucket in self.stats for pair in bucket.values() for t in pair]


@torch.no_grad()
def evaluate_members(net: FusedCNN, data: dict[str, torch.Tensor], kind: str) -> list[dict[str, float]]:
    """Per slot, ``evaluate.evaluate``'s metrics; one forward of the train set scores both label sets."""
    members = len(net.seed_of)
    units = sum((stop - start) * w * 2 for w, start, stop in net.buckets) * math.prod(net.image[1:])

    def split(x: torch.Tensor, labels: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        sums = [(torch.zeros(members, dtype=torch.float64, device=x.device),
                 torch.zeros(members, dtype=torch.float64, device=x.device)) for _ in labels]
        rows = max(1, min(4096, EVAL_ELEMENTS.get(x.device.type, 1 << 26) // max(units, 1)))
        for start in range(0, len(x), rows):
            out = net(x[None, start:start + rows], False)  # (M, C, K)
            for (loss, wrong), y in zip(sums, labels):
                yb = y[..., start:start + rows].expand(members, -1)  # (M, C)
                loss += member_losses(out, yb, kind).double() * yb.shape[1]
                wrong += (out.argmax(dim=2) != yb).sum(dim=1).double()
        return [(loss / len(x), wrong / len(x)) for loss, wrong in sums]

    train = split(data["x_train"], [data["y_train"], *([data["y_train_clean"]] if "y_train_clean" in data else [])])
    (trl, tre), (tel, tee) = train[0], split(data["x_test"], [data["y_test"]])[0]
    rows = [{"train_loss": a, "test_loss": b, "train_error": c, "test_error": d}
            for a, b, c, d in zip(*(t.tolist() for t in (trl, tel, tre, tee)))]
    for row, clean in zip(rows, train[1][1].tolist() if len(train) > 1 else []):
        row["train_error_clean"] = clean
    return rows


def train_cnn_group(configs: list[dict[str, Any]], task: TaskData, device: torch.device, *,
                    autocast: str | None = None, graphs: bool | None = None,
                    snapshots: Snapshots | None = None) -> list[TrainResult]:
    """Train ``cnn`` or ``resnet18k`` runs (resolved configs sharing ``fuse_key``) as one program.

    Returns one ``TrainResult`` per config, in order, as ``train_model`` returns it (metrics,
    curve, state dict with the unfused model's keys), plus ``fused`` and ``group_size``.
    ``snapshots``: the group's training snapshots (``train.snapshot``), resumed from when present.
    """
    key, name = fuse_key(configs[0]), configs[0]["model"]["family"]
    if name not in CONV_FAMILIES or any(fuse_key(c) != key for c in configs):  # the key holds the family
        raise ValueError(f"fused conv group: members must be runs of one of {', '.join(CONV_FAMILIES)} differing "
                         f"only in member settings")
    if task.kind != "classification":
        raise ValueError("fused conv group: classification tasks only (train others with the loop)")
    family = family_module(name)
    shape, train0 = shape_of(task), configs[0]["train"]
    dtype, image, kind = run_dtype(train0), family.image_shape(task.input_shape), loss_kind(task, train0)
    order = sorted(range(len(configs)), key=lambda i: (configs[i]["model"]["width"], i))
    slots = [configs[i] for i in order]
    loaded = member_tasks(configs, task)
    tasks = [loaded[i] for i in order]
    seeds = sorted({c["seed"] for c in slots})
    members = [family.build(c["model"], shape, c["seed"], c["train"]["dropout"]).to(dtype) for c in slots]
    net = FusedCNN(members, [seeds.index(c["seed"]) for c in slots], image, dtype, device, body_for(slots[0]["model"]))
    trains = [c["train"] for c in slots]
    opt = FusedOptimizer(net.flat, net.run_owner, net.run_len, trains)
    as_t = lambda a, dt=dtype: torch.as_tensor(a, dtype=dt, device=device)  # noqa: E731
    data = {"x_train": as_t(task.x_train).reshape(-1, *image), "x_test": as_t(task.x_test).reshape(-1, *image),
            "y_test": as_t(task.y_test, torch.int64)}
    if task.y_train_clean is not None:
        data["y_train_clean"] = as_t(task.y_train_clean, torch.int64)
    data["y_train"] = torch.stack([as_t(t.y_train, torch.int64) for t in tasks])  # (M, n): noise per member
    step_fn = Step(net, opt, kind, precision.run_autocast(train0, autocast))
    dropouts = [t["dropout"] for t in trains]
    graphs = (device.type == "cuda" and not any(dropouts)) if graphs is None else graphs
    if graphs and (device.type != "cuda" or any(dropouts)):
        raise ValueError("CUDA graphs need a CUDA device and no dropout (masks are drawn on the host)")
    runner = GraphedStep(step_fn) if graphs else step_fn

    n, steps = len(task.x_train), train0["steps"]
    batch = n if train0["optimizer"] == "gd" else min(train0["batch_size"], n)
    augment = getattr(task, "augment_fn", None)
    aug_gens = [generator(s, "augment") for s in seeds] if augment is not None else []
    drop_gens = [None if p == 0 else torch.Generator().manual_seed(c["seed"]) for p, c in zip(dropouts, slots)]
    checkpoints = set(eval_steps(steps, train0["eval_every"], train0["eval_log_points"]))
    curves: list[list[tuple[int, dict[str, float]]]] = [[] for _ in slots]

    def record(step: int) -> None:
        alive = step_fn.active.tolist()
        for slot, row in enumerate(evaluate_members(net, data, kind)):
            if alive[slot]:
                curves[slot].append((step, row))

    if 0 in checkpoints:
        record(0)
    snap = snapshots or Snapshots.off()
    state = group_state(step_fn, net, aug_gens, drop_gens)
    start, curves = snap.resume(state, curves)  # the last snapshot's step and curves (0 and [] without one)
    opt.step_count = net.tracked = step = start  # BatchNorm counts one batch per step
    streams = [batch_indices(n, batch, steps, s) for s in seeds]
    row_of = torch.tensor(net.seed_of, device=device)
    for step, idxs in enumerate(islice(zip(*streams), start, None), start=start + 1):
        idx = torch.stack(idxs).to(device)  # (S, B)
        xs = [data["x_train"][i] for i in idx]
        if augment is not None:
            xs = [augment(x, g) for x, g in zip(xs, aug_gens)]
        y = torch.gather(data["y_train"], 1, idx[row_of])  # (M, B)
        lrs = [lr_at(step - 1, t) for t in trains]
        ctl = torch.tensor([*lrs, step, 1 - BETAS[0] ** step, (1 - BETAS[1] ** step) ** 0.5], dtype=torch.float64)
        masks = None
        if any(dropouts):
            masks = [torch.stack([_mask(drop_gens[s], dropouts[s], len(idx[0]), FEATURES[name] * w, dtype)
                                  for s in range(a, b)]).to(device) for w, a, b in net.buckets]
        runner(torch.stack(xs), y, ctl.to(device), masks)
        net.tracked += 1
        if step in checkpoints:
            record(step)
        snap.step(step, state, curves)
    return _results(configs, order, members, net, curves, step_fn, step)


def group_state(step_fn: Step, net: FusedCNN, aug_gens: list[torch.Generator],
                drop_gens: list[torch.Generator | None]) -> TrainingState:
    """What a conv group's remaining steps depend on: ``fused_state``'s flat parameters, moments and
    divergence bookkeeping, plus each bucket's BatchNorm running statistics (buffers outside the
    flat leaf), the augmentation generator of each distinct seed and each member's dropout generator."""
    state = fused_state(step_fn)
    for b, bucket in enumerate(net.stats):
        for name, (mean, var) in bucket.items():
            state.tensors[f"bn/{b}/{name}/running_mean"] = mean
            state.tensors[f"bn/{b}/{name}/running_var"] = var
    state.generators.update({f"augment/{row}": g for row, g in enumerate(aug_gens)})
    state.generators.update({f"dropout/{slot}": g for slot, g in enumerate(drop_gens) if g is not None})
    return state


def _mask(gen: torch.Generator | None, p: float, batch: int, features: int, dtype: torch.dtype) -> torch.Tensor:
    """(B, features) dropout noise as ``nn.Dropout`` draws it on CPU (ones when ``p`` is 0)."""
    if gen is None:
        return torch.ones(batch, features, dtype=dtype)
    return torch.empty(batch, features, dtype=dtype).bernoulli_(1 - p, generator=gen).div_(1 - p)


def _results(configs: list[dict[str, Any]], order: list[int], members: list[nn.Module], net: FusedCNN,
             curves: list[list[tuple[int, dict[str, float]]]], step_fn: Step, last: int) -> list[TrainResult]:
    """Per member what ``train_model`` returns: done with its state, or diverged without."""
    diverged_at = [int(v) for v in step_fn.diverged_at.tolist()]
    results: list[TrainResult] = [None] * len(configs)  # type: ignore[list-item]
    extra = {"fused": True, "group_size": len(configs)}
    for slot, index in enumerate(order):
        curve = curves[slot]
        if diverged_at[slot] or not all(math.isfinite(curve[-1][1][k]) for k in ("train_loss", "test_loss")):
            at = diverged_at[slot] or last
            metrics = {**(dict(curve[-1][1]) if curve else {}), "diverged_at": at, **extra}
            results[index] = TrainResult("diverged", metrics, curve, None, f"non-finite loss at step {at}")
            continue
        module = members[slot]
        net.write_back(slot, module)
        metrics = {**dict(curve[-1][1]), **extra}
        results[index] = finished(module, metrics, curve)
    return results
