"""Tasks: a registry of modules, each with ``OPTIONS`` and ``load(opts) -> TaskData``.

A module whose ``load`` also takes ``cache_dir`` (``images``) may keep decoded data there;
``load_task`` passes it only to those, so every other task keeps its one-argument ``load``.
Everything that loads the task of a stored run (the sweep, its Ray workers, ``compress``,
``landscape``, ``implicit``, ``probe``, ``attention``, the report) goes through
``load_sweep_task``, so a folder of images is decoded once per sweep directory, not once per command.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from overparam.data.base import TaskData

# kind -> module path; modules import lazily so a task's heavy dependency stays optional.
TASKS: dict[str, str] = {
    "digits": "overparam.data.digits",
    "teacher": "overparam.data.teacher",
    "text": "overparam.data.text",
    "markov": "overparam.data.markov",
    "mnist": "overparam.data.mnist", "cifar10": "overparam.data.cifar10",
    # the user's own data: a file or folder on this machine
    "table": "overparam.data.table", "arrays": "overparam.data.arrays",
    "images": "overparam.data.image_folder", "hf": "overparam.data.hf",
    "icl-markov": "overparam.data.icl_markov", "fewshot": "overparam.data.fewshot",  # in-context tasks
}
LANGUAGE_KINDS = ("text", "markov", "icl-markov", "fewshot")  # language-model tasks; ``hf`` too with a text_column


def task_module(kind: str) -> ModuleType:
    from overparam.errors import SpecError

    if kind not in TASKS:
        raise SpecError(f"task.kind: unknown task {kind!r} (known: {', '.join(sorted(TASKS))})")
    return importlib.import_module(TASKS[kind])


def is_language_task(task: Mapping[str, Any]) -> bool:
    """True when a task config (or a runs table's ``task.*`` values) makes a language-model task.

    Use this, not a list of kinds, wherever language models are special (no error rates, the
    scaling section, gpt's fused engine): an ``hf`` task is one only with a ``text_column``.
    """
    kind = task.get("kind")
    if kind in LANGUAGE_KINDS:
        return True
    column = task.get("text_column")
    return kind == "hf" and isinstance(column, str) and bool(column)


def load_task(opts: dict, cache_dir: str | Path | None = None) -> TaskData:
    """Load a resolved task config (see ``overparam.spec``).

    ``cache_dir``: a folder where a task may keep decoded data between loads (``run_sweep`` gives
    ``DIR/cache``); without it such a task decodes its files each time it is loaded.
    """
    module = task_module(opts["kind"])
    if cache_dir is not None and "cache_dir" in inspect.signature(module.load).parameters:
        return module.load(opts, cache_dir=Path(cache_dir))
    return module.load(opts)


CACHE_FOLDER = "cache"  # DIR/cache: data a task decoded, reused by later loads, resumes and other commands


def sweep_cache_dir(directory: str | Path) -> Path:
    """``DIR/cache``, where tasks of the sweep in ``directory`` keep what they decoded."""
    return Path(directory) / CACHE_FOLDER


def load_sweep_task(directory: str | Path, opts: dict) -> TaskData:
    """``load_task`` for a run of the sweep in ``directory``, through its cache ``DIR/cache``.

    The cache is read when it holds the task's data and written when it does not; writing is best
    effort, so a read-only sweep directory still loads (decoding in memory, writing nothing).
    """
    return load_task(opts, cache_dir=sweep_cache_dir(directory))


__all__ = ["CACHE_FOLDER", "LANGUAGE_KINDS", "TASKS", "TaskData", "is_language_task", "load_sweep_task", "load_task",
           "sweep_cache_dir", "task_module"]
