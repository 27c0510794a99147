"""Where and how often a sweep's trainers write training snapshots (``train.snapshot``).

How often (``--snapshot-every``): a number of steps (``500``), a duration of training
(``90s``, ``5m``, ``1h``) or ``off``. The default, ``60s``, is by time because the cost of a
snapshot grows with the model while the work a crash loses grows with time: a run that trains
for less than a minute (most runs of a width sweep) never writes one, and a long run loses at
most about a minute. A time-based interval also stretches so that writing snapshots never
takes more than 1 % of training (``train.snapshot.MAX_COST``).

Where: a directory every worker can write to, one file per run (``<run_id>.safetensors``) or
per fused group (``group-<hash>.safetensors``). A local sweep and a local Ray use
``DIR/checkpoints/partial/``. Workers of a cluster (``--address``) may not share the driver's
disk, so there snapshots are off unless ``--snapshot-dir`` names shared storage mounted at the
same path on every node. The driver deletes a run's snapshot once its final result is stored.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from overparam.errors import OverparamError
from overparam.spec import Run
from overparam.train.snapshot import Snapshots

DEFAULT_EVERY = "60s"
PARTIAL = "partial"  # under DIR/checkpoints/
FINAL = ("done", "diverged")  # statuses a run is never retrained from
UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class SnapshotPolicy:
    """Snapshots of a sweep: ``directory`` (absolute, as the workers see it) and when to write."""

    directory: str
    every_steps: int = 0
    every_seconds: float = 0.0

    def path(self, runs: list[Run]) -> Path:
        name = runs[0].id if len(runs) == 1 else \
            "group-" + hashlib.sha256(",".join(r.id for r in runs).encode()).hexdigest()[:12]
        return Path(self.directory) / f"{name}.safetensors"

    def for_runs(self, runs: list[Run], device: torch.device) -> Snapshots:
        """The snapshots of one run, or of a fused group (its runs in the engine's order)."""
        return Snapshots(self.path(runs), [(r.id, r.config) for r in runs], device, self.every_steps,
                         self.every_seconds)


def parse_every(value: str | int) -> tuple[int, float] | None:
    """``--snapshot-every``: (steps, seconds), one of them 0, or None for ``off``."""
    text = str(value).strip().lower()
    if text in ("off", "none", "false"):
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?", text)
    if not match or (match.group(2) is None and "." in match.group(1)):
        raise OverparamError(f"--snapshot-every: expected a number of steps (500), a duration (60s, 5m, 1h) "
                             f"or off, got {value!r}")
    number, unit = match.groups()
    if float(number) == 0:
        return None
    if unit is None:
        return int(number), 0.0
    return 0, float(number) * UNITS[unit]


def snapshot_policy(out: str | Path, every: str | int | None = DEFAULT_EVERY, directory: str | Path | None = None,
                    executor: str = "local", address: str | None = None) -> SnapshotPolicy | None:
    """The sweep's policy: None when snapshots are off (asked, or a cluster without ``directory``)."""
    when = parse_every(every if every is not None else "off")
    if when is None:
        if directory is not None:
            raise OverparamError("--snapshot-dir: snapshots are off (--snapshot-every off)")
        return None
    if directory is None:
        if executor == "ray" and address:
            return None  # the workers may not see this disk: see the module doc
        directory = Path(out) / "checkpoints" / PARTIAL
    path = Path(directory).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise OverparamError(f"--snapshot-dir: {path} is not a directory")
    return SnapshotPolicy(str(path), *when)


class Cleanup:
    """On the driver: delete a run's snapshot, and its fused group's, once its final result is stored.

    A run stored ``failed`` keeps its snapshot: rerunning the sweep retries it from there.
    """

    def __init__(self, policy: SnapshotPolicy | None, groups: list):
        self.policy = policy
        self.group_of: dict[str, int] = {}
        self.left: dict[int, set[str]] = {}
        self.runs: dict[int, list[Run]] = {}
        for number, group in enumerate(groups):
            if len(group.runs) > 1:
                self.runs[number] = group.runs
                self.left[number] = {r.id for r in group.runs}
                self.group_of.update({r.id: number for r in group.runs})

    def stored(self, run: Run, status: str) -> None:
        if self.policy is None:
            return
        number = self.group_of.get(run.id)
        if status not in FINAL:
            self.left.pop(number, None)  # keep the group's snapshot for the retry
            return
        _unlink(self.policy.path([run]))
        if number in self.left:
            self.left[number].discard(run.id)
            if not self.left[number]:
                del self.left[number]
                _unlink(self.policy.path(self.runs[number]))


def prune_private(out: str | Path) -> None:
    """Remove ``DIR/checkpoints/partial`` once every run of the sweep is final.

    What is left there then is unused: a group planned differently on a rerun (``--fuse``
    changed), or a file whose run landed just as the driver was killed. A ``--snapshot-dir``
    may be shared by several sweeps and is never pruned wholesale.
    """
    folder = Path(out) / "checkpoints" / PARTIAL
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.suffix in (".safetensors", ".tmp"):
            _unlink(path)
    try:
        folder.rmdir()
    except OSError:
        pass  # something else lives there: leave it


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass  # e.g. a shared snapshot directory this driver does not mount: the file is harmless
