"""Tasks: a registry of modules, each with ``OPTIONS`` and ``load(opts) -> TaskData``."""

from __future__ import annotations

import importlib
from types import ModuleType

from overparam.data.base import TaskData

# kind -> module path; modules import lazily so a task's heavy dependency stays optional.
TASKS: dict[str, str] = {
    "digits": "overparam.data.digits",
    "teacher": "overparam.data.teacher",
    "text": "overparam.data.text",
    "markov": "overparam.data.markov",
    "mnist": "overparam.data.mnist", "cifar10": "overparam.data.cifar10",
    "icl-markov": "overparam.data.icl_markov", "fewshot": "overparam.data.fewshot",  # in-context tasks
}


def task_module(kind: str) -> ModuleType:
    from overparam.errors import SpecError

    if kind not in TASKS:
        raise SpecError(f"task.kind: unknown task {kind!r} (known: {', '.join(sorted(TASKS))})")
    return importlib.import_module(TASKS[kind])


def load_task(opts: dict) -> TaskData:
    """Load a resolved task config (see ``overparam.spec``)."""
    return task_module(opts["kind"]).load(opts)


__all__ = ["TASKS", "TaskData", "load_task", "task_module"]
