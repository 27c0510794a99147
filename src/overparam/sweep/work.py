"""Execute one group: the function a local loop or a Ray worker calls. It never touches the store."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from overparam.data.base import TaskData
from overparam.errors import OverparamError
from overparam.spec import Run
from overparam.sweep.grouping import Group
from overparam.sweep.snapshots import SnapshotPolicy
from overparam.train.result import TrainResult
from overparam.train.run import train_run
from overparam.train.snapshot import Snapshots


def _train_fused(configs: list[dict], task: TaskData, device: torch.device,
                 snapshots: Snapshots | None = None) -> list[TrainResult]:
    """A fused group, trained by its family's engine; every engine resumes from ``snapshots``."""
    from overparam.train.fused.layout import CONV_FAMILIES, functional_engine

    if functional_engine(configs[0]["model"]["family"]):
        from overparam.train.fused.functional import train_functional_group

        return train_functional_group(configs, task, device, snapshots=snapshots)
    if configs[0]["model"]["family"] in CONV_FAMILIES:
        from overparam.train.fused_cnn import train_cnn_group

        return train_cnn_group(configs, task, device, snapshots=snapshots)
    if configs[0]["model"]["family"] == "gpt":
        from overparam.train.fused_gpt import train_gpt_group

        return train_gpt_group(configs, task, device, snapshots=snapshots)
    from overparam.train.fused import train_group

    return train_group(configs, task, device, snapshots=snapshots)


@dataclass
class Outcome:
    run: Run
    result: TrainResult
    seconds: float


def execute_group(group: Group, task: TaskData, device: torch.device,
                  snapshots: SnapshotPolicy | None = None) -> list[Outcome]:
    """Train a group's runs; a bug in one run fails that run only (status ``failed``).

    ``snapshots``: where trainers save their state as they go, and resume from it on a retry.
    """
    if group.fused and len(group.runs) > 1:
        start = time.perf_counter()
        snap = snapshots.for_runs(group.runs, device) if snapshots else None
        try:
            results = _train_fused([r.config for r in group.runs], task, device, snap)
        except OverparamError:
            raise
        except (RuntimeError, ValueError, MemoryError) as exc:  # the loop is the reference: fall back to it
            import warnings

            warnings.warn(f"fused training of {len(group.runs)} runs failed ({type(exc).__name__}: {exc}); "
                          f"training them one at a time", stacklevel=2)
            return execute_group(Group(group.runs, fused=False), task, device, snapshots)
        _note_resumed(results, snap)
        each = (time.perf_counter() - start) / len(group.runs)
        return _with_diagnostics([Outcome(run, res, each) for run, res in zip(group.runs, results, strict=True)],
                                 task, device)
    outcomes = []
    for run in group.runs:
        start = time.perf_counter()
        try:
            snap = snapshots.for_runs([run], device) if snapshots else None
            result = train_run(run.config, task, device, snap)
            _note_resumed([result], snap)
        except OverparamError:
            raise
        except (RuntimeError, ValueError, FloatingPointError, MemoryError) as exc:
            msg = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
            result = TrainResult("failed", {}, [], None, msg)
        outcomes.append(Outcome(run, result, time.perf_counter() - start))
    return _with_diagnostics(outcomes, task, device)


def _note_resumed(results: list[TrainResult], snap: Snapshots | None) -> None:
    """``metrics["resumed_from"]``: the step a run resumed from (its results equal an uninterrupted run's)."""
    if snap is not None and snap.resumed_from:
        for result in results:
            if result.metrics:
                result.metrics["resumed_from"] = snap.resumed_from


def _with_diagnostics(outcomes: list[Outcome], task: TaskData, device: torch.device) -> list[Outcome]:
    """The final ``train.diagnostics`` of each finished run, whichever path trained it (their time counts)."""
    from overparam.train.diagnostics import record_final
    from overparam.train.lm_measures import record_lm_measures

    for outcome in outcomes:
        start = time.perf_counter()
        record_final(outcome.run.config, task, outcome.result, device)
        record_lm_measures(outcome.run.config, task, outcome.result, device)  # loss by position, ICL, domains
        outcome.seconds += time.perf_counter() - start
    return outcomes
