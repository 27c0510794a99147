"""The Ray executor: each group (a fused group or a single run) is one Ray task.

What travels: to a worker, the group's runs (ids and resolved configs) and its task's *settings*
(a short JSON key), never the data; each worker process loads a task once and keeps it, through
the sweep's cache ``DIR/cache`` when the worker sees that folder (a local Ray, or a cluster with
shared storage): the folder of images the driver decoded is then read back as one array, not
decoded again per worker. A worker that does not see it (no shared disk) decodes, and writes
nothing there: it never creates the sweep's folders on a node of its own. Back to
the driver, the group's ``Outcome`` objects, state dicts included: the driver alone writes the
store and the checkpoints, so workers need no shared disk and never touch the store.
Training snapshots (``sweep.snapshots``) are the one thing workers write, into the policy's
directory: ``DIR/checkpoints/partial`` with a local Ray, shared storage (``--snapshot-dir``)
on a cluster, or nowhere.

Resources: a task asks for ``OVERPARAM_THREADS`` CPUs (1 by default, as a local sweep uses) and,
on CUDA, a fraction of a GPU sized by the group's estimated memory, in steps of 1/8: a sweep of
small models then runs up to eight groups per GPU instead of leaving most of each card idle.

Failures: a task whose worker process dies (killed, node lost, out of memory) is retried by Ray
up to ``max_retries`` times; its result is collected once, so every run lands exactly once. A
retried group resumes from its last snapshot where it has one. A group that still cannot
finish is recorded ``failed`` (rerunning the sweep retries it). A bad input raised on a worker
(``OverparamError``) is raised on the driver as it would be locally.
Ctrl-C cancels every outstanding task (their workers survive) and disconnects, stopping a Ray it
started; the runner then puts the runs that had not landed back to ``pending``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from overparam.data.base import TaskData
from overparam.errors import OverparamError, require
from overparam.sweep.grouping import ASSUMED_GPU_MEMORY, Group
from overparam.sweep.plan import memory_estimate, task_key
from overparam.sweep.snapshots import SnapshotPolicy
from overparam.sweep.work import Outcome, execute_group

GPU_STEPS = 8  # GPU requests are multiples of 1/8: at most 8 groups share a card

Work = Callable[..., list[Outcome]]  # (group, task, device, snapshots=None): execute_group's signature

_TASKS: dict[str, TaskData] = {}  # per worker process: task key -> loaded data


def _train_group(key: str, group: Group, device_type: str, threads: int, work: Work,
                 snapshots: SnapshotPolicy | None = None, cache_dir: str | None = None) -> list[Outcome]:
    """What a Ray worker runs: load (or reuse) the task, then train the group (resuming its snapshot).

    ``cache_dir``: the sweep's ``DIR/cache``, used only where this worker sees it (module doc)."""
    device = torch.device(device_type)  # Ray sets CUDA_VISIBLE_DEVICES: "cuda" is the GPU granted
    if device.type == "cpu":
        torch.set_num_threads(threads)  # see runner.set_cpu_threads: 1 thread is fastest for small models
    if key not in _TASKS:
        from overparam.data import load_task

        cache = Path(cache_dir) if cache_dir and Path(cache_dir).is_dir() else None
        _TASKS[key] = load_task(json.loads(key), cache_dir=cache)
    return work(group, _TASKS[key], device, snapshots=snapshots)


def _check_count(flag: str, value: Any, least: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise OverparamError(f"{flag}: expected an integer >= {least}, got {value!r}")


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail fast on an address where nothing listens: ``ray.init`` would retry for minutes."""
    import socket

    target = address.removeprefix("ray://")
    if target in ("auto", "local") or ":" not in target:
        return  # Ray resolves these itself
    host, _, port = target.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except ValueError:
        raise OverparamError(f"--address {address}: expected HOST:PORT (as `ray start --head` prints)") from None
    except OSError as exc:
        raise OverparamError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc}); "
                             f"start one with `ray start --head` (docs/scale-out.md)") from None


AUTH_HINT = ("set RAY_AUTH_MODE=token, with the cluster's token (`~/.ray/auth_token` on its head node) in "
             "~/.ray/auth_token here or in RAY_AUTH_TOKEN")


def _local_token() -> str | None:
    """The token ``ray.init`` would send: only with RAY_AUTH_MODE=token, from RAY_AUTH_TOKEN,
    RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token (Ray's own order)."""
    import os
    from pathlib import Path

    if os.environ.get("RAY_AUTH_MODE", "").strip().lower() != "token":
        return None
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token").expanduser()
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _probe_auth(address: str, timeout: float = 5.0) -> None:
    """One quiet request to the cluster's GCS, with the token ``ray.init`` would send (if any).

    A cluster with token authentication answers UNAUTHENTICATED at once; ``ray.init`` instead retries
    for ~24 s and prints ~20 warning lines before it gives up. Anything else (a reply, another error,
    no grpc) is left to ``ray.init``. Ray Client addresses (``ray://``) speak another protocol: skipped.
    """
    if address.startswith("ray://") or address in ("auto", "local") or ":" not in address:
        return
    try:
        import grpc
        from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc
    except ImportError:
        return
    token = _local_token()
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    channel = grpc.insecure_channel(address)
    try:
        gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(
            gcs_service_pb2.GetClusterIdRequest(), timeout=timeout, metadata=metadata)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
            why = ("the token sent (RAY_AUTH_MODE=token) is not the cluster's" if token else
                   "the cluster uses token authentication and this driver sent no token")
            fix = "copy the token from the head node's ~/.ray/auth_token" if token else AUTH_HINT
            raise OverparamError(f"--address {address}: {why}; {fix} (docs/scale-out.md)") from None
    finally:
        channel.close()


class RayExecutor:
    """Runs groups as Ray tasks and yields their outcomes as they finish (any order).

    ``address``: a running cluster (``ray start --head`` prints it; ``auto`` finds a local one);
    None starts a private local Ray with ``num_cpus`` CPUs (all by default) and stops it after.
    ``gpu_memory``: bytes per GPU, for sizing fractional requests; measured on the driver when
    it has a GPU. ``work`` is the function a worker calls (``execute_group``; tests swap it).
    ``snapshots``: where and how often workers save training state (None: retries restart).
    ``cache_dir``: the sweep's ``DIR/cache`` (``data.sweep_cache_dir``), where workers that see it read the
    data the driver decoded.
    """

    name = "ray"

    def __init__(self, device: torch.device, address: str | None = None, num_cpus: int | None = None,
                 max_retries: int = 2, gpu_memory: int | None = None, work: Work = execute_group,
                 init_options: dict[str, Any] | None = None, snapshots: SnapshotPolicy | None = None,
                 cache_dir: str | None = None):
        _check_count("--num-cpus", num_cpus, 1, allow_none=True)
        _check_count("--max-retries", max_retries, 0)
        if num_cpus is not None and address:
            raise OverparamError("--num-cpus: sizes the local Ray started without --address; a cluster's "
                                 "size is set where it starts (`ray start --num-cpus N`)")
        require("ray", "ray")  # a missing extra is reported before any run is marked running
        if address:  # before the sweep directory exists: an unreachable cluster leaves nothing behind
            _probe(address)
            _probe_auth(address)
        self.device = device
        self.address = address
        self.num_cpus = num_cpus
        self.max_retries = max_retries
        self.gpu_memory = gpu_memory
        self.work = work
        self.init_options = init_options or {}
        self.snapshots = snapshots
        # absolute: a worker's working directory is not the driver's
        self.cache_dir = None if cache_dir is None else str(Path(cache_dir).absolute())

    # -- resources -----------------------------------------------------------------------
    def threads(self) -> int:
        from overparam.flags import threads_from_env

        return threads_from_env()

    def gpus(self, group: Group, task: TaskData) -> float:
        """GPUs a group asks for: its estimated memory as a share of a card, rounded up to 1/8."""
        if self.device.type != "cuda":
            return 0.0
        total = self.gpu_memory
        if total is None:
            total = (torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available()
                     else ASSUMED_GPU_MEMORY)
        need = sum(memory_estimate(run.config, task) for run in group.runs)
        if group.fused:
            from overparam.train.fused.layout import MAX_WASTE

            need *= MAX_WASTE
        return min(1.0, max(1, math.ceil(GPU_STEPS * need / total)) / GPU_STEPS)

    # -- connection ----------------------------------------------------------------------
    def _connect(self, ray) -> bool:
        """Join the cluster (or start a local Ray); True when this executor must shut it down."""
        if ray.is_initialized():
            return False  # the caller's Ray (a notebook, a test fixture): leave it running
        options: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING,
                                   **self.init_options}
        try:
            if self.address:
                ray.init(address=self.address, **options)
            else:
                # "local": a private Ray even when `ray start` left a cluster on this machine
                # (a bare ray.init() would join that one and refuse num_cpus)
                ray.init(address="local", num_cpus=self.num_cpus, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray"
            msg = " ".join(str(exc).split())[:300]
            hint = f"; if it uses token authentication (recent Ray's default), {AUTH_HINT}" if self.address else ""
            raise OverparamError(f"--executor ray: cannot start or reach {where} ({msg}){hint}; "
                                 f"see docs/scale-out.md") from exc
        return True

    # -- execution -----------------------------------------------------------------------
    def execute(self, groups: list[Group], load_task: Callable[[str], TaskData]) -> Iterator[Outcome]:
        ray = require("ray", "ray")
        started = self._connect(ray)
        remote = ray.remote(_train_group)
        threads = self.threads()
        pending: dict[Any, Group] = {}
        try:
            for group in groups:
                key = task_key(group.runs[0].config)
                ref = remote.options(num_cpus=threads, num_gpus=self.gpus(group, load_task(key)),
                                     max_retries=self.max_retries, retry_exceptions=False,
                                     name=f"overparam:{group.runs[0].id}+{len(group.runs) - 1}",
                                     ).remote(key, group, self.device.type, threads, self.work, self.snapshots,
                                              self.cache_dir)
                pending[ref] = group
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    group = pending.pop(ref)
                    yield from self._collect(ray, ref, group)
        finally:
            if pending:  # Ctrl-C or an error: stop the work whose results nobody will read
                self._cancel(ray, list(pending))
            if started:
                ray.shutdown()

    @staticmethod
    def _cancel(ray, refs: list) -> None:
        """Interrupt the tasks still running, leaving their workers alive.

        Not ``force=True``: killing workers while their replies are in flight crashed the driver
        inside Ray 2.60 ("Tried to complete task that was not pending"). A plain cancel raises
        in the task's Python code, which a training loop notices at its next step; finished
        tasks are skipped (a cancel racing their reply is the same hazard).
        """
        try:
            ready, running = ray.wait(refs, num_returns=len(refs), timeout=0)
        except Exception:  # noqa: BLE001 (Ray already going down: nothing left to stop)
            return
        for ref in running:
            try:
                ray.cancel(ref)
            except Exception:  # noqa: BLE001 (finished meanwhile or its worker gone)
                pass

    def _collect(self, ray, ref, group: Group) -> list[Outcome]:
        from ray.exceptions import RayError, RayTaskError

        try:
            return ray.get(ref)
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from exc  # what a local run would have raised (bad input or a bug)
            raise
        except RayError as exc:
            # The worker died more often than max_retries allows (killed, out of memory, node
            # lost): record the runs as failed so the rest of the sweep goes on; a rerun retries.
            from overparam.train.result import TrainResult

            msg = " ".join(f"{type(exc).__name__}: {exc}".split())[:400]
            return [Outcome(run, TrainResult("failed", {}, [], None,
                                             f"Ray task lost after {self.max_retries} retries: {msg}"), 0.0)
                    for run in group.runs]
