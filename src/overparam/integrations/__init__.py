"""Copies of a sweep's results for other tools: MLflow (``[mlflow]`` extra) and TensorBoard
(``[tensorboard]`` extra). ``make_sinks`` builds them from the ``overparam sweep`` options;
``log_store`` copies a sweep that already ran. See docs/integrations.md.
"""

from __future__ import annotations

from pathlib import Path

from overparam.integrations.base import LoggedRun, Sink, SinkSet, log_store

__all__ = ["LoggedRun", "Sink", "SinkSet", "log_store", "make_sinks"]


def make_sinks(mlflow: str | None = None, tensorboard: str | Path | None = None) -> list[Sink]:
    """The sinks asked for; a missing extra fails here, before anything trains."""
    sinks: list[Sink] = []
    if mlflow:
        from overparam.integrations.mlflow_sink import MlflowSink

        sinks.append(MlflowSink(mlflow))
    if tensorboard:
        from overparam.integrations.tensorboard_sink import TensorBoardSink

        sinks.append(TensorBoardSink(tensorboard))
    return sinks
