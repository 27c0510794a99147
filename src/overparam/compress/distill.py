"""Knowledge distillation: a smaller student trained on the teacher's softened outputs (Hinton et al. 2015).

The loss, per example, with student logits z_s, teacher logits z_t, temperature T and weight α:

    L = α · T² · KL( softmax(z_t / T) ‖ softmax(z_s / T) ) + (1 − α) · CE(z_s, y)

averaged over examples (over every token position for a language model). The T² keeps the soft
term's gradients on the same scale as the hard term's as T changes: the gradient of the soft term
w.r.t. z_s is (softmax(z_s/T) − softmax(z_t/T)) / T, whose size falls as 1/T² for large T (their
section 2). The teacher's "dark knowledge" is in how it ranks the wrong classes, which the soft
targets carry and one-hot labels do not.

The control beside it: the same student (same width, init, batches, optimizer, steps) trained on
the hard labels alone. Any gap between the two is what the teacher taught.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from overparam.compress.base import Subject, train_steps
from overparam.errors import OverparamError

DEFAULT_TEMPERATURE = 2.0  # Hinton et al. try 1..20; on digits 1-2 did best, 4 hurt (docs/compression.md)
DEFAULT_ALPHA = 0.5  # weight of the soft term; the hard term keeps the student anchored to the labels


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor,
                      temperature: float = DEFAULT_TEMPERATURE, alpha: float = DEFAULT_ALPHA) -> torch.Tensor:
    """α·T²·KL(p_t^T ‖ p_s^T) + (1 − α)·CE(z_s, y), mean over examples; logits (..., C), targets (...)."""
    c = student.shape[-1]
    zs, zt, y = student.reshape(-1, c), teacher.detach().reshape(-1, c), targets.reshape(-1)
    log_ps = F.log_softmax(zs / temperature, dim=1)
    log_pt = F.log_softmax(zt / temperature, dim=1)
    kl = (log_pt.exp() * (log_pt - log_ps)).sum(dim=1).mean()
    return alpha * temperature**2 * kl + (1.0 - alpha) * F.cross_entropy(zs, y)


def student_config(subject: Subject, width: int) -> dict[str, Any]:
    """The teacher's model config with its width set to ``width`` (``mlp``: width; ``gpt``: d_model)."""
    cfg = dict(subject.config["model"])
    if width < 1:
        raise OverparamError(f"--distill-width: expected a positive width, got {width}")
    if cfg["family"] == "gpt":
        if width % cfg["n_head"]:
            raise OverparamError(f"--distill-width: a gpt student's d_model must be a multiple of "
                                 f"n_head ({cfg['n_head']}), got {width}")
        cfg["d_model"] = width
    elif "width" not in cfg and "width" not in subject.family.OPTIONS:
        raise OverparamError(f"--distill-width: {cfg['family']!r} takes no 'width' keyword, so a student of "
                             f"another width cannot be built; distill a model whose factory takes width")
    else:
        cfg["width"] = width
    return cfg


def train_student(subject: Subject, width: int, steps: int | None = None, distill: bool = True,
                  temperature: float = DEFAULT_TEMPERATURE, alpha: float = DEFAULT_ALPHA
                  ) -> tuple[nn.Module, dict[str, Any]]:
    """A student of ``width`` trained ``steps`` steps (default: the run's) with the run's recipe.

    ``distill=False`` is the from-scratch control: same init, batches and budget, hard labels only.
    """
    if subject.loss_kind != "cross_entropy":
        raise OverparamError("--distill-width: distillation needs softmax outputs (a classification or "
                             "language task trained with cross-entropy)")
    cfg = student_config(subject, width)
    student = subject.build(cfg)
    teacher = subject.model.eval()
    steps = steps or subject.train["steps"]

    def soft(out: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            t = teacher(x)
        return distillation_loss(out, t, y, temperature, alpha)

    summary = train_steps(student, subject, steps, seed=subject.config["seed"],
                          loss_fn=soft if distill else None)
    summary.update({"width": width, "distilled": distill, "temperature": temperature if distill else None,
                    "alpha": alpha if distill else None})
    return student, summary
