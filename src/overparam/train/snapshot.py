"""Training snapshots: a run (or a fused group) stopped mid-training resumes where it was.

A snapshot holds everything the remaining steps depend on, so that a resumed run ends
bit-identical (on CPU) to one that never stopped:

- the trained tensors, restored in place: a model's parameters and buffers, or a fused
  group's flat parameters, moments and divergence bookkeeping;
- a torch optimizer's state (moments, momentum buffers, step counts);
- every random stream the remaining steps draw from: torch's global generator (dropout masks;
  the device's too on CUDA), the augmentation generator, a fused group's dropout generators;
- the step reached and the curve(s) so far (JSON).

Batch order needs nothing: it is a pure function of (seed, step) (``train.batches``,
``train.lm.window_offsets``), so a resumed loop skips the batches already seen.

Format: safetensors tensors plus JSON metadata (nothing is unpickled), written atomically.
A snapshot names the runs and the exact configs it belongs to and the device type it ran on,
and carries the checksum of its tensors (``overparam.checksum``). One that does not match,
cannot be read or fails its checksum (weights or random state damaged on disk) is discarded
with a warning and training starts from step 0: never silently wrong, never stuck on a bad file.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from overparam import checksum

FORMAT = "overparam-snapshot-1"
MAX_COST = 0.01  # time-based snapshots take at most this share of training time (see ``Snapshots``)


@dataclass
class TrainingState:
    """The live objects a trainer snapshots; ``restore`` writes into them in place."""

    tensors: dict[str, torch.Tensor]
    generators: dict[str, torch.Generator] = field(default_factory=dict)
    optimizer: torch.optim.Optimizer | None = None


def global_generators(device: torch.device) -> dict[str, torch.Generator]:
    """torch's default generators that dropout draws from: the CPU's, and the device's on CUDA."""
    gens = {"torch_cpu": torch.default_generator}
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        gens["torch_cuda"] = torch.cuda.default_generators[index]
    return gens


def model_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, device: torch.device,
                **generators: torch.Generator | None) -> TrainingState:
    """One model trained by a torch optimizer: its state dict, the optimizer, global + named generators."""
    gens = global_generators(device)
    gens.update({name: gen for name, gen in generators.items() if gen is not None})
    return TrainingState(dict(model.state_dict()), gens, optimizer)


def fused_state(step_fn: Any, masks: Any = None) -> TrainingState:
    """A fused group (``train.fused.engine``): the flat parameters, the elementwise optimizer's
    moments or momentum, divergence bookkeeping, and each member's dropout generator."""
    opt = step_fn.opt
    tensors = {"flat": opt.flat.data, "active": step_fn.active, "diverged_at": step_fn.diverged_at}
    tensors.update({name: t for name, t in (("exp_avg", opt.exp_avg), ("exp_avg_sq", opt.exp_avg_sq),
                                            ("momentum", opt.buf)) if t is not None})
    gens = {f"dropout/{slot}": g for slot, g in enumerate(masks.gens if masks is not None else []) if g is not None}
    return TrainingState(tensors, gens)


class SnapshotError(ValueError):
    """A snapshot that must not be used (unreadable, foreign, inconsistent)."""


class Snapshots:
    """Reads and writes the snapshot of one run, or of one fused group, at ``path``.

    ``owners``: (run id, resolved config) of each run the snapshot covers, in the trainer's
    order. When to write: after every ``every_steps``-th step (0: never by steps), and when
    ``every_seconds`` of training passed since the last write (0: never by time). A time-based
    interval stretches to 1 / ``MAX_COST`` times the last write's duration, so that snapshots
    of a large model never take more than 1 % of training. The final step is never
    snapshotted: its result follows at once. ``path`` None: snapshots off.
    """

    def __init__(self, path: Path | str | None, owners: list[tuple[str, dict[str, Any]]], device: torch.device,
                 every_steps: int = 0, every_seconds: float = 0.0, clock: Callable[[], float] = time.monotonic):
        self.path = Path(path) if path is not None else None
        self.owners = json.dumps([[run_id, config] for run_id, config in owners], sort_keys=True)
        self.steps = owners[0][1]["train"]["steps"] if owners else 0
        self.device_type = device.type
        self.every_steps, self.every_seconds, self.clock = every_steps, every_seconds, clock
        self.interval = every_seconds
        self.next_time = math.inf
        self.resumed_from: int | None = None  # the step a resumed run started from
        self.written = 0  # snapshots written by this attempt

    @classmethod
    def off(cls) -> Snapshots:
        return cls(None, [], torch.device("cpu"))

    # -- resume ---------------------------------------------------------------------------------
    def resume(self, state: TrainingState, progress: Any) -> tuple[int, Any]:
        """Restore the snapshot into ``state``: (its step, its progress), or (0, ``progress``)."""
        self.next_time = self.clock() + self.every_seconds if self.every_seconds > 0 else math.inf
        if self.path is None or not self.path.is_file():
            return 0, progress
        try:
            step, saved, apply = self._read(state)
        except SnapshotError as exc:
            self._discard()
            warnings.warn(f"snapshot {self.path} discarded ({exc}); training from step 0", stacklevel=2)
            return 0, progress
        apply()
        self.resumed_from = step
        return step, saved

    def _discard(self) -> None:
        """Delete an unusable snapshot: a rerun must not meet it again (the next one replaces it anyway)."""
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass  # a shared snapshot directory this process cannot write: the next save replaces it

    def _read(self, state: TrainingState) -> tuple[int, Any, Callable[[], None]]:
        """Read and check everything before touching ``state``; the returned function applies it."""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(self.path), framework="pt") as fh:
                meta = fh.metadata() or {}
                saved = {key: fh.get_tensor(key) for key in fh.keys()}
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise SnapshotError(f"unreadable: {' '.join(str(exc).split())[:200]}") from exc
        if meta.get("format") != FORMAT:
            raise SnapshotError(f"not an overparam snapshot (format {meta.get('format')!r})")
        if checksum.mismatch(saved, meta):
            raise SnapshotError("damaged: its tensors no longer match the checksum written with them")
        if meta.get("owners") != self.owners:
            raise SnapshotError("it belongs to another run or config")
        if meta.get("device") != self.device_type:
            raise SnapshotError(f"written on {meta.get('device')}, this attempt runs on {self.device_type}")
        try:
            step = int(meta["step"])
            progress = _decode(json.loads(meta["progress"]))
            optim_extra = json.loads(meta["optim"])
        except (KeyError, ValueError) as exc:
            raise SnapshotError(f"bad metadata ({exc})") from exc
        if not 0 < step < self.steps:
            raise SnapshotError(f"step {step} outside 1..{self.steps - 1}")
        tensors = _take(saved, "state/", state.tensors, "trained tensors")
        gens = _take(saved, "rng/", {k: g.get_state() for k, g in state.generators.items()}, "random streams")
        for name, value in gens.items():
            _check_generator_state(name, value, state.generators[name])
        optim = _optimizer_state(saved, optim_extra, state.optimizer)
        if saved:
            raise SnapshotError(f"unexpected tensors: {', '.join(sorted(saved)[:3])}")

        def apply() -> None:
            with torch.no_grad():
                for name, value in tensors.items():
                    state.tensors[name].copy_(value)
            for name, value in gens.items():
                state.generators[name].set_state(value)
            if state.optimizer is not None:
                state.optimizer.load_state_dict({"state": optim,
                                                 "param_groups": state.optimizer.state_dict()["param_groups"]})

        return step, progress, apply

    # -- write ----------------------------------------------------------------------------------
    def step(self, step: int, state: TrainingState, progress: Any) -> None:
        """After ``step``: write a snapshot when one is due (a cheap check otherwise)."""
        if self.path is None or step >= self.steps:
            return
        if (self.every_steps and step % self.every_steps == 0) or self.clock() >= self.next_time:
            try:
                self.save(step, state, progress)
            except OSError as exc:  # a full or read-only disk must not stop training
                warnings.warn(f"cannot write snapshot {self.path} ({exc.strerror or exc}); training goes on "
                              f"without snapshots", stacklevel=2)
                self.path = None

    def save(self, step: int, state: TrainingState, progress: Any) -> None:
        """Write the snapshot now (atomically: a kill leaves the previous one intact)."""
        from overparam.tensor_file import write_atomically

        start = self.clock()
        tensors = {f"state/{k}": v.detach().to("cpu", copy=True) for k, v in state.tensors.items()}
        tensors.update({f"rng/{k}": g.get_state() for k, g in state.generators.items()})
        optim_extra: dict[str, dict[str, Any]] = {}
        if state.optimizer is not None:
            for index, entry in state.optimizer.state_dict()["state"].items():
                for key, value in entry.items():
                    if isinstance(value, torch.Tensor):
                        tensors[f"optim/{index}/{key}"] = value.detach().to("cpu", copy=True)
                    else:
                        optim_extra.setdefault(str(index), {})[key] = value
        metadata = {"format": FORMAT, "owners": self.owners, "device": self.device_type, "step": str(step),
                    "progress": json.dumps(progress, default=float), "optim": json.dumps(optim_extra, default=float)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, tensors, metadata)
        self.written += 1
        if self.every_seconds > 0:
            took = self.clock() - start
            self.interval = max(self.every_seconds, took / MAX_COST)
            self.next_time = self.clock() + self.interval


def _take(saved: dict[str, torch.Tensor], prefix: str, targets: dict[str, torch.Tensor],
          what: str) -> dict[str, torch.Tensor]:
    """Pop ``prefix``-ed tensors from ``saved``; they must match ``targets`` in names, shapes, dtypes."""
    found = {key[len(prefix):]: saved.pop(key) for key in [k for k in saved if k.startswith(prefix)]}
    if found.keys() != targets.keys():
        missing = sorted(set(targets) ^ set(found))
        raise SnapshotError(f"its {what} differ from this run's ({', '.join(missing[:3])})")
    for name, value in found.items():
        if value.shape != targets[name].shape or value.dtype != targets[name].dtype:
            raise SnapshotError(f"{what}: {name} is {value.dtype} {tuple(value.shape)}, expected "
                                f"{targets[name].dtype} {tuple(targets[name].shape)}")
    return found


def _check_generator_state(name: str, value: torch.Tensor, like: torch.Generator) -> None:
    """Set the state on a scratch generator first: an invalid one (e.g. "Invalid mt19937 state") must fail
    here, before ``apply`` has changed anything, not halfway through restoring."""
    scratch = torch.Generator(device=like.device)
    try:
        scratch.set_state(value)
    except (RuntimeError, ValueError) as exc:
        raise SnapshotError(f"random stream {name}: {' '.join(str(exc).split())[:120]}") from None


def _optimizer_state(saved: dict[str, torch.Tensor], extra: dict[str, dict[str, Any]],
                     optimizer: torch.optim.Optimizer | None) -> dict[int, dict[str, Any]]:
    """The optimizer's ``state`` entries, checked against its parameters' shapes."""
    found = {key: saved.pop(key) for key in [k for k in saved if k.startswith("optim/")]}
    if optimizer is None:
        if found or extra:
            raise SnapshotError("it holds an optimizer state this trainer does not have")
        return {}
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state: dict[int, dict[str, Any]] = {}
    try:
        for key, value in found.items():
            _, index, name = key.split("/", 2)
            state.setdefault(int(index), {})[name] = value
        for index, entry in extra.items():
            state.setdefault(int(index), {}).update(entry)
    except (ValueError, TypeError, AttributeError) as exc:
        raise SnapshotError(f"bad optimizer entry ({exc})") from exc
    for index, entry in state.items():
        if not 0 <= index < len(params):
            raise SnapshotError(f"optimizer state for parameter {index}, the model has {len(params)}")
        for name, value in entry.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != params[index].shape:
                raise SnapshotError(f"optimizer {name} of parameter {index} has shape {tuple(value.shape)}")
    return state


def _decode(obj: Any) -> Any:
    """JSON back to curves: [step, {metrics}] pairs become the (step, metrics) tuples trainers keep."""
    if isinstance(obj, list):
        if len(obj) == 2 and isinstance(obj[0], int) and isinstance(obj[1], dict):
            return (obj[0], obj[1])
        return [_decode(x) for x in obj]
    return obj
