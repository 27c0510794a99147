"""``gpt`` runs on one language-model task trained as one program (DESIGN.md "Speed: fused sweeps").

Members are bucketed by shape (``n_layer``, ``d_model``, ``n_head``, ``tied``): a bucket's
parameters are the members' tensors stacked on a leading member axis, views of one flat leaf,
so every projection and MLP layer is one batched matmul (``baddbmm``) per bucket and the
optimizer one elementwise pass (``fused.optim.FusedOptimizer``: per-member lr, weight decay,
clipping). Attention folds the member axis into the batch axis, (Mb·B, nh, T, hs), and calls
``F.scaled_dot_product_attention`` once per layer (``vmap`` over it falls back to a slow loop on
CPU and its backward fails on CUDA). LayerNorm normalizes per row and applies each member's
own gain and bias; embeddings are a lookup into the members' stacked tables (offset by member);
the unembedding is each member's token table (tied, as ``models/gpt.py``) or its own head.
Shapes are never padded (a padded LayerNorm would normalize over the padding): members of
different shapes are separate buckets of the same step.

Batches are ``train/lm.py``'s: ``window_offsets`` per distinct seed (members that share a seed
read the same windows), the same fixed evaluation windows, the same metrics and curve steps.
A member whose loss (or, when it clips, gradient norm) is not finite is frozen at that step and
reported ``diverged``; nothing crosses between members, so the others train to the same bits
with or without it. Dropout is not fused (``F.scaled_dot_product_attention`` draws its own
masks): such runs train one at a time. On CUDA the step is captured as a CUDA graph
(``fused_cnn.GraphedStep``); ``train.autocast: bf16`` runs it under bf16 autocast.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from overparam.data.base import TaskData
from overparam.models import gpt
from overparam.train import lm, precision
from overparam.train.batches import eval_steps
from overparam.train.fused.layout import fusable, fuse_key
from overparam.train.fused.optim import BETAS, FusedOptimizer
from overparam.train.fused_cnn import GraphedStep
from overparam.train.fused_cnn import Step as GroupStep
from overparam.train.health import flag
from overparam.train.optim import lr_at
from overparam.train.result import TrainResult
from overparam.train.run import run_dtype, shape_of

SHAPE_KEYS = ("n_layer", "d_model", "n_head", "tied")  # members with equal values share a bucket


def shape_key(model: dict[str, Any]) -> tuple:
    return tuple(model[k] for k in SHAPE_KEYS)


class FusedGPT(nn.Module):
    """Buckets of equal-shape GPTs over one flat parameter leaf; ``members`` in slot order.

    ``seed_of[slot]`` is the member's row in the stacked windows (S, B, T) that ``losses``
    takes, one row per distinct seed. ``batched``: each bucket's layers as batched matmuls
    (``bucket_logits``: few large kernels, what a GPU needs); otherwise each member runs its
    own module's forward on views of the leaf (``torch.func.functional_call``: the unfused
    kernels, which on a CPU are already compute-bound and keep their activations in cache;
    what fuses there is the backward call and the optimizer).
    """

    def __init__(self, members: list[gpt.GPT], seed_of: list[int], dtype: torch.dtype, device: torch.device,
                 kernel: str = "auto"):
        super().__init__()
        self.seed_of, self.vocab, self.kernel = seed_of, members[0].cfg.vocab_size, kernel
        self.members = members  # a plain list: their own tensors are never trained, only their code runs
        keys = [(m.cfg.n_layer, m.cfg.d_model, m.cfg.n_head, m.cfg.tied) for m in members]
        starts = [i for i in range(len(keys)) if i == 0 or keys[i] != keys[i - 1]]
        self.buckets = [(keys[a], a, b) for a, b in zip(starts, [*starts[1:], len(keys)], strict=True)]
        pieces, owners, lengths, self.chunks = [], [], [], []  # chunks: (bucket, name, (Mb, *shape))
        for b, (_, start, stop) in enumerate(self.buckets):
            for name, _ in members[start].named_parameters():
                stacked = torch.stack([m.get_parameter(name).detach() for m in members[start:stop]])
                pieces.append(stacked.to(dtype).reshape(-1))
                self.chunks.append((b, name, tuple(stacked.shape)))
                owners += range(start, stop)
                lengths += [stacked[0].numel()] * (stop - start)
        self.flat = nn.Parameter(torch.cat(pieces).to(device))  # (P,)
        self.register_buffer("run_owner", torch.tensor(owners, device=device))  # (R,) slot per run
        self.register_buffer("run_len", torch.tensor(lengths, device=device))  # (R,) elements per run
        self.rows = [torch.tensor(seed_of[a:b], device=device) for _, a, b in self.buckets]  # per bucket: (Mb,)

    @property
    def size(self) -> int:
        return len(self.seed_of)

    def batched(self, b: int) -> bool:
        """Whether bucket ``b`` runs as batched matmuls (else member by member, each its own code)."""
        _, start, stop = self.buckets[b]
        return self.kernel == "batched" or (self.kernel == "auto" and stop - start > 1)

    def views(self) -> list[dict[str, torch.Tensor]]:
        """Per bucket, parameter name -> (Mb, *member shape) view of the flat leaf."""
        out: list[dict[str, torch.Tensor]] = [{} for _ in self.buckets]
        pieces = self.flat.split([math.prod(shape) for _, _, shape in self.chunks])
        for piece, (b, name, shape) in zip(pieces, self.chunks, strict=True):
            out[b][name] = piece.view(shape)
        return out

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
            a = _layer_norm(h, p, pre + "ln1")
            qkv = _linear(a, p, pre + "attn.qkv")  # (Mb, B·T, 3d)
            q, k, v = (z.reshape(mb * batch, t, n_head, d // n_head).transpose(1, 2)
                       for z in qkv.split(d, dim=2))  # each (Mb·B, nh, T, hs): members folded into the batch
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (Mb·B, nh, T, hs)
            y = y.transpose(1, 2).reshape(mb, batch * t, d)  # (Mb, B·T, d): heads side by side
            h = h + _linear(y, p, pre + "attn.proj")
            a = _layer_norm(h, p, pre + "ln2")
            h = h + _linear(F.gelu(_linear(a, p, pre + "mlp.fc")), p, pre + "mlp.proj")  # (Mb, B·T, d)
        a = _layer_norm(h, p, "ln_f")
        head = p["wte.weight"] if tied else p["head.weight"]  # (Mb, V, d)
        return torch.bmm(a, head.transpose(1, 2))  # (Mb, B·T, V)

    def member_rows(self, b: int, stacked: torch.Tensor) -> torch.Tensor:
        """Bucket ``b``'s rows (Mb, …) of per-seed windows ``stacked`` (S, …)."""
        _, start, stop = self.buckets[b]
        if len(stacked) == 1:
            return stacked.expand(stop - start, *stacked.shape[1:])
        return stacked.index_select(0, self.rows[b])

    def losses(self, x: torch.Tensor, y: torch.Tensor, autocast: torch.dtype | None = None,
               reduce: str = "mean") -> torch.Tensor:
        """(M,) each member's mean (or, ``reduce="sum"``, summed) next-token loss on its windows.

        ``x``, ``y``: (S, B, T) inputs and targets, one row per distinct seed.
        """
        out = []
        for b, p in enumerate(self.views()):
            _, start, stop = self.buckets[b]
            if self.batched(b):
                with precision.autocast_region(x.device, autocast):
                    logits = self.bucket_logits(b, self.member_rows(b, x), p)  # (Mb, B·T, V)
                targets = self.member_rows(b, y).reshape(-1)
                per_token = F.cross_entropy(logits.reshape(-1, self.vocab).to(self.flat.dtype), targets,
                                            reduction="none").view(len(logits), -1)  # (Mb, B·T)
                out.append(per_token.mean(dim=1) if reduce == "mean" else per_token.sum(dim=1))
                continue
            if stop - start == 1:  # the member's own tensors as plain views: no copy in the backward
                unbound = {name: (view.view(view.shape[1:]),) for name, view in p.items()}
            else:
                unbound = {name: view.unbind(0) for name, view in p.items()}  # one backward node per tensor
            for j, slot in enumerate(range(start, stop)):
                row = self.seed_of[slot] if len(x) > 1 else 0
                with precision.autocast_region(x.device, autocast):
                    own = {name: tensors[j] for name, tensors in unbound.items()}
                    logits = functional_call(self.members[slot], own, (x[row],))  # (B, T, V)
                out.append(F.cross_entropy(logits.reshape(-1, self.vocab).to(self.flat.dtype), y[row].reshape(-1),
                                           reduction=reduce)[None])
        return torch.cat(out)

    @torch.no_grad()
    def write_back(self, slot: int, module: nn.Module) -> None:
        """Copy member ``slot``'s trained parameters into its own unfused module."""
        b = next(i for i, (_, start, stop) in enumerate(self.buckets) if start <= slot < stop)
        for name, view in self.views()[b].items():
            param = module.get_parameter(name)
            param.copy_(view[slot - self.buckets[b][1]].to(param.device))

    def buffers_state(self) -> list[torch.Tensor]:
        return []  # no running statistics (GraphedStep restores these after its warm-up)


def _linear(x: torch.Tensor, p: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """Each member's ``nn.Linear``: x (Mb, N, in) -> (Mb, N, out)."""
    return torch.baddbmm(p[name + ".bias"].unsqueeze(1), x, p[name + ".weight"].transpose(1, 2))


def _layer_norm(x: torch.Tensor, p: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """``nn.LayerNorm`` per member: normalize each row, then the member's gain and bias."""
    z = F.layer_norm(x, x.shape[-1:], eps=1e-5)  # (Mb, N, d)
    return torch.addcmul(p[name + ".bias"].unsqueeze(1), z, p[name + ".weight"].unsqueeze(1))


class Step(GroupStep):
    """``fused_cnn.Step`` (clip, detect, freeze, update) around the GPT members' losses."""

    def losses(self, x: torch.Tensor, y: torch.Tensor, masks=None) -> torch.Tensor:
        return self.net.losses(x, y, self.autocast)


@torch.no_grad()
def evaluate_members(net: FusedGPT, tokens: torch.Tensor, offsets: torch.Tensor, context: int) -> list[float]:
    """Each member's mean loss over the windows at ``offsets`` (``lm.mean_loss``, all members at once).

    Chunks hold at most ``lm``'s tokens and logits per pass summed over a bucket's members.
    """
    widest = max(stop - start if net.batched(b) else 1 for b, (_, start, stop) in enumerate(net.buckets))
    per = max(1, min(lm.EVAL_BATCH_TOKENS, lm.EVAL_BATCH_LOGITS // net.vocab) // (context * widest))
    total = torch.zeros(net.size, dtype=torch.float64, device=tokens.device)
    for start in range(0, len(offsets), per):
        x, y = lm.windows(tokens, offsets[start:start + per], context)  # (C, T) each
        total += net.losses(x[None], y[None], reduce="sum").double()
    return (total / (len(offsets) * context)).tolist()


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
                    autocast: str | None = None, graphs: bool | None = None, kernel: str = "auto"
                    ) -> list[TrainResult]:
    """Train ``gpt`` runs (resolved configs sharing ``fuse_key``) as one program.

    Returns one ``TrainResult`` per config, in order, as ``train_lm`` returns it (metrics,
    curve, state dict of the unfused model), plus ``fused`` and ``group_size``. ``autocast``
    overrides ``train.autocast`` (benchmarks); ``graphs`` (default: on CUDA) captures the step;
    ``kernel``: ``batched`` or ``members`` (see ``FusedGPT``; ``auto``: batched on CUDA only).
    """
    if kernel not in ("auto", "batched", "members"):
        raise ValueError(f"kernel: expected auto, batched or members, got {kernel!r}")
    check_group(configs, task)
    shape, train0, context = shape_of(task), configs[0]["train"], configs[0]["model"]["context"]
    gpt.validate(configs[0]["model"])
    lm._check_lengths(task, context)
    dtype = run_dtype(train0)
    order = sorted(range(len(configs)), key=lambda i: (shape_key(configs[i]["model"]), i))
    slots = [configs[i] for i in order]
    seeds = sorted({c["seed"] for c in slots})
    members = [gpt.build(c["model"], shape, c["seed"]).to(dtype) for c in slots]
    net = FusedGPT(members, [seeds.index(c["seed"]) for c in slots], dtype, device, kernel)
    trains = [c["train"] for c in slots]
    opt = FusedOptimizer(net.flat, net.run_owner, net.run_len, trains)
    step_fn = Step(net, opt, "cross_entropy", precision.run_autocast(train0, autocast))
    graphs = device.type == "cuda" if graphs is None else graphs
    if graphs and device.type != "cuda":
        raise ValueError("CUDA graphs need a CUDA device")
    runner = GraphedStep(step_fn) if graphs else step_fn

    tokens_train = torch.as_tensor(task.tokens_train, dtype=torch.int64, device=device)
    tokens_test = torch.as_tensor(task.tokens_test, dtype=torch.int64, device=device)
    eval_train, eval_test = lm.eval_offsets(len(tokens_train), context), lm.eval_offsets(len(tokens_test), context)
    steps, batch = train0["steps"], train0["batch_size"]
    checkpoints = set(eval_steps(steps, train0["eval_every"], train0["eval_log_points"]))
    curves: list[list[tuple[int, dict[str, Any]]]] = [[] for _ in slots]

    def record(step: int) -> None:
        alive = step_fn.active.tolist()
        rows = zip(evaluate_members(net, tokens_train, eval_train, context),
                   evaluate_members(net, tokens_test, eval_test, context), strict=True)
        for slot, (train_loss, test_loss) in enumerate(rows):
            if alive[slot]:
                curves[slot].append((step, {"train_loss": train_loss, "test_loss": test_loss, "train_error": None,
                                            "test_error": None, "tokens": step * batch * context}))

    if 0 in checkpoints:
        record(0)
    step = 0
    streams = [lm.window_offsets(len(tokens_train), context, batch, steps, s) for s in seeds]
    for step, offsets in enumerate(zip(*streams), start=1):
        x, y = lm.windows(tokens_train, torch.cat(offsets), context)  # (S·B, T) each
        lrs = [lr_at(step - 1, t) for t in trains]
        ctl = torch.tensor([*lrs, step, 1 - BETAS[0] ** step, (1 - BETAS[1] ** step) ** 0.5], dtype=torch.float64)
        runner(x.view(len(seeds), batch, context), y.view(len(seeds), batch, context), ctl.to(device))
        if step in checkpoints:
            record(step)
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
        params = [p for p in module.parameters() if p.requires_grad]
        metrics["param_norm"] = float(torch.sqrt(sum((p.detach().double() ** 2).sum() for p in params)))
        flag(metrics, curve)
        results[index] = TrainResult("done", metrics, curve,
                                     {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()})
    return results
