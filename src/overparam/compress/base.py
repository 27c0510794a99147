"""The run being compressed: its trained model, its data, and the one training loop every method shares.

A :class:`Subject` is one finished run of a sweep rebuilt from its stored config and checkpoint.
Every compression method (pruning, lottery tickets, distillation) trains through
:func:`train_steps`, which follows the run's own recipe (optimizer, lr schedule, batch size,
clipping, dropout) so that "fine-tuned for 200 steps" means the same thing everywhere, and which
re-applies weight masks after every optimizer step: a pruned weight stays exactly zero even under
Adam, whose moment estimates would otherwise move it again.

Families supported: ``mlp`` (everything), ``gpt`` (everything; structured pruning removes MLP
neurons and attention heads) and the user's own models (``"file.py:factory"``, rebuilt through the
factory: magnitude pruning of every Linear and Conv weight, structured pruning as masks of whole
output units, quantization, ONNX latency; distillation when the factory takes a ``width``).
Others are refused with one line.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from overparam.data.base import TaskData
from overparam.errors import OverparamError
from overparam.models.base import Shape

SUPPORTED_FAMILIES = ("mlp", "gpt")
Masks = dict[str, torch.Tensor]  # parameter name -> bool tensor, True = kept
Forward = Callable[[torch.Tensor], torch.Tensor]  # a model, a quantized model or an ONNX Runtime session


@dataclass
class Subject:
    """One trained run, on CPU in float32, ready to be compressed and measured."""

    run_id: str
    config: dict[str, Any]  # the run's resolved config: task, model, train, seed
    task: TaskData
    shape: Shape
    family: ModuleType
    model: nn.Module  # the trained dense model (eval mode); methods copy it, never modify it
    metrics: dict[str, Any]  # the metrics stored by the sweep
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # x/y splits, or token streams

    @property
    def is_lm(self) -> bool:
        return self.task.kind == "lm"

    @property
    def n_test(self) -> int:
        """Test examples :meth:`evaluate` scores (predicted tokens for a language model)."""
        if self.is_lm:
            from overparam.train.lm import eval_offsets

            context = self.config["model"]["context"]
            return int(len(eval_offsets(len(self.tensors["tokens_test"]), context)) * context)
        return int(len(self.tensors["x_test"]))

    @property
    def train(self) -> dict[str, Any]:
        return self.config["train"]

    @property
    def loss_kind(self) -> str:
        if self.is_lm:
            return "cross_entropy"
        from overparam.train.evaluate import loss_kind

        return loss_kind(self.task, self.train)

    @property
    def n_classes(self) -> int | None:
        return self.task.n_classes if self.task.kind == "classification" else None

    def copy(self) -> nn.Module:
        return copy.deepcopy(self.model)

    def build(self, model_cfg: dict[str, Any] | None = None, seed: int | None = None) -> nn.Module:
        """A fresh, untrained model of this run's family (another size or init seed if given)."""
        cfg = model_cfg if model_cfg is not None else self.config["model"]
        seed = self.config["seed"] if seed is None else seed
        return self.family.build(cfg, self.shape, seed, dropout=self.train["dropout"]).float()

    # -- data ---------------------------------------------------------------------------------
    def example(self, batch: int) -> torch.Tensor:
        """``batch`` test inputs (token windows for a language model): what latency is measured on."""
        if self.is_lm:
            from overparam.train.lm import windows

            context = self.config["model"]["context"]
            n = len(self.tensors["tokens_test"])
            offsets = torch.arange(batch, dtype=torch.int64) * context % max(n - context - 1, 1)
            return windows(self.tensors["tokens_test"], offsets, context)[0]
        x = self.tensors["x_test"]
        reps = math.ceil(batch / len(x))
        return x.repeat(reps, *([1] * (x.dim() - 1)))[:batch].contiguous()

    def batches(self, steps: int, seed: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Training batches ``start .. steps - 1`` of the stream the run's recipe draws with ``seed``.

        With the run's own seed and ``start = 0`` these are exactly the batches the sweep trained on.
        """
        train = self.train
        if self.is_lm:
            from overparam.train.lm import window_offsets, windows

            context = self.config["model"]["context"]
            tokens = self.tensors["tokens_train"]
            stream = window_offsets(len(tokens), context, train["batch_size"], steps, seed)
            for i, offsets in enumerate(stream):
                if i >= start:
                    yield windows(tokens, offsets, context)
            return
        from overparam.train.batches import batch_indices

        n = self.task.n_train
        batch = n if train["optimizer"] == "gd" else train["batch_size"]
        for i, idx in enumerate(batch_indices(n, batch, steps, seed)):
            if i >= start:
                yield self.tensors["x_train"][idx], self.tensors["y_train"][idx]

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The run's training loss (mean over examples, or over tokens for a language model)."""
        if self.is_lm:
            from overparam.train.lm import lm_loss

            return lm_loss(out, y)
        from overparam.train.evaluate import batch_loss

        return batch_loss(out, y, self.loss_kind, self.n_classes)

    @torch.no_grad()
    def evaluate(self, forward: Forward) -> dict[str, float | None]:
        """Test loss and test error of any forward function, on the sweep's own test split.

        The same numbers as the sweep's metrics for the same weights (classification: the clean
        test labels; language model: the fixed evaluation windows of ``train.lm``).
        """
        if isinstance(forward, nn.Module):
            forward.eval()
        if self.is_lm:
            from overparam.train.lm import EVAL_BATCH_TOKENS, eval_offsets, lm_loss, windows

            context = self.config["model"]["context"]
            tokens = self.tensors["tokens_test"]
            offsets = eval_offsets(len(tokens), context)
            per = max(1, EVAL_BATCH_TOKENS // context)
            total = 0.0
            for s in range(0, len(offsets), per):
                x, y = windows(tokens, offsets[s:s + per], context)
                total += float(lm_loss(forward(x).float(), y)) * len(x)
            return {"test_loss": total / len(offsets), "test_error": None}
        from overparam.train.evaluate import CHUNK, batch_loss

        x, y = self.tensors["x_test"], self.tensors["y_test"]
        total, wrong = 0.0, 0
        for s in range(0, len(x), CHUNK):
            out = forward(x[s:s + CHUNK]).float()
            total += float(batch_loss(out, y[s:s + CHUNK], self.loss_kind, self.n_classes)) * len(out)
            if self.n_classes:
                wrong += int((out.argmax(dim=1) != y[s:s + CHUNK]).sum())
        return {"test_loss": total / len(x), "test_error": wrong / len(x) if self.n_classes else None}


def train_steps(model: nn.Module, subject: Subject, steps: int, *, seed: int, start: int = 0,
                masks: Masks | None = None, loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor],
                                                            torch.Tensor] | None = None,
                schedule_steps: int | None = None) -> dict[str, Any]:
    """Train ``model`` in place for steps ``start .. steps - 1`` of the run's recipe; return a summary.

    ``seed`` picks the batch stream (the run's seed replays its own trajectory; fine-tuning uses
    another). The lr follows the recipe's schedule over ``schedule_steps`` (default: ``steps``).
    ``masks`` zero their weights before the first step and after every step (pruned weights
    stay pruned). ``loss_fn(out, x, y)`` replaces the run's loss (distillation). A non-finite
    loss stops training early; the summary then says ``diverged_at``.
    """
    from overparam.train.optim import build_optimizer, lr_at

    recipe = dict(subject.train)
    recipe["steps"] = schedule_steps or steps
    params = [p for p in model.parameters() if p.requires_grad]
    opt = build_optimizer(params, recipe)
    named = dict(model.named_parameters())
    if masks:
        apply_masks(model, masks)
    torch.manual_seed(seed)  # dropout, as the sweep's loop: the only draw from the global stream
    model.train()
    summary: dict[str, Any] = {"steps": max(steps - start, 0)}
    for step, (x, y) in enumerate(subject.batches(steps, seed, start), start=start + 1):
        for group in opt.param_groups:
            group["lr"] = lr_at(step - 1, recipe)
        out = model(x)
        loss = loss_fn(out, x, y) if loss_fn else subject.loss(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, recipe["clip"]) if recipe["clip"] is not None else None
        if not math.isfinite(float(loss.detach())) or (norm is not None and not math.isfinite(float(norm))):
            summary["diverged_at"] = step
            break
        opt.step()
        if masks:
            with torch.no_grad():
                for name, mask in masks.items():
                    named[name].mul_(mask)
    model.eval()
    return summary


def apply_masks(model: nn.Module, masks: Masks) -> nn.Module:
    """Zero every masked-out weight in place (True in a mask = kept)."""
    named = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            named[name].mul_(mask.to(named[name].dtype))
    return model


def count_nonzero(model: nn.Module) -> int:
    """Nonzero entries of every parameter and buffer that holds weights (what a sparse format stores)."""
    return int(sum(int(torch.count_nonzero(t)) for t in model.state_dict().values()
                   if t.is_floating_point() or t.dtype in (torch.int8, torch.uint8)))


def load_subject(directory: str | Path, run_id: str) -> Subject:
    """Rebuild run ``run_id`` (or a unique prefix of it) of the sweep in ``directory``.

    Refuses, with one line: an unknown or ambiguous id, a run that did not finish, a run without
    a checkpoint, a family this module cannot compress.
    """
    from overparam.data import load_sweep_task
    from overparam.models import family_module, is_user_family
    from overparam.provenance import check_rebuild
    from overparam.store import open_store
    from overparam.sweep.checkpoints import load_checkpoint, load_weights
    from overparam.train.run import shape_of

    with open_store(directory) as store:
        runs = store.runs()
        matches = [r for r in runs if r["id"] == run_id] or [r for r in runs if r["id"].startswith(run_id)]
        if not run_id or not matches:
            raise OverparamError(f"--run: no run {run_id!r} in {directory} "
                                 f"(see `overparam runs {directory}`)")
        if len(matches) > 1:
            raise OverparamError(f"--run: {run_id!r} matches {len(matches)} runs; give more of the id")
        run = matches[0]
        path = store.checkpoint_path(run["id"])
    if run["status"] != "done":
        raise OverparamError(f"--run: run {run['id']} is {run['status']}, not done: nothing to compress")
    config = run["config"]
    name = config["model"]["family"]
    if name not in SUPPORTED_FAMILIES and not is_user_family(name):
        raise OverparamError(f"--run: run {run['id']} is a {name!r} model; compress supports "
                             f"{', '.join(SUPPORTED_FAMILIES)} and your own models ('file.py:factory')")
    if not Path(path).is_file():
        raise OverparamError(f"--run: run {run['id']} has no checkpoint ({path}); rerun its sweep with "
                             f"train.checkpoint true")
    check_rebuild(directory, config)  # the model file and the task's inputs must be the ones it trained from
    state = load_checkpoint(Path(path), run["id"], config)
    task = load_sweep_task(directory, config["task"])
    shape = shape_of(task)
    family = family_module(name)
    model = family.build(config["model"], shape, config["seed"], dropout=config["train"]["dropout"])
    load_weights(model, {k: v.float() for k, v in state.items()}, run["id"])
    model = model.float().eval()
    subject = Subject(run["id"], config, task, shape, family, model, run["metrics"])
    if task.kind == "lm":
        subject.tensors = {"tokens_train": torch.as_tensor(task.tokens_train, dtype=torch.int64),
                           "tokens_test": torch.as_tensor(task.tokens_test, dtype=torch.int64)}
    else:
        from overparam.train.evaluate import to_tensors

        subject.tensors = to_tensors(task, torch.device("cpu"), torch.float32)
    return subject
