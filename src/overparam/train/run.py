"""Train one run from its resolved config: the unit of work every executor calls."""

from __future__ import annotations

from typing import Any

import torch

from overparam.data.base import TaskData
from overparam.models import Shape, family_module
from overparam.train.recipe import CLOSED_FORM
from overparam.train.result import TrainResult
from overparam.train.snapshot import Snapshots


def shape_of(task: TaskData) -> Shape:
    return Shape(task.input_shape, task.output_dim, task.vocab_size)


def resolve_device(name: str = "auto", here: bool = True) -> torch.device:
    """``auto``: CUDA when this machine has it. ``here`` False: the device belongs to remote workers
    (a Ray cluster), so ``cuda`` is their GPUs and needs none on this machine."""
    from overparam.errors import OverparamError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and here and not torch.cuda.is_available():
        raise OverparamError("--device cuda: no CUDA device is available here (use --device cpu or auto)")
    return torch.device(name)


def run_dtype(train: dict[str, Any]) -> torch.dtype:
    if train["dtype"] is not None:
        return getattr(torch, train["dtype"])
    return torch.float64 if train["optimizer"] in CLOSED_FORM else torch.float32


def examples_seen(config: dict[str, Any], task: TaskData) -> int:
    """Training examples processed (tokens for a language model): FLOPs = this × FLOPs/example."""
    train = config["train"]
    if task.kind == "lm":
        return train["steps"] * train["batch_size"] * config["model"]["context"]
    if train["optimizer"] in CLOSED_FORM:
        return task.n_train
    batch = task.n_train if train["optimizer"] == "gd" else min(train["batch_size"], task.n_train)
    return train["steps"] * batch


def run_size(config: dict[str, Any], task: TaskData) -> tuple[int, float]:
    """(trainable parameters, training FLOPs) of a run, by the family's stated conventions.

    Closed form adds the thin SVD of the n × N design, ≈ 4·n·N·min(n, N) FLOPs (leading term).
    """
    family = family_module(config["model"]["family"])
    shape = shape_of(task)
    params = family.count_params(config["model"], shape)
    flops = float(family.flops_per_example(config["model"], shape)) * examples_seen(config, task)
    if config["train"]["optimizer"] in CLOSED_FORM:
        n, width = task.n_train, params // max(shape.output_dim, 1)
        flops += 4.0 * n * width * min(n, width)
    return params, flops


def train_run(config: dict[str, Any], task: TaskData, device: torch.device,
              snapshots: Snapshots | None = None) -> TrainResult:
    """Build the run's model from its seed and train it (closed form, language model or loop).

    ``snapshots``: where gradient training saves and resumes its state (closed form is one solve).
    """
    family = family_module(config["model"]["family"])
    train = config["train"]
    dtype = run_dtype(train)
    model = family.build(config["model"], shape_of(task), config["seed"], dropout=train["dropout"])
    if train["optimizer"] in CLOSED_FORM:
        from overparam.train.closed_form import fit_closed_form

        return fit_closed_form(model, task, train, device, dtype)
    if task.kind == "lm":
        from overparam.train.lm import train_lm

        return train_lm(model, task, config, device, dtype, snapshots)
    from overparam.train.loop import train_model

    return train_model(model, task, train, config["seed"], device, dtype, snapshots)
