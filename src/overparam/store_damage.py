"""Reading a store's rows defensively: a damaged row is named and skipped, the others are used.

SQLite keeps a value of any type in any column, so a row edited by hand or damaged on disk can
hold ``config='null'``, ``metrics='{bad'`` or ``params='abc'``. Each row is decoded and checked
here; one that fails becomes a ``Damage`` (the store file, the run id, the column, the problem)
instead of an exception deep in an analysis. The store reports each ``Damage`` once as a
``StoreDamageWarning``: the CLI turns them into one ``overparam: error: corrupt store …`` line
and exit code 2 after the command has done its work on the intact runs, and
``overparam runs DIR --check`` lists them all.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATUSES = ("pending", "running", "done", "diverged", "failed")
# metrics the analyses read as numbers (a text or true/false there is damage, not a value to plot)
NUMERIC_METRICS = ("train_error", "test_error", "train_loss", "test_loss", "train_error_clean", "param_norm",
                   "n_train", "n_test", "tokens", "entropy_rate", "diverged_at", "resumed_from")
META_TYPES: dict[str, type | tuple[type, ...]] = {"spec": dict, "name": (str, int, float),
                                                  "size_axes": (list, type(None)), "model_sources": dict,
                                                  "input_files": dict}
# model_sources: family -> {"path", "sha256"}; input_files: a task's path -> its fingerprint (provenance.py)
META_ENTRY_TYPES: dict[str, type] = {"model_sources": dict, "input_files": dict}


class StoreDamageWarning(UserWarning):
    """Part of a store (a run's row, curve points, a meta entry) could not be read; the rest was used."""


class SkippedRunWarning(UserWarning):
    """A run left out of a sweep-wide reading (e.g. its weights are not finite); the others are used."""


class SkippedAnalysisWarning(UserWarning):
    """A saved analysis (``DIR/analyses/<name>.json``) is damaged; the report goes on without it."""


def skip_analysis(path: Path, problem: str, skipped: str = "its report section is skipped") -> None:
    """Warn that the saved analysis at ``path`` is skipped (returns None, what its reader then returns)."""
    warnings.warn(SkippedAnalysisWarning(f"{path}: {problem}; {skipped} (rerun the command that wrote it)"),
                  stacklevel=2)


@dataclass(frozen=True)
class Damage:
    store: str  # the store file
    run_id: str | None  # the run whose row or curve is damaged; None for meta or the file itself
    what: str  # the column or part: "metrics", "config", "curve", "meta 'spec'", "file"
    problem: str

    def line(self) -> str:
        who = f"run {self.run_id}" if self.run_id else self.what
        part = f" {self.what}" if self.run_id else ""
        return f"{who}{part}: {self.problem}"

    def as_dict(self) -> dict[str, Any]:
        return {"store": self.store, "run": self.run_id, "what": self.what, "problem": self.problem}


class RowError(ValueError):
    """One column of one row is unusable: ``what`` names the column."""

    def __init__(self, what: str, problem: str):
        super().__init__(f"{what}: {problem}")
        self.what, self.problem = what, problem


def _json(what: str, text: Any, kind: type, nullable: bool = False) -> Any:
    if text is None:
        if nullable:
            return None
        raise RowError(what, "missing (null)")
    if not isinstance(text, str):
        raise RowError(what, f"expected JSON text, found {type(text).__name__} {text!r:.40}")
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise RowError(what, f"not JSON ({exc.msg} at character {exc.pos})") from None
    if value is None and nullable:
        return None
    if not isinstance(value, kind):
        raise RowError(what, f"expected a JSON {_JSON_NAMES[kind]}, found {_json_name(value)} {text[:40]!r}")
    return value


_JSON_NAMES = {dict: "object", list: "array", str: "string", float: "number", int: "number", bool: "true/false",
               type(None): "null"}


def _json_name(value: Any) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)


def _number(what: str, value: Any, integer: bool = False) -> Any:
    if value is None:
        return None
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok:
        expected = "an integer" if integer else "a number"
        raise RowError(what, f"expected {expected}, found {value!r:.40}")
    return value


def decode_run(row: tuple) -> dict[str, Any]:
    """A ``runs`` row (id, idx, config, point, status, params, flops, metrics, error, seconds) as a dict.

    Raises ``RowError`` naming the first unusable column.
    """
    rid, idx, config, point, status, params, flops, metrics, error, seconds = row
    if not isinstance(rid, str) or not rid:
        raise RowError("id", f"expected a run id, found {rid!r:.40}")
    config = _json("config", config, dict)
    for section in ("task", "model", "train"):
        if not isinstance(config.get(section), dict):
            raise RowError("config", f"its {section!r} is not a mapping")
    point = _json("point", point, dict)
    if status not in STATUSES:
        raise RowError("status", f"unknown status {status!r:.40}")
    metrics = _json("metrics", metrics, dict, nullable=True) or {}
    for name in NUMERIC_METRICS:
        value = metrics.get(name)
        if isinstance(value, bool) or (value is not None and not isinstance(value, (int, float))):
            raise RowError("metrics", f"{name} is {value!r:.40}, not a number")
    problem = shaped_metrics_problem(metrics, config)
    if problem is not None:
        raise RowError("metrics", problem)
    if error is not None and not isinstance(error, str):
        error = str(error)
    return {"id": rid, "index": _number("idx", idx, integer=True), "config": config, "point": point,
            "status": status, "params": _number("params", params, integer=True),
            "flops": _number("flops", flops), "metrics": metrics, "error": error,
            "seconds": _number("seconds", seconds)}


# Metrics of language-model runs that hold lists and mappings (``train.lm_measures``), read directly by
# analysis.in_context, .position and .specialization: name -> the shape a usable value has.
SHAPED_METRICS = {
    "loss_by_position": "numbers", "loss_by_position_se": "numbers", "position_early": "positions",
    "position_late": "positions", "reference_loss_by_position": "curves", "reference_icl_score": "scores",
    "shots": "counts", "shot_accuracy": "numbers", "shot_accuracy_se": "numbers", "shot_optimal": "numbers",
    "induction_by_head": "matrix", "domain_test_loss": "scores or null", "domain_test_loss_se": "scores or null",
}
FINITE_METRICS = ("icl_score", "icl_score_se", "bayes_gap", "bayes_gap_se", "context_gain", "context_gain_se",
                  "induction_uniform", "induction_score")  # written as finite numbers, read without a check
# a metric present needs these beside it (lm_measures writes them together; the readings use them together)
COMPANIONS = {
    "loss_by_position": ("loss_by_position_se", "position_early", "position_late"),
    "context_gain": ("loss_by_position",),
    "icl_score": ("bayes_gap", "loss_by_position", "reference_loss_by_position", "reference_icl_score"),
    "reference_loss_by_position": ("icl_score",),
    "shots": ("shot_accuracy", "shot_accuracy_se", "shot_optimal"),
    "shot_accuracy": ("shots",),
    "induction_by_head": ("induction_uniform",),
}


def _finite(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _shape_problem(name: str, value: Any, shape: str) -> str | None:
    """Why ``value`` is not of ``shape`` (see SHAPED_METRICS), or None."""
    seen = f"{name} is {value!r:.40}"
    if shape in ("numbers", "positions", "counts"):
        if not isinstance(value, list) or not value:
            return f"{seen}, not a non-empty list"
        if shape == "numbers" and not all(_finite(v) for v in value):
            return f"{seen}: not all finite numbers"
        if shape != "numbers" and not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
            return f"{seen}: not all non-negative integers"
    elif shape == "matrix":
        if not (isinstance(value, list) and value and all(isinstance(r, list) and r for r in value)):
            return f"{seen}, not a list of non-empty lists"
        if len({len(r) for r in value}) > 1 or not all(_finite(v) for r in value for v in r):
            return f"{seen}: rows of different lengths or values that are not finite numbers"
    elif shape == "curves":
        if not isinstance(value, dict) or not value:
            return f"{seen}, not a mapping of names to lists"
        for key, curve in value.items():
            problem = _shape_problem(f"{name}[{key!r:.20}]", curve, "numbers")
            if problem:
                return problem
    elif shape.startswith("scores"):
        if not isinstance(value, dict):
            return f"{seen}, not a mapping of names to numbers"
        if not all(_finite(v) or (v is None and shape.endswith("null")) for v in value.values()):
            return f"{seen}: not all finite numbers"
    return None


def shaped_metrics_problem(metrics: dict[str, Any], config: dict[str, Any]) -> str | None:
    """Why a run's list and mapping metrics are unusable, or None: each of the shape its readers assume
    (``SHAPED_METRICS``), finite where ``FINITE_METRICS`` says so, with its companions, and of matching
    lengths: a curve by position has ``model.context`` points (its standard errors and the references as
    many), positions index into it, each per-shot list has one value per number of shots."""
    for name in FINITE_METRICS:
        if name in metrics and not _finite(metrics[name]):
            return f"{name} is {metrics[name]!r:.40}, not a finite number"
    for name, shape in SHAPED_METRICS.items():
        if name in metrics:
            problem = _shape_problem(name, metrics[name], shape)
            if problem:
                return problem
    for name, needed in COMPANIONS.items():
        missing = [n for n in needed if name in metrics and n not in metrics]
        if missing:
            return f"{name} without {', '.join(missing)}"
    curve = metrics.get("loss_by_position")
    if curve is not None:
        context = config.get("model", {}).get("context")
        if isinstance(context, int) and not isinstance(context, bool) and len(curve) != context:
            return f"loss_by_position has {len(curve)} positions, the model's context {context}"
        lengths = {"loss_by_position_se": metrics["loss_by_position_se"],
                   **{f"reference_loss_by_position[{k!r:.20}]": v
                      for k, v in (metrics.get("reference_loss_by_position") or {}).items()}}
        for other, values in lengths.items():
            if len(values) != len(curve):
                return f"{other} has {len(values)} values, loss_by_position {len(curve)}"
        for key in ("position_early", "position_late"):
            if max(metrics[key]) >= len(curve):
                return f"{key} {metrics[key]!r:.40} reaches past the {len(curve)} positions"
    refs = metrics.get("reference_loss_by_position")
    if refs is not None and set(refs) - set(metrics["reference_icl_score"]):
        return f"reference_icl_score lacks {', '.join(sorted(set(refs) - set(metrics['reference_icl_score'])))}"
    if "shots" in metrics:
        for other in ("shot_accuracy", "shot_accuracy_se", "shot_optimal"):
            if len(metrics[other]) != len(metrics["shots"]):
                return f"{other} has {len(metrics[other])} values for {len(metrics['shots'])} numbers of shots"
    return None


def decode_meta(key: str, text: Any) -> Any:
    """A ``meta`` value; raises ``RowError`` when it is not JSON or not the type its key needs."""
    if not isinstance(text, str):
        raise RowError(f"meta {key!r}", f"expected JSON text, found {text!r:.40}")
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise RowError(f"meta {key!r}", f"not JSON ({exc.msg} at character {exc.pos})") from None
    kind = META_TYPES.get(key)
    if kind is not None and not isinstance(value, kind):
        raise RowError(f"meta {key!r}", f"unexpected {type(value).__name__} {text[:40]!r}")
    entry = META_ENTRY_TYPES.get(key)
    if entry is not None:
        for name, item in value.items():
            if not isinstance(item, entry):
                raise RowError(f"meta {key!r}", f"its entry {name!r:.40} is {type(item).__name__} {item!r:.40}")
            if key == "input_files" and not _fingerprint_ok(item):
                raise RowError(f"meta {key!r}", f"its entry {name!r:.40} is not a fingerprint: {item!r:.60}")
    return value


def _fingerprint_ok(item: dict[str, Any]) -> bool:
    """An ``input_files`` entry (``provenance.fingerprint``): a kind, integer counts, text hashes."""
    counts = ("bytes", "files", "mtime_ns")
    texts = ("sha256", "sample", "listing", "mtimes", "path")
    return (item.get("kind") in ("file", "folder")
            and all(isinstance(item.get(k), int) and not isinstance(item.get(k), bool) for k in counts if k in item)
            and all(isinstance(item.get(k), str) for k in texts if k in item) and "bytes" in item)


def curve_problem(step: Any, name: Any, value: Any) -> str | None:
    """Why a curve point is unusable, or None: step an integer, name text, value a finite number or null."""
    if isinstance(step, bool) or not isinstance(step, int):
        return f"step {step!r:.40} is not an integer"
    if not isinstance(name, str):
        return f"metric name {name!r:.40} is not text"
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return f"{name} at step {step} is {value!r:.40}, not a number"
    return None
