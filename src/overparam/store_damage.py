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
from dataclasses import dataclass
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
    if error is not None and not isinstance(error, str):
        error = str(error)
    return {"id": rid, "index": _number("idx", idx, integer=True), "config": config, "point": point,
            "status": status, "params": _number("params", params, integer=True),
            "flops": _number("flops", flops), "metrics": metrics, "error": error,
            "seconds": _number("seconds", seconds)}


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
    return value


def curve_problem(step: Any, name: Any, value: Any) -> str | None:
    """Why a curve point is unusable, or None: step an integer, name text, value a finite number or null."""
    if isinstance(step, bool) or not isinstance(step, int):
        return f"step {step!r:.40} is not an integer"
    if not isinstance(name, str):
        return f"metric name {name!r:.40} is not text"
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return f"{name} at step {step} is {value!r:.40}, not a number"
    return None
