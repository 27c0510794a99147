"""Which runs train together. A group is the unit an executor schedules (locally or on Ray).

Without fusion every run is its own group; the fused engine (``overparam.train.fused``)
groups runs that share data and batch order into one program when that pays.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from overparam.spec import Run


@dataclass
class Group:
    runs: list[Run]
    fused: bool = False


def plan_groups(runs: list[Run], fuse: str, device: torch.device) -> list[Group]:
    """Groups for ``runs`` under ``--fuse auto|on|off``."""
    return [Group([run]) for run in runs]
