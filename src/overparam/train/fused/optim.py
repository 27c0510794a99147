"""SGD, Adam and AdamW over the fused flat tensor, elementwise, with per-member settings.

The arithmetic is torch's single-tensor optimizers' (``foreach=False``, the unfused reference)
term for term, with the member's lr, weight decay and momentum broadcast along its runs of the
flat tensor; in float64 an update is bit-identical to torch's given the same gradient. A member
with learning rate 0 is frozen: its parameters receive ``p + 0·u`` = ``p``.
"""

from __future__ import annotations

from typing import Any

import torch

BETAS = (0.9, 0.999)  # torch's Adam/AdamW defaults, as train/optim.py builds them
EPS = 1e-8
CLIP_EPS = 1e-6  # clip_grad_norm_: coef = max_norm / (norm + 1e-6)


class FusedOptimizer:
    """One optimizer for all members; ``trains`` are their recipes in slot order."""

    def __init__(self, flat: torch.nn.Parameter, run_owner: torch.Tensor, run_len: torch.Tensor,
                 trains: list[dict[str, Any]]):
        self.flat, self.run_owner, self.run_len = flat, run_owner, run_len
        self.kind = {"gd": "sgd"}.get(trains[0]["optimizer"], trains[0]["optimizer"])
        self.members = len(trains)
        self.owner = torch.repeat_interleave(torch.arange(len(run_owner), device=flat.device), run_len)
        self.owner = run_owner[self.owner]  # (P,) slot of every element
        self.weight_decay = self._per_element([t["weight_decay"] for t in trains])
        self.wd_members = torch.tensor([t["weight_decay"] for t in trains], dtype=torch.float64,
                                       device=flat.device)  # (M,)
        self.momentum = self._per_element([t["momentum"] for t in trains]) if self.kind == "sgd" else None
        clip = [t["clip"] for t in trains]
        self.clipping = any(c is not None for c in clip)
        self.clip = torch.tensor([c if c is not None else float("inf") for c in clip], dtype=flat.dtype,
                                 device=flat.device)  # (M,)
        self.has_clip = torch.tensor([c is not None for c in clip], device=flat.device)  # (M,)
        def zeros() -> torch.Tensor:
            return torch.zeros_like(flat.detach())

        self.exp_avg = zeros() if self.kind in ("adam", "adamw") else None
        self.exp_avg_sq = zeros() if self.kind in ("adam", "adamw") else None
        # Adam's denominator, written in place each step: on CPU a fresh tensor of the leaf's size costs
        # more than the arithmetic (an 8-GPT group, 5 M parameters: sqrt 16 ms per step, < 5 ms in place)
        self.denom = zeros() if self.kind in ("adam", "adamw") else None
        self.buf = zeros() if self.momentum is not None else None  # 0·μ + g = g: torch's first-step clone
        self.step_count = 0
        self.eager = True  # False inside a CUDA graph: no host reads, no caching
        self._lr_key: torch.Tensor | None = None
        self._lr_flat: torch.Tensor | None = None

    def _per_element(self, values: list[float]) -> float | torch.Tensor | None:
        """None when all zero (the term is skipped, as torch skips it), a float when shared."""
        if all(v == 0 for v in values):
            return None
        if len(set(values)) == 1:
            return float(values[0])
        return torch.tensor(values, dtype=self.flat.dtype, device=self.flat.device)[self.owner]  # (P,)

    def expand(self, per_member: torch.Tensor) -> torch.Tensor:
        """(M,) -> (P,): each element gets its member's value, rounded to the parameters' dtype."""
        return per_member.to(self.flat.dtype)[self.owner]

    def _expand_lr(self, lr: torch.Tensor) -> torch.Tensor:
        """``expand(lr)``, cached while the lrs stay the same (eager only: the check syncs)."""
        if not self.eager:
            return self.expand(lr)
        if self._lr_key is None or not torch.equal(lr, self._lr_key):
            self._lr_key, self._lr_flat = lr.clone(), self.expand(lr)
        return self._lr_flat

    def member_norms(self, grad: torch.Tensor) -> torch.Tensor:
        """(M,) gradient 2-norm of each member (clip_grad_norm_'s total norm, member by member)."""
        sq = torch.zeros(self.members, dtype=grad.dtype, device=grad.device)
        if grad.is_cuda:  # atomics, no host sync: capturable in a CUDA graph
            return sq.index_add_(0, self.owner, grad * grad).sqrt()
        runs = torch.segment_reduce(grad * grad, "sum", lengths=self.run_len)  # (R,): serial per run on CPU
        return sq.index_add_(0, self.run_owner, runs).sqrt()

    @torch.no_grad()
    def clip_(self, grad: torch.Tensor) -> torch.Tensor:
        """Scale each clipped member's gradient by min(1, clip / (norm + 1e-6)); returns the norms."""
        norms = self.member_norms(grad)  # (M,)
        coef = torch.clamp(self.clip / (norms + CLIP_EPS), max=1.0)  # unclipped members: clip = inf -> 1
        grad.mul_(self.expand(coef))
        return norms

    @torch.no_grad()
    def step(self, lr: float | torch.Tensor, bias: tuple[Any, Any] | None = None) -> None:
        """One update; consumes (modifies) the flat gradient.

        ``lr``: a float when every member has it, else (M,) float64 per member (0: frozen).
        ``bias`` = (1 − β1^t, √(1 − β2^t)) as floats, or as 0-dim tensors inside a CUDA graph;
        None: from the step count. Per-member numbers are formed in float64 exactly as torch
        forms its Python-float scalars, then rounded once to the parameters' dtype, so a member
        steps to the same bits whether its lr is shared or its own.
        """
        self.step_count += 1
        p, g, wd = self.flat, self.flat.grad, self.weight_decay
        shared = not isinstance(lr, torch.Tensor)
        if wd is not None and self.kind != "adamw":
            g = g.add_(p, alpha=wd) if isinstance(wd, float) else g.addcmul_(p, wd)  # grad + wd·param
        if self.kind == "sgd":
            if self.buf is not None:
                g = self.buf.mul_(self.momentum).add_(g)  # μ·buf + g
            if shared:
                p.add_(g, alpha=-lr)
            else:
                p.addcmul_(g, self._expand_lr(lr), value=-1)  # p − lr·g: the same rounding as p + (−lr)·g
            return
        if bias is None:
            bias = (1 - BETAS[0] ** self.step_count, (1 - BETAS[1] ** self.step_count) ** 0.5)
        bc1, bc2_sqrt = bias
        if wd is not None and self.kind == "adamw":  # decoupled: param·(1 − lr·wd)
            p.mul_(1 - lr * wd if shared and isinstance(wd, float) else self.expand(1 - lr * self.wd_members))
        self.exp_avg.lerp_(g, 1 - BETAS[0])
        self.exp_avg_sq.mul_(BETAS[1]).addcmul_(g, g, value=1 - BETAS[1])
        denom = torch.sqrt(self.exp_avg_sq, out=self.denom).div_(bc2_sqrt).add_(EPS)
        if shared and not isinstance(bc1, torch.Tensor):
            p.addcdiv_(self.exp_avg, denom, value=-lr / bc1)  # torch's own expression
        else:  # (s·m)/denom with s = −lr/bc1 per member: the same bits as value=s above
            p.addcdiv_(self.exp_avg * self.expand(-(lr / bc1)), denom)
