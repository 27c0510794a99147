"""The local executor: groups one after another in this process, results streamed as they finish."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from overparam.data.base import TaskData
from overparam.sweep.grouping import Group
from overparam.sweep.plan import task_key
from overparam.sweep.snapshots import SnapshotPolicy
from overparam.sweep.work import Outcome, execute_group


class LocalExecutor:
    name = "local"

    def __init__(self, device: torch.device, snapshots: SnapshotPolicy | None = None):
        self.device = device
        self.snapshots = snapshots

    def execute(self, groups: list[Group], load_task: Callable[[str], TaskData]) -> Iterator[Outcome]:
        for group in groups:
            task = load_task(task_key(group.runs[0].config))
            yield from execute_group(group, task, self.device, self.snapshots)
