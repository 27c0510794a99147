"""Lottery tickets: iterative magnitude pruning with weight rewinding, and its random-reinit control.

Frankle & Carbin (2019): train, prune the smallest p % of the surviving weights, reset the
survivors to their *initial* values, retrain with the mask fixed; repeat. The sparse subnetwork
that comes out trains to the dense network's accuracy, while the same mask with freshly drawn
weights (the random-reinitialization control) does not, at high sparsity. Frankle et al. (2020,
"Linear mode connectivity and the lottery ticket hypothesis") found that for larger networks the
reset must go to an early training step k rather than to step 0 ("rewinding"); the step-k weights
here are replayed exactly from the run's own seed and recipe, so they lie on the trajectory that
produced the stored checkpoint.

Each level retrains for steps k .. T of the run's schedule (T = ``train.steps``). The level
sparsities follow 1 − (1 − p)^level, with every requested target inserted exactly, so a report at
"90 %" is a ticket at 90.0 %.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from overparam.compress.base import Masks, Subject, train_steps
from overparam.compress.prune import magnitude_masks, sparsity_of

DEFAULT_RATE = 0.2  # fraction of the surviving weights removed per level (Frankle & Carbin: 20 %)
REINIT_SEED_OFFSET = 7_777  # the control's fresh init: another seed of the same family's init


def default_rewind_step(steps: int) -> int:
    """About 2 % of training, at least 1 step: early, as Frankle et al. (2020) found sufficient."""
    return max(1, round(0.02 * steps))


def level_sparsities(targets: list[float], rate: float = DEFAULT_RATE) -> list[float]:
    """Each level removes ``rate`` of the survivors, s ← 1 − (1 − s)(1 − rate), except that a level
    that would pass a target stops at it exactly; ends at the largest target."""
    if not 0.0 < rate < 1.0:
        raise ValueError(f"rate must be in (0, 1), got {rate}")
    pending = sorted(set(targets))
    levels, s = [], 0.0
    while pending:
        s = min(1.0 - (1.0 - s) * (1.0 - rate), pending[0])
        if s >= pending[0] - 1e-12:
            s = pending.pop(0)
        levels.append(s)
    return levels


def rewind_weights(subject: Subject, step: int) -> dict[str, torch.Tensor]:
    """The run's weights after ``step`` steps, replayed from its seed with its recipe and batches."""
    model = subject.build()
    if step > 0:
        train_steps(model, subject, step, seed=subject.config["seed"], schedule_steps=subject.train["steps"])
    return copy.deepcopy(model.state_dict())


def _train_from(subject: Subject, state: dict[str, torch.Tensor], masks: Masks, start: int) -> nn.Module:
    model = subject.build()
    model.load_state_dict(state)
    train_steps(model, subject, subject.train["steps"], seed=subject.config["seed"], start=start, masks=masks)
    return model


def find_tickets(subject: Subject, targets: list[float], rate: float = DEFAULT_RATE,
                 rewind_step: int | None = None) -> dict[str, Any]:
    """Iterative magnitude pruning with rewinding to ``rewind_step``, and the reinit control per target.

    Returns {"rewind_step", "levels": [{sparsity, test_loss, test_error}], "tickets": {s: (model, masks)},
    "controls": {s: model}}. The level-0 network is the run's own trained model.
    """
    steps = subject.train["steps"]
    k = default_rewind_step(steps) if rewind_step is None else rewind_step
    if not 0 <= k < steps:
        raise ValueError(f"rewind step must be in [0, {steps}), got {k}")
    start_state = rewind_weights(subject, k)
    trained, masks = subject.model, None
    wanted = {round(t, 6) for t in targets}
    levels, tickets, controls = [], {}, {}
    for s in level_sparsities(targets, rate):
        masks = magnitude_masks(trained, s, keep=masks)
        trained = _train_from(subject, start_state, masks, k)
        levels.append({"sparsity": sparsity_of(masks), **subject.evaluate(trained)})
        if round(s, 6) in wanted:
            tickets[s] = (trained, masks)
            reinit = subject.build(seed=subject.config["seed"] + REINIT_SEED_OFFSET)
            train_steps(reinit, subject, steps, seed=subject.config["seed"], masks=masks)
            controls[s] = reinit
    return {"rewind_step": k, "rate": rate, "levels": levels, "tickets": tickets, "controls": controls}
