"""Batch order: a pure function of (n, batch size, seed), shared by the loop and the fused engine.

Each epoch is a fresh permutation from the run's ``batches`` stream; an epoch's last, shorter
batch is kept (every example is seen once per epoch). Members of a fused group that share a
seed therefore see exactly the batches their sequential runs see.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from overparam.models.base import generator


def batch_indices(n: int, batch_size: int, steps: int, seed: int) -> Iterator[torch.Tensor]:
    """Yield ``steps`` index tensors; ``batch_size >= n`` means full batch every step."""
    if batch_size >= n:
        full = torch.arange(n)
        for _ in range(steps):
            yield full
        return
    gen = generator(seed, "batches")
    done = 0
    while done < steps:
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            if done == steps:
                return
            yield perm[start:start + batch_size]
            done += 1


def eval_steps(steps: int, eval_every: int, log_points: int) -> list[int]:
    """Steps after which to evaluate: every ``eval_every``, ``log_points`` log-spaced, and the last.

    Step 0 (the init) is included whenever a curve is asked for, so curves start at the start.
    """
    points = {steps}
    if eval_every > 0:
        points.update(range(0, steps, eval_every))
    if log_points > 0:
        points.add(0)
        for i in range(log_points):
            points.add(int(round(steps ** (i / max(log_points - 1, 1)))))
    return sorted(p for p in points if 0 <= p <= steps)
