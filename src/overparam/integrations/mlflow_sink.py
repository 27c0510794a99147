"""``--mlflow URI``: every run of a sweep as an MLflow run, in an experiment named after the sweep.

Each run gets: params = its resolved config, flattened (``model.width``, ``train.lr``, ``seed``…);
metrics per step = its curve; final metrics at its last step, with ``params``, ``flops`` and
``seconds``; tags ``overparam.sweep``, ``overparam.run_id``, ``overparam.status``. The run id tag
makes logging idempotent: a run the experiment already holds is skipped.

Uses ``MlflowClient`` with an explicit tracking URI rather than the fluent ``mlflow.start_run``:
the fluent API keeps a process-global active run and URI, which a user's own notebook may hold.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from overparam.errors import OverparamError, require
from overparam.integrations.base import LoggedRun, flat_config, scalar_metrics

# Per ``log_batch`` call MLflow accepts at most 1000 entries, 100 of them params.
BATCH_METRICS = 1000
BATCH_PARAMS = 100
PARAM_CHARS = 6000  # longest param value MLflow stores


class MlflowSink:
    name = "--mlflow"

    def __init__(self, uri: str, experiment: str | None = None):
        require("mlflow", "mlflow")  # at construction: the missing extra is reported before training
        self.uri = uri
        self.experiment = experiment
        self.client: Any = None
        self.experiment_id: str | None = None
        self.logged: set[str] = set()

    def open(self, sweep: str, directory: Path) -> None:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        name = self.experiment or sweep
        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            found = self.client.get_experiment_by_name(name)
            self.experiment_id = found.experiment_id if found else self.client.create_experiment(name)
            self.logged = self._logged_ids()
        except (MlflowException, OSError, ValueError) as exc:
            msg = " ".join(str(exc).split())[:400]
            raise OverparamError(f"--mlflow {self.uri}: cannot use this tracking URI ({msg})") from exc

    def _logged_ids(self) -> set[str]:
        ids: set[str] = set()
        token = None
        while True:
            page = self.client.search_runs([self.experiment_id], max_results=1000, page_token=token)
            for r in page:
                if r.info.status == "RUNNING":  # a copy cut short (killed mid-log): redo it
                    self.client.delete_run(r.info.run_id)
                else:
                    ids.add(r.data.tags.get("overparam.run_id", ""))
            token = page.token
            if not token:
                return ids - {""}

    def log_run(self, run: LoggedRun) -> None:
        if run.run_id in self.logged:
            return
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)  # ms, MLflow's unit
        label = ", ".join(f"{k}={v}" for k, v in run.point.items())
        tags = {"overparam.sweep": run.sweep, "overparam.run_id": run.run_id, "overparam.status": run.status}
        if run.error:
            tags["overparam.error"] = run.error[:5000]
        created = self.client.create_run(self.experiment_id, start_time=now - int(run.seconds * 1000),
                                         tags=tags, run_name=f"{run.run_id} {label}".strip())
        mlflow_id = created.info.run_id
        metrics = [Metric(name, value, now, int(step)) for step, point in run.curve
                   for name, value in point.items() if _finite(value)]
        last = run.last_step
        final = scalar_metrics(run.metrics)
        final.update({k: float(v) for k, v in (("params", run.params), ("flops", run.flops),
                                                ("seconds", run.seconds)) if v is not None})
        at_last = dict(run.curve[-1][1]) if run.curve and run.curve[-1][0] == last else {}
        metrics += [Metric(name, value, now, last) for name, value in final.items()
                    if _finite(value) and at_last.get(name) != value]  # no duplicate of the last curve point
        params = [Param(k, _param(v)) for k, v in flat_config(run.config).items()]
        for i in range(0, len(params), BATCH_PARAMS):
            self.client.log_batch(mlflow_id, params=params[i:i + BATCH_PARAMS])
        for i in range(0, len(metrics), BATCH_METRICS):
            self.client.log_batch(mlflow_id, metrics=metrics[i:i + BATCH_METRICS])
        self.client.set_terminated(mlflow_id, "FAILED" if run.status == "failed" else "FINISHED",
                                   end_time=now)
        self.logged.add(run.run_id)

    def close(self) -> None:
        self.client = None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _param(value: Any) -> str:
    text = "None" if value is None else str(value)
    return text[:PARAM_CHARS]
