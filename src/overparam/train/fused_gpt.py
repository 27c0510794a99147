"""``gpt`` runs on one language-model task trained as one program (DESIGN.md "Speed: fused sweeps").

Members are bucketed by shape (``n_layer``, ``d_model``, ``n_head``, ``tied``): a bucket's
parameters are the members' tensors stacked on a leading member axis, views of one flat leaf,
and the optimizer is one elementwise pass over that leaf (``fused.optim.FusedOptimizer``:
per-member lr, weight decay, clipping). A bucket runs every projection and MLP layer as one
batched matmul (``baddbmm``); attention folds the member axis into the batch axis, (Mb·B, nh,
T, hs), and calls ``F.scaled_dot_product_attention`` once per layer (``vmap`` over it falls back
to a slow loop on CPU and its backward fails on CUDA); LayerNorm normalizes per row and applies
each member's own gain and bias; embeddings are a lookup into the members' stacked tables
(offset by member); the unembedding is each member's token table (tied, as ``models/gpt.py``) or
its own head. A bucket of one runs the same code: each member's GEMMs are computed alike whatever
else is in its bucket, so a run trains to the same bits in any group (running a lone member
through its module's own code would break that: measured, 1e-16 apart in float64). Shapes are
never padded (a padded LayerNorm would normalize over the padding): members of different shapes
are separate buckets of the same step, each run forward and backward before the next (one
bucket's activations alive at a time), then one clipping and optimizer pass over the leaf.

Batches are ``train/lm.py``'s: ``window_offsets`` per distinct seed (members that share a seed
read the same windows), the same fixed evaluation windows, the same metrics and curve steps.
A member whose loss (or, when it clips, gradient norm) is not finite is frozen at that step and
reported ``diverged``; nothing crosses between members, so the others train to the same bits
with or without it. Dropout is not fused (``F.scaled_dot_product_attention`` draws its own
masks): such runs train one at a time. On CUDA the step is captured as a CUDA graph
(``fused.buffered.GraphedStep``); ``train.autocast: bf16`` runs it under bf16 autocast.
"""

from __future__ import annotations

import math
from itertools import islice
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from overparam.data.base import TaskData
from overparam.models import gpt
from overparam.train import lm, precision
from overparam.train.batches import eval_steps
from overparam.train.fused.buffered import GraphedStep
from overparam.train.fused.buffered import Step as GroupStep
from overparam.train.fused.layout import GPT_SHAPE_KEYS, fusable, fuse_key
from overparam.train.fused.optim import BETAS, FusedOptimizer
from overparam.train.optim import lr_at
from overparam.train.result import TrainResult, finished
from overparam.train.run import run_dtype, shape_of
from overparam.train.snapshot import Snapshots, fused_state


def shape_key(model: dict[str, Any]) -> tuple:
    """(n_layer, d_model, n_head, tied): members with equal keys share a bucket."""
    return tuple(model[k] for k in GPT_SHAPE_KEYS)


class FusedGPT(nn.Module):
    """Buckets of equal-shape GPTs over one flat parameter leaf; ``members`` in slot order.

    ``seed_of[slot]`` is the member's row in the stacked windows (S, B, T) that ``losses``
    takes, one row per distinct seed. Linear weights are stored transposed, (Mb, in, out), so
    the batched matmul's weight gradient lands in the leaf's layout without a transposing copy.
    """

    def __init__(self, members: list[gpt.GPT], seed_of: list[int], dtype: torch.dtype, device: torch.device):
        super().__init__()
        self.seed_of, self.vocab, self.eps = seed_of, members[0].cfg.vocab_size, members[0].ln_f.eps
        keys = [(m.cfg.n_layer, m.cfg.d_model, m.cfg.n_head, m.cfg.tied) for m in members]
        starts = [i for i in range(len(keys)) if i == 0 or keys[i] != keys[i - 1]]
        self.buckets = [(keys[a], a, b) for a, b in zip(starts, [*starts[1:], len(keys)], strict=True)]
        pieces, owners, lengths, self.chunks = [], [], [], []  # chunks: (bucket, name, (Mb, *stored shape))
        self.transposed: set[str] = set()
        for b, (_, start, stop) in enumerate(self.buckets):
            linear = {f"{n}.weight" for n, m in members[start].named_modules() if isinstance(m, nn.Linear)}
            for name, _ in members[start].named_parameters():
                own = [m.get_parameter(name).detach() for m in members[start:stop]]
                stacked = torch.stack([t.T for t in own] if name in linear else own)  # (Mb, *stored shape)
                if name in linear:
                    self.transposed.add(name)
                pieces.append(stacked.to(dtype).reshape(-1))
                self.chunks.append((b, name, tuple(stacked.shape)))
                owners += range(start, stop)
                lengths += [stacked[0].numel()] * (stop - start)
        self.flat = nn.Parameter(torch.cat(pieces).to(device))  # (P,)
        self.register_buffer("run_owner", torch.tensor(owners, device=device))  # (R,) slot per run
        self.register_buffer("run_len", torch.tensor(lengths, device=device))  # (R,) elements per run
        self.rows = [torch.tensor(seed_of[a:b], device=device) for _, a, b in self.buckets]  # per bucket: (Mb,)
        self.leaves = self._leaves()
        self.grad = torch.zeros_like(self.flat.detach())  # the leaf's gradient, bucket by bucket

    def _leaves(self) -> list[dict[str, torch.Tensor]]:
        """Per bucket, name -> (Mb, *stored shape): autograd leaves sharing the flat leaf's memory.

        Each bucket's forward and backward run on its own leaves, one bucket after the other, so
        only one bucket's activations are alive at a time (the loop's working set, not the
        group's), and its gradients are copied into ``grad`` once, in place.
        """
        out: list[dict[str, torch.Tensor]] = [{} for _ in self.buckets]
        pieces = self.flat.detach().split([math.prod(shape) for _, _, shape in self.chunks])
        for piece, (b, name, shape) in zip(pieces, self.chunks, strict=True):
            out[b][name] = piece.view(shape).requires_grad_()  # the optimizer's in-place steps show here
        return out

    @property
    def size(self) -> int:
        return len(self.seed_of)

    def bucket_logits(self, b: int, x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits (Mb, B·T, V) of bucket ``b``'s members on their windows ``x`` (Mb, B, T)."""
        (n_layer, d, n_head, tied), _, _ = self.buckets[b]
        mb, batch, t = x.shape
        table = p["wte.weight"]  # (Mb, V, d)
        rows = x + (torch.arange(mb, device=x.device) * self.vocab)[:, None, None]  # member m's row in the flat table
        h = table.reshape(mb * self.vocab, d).index_select(0, rows.reshape(-1)).view(mb, batch, t, d)
        h = (h + p["wpe.weight"][:, None, :t]).view(mb, batch * t, d)  # (Mb, B·T, d)
        for i in range(n_layer):
            pre = f"blocks.{i}."
            a = _layer_norm(h, p, pre + "ln1", self.eps)
            qkv = _linear(a, p, pre + "attn.qkv")  # (Mb, B·T, 3d)
            q, k, v = (z.reshape(mb * batch, t, n_head, d // n_head).transpose(1, 2)
                       for z in qkv.split(d, dim=2))  # each (Mb·B, nh, T, hs): members folded into the batch
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (Mb·B, nh, T, hs)
            y = y.transpose(1, 2).reshape(mb, batch * t, d)  # (Mb, B·T, d): heads side by side
            h = h + _linear(y, p, pre + "attn.proj")
            a = _layer_norm(h, p, pre + "ln2", self.eps)
            h = h + _linear(F.gelu(_linear(a, p, pre + "mlp.fc")), p, pre + "mlp.proj")  # (Mb, B·T, d)
        a = _layer_norm(h, p, "ln_f", self.eps)
        head = p["wte.weight"].transpose(1, 2) if tied else p["head.weight"]  # (Mb, d, V)
        return torch.bmm(a, head)  # (Mb, B·T, V)

    def member_rows(self, b: int, stacked: torch.Tensor) -> torch.Tensor:
        """Bucket ``b``'s rows (Mb, …) of per-seed windows ``stacked`` (S, …)."""
        _, start, stop = self.buckets[b]
        if len(stacked) == 1:
            return stacked.expand(stop - start, *stacked.shape[1:])
        return stacked.index_select(0, self.rows[b])

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor, autocast: torch.dtype | None = None
                         ) -> torch.Tensor:
        """(M,) each member's mean next-token loss (``lm.lm_loss``), detached; gradients in ``flat.grad``.

        ``x``, ``y``: (S, B, T) inputs and targets, one row per distinct seed.
        """
        out, start = [], 0
        for b, p in enumerate(self.leaves):
            for leaf in p.values():
                leaf.grad = None
            with precision.autocast_region(x.device, autocast):
                logits = self.bucket_logits(b, self.member_rows(b, x), p)  # (Mb, B·T, V)
            targets = self.member_rows(b, y).reshape(-1)
            per_token = F.cross_entropy(logits.reshape(-1, self.vocab).to(self.flat.dtype), targets,
                                        reduction="none").view(len(logits), -1)  # (Mb, B·T): loss in train.dtype
            losses = per_token.mean(dim=1)  # (Mb,)
            losses.sum().backward()  # d(Σ loss_i)/d(loss_i) = 1: each member gets its own gradient
            size = sum(leaf.numel() for leaf in p.values())
            torch.cat([leaf.grad.reshape(-1) for leaf in p.values()], out=self.grad[start:start + size])
            start += size
            out.append(losses.detach())
        self.flat.grad = self.grad
        return torch.cat(out)

    def member_params(self, slot: int) -> dict[str, torch.Tensor]:
        """Member ``slot``'s parameters as its own module names and shapes them (views of the leaf)."""
        b = next(i for i, (_, start, stop) in enumerate(self.buckets) if start <= slot < stop)
        j = slot - self.buckets[b][1]
        return {name: leaf.detach()[j].T if name in self.transposed else leaf.detach()[j]
                for name, leaf in self.leaves[b].items()}

    @torch.no_grad()
    def write_back(self, slot: int, module: nn.Module) -> None:
        """Copy member ``slot``'s trained parameters into its own unfused module."""
        for name, value in self.member_params(slot).items():
            param = module.get_parameter(name)
            param.copy_(value.to(param.device))

    def buffers_state(self) -> list[torch.Tensor]:
        return []  # no running statistics (GraphedStep restores these after its warm-up)


def _linear(x: torch.Tensor, p: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """Each member's ``nn.Linear``: x (Mb, N, in) -> (Mb, N, out); the weight is stored (Mb, in, out)."""
    return torch.baddbmm(p[name + ".bias"].unsqueeze(1), x, p[name + ".weight"])


def _layer_norm(x: torch.Tensor, p: dict[str, torch.Tensor], name: str, eps: float) -> torch.Tensor:
    """``nn.LayerNorm`` per member: normalize each row, then the member's gain and bias."""
    z = F.layer_norm(x, x.shape[-1:], eps=eps)  # (Mb, N, d)
    return torch.addcmul(p[name + ".bias"].unsqueeze(1), z, p[name + ".weight"].unsqueeze(1))


class Step(GroupStep):
    """``fused.buffered.Step`` (clip, detect, freeze, update) around the GPT members' losses."""

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor, masks=None) -> torch.Tensor:
        return self.net.forward_backward(x, y, self.autocast)


def check_group(configs: list[dict[str, Any]], task: TaskData) -> None:
    """Refuse a group the engine cannot train exactly (a planning bug if it happens)."""
    key = fuse_key(configs[0])
    if task.kind != "lm":
        raise ValueError("fused gpt group: language-model tasks only")
    for config in configs:
        if config["model"]["family"] != "gpt" or not fusable(config) or fuse_key(config) != key:
            raise ValueError("fused gpt group: members must be gpt runs without dropout that differ only in "
                             "member settings (shape, seed, lr, schedule, weight decay, clipping)")


def train_gpt_group(configs: list[dict[str, Any]], task: TaskData, device: torch.device, *,
                    autocast: str | None = None, graphs: bool | None = None,
                    snapshots: Snapshots | None = None) -> list[TrainResult]:
    """Train ``gpt`` runs (resolved configs sharing ``fuse_key``) as one program.

    Returns one ``TrainResult`` per config, in order, as ``train_lm`` returns it (metrics,
    curve, state dict of the unfused model), plus ``fused`` and ``group_size``. ``autocast``
    overrides ``train.autocast`` (benchmarks); ``graphs`` (default: on CUDA) captures the step.
    ``snapshots``: the group's training snapshots (``train.snapshot``), resumed from when present:
    the flat parameters, moments and divergence bookkeeping are all the state (no dropout, no
    buffers; windows are a function of (seed, step)).
    """
    check_group(configs, task)
    shape, train0, context = shape_of(task), configs[0]["train"], configs[0]["model"]["context"]
    gpt.validate(configs[0]["model"])
    lm._check_lengths(task, context)
    dtype = run_dtype(train0)
    order = sorted(range(len(configs)), key=lambda i: (shape_key(configs[i]["model"]), i))
    slots = [configs[i] for i in order]
    seeds = sorted({c["seed"] for c in slots})
    members = [gpt.build(c["model"], shape, c["seed"]).to(device, dtype) for c in slots]
    net = FusedGPT(members, [seeds.index(c["seed"]) for c in slots], dtype, device)
    trains = [c["train"] for c in slots]
    opt = FusedOptimizer(net.flat, net.run_owner, net.run_len, trains)
    step_fn = Step(net, opt, "cross_entropy", precision.run_autocast(train0, autocast))
    graphs = device.type == "cuda" if graphs is None else graphs
    if graphs and device.type != "cuda":
        raise ValueError("CUDA graphs need a CUDA device")
    runner = GraphedStep(step_fn) if graphs else step_fn

    tokens_train = torch.as_tensor(task.tokens_train, dtype=torch.int64, device=device)
    tokens_test = torch.as_tensor(task.tokens_test, dtype=torch.int64, device=device)
    stride = lm.sequence_stride(task)  # tasks of independent sequences: windows start at sequence starts
    eval_train = lm.eval_offsets(len(tokens_train), context, stride=stride)
    eval_test = lm.eval_offsets(len(tokens_test), context, stride=stride)
    probe = lm.curve_probe(task, context, tokens_test, eval_test)
    steps, batch = train0["steps"], train0["batch_size"]
    checkpoints = set(eval_steps(steps, train0["eval_every"], train0["eval_log_points"]))
    curves: list[list[tuple[int, dict[str, Any]]]] = [[] for _ in slots]

    def record(step: int) -> None:
        """Each live member's evaluation: its own module, loaded from the leaf, through ``lm.mean_loss``.

        Chunks of up to 16,384 tokens leave nothing to batch (measured on CPU: batched members
        evaluated 6–13 % slower), and member by member the numbers are ``train_lm``'s and do not
        depend on the rest of the group.
        """
        for slot, alive in enumerate(step_fn.active.tolist()):
            if alive:
                module = members[slot]
                net.write_back(slot, module)
                curves[slot].append((step, lm.curve_point(module, task, (tokens_train, eval_train),
                                                          (tokens_test, eval_test), context, step * batch * context,
                                                          probe)))

    if 0 in checkpoints:
        record(0)
    snap = snapshots or Snapshots.off()
    state = fused_state(step_fn)
    start, curves = snap.resume(state, curves)  # the last snapshot's step and curves (0 and [] without one)
    opt.step_count = step = start
    streams = [lm.window_offsets(len(tokens_train), context, batch, steps, s, stride) for s in seeds]
    for step, offsets in enumerate(islice(zip(*streams), start, None), start=start + 1):
        x, y = lm.windows(tokens_train, torch.cat(offsets), context)  # (S·B, T) each
        lrs = [lr_at(step - 1, t) for t in trains]
        ctl = torch.tensor([*lrs, step, 1 - BETAS[0] ** step, (1 - BETAS[1] ** step) ** 0.5], dtype=torch.float64)
        runner(x.view(len(seeds), batch, context), y.view(len(seeds), batch, context), ctl.to(device))
        if step in checkpoints:
            record(step)
        snap.step(step, state, curves)
    return _results(configs, order, members, net, curves, step_fn, step, task)


def _results(configs: list[dict[str, Any]], order: list[int], members: list[nn.Module], net: FusedGPT,
             curves: list[list[tuple[int, dict[str, Any]]]], step_fn: Step, last: int,
             task: TaskData) -> list[TrainResult]:
    """Per member what ``train_lm`` returns: done with its state, or diverged without."""
    diverged_at = [int(v) for v in step_fn.diverged_at.tolist()]
    results: list[TrainResult] = [None] * len(configs)  # type: ignore[list-item]
    extra = {"fused": True, "group_size": len(configs)}
    for slot, index in enumerate(order):
        curve = curves[slot]
        if diverged_at[slot]:
            metrics = {**(dict(curve[-1][1]) if curve else {}), "diverged_at": diverged_at[slot], **extra}
            results[index] = TrainResult("diverged", metrics, curve, None,
                                         f"non-finite loss at step {diverged_at[slot]}")
            continue
        metrics = {**dict(curve[-1][1]), **extra}
        if not all(math.isfinite(metrics[k]) for k in ("train_loss", "test_loss")):
            metrics["diverged_at"] = last
            results[index] = TrainResult("diverged", metrics, curve, None, "non-finite loss at the final evaluation")
            continue
        if task.info.get("entropy_rate") is not None:
            metrics["entropy_rate"] = float(task.info["entropy_rate"])
        module = members[slot]
        net.write_back(slot, module)
        results[index] = finished(module, metrics, curve)
    return results
