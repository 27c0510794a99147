"""``--tensorboard DIR``: event files per run, under ``DIR/<sweep>/<run id>/``.

Each run's folder holds its curve as scalars (one tag per metric, x = optimizer step), its final
metrics as ``final/<metric>`` at the last step, and an HParams entry (the run's axis values and
main settings against its final metrics), so TensorBoard's HParams tab shows the sweep as a
table and parallel-coordinates plot: ``tensorboard --logdir DIR``.

Written with ``torch.utils.tensorboard`` (it needs the ``tensorboard`` package for the file
format). A run whose folder already holds event files is skipped: copying twice would double
every curve in TensorBoard's plots.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from overparam.errors import OverparamError, require
from overparam.integrations.base import LoggedRun, flat_config, scalar_metrics

# Settings shown in the HParams table besides the swept axes (which are always shown).
HPARAM_KEYS = ("task.kind", "model.family", "train.optimizer", "train.lr", "train.steps", "seed")


class TensorBoardSink:
    name = "--tensorboard"

    def __init__(self, logdir: str | Path):
        require("tensorboard", "tensorboard")
        self.logdir = Path(logdir)
        self.root: Path | None = None

    def open(self, sweep: str, directory: Path) -> None:
        self.root = self.logdir / _safe(sweep)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OverparamError(f"--tensorboard {self.logdir}: cannot create {self.root} "
                                 f"({exc.strerror or exc})") from exc

    def log_run(self, run: LoggedRun) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        assert self.root is not None, "open() first"
        folder = self.root / run.run_id
        if folder.is_dir() and any(folder.glob("events.out.tfevents.*")):
            return
        writer = SummaryWriter(log_dir=str(folder))
        try:
            for step, point in run.curve:
                for name, value in point.items():
                    if isinstance(value, (int, float)):
                        writer.add_scalar(name, value, int(step))
            final = {f"final/{k}": v for k, v in scalar_metrics(run.metrics).items()}
            if run.params is not None:
                final["final/params"] = float(run.params)
            for tag, value in final.items():
                writer.add_scalar(tag, value, run.last_step)
            settings = flat_config(run.config)
            chosen = {k: settings.get(k) for k in (*run.point, *HPARAM_KEYS) if k in settings}
            chosen["status"] = run.status
            # hparams() links the table row to the scalars named in its metric dict (same folder)
            for summary in hparams({k: _hparam(v) for k, v in chosen.items()}, final):
                writer.file_writer.add_summary(summary)
        finally:
            writer.close()

    def close(self) -> None:
        self.root = None


def _hparam(value: Any) -> Any:
    """HParams takes bool, int, float or str; anything else (None, a list) as its text."""
    return value if isinstance(value, (bool, int, float, str)) else str(value)


def _safe(name: str) -> str:
    """A sweep name as one folder name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "sweep"
