"""Result sinks: where a sweep's results go *besides* the store (MLflow, TensorBoard, …).

The store stays the record (DESIGN.md: results are an append-only table); a sink is a copy for
the tools people already watch. So a sink never decides a sweep's fate once training started:
it connects in ``open`` (a wrong URI fails before anything trains), and an error while logging
a run is reported once on stderr and turns that sink off, while the sweep and the store go on.
``log_store`` copies a finished sweep into a sink afterwards (and fills the gaps such an error
left: sinks skip runs they already hold).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

Curve = list[tuple[int, dict[str, float]]]  # (step, {metric: value}) at each evaluation


@dataclass(frozen=True)
class LoggedRun:
    """One run's result as a sink receives it (what the store holds for it)."""

    sweep: str  # the spec's name
    run_id: str
    config: dict[str, Any]  # resolved spec of the run: task, model, train, seed
    point: dict[str, Any]  # the axis values that made this run (``model.width``: 64, …)
    status: str  # done | diverged | failed
    params: int | None
    flops: float | None
    seconds: float
    metrics: dict[str, Any]  # final metrics
    curve: Curve = field(default_factory=list)
    error: str | None = None

    @property
    def last_step(self) -> int:
        return max((step for step, _ in self.curve), default=int(self.config.get("train", {}).get("steps", 0)))


class Sink(Protocol):
    name: str  # the option that asked for it, for messages (``--mlflow``)

    def open(self, sweep: str, directory: Path) -> None:
        """Connect and prepare; raise ``OverparamError`` if the destination cannot be used."""

    def log_run(self, run: LoggedRun) -> None:
        """Copy one run's result (skip it if this destination already holds it)."""

    def close(self) -> None:
        """Flush and disconnect."""


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """``{"model": {"width": 8}}`` → ``{"model.width": 8}``: the names the spec's ``vary`` uses."""
    from overparam.store import flatten_config

    return flatten_config(config)


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric final metrics (bools as 0/1); None and nested values are left out."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool):
            out[key] = float(value)
        elif isinstance(value, (int, float)):
            out[key] = float(value)
    return out


class SinkSet:
    """The sinks of one sweep, opened together, each turned off (not fatal) at its first error."""

    def __init__(self, sinks, sweep: str, directory: str | Path):
        self.sweep = sweep
        self.directory = Path(directory)
        self.active: list[Sink] = []
        try:
            for sink in sinks:
                sink.open(sweep, self.directory)
                self.active.append(sink)
        except BaseException:
            self.close()
            raise

    def log(self, run, result, params: int | None, flops: float | None, seconds: float) -> None:
        """Hand a stored run (a ``spec.Run`` and its ``TrainResult``) to every active sink."""
        if not self.active:
            return
        record = LoggedRun(self.sweep, run.id, run.config, dict(run.point), result.status, params, flops,
                           seconds, dict(result.metrics), list(result.curve), result.error)
        self.log_record(record)

    def log_record(self, record: LoggedRun) -> None:
        for sink in list(self.active):
            try:
                sink.log_run(record)
            except Exception as exc:  # noqa: BLE001 (any failure of a copy must not stop the sweep)
                self.active.remove(sink)
                msg = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
                print(f"overparam: warning: {sink.name}: stopped logging after an error ({msg}); results are "
                      f"in the store, copy them later with overparam.integrations.log_store", file=sys.stderr)
                _close_quietly(sink)

    def close(self) -> None:
        while self.active:
            _close_quietly(self.active.pop())

    def __enter__(self) -> SinkSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close_quietly(sink: Sink) -> None:
    try:
        sink.close()
    except Exception:  # noqa: BLE001 (closing a copy we already gave up on)
        pass


def log_store(directory: str | Path, sinks) -> int:
    """Copy every finished run of a sweep directory into ``sinks``; returns how many runs were offered.

    Sinks skip runs they already hold, so this is safe to repeat (after an interrupted copy, or
    to add TensorBoard files to a sweep that ran without them).
    """
    from collections import defaultdict

    from overparam.store import open_store

    with open_store(directory) as store:
        name = store.meta("name", Path(directory).name)
        runs = [r for r in store.runs() if r["status"] in ("done", "diverged", "failed")]
        points: dict[str, dict[int, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
        for run_id, step, metric, value in store.curves():
            if value is not None:
                points[run_id][step][metric] = value
    with SinkSet(sinks, name, directory) as sink_set:
        for r in runs:
            curve = sorted(points.get(r["id"], {}).items())
            sink_set.log_record(LoggedRun(name, r["id"], r["config"], r["point"], r["status"], r["params"],
                                          r["flops"], r["seconds"] or 0.0, r["metrics"], curve, r["error"]))
    return len(runs)
