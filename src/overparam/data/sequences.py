"""What the tasks made of independent sequences (``icl-markov``, ``fewshot``) ask of a run."""

from __future__ import annotations

from typing import Any

from overparam.errors import SpecError


def check_run(cfg: dict[str, Any]) -> None:
    """A model reads the start of one sequence, so ``model.context`` ≤ ``task.context``; and, as any
    language model, it can record norms only among ``train.diagnostics``."""
    kind, context = cfg["task"]["kind"], cfg["model"].get("context")
    if context is None:
        raise SpecError(f"model.family: {cfg['model']['family']!r} is not a language model ({kind} needs a model "
                        f"with a context, e.g. family gpt)")
    if context > cfg["task"]["context"]:
        raise SpecError(f"model.context: {context} is longer than a {kind} sequence (task.context = "
                        f"{cfg['task']['context']}); set model.context <= task.context")
    curvature = [d for d in cfg["train"].get("diagnostics") or () if d in ("sharpness", "trace")]
    if curvature:
        raise SpecError(f"train.diagnostics: {curvature[0]} needs a task with inputs and targets; a language "
                        f"model ({kind}) can record norms only")
