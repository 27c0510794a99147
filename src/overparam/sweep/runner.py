"""``run_sweep``: plan, skip what is done, execute the rest, write every result as it lands.

Re-running a sweep *is* resuming it: runs are named by their settings, finished runs (done
or diverged) are never retrained, and runs a killed process left 'running' are trained again.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from overparam.data import CACHE_FOLDER, load_sweep_task, sweep_cache_dir
from overparam.errors import OverparamError, StoreError
from overparam.flags import threads_from_env
from overparam.integrations.base import SinkSet
from overparam.provenance import check_and_record
from overparam.spec import Spec, load_spec
from overparam.store import Store
from overparam.sweep.checkpoints import save_checkpoint
from overparam.sweep.grouping import plan_groups
from overparam.sweep.plan import check_memory, task_key
from overparam.sweep.snapshots import DEFAULT_EVERY, FINAL, Cleanup, SnapshotPolicy, prune_private, snapshot_policy
from overparam.train.run import resolve_device, run_size

EXECUTORS = ("local", "ray")
CACHE_DIR = CACHE_FOLDER  # DIR/cache: data a task decoded (data.load_sweep_task), reused by later loads


@dataclass
class SweepSummary:
    directory: str
    planned: int
    already_done: int
    trained: int = 0
    diverged: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. why a user model's runs could not fuse

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _make_executor(name: str, device, options: dict[str, Any], snapshots: SnapshotPolicy | None,
                   cache_dir: Path | None = None):
    if name == "local":
        if options:
            raise OverparamError(f"--executor local: executor options {', '.join(sorted(options))} are for "
                                 f"--executor ray only")
        from overparam.sweep.local import LocalExecutor

        return LocalExecutor(device, snapshots)
    if name == "ray":
        from overparam.sweep.ray import RayExecutor  # optional extra

        return RayExecutor(device, snapshots=snapshots, cache_dir=cache_dir, **options)
    raise OverparamError(f"--executor: unknown executor {name!r} (known: {', '.join(EXECUTORS)})")


def run_sweep(spec: str | Path | dict | Spec, out: str | Path, executor: str = "local", device: str = "auto",
              fuse: str = "auto", progress: bool = True, executor_options: dict[str, Any] | None = None,
              sinks: list | tuple = (), snapshot_every: str | int | None = DEFAULT_EVERY,
              snapshot_dir: str | Path | None = None) -> SweepSummary:
    """Run (or resume) a sweep into directory ``out`` and return what happened.

    ``sinks`` (``overparam.integrations.make_sinks``) get a copy of each run as it is stored.
    ``snapshot_every`` (steps, ``"60s"``, ``"5m"`` or ``"off"``) and ``snapshot_dir``: training
    snapshots a killed run resumes from (``sweep.snapshots``; default ``out/checkpoints/partial``).
    """
    if not str(out).strip():
        raise OverparamError("--out: empty path; name the sweep directory (e.g. --out runs/x)")
    spec = load_spec(spec)
    if fuse not in ("auto", "on", "off"):
        raise OverparamError(f"--fuse: expected auto, on or off, got {fuse!r}")
    options = dict(executor_options or {})
    address = options.get("address") if executor == "ray" else None
    dev = resolve_device(device, here=not address)  # a cluster's GPUs are on its workers
    snapshots = snapshot_policy(out, snapshot_every, snapshot_dir, executor, address)
    # checks its options before the store exists
    runner = _make_executor(executor, dev, options, snapshots, sweep_cache_dir(out))
    set_cpu_threads(dev)
    runs = spec.runs()
    tasks: dict[str, Any] = {}

    def get_task(key: str):
        if key not in tasks:
            import json

            tasks[key] = load_sweep_task(out, json.loads(key))  # decoded images, kept in DIR/cache
        return tasks[key]

    sized: set[str] = set()
    for run in runs:  # load data, build each distinct model once (its count and FLOPs) before touching the store
        task = get_task(task_key(run.config))
        model_key = json.dumps([run.config["model"], task_key(run.config)], sort_keys=True)
        if model_key not in sized:  # a user factory that fails to build or to run one example fails here
            sized.add(model_key)
            run_size(run.config, task)
    check_memory(runs, tasks)
    copies = SinkSet(sinks, spec.name, out)  # connects now: a bad --mlflow URI fails before training

    with copies, Store.create(out) as store:
        # a changed model file or input (corpus, table, image folder…): refused before any change
        check_and_record(store, spec.base["model"]["family"], [r.config["task"] for r in runs])
        store.reset_interrupted()
        store.add_runs(runs)
        store.set_meta("spec", spec.to_dict())
        store.set_meta("name", spec.name)
        store.set_meta("size_axes", spec.size_axes())
        status = {r["id"]: r["status"] for r in store.runs()}
        todo = [r for r in runs if status.get(r.id) in ("pending", "failed")]
        summary = SweepSummary(str(out), len(runs), len(runs) - len(todo))
        if not todo:
            prune_private(out)
            return summary
        groups = plan_groups(todo, fuse, dev, tasks=get_task, notes=summary.notes)
        for note in summary.notes if progress else ():
            print(f"overparam: note: {note}", file=sys.stderr, flush=True)
        cleanup = Cleanup(snapshots, groups)
        bar = _progress(len(runs), summary.already_done, spec.name, progress)
        outcomes = runner.execute(groups, get_task)
        try:
            for group in groups:
                store.mark_running([r.id for r in group.runs])
            for outcome in outcomes:
                _store_outcome(store, outcome, get_task(task_key(outcome.run.config)), summary, copies)
                cleanup.stored(outcome.run, outcome.result.status)
                bar.update(1)
        finally:
            outcomes.close()  # now, not at garbage collection: Ray cancels its outstanding tasks here
            bar.close()
            _reset_quietly(store)
        if all(r["status"] in FINAL for r in store.runs()):
            prune_private(out)
    return summary


def _reset_quietly(store: Store) -> None:
    """Put unfinished runs back to pending, unless the store cannot be written (a full disk): the error
    that stopped the sweep is the one to report, and the next sweep resets them on start anyway."""
    try:
        store.reset_interrupted()
    except StoreError:
        pass


def set_cpu_threads(device) -> None:
    """One intra-op thread per process on CPU unless OVERPARAM_THREADS says otherwise.

    Sweep models are small: torch's OpenMP threads then spend more time spinning than
    computing, and on a loaded 2-core machine two threads were measured 4-16x *slower* per
    step than one (MLP widths 2-2048 on digits). Parallelism comes from fusing runs instead.
    """
    import torch

    threads = threads_from_env()  # checked on every device: Ray workers read it too
    if device.type == "cpu":
        torch.set_num_threads(threads)


def _store_outcome(store: Store, outcome, task, summary: SweepSummary, copies: SinkSet) -> None:
    run, result = outcome.run, outcome.result
    params, flops = run_size(run.config, task)
    if result.metrics and getattr(task, "x_test", None) is not None:
        # the split each metric was measured on: the binomial noise of a test error needs n_test
        result.metrics.setdefault("n_train", int(len(task.x_train)))
        result.metrics.setdefault("n_test", int(len(task.x_test)))
    if result.state is not None and run.config["train"]["checkpoint"]:
        save_checkpoint(store.checkpoint_path(run.id), result.state, run.id, run.config)
    store.record(run.id, result.status, params, flops, result.metrics, result.curve, outcome.seconds,
                 result.error)
    copies.log(run, result, params, flops, outcome.seconds)
    summary.trained += 1
    if result.status == "diverged":
        summary.diverged.append(run.id)
    elif result.status == "failed":
        summary.failed.append(run.id)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, done: int, name: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc=name, unit="run", file=sys.stderr, dynamic_ncols=True,
                disable=None)
