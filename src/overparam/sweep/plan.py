"""From a spec to work: which runs are still to train, and whether each fits in memory."""

from __future__ import annotations

import json
from typing import Any

from overparam.data.base import TaskData
from overparam.errors import SpecError
from overparam.machine import MEMORY_FRACTION, physical_memory
from overparam.models import family_module
from overparam.spec import Run
from overparam.train.recipe import CLOSED_FORM
from overparam.train.run import run_dtype, shape_of


def task_key(config: dict[str, Any]) -> str:
    """Runs with equal task settings share one loaded dataset."""
    return json.dumps(config["task"], sort_keys=True)


def memory_estimate(config: dict[str, Any], task: TaskData) -> int:
    """Bytes a run needs, roughly: weights + grads + 2 Adam moments, and the largest activations.

    Closed form holds the n × N design, its SVD factors and the test features in float64.
    Deliberately coarse (within ~2×): its job is to refuse a width that cannot fit *before*
    allocating it, with the number in the message.
    """
    family = family_module(config["model"]["family"])
    shape = shape_of(task)
    params = family.count_params(config["model"], shape)
    item = run_dtype(config["train"]).itemsize
    if config["train"]["optimizer"] in CLOSED_FORM:
        width = params // max(shape.output_dim, 1)
        n_test = len(task.x_test) if task.x_test is not None else 0
        return int(8 * width * (3 * task.n_train + min(n_test, 4096) + min(task.n_train, width)))
    batch = min(config["train"]["batch_size"], task.n_train)
    if hasattr(family, "activation_elements"):  # convs: activations dominate, a few tensors of them per example
        return int(4 * params * item + 6 * batch * family.activation_elements(config["model"], shape) * item)
    width = config["model"].get("width") or config["model"].get("d_model") or 0
    depth = config["model"].get("depth") or config["model"].get("n_layer") or 1
    context = config["model"].get("context") or 1
    activations = 4 * batch * context * width * depth * item * (8 if task.kind == "lm" else 1)
    return int(4 * params * item + activations)


def check_memory(runs: list[Run], tasks: dict[str, TaskData]) -> None:
    limit = physical_memory() * MEMORY_FRACTION
    for run in runs:
        need = memory_estimate(run.config, tasks[task_key(run.config)])
        if need > limit:
            where = ", ".join(f"{k}={v}" for k, v in run.point.items()) or run.id
            raise SpecError(f"run {run.id} ({where}) needs about {need / 2**30:.1f} GiB, more than "
                            f"{MEMORY_FRACTION:.0%} of this machine's {physical_memory() / 2**30:.1f} GiB; "
                            f"reduce the size")
