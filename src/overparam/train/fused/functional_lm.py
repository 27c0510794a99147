"""Language-model runs of one module shape trained as one ``torch.func`` program (DESIGN.md "Speed: fused sweeps").

The user's factories (and ``hf-causal-lm``) on a language task (``text``, ``markov``, ``icl-markov``,
``fewshot``, ``hf`` text): ``fused.functional``'s network (members' parameters stacked as views of
one flat leaf, ``vmap(functional_call)`` over them), optimizer, freezing of diverged members and
dropout masks, fed what ``train.lm.train_lm`` feeds one run:

- **windows**: ``lm.window_offsets`` per distinct seed (members that share a seed read the same
  windows, members of different seeds their own rows of the stacked (S, B, T) batch), starts at
  sequence starts for tasks of sequences (``lm.sequence_stride``);
- **loss**: each member's mean next-token cross-entropy over its B·T positions (``lm.lm_loss``);
  Σ members' losses, one backward, so each member gets its own gradient;
- **evaluations**: on the same steps, each live member's own module, loaded from the leaf, through
  ``train_lm``'s code: ``lm.mean_loss`` on ``lm.eval_offsets``'s fixed windows, ``tokens``, and the
  task's own curve numbers (``lm_measures.curve_probe``: ``icl-markov``'s ICL and induction scores).
  Evaluation chunks of up to 16,384 tokens leave nothing to batch: measured on CPU (16 one-layer
  width-32 members, 32,768 test tokens, 1 thread), one vmap forward over the members per chunk took
  1.12 s, member by member 0.88 s. The final measurements (loss by position, context gain,
  per-domain loss, …) are ``lm_measures.record_lm_measures``'s, which the executor adds to every run
  from its weights, loop or fused.

Exactness as in ``fused.functional``: each member computes what its run alone computes; only the
order of float additions inside batched kernels differs (tests/test_functional_lm.py: fused == loop
to 1e-10 in float64, in every stored metric and the final weights).
"""

from __future__ import annotations

from itertools import islice
from typing import Any

import torch
import torch.nn.functional as F

from overparam.data.base import TaskData
from overparam.errors import OverparamError
from overparam.models import family_module
from overparam.train import lm, precision
from overparam.train.batches import eval_steps
from overparam.train.fused.buffered import Step
from overparam.train.fused.functional import (
    DropoutMasks,
    FunctionalNet,
    Unfusable,
    group_state,
    member_results,
    structure_problem,
)
from overparam.train.fused.optim import BETAS, FusedOptimizer
from overparam.train.optim import lr_at
from overparam.train.result import TrainResult
from overparam.train.run import run_dtype, shape_of
from overparam.train.snapshot import Snapshots


def member_lm_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(M,) each member's mean next-token loss: logits (M, B, T, V), targets (M, B, T)."""
    per_token = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    return per_token.view(len(logits), -1).mean(dim=1)


class LMStep(Step):
    """``fused.buffered.Step`` (clip, detect, freeze, update) with the members' next-token losses."""

    def losses(self, x: torch.Tensor, y: torch.Tensor, masks=None) -> torch.Tensor:
        with precision.autocast_region(x.device, self.autocast):
            out = self.net(x, True, masks)  # (M, B, T, V)
        return member_lm_losses(out.to(self.net.flat.dtype), y)  # the loss in train.dtype


def probe_batch(config: dict[str, Any], task: TaskData, device: torch.device
                ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Two training windows (inputs, targets), each (2, context), for ``functional.unfusable``'s probe;
    None for a run the loop refuses (no context, full-batch gd, a split shorter than a window)."""
    try:
        context = lm.check_run(config, task)
    except OverparamError:
        return None
    tokens = torch.as_tensor(task.tokens_train[:context + 2], dtype=torch.int64, device=device)
    return lm.windows(tokens, torch.tensor([0, min(1, len(tokens) - context - 1)]), context)


def train_functional_lm_group(configs: list[dict[str, Any]], task: TaskData, device: torch.device, *,
                              snapshots: Snapshots | None = None) -> list[TrainResult]:
    """Train language-model ``configs`` (resolved run configs sharing ``layout.fuse_key``) as one vmap program.

    Returns one ``TrainResult`` per config, in order, as ``train_lm`` returns it, plus ``fused`` and
    ``group_size``; raises :class:`functional.Unfusable` when the members cannot share a program.
    ``snapshots``: the group's training snapshots (flat parameters, moments, divergence, each member's
    dropout generator; windows are a function of (seed, step)), resumed from when present.
    """
    train0, context = configs[0]["train"], lm.check_run(configs[0], task)
    family, shape, dtype = family_module(configs[0]["model"]["family"]), shape_of(task), run_dtype(train0)
    seeds = sorted({c["seed"] for c in configs})
    members = [family.build(c["model"], shape, c["seed"], dropout=c["train"]["dropout"]).to(device, dtype)
               for c in configs]
    problem = structure_problem(members)
    if problem:
        raise Unfusable(problem)
    net = FunctionalNet(members, [seeds.index(c["seed"]) for c in configs], dtype, device)
    trains = [c["train"] for c in configs]
    opt = FusedOptimizer(net.flat, net.run_owner, net.run_len, trains)
    step_fn = LMStep(net, opt, "cross_entropy", precision.run_autocast(train0))
    masks = DropoutMasks(members, [c["seed"] for c in configs], device)

    tokens_train = torch.as_tensor(task.tokens_train, dtype=torch.int64, device=device)
    tokens_test = torch.as_tensor(task.tokens_test, dtype=torch.int64, device=device)
    stride = lm.sequence_stride(task)  # tasks of independent sequences: windows start at sequence starts
    eval_train = lm.eval_offsets(len(tokens_train), context, stride=stride)
    eval_test = lm.eval_offsets(len(tokens_test), context, stride=stride)
    probe = lm.curve_probe(task, context, tokens_test, eval_test)  # a task's own numbers at each evaluation
    steps, batch = train0["steps"], train0["batch_size"]
    checkpoints = set(eval_steps(steps, train0["eval_every"], train0["eval_log_points"]))
    curves: list[list[tuple[int, dict[str, Any]]]] = [[] for _ in configs]

    def record(step: int) -> None:
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
    state = group_state(step_fn, masks, [])
    start, curves = snap.resume(state, curves)  # the last snapshot's step and curves (0 and [] without one)
    opt.step_count = step = start
    streams = [lm.window_offsets(len(tokens_train), context, batch, steps, s, stride) for s in seeds]
    for step, offsets in enumerate(islice(zip(*streams), start, None), start=start + 1):
        x, y = lm.windows(tokens_train, torch.cat(offsets), context)  # (S·B, T) each
        xs, ys = x.view(len(seeds), batch, context), y.view(len(seeds), batch, context)
        y_members = ys if net.identity else ys.index_select(0, net.rows)  # (M, B, T): each member its seed's
        lrs = [lr_at(step - 1, t) for t in trains]
        ctl = torch.tensor([*lrs, step, 1 - BETAS[0] ** step, (1 - BETAS[1] ** step) ** 0.5], dtype=torch.float64)
        mk = masks.draw(net.dropout_calls(xs[0])) if masks.active else None
        step_fn(xs, y_members, ctl.to(device), mk)
        if step in checkpoints:
            record(step)
        snap.step(step, state, curves)
    rate = task.info.get("entropy_rate")
    return member_results(configs, members, net, curves, step_fn, step,
                    {"entropy_rate": float(rate)} if rate is not None else None)
