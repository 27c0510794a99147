"""Execute one group: the function a local loop or a Ray worker calls. It never touches the store."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from overparam.data.base import TaskData
from overparam.errors import OverparamError
from overparam.spec import Run
from overparam.sweep.grouping import Group
from overparam.train.result import TrainResult
from overparam.train.run import train_run


def _train_fused(configs: list[dict], task: TaskData, device: torch.device) -> list[TrainResult]:
    if configs[0]["model"]["family"] == "cnn":
        from overparam.train.fused_cnn import train_cnn_group

        return train_cnn_group(configs, task, device)
    from overparam.train.fused import train_group

    return train_group(configs, task, device)


@dataclass
class Outcome:
    run: Run
    result: TrainResult
    seconds: float


def execute_group(group: Group, task: TaskData, device: torch.device) -> list[Outcome]:
    """Train a group's runs; a bug in one run fails that run only (status ``failed``)."""
    if group.fused and len(group.runs) > 1:
        start = time.perf_counter()
        try:
            results = _train_fused([r.config for r in group.runs], task, device)
        except OverparamError:
            raise
        except (RuntimeError, ValueError, MemoryError) as exc:  # the loop is the reference: fall back to it
            import warnings

            warnings.warn(f"fused training of {len(group.runs)} runs failed ({type(exc).__name__}: {exc}); "
                          f"training them one at a time", stacklevel=2)
            return execute_group(Group(group.runs, fused=False), task, device)
        each = (time.perf_counter() - start) / len(group.runs)
        return [Outcome(run, res, each) for run, res in zip(group.runs, results, strict=True)]
    outcomes = []
    for run in group.runs:
        start = time.perf_counter()
        try:
            result = train_run(run.config, task, device)
        except OverparamError:
            raise
        except (RuntimeError, ValueError, FloatingPointError, MemoryError) as exc:
            msg = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
            result = TrainResult("failed", {}, [], None, msg)
        outcomes.append(Outcome(run, result, time.perf_counter() - start))
    return outcomes
