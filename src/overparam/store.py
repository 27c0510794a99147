"""One SQLite file per sweep directory: runs, curves, status. Results are append-only facts.

Layout (DESIGN.md ◆): ``DIR/overparam.sqlite`` in WAL mode, ``DIR/checkpoints/<id>.safetensors``.
A run's result (status, metrics, curve) is written in one transaction after its checkpoint
file is complete, so a kill at any moment leaves either the old row or the whole new result.
Only one process writes a directory at a time (an ``flock`` on ``DIR/overparam.lock``, freed
by the kernel even on SIGKILL); readers never take it, and open the file read-only.

Hostile files (``store_file``, ``store_damage``): the store is created atomically and a file a
sweep did not create is never re-initialized; a sweep refuses a damaged store rather than add
to the damage; readers skip a damaged row, naming it (``StoreDamageWarning``), and use the rest;
every SQLite error (full disk, read-only, corrupt page) becomes one ``StoreError`` naming the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import sqlite3
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from overparam import store_file
from overparam.errors import StoreError
from overparam.store_damage import Damage, RowError, StoreDamageWarning, curve_problem, decode_meta, decode_run

SCHEMA_VERSION = 1
DB_NAME = "overparam.sqlite"
LOCK_NAME = "overparam.lock"
STATUSES = ("pending", "running", "done", "diverged", "failed")
_RUN_COLUMNS = "id, idx, config, point, status, params, flops, metrics, error, seconds"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    idx INTEGER NOT NULL,
    config TEXT NOT NULL,
    point TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending','running','done','diverged','failed')),
    params INTEGER,
    flops REAL,
    metrics TEXT,
    error TEXT,
    seconds REAL,
    finished_at REAL
);
CREATE TABLE IF NOT EXISTS curves (
    run_id TEXT NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, step, name)
);
"""


def _json(obj: Any) -> str:
    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(obj), sort_keys=True, allow_nan=False)


class Store:
    """A sweep directory's store. Open with ``Store.create`` (writer) or ``Store.open`` (reader)."""

    def __init__(self, directory: Path, conn: sqlite3.Connection, lock_fd: int | None):
        self.dir = directory
        self.conn = conn
        self._lock_fd = lock_fd
        self._noted: set[Damage] = set()

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def create(cls, directory: str | Path) -> Store:
        """Open for writing, creating the directory and schema; refuses if another writer holds it.

        A new store is created whole (``store_file.create_file``); an existing file must be an
        intact overparam store: a damaged one is refused (``overparam runs DIR --check`` lists why).
        """
        directory = Path(directory)
        if not str(directory).strip():
            raise StoreError("--out: empty path; name the sweep directory")
        if directory.exists() and not directory.is_dir():
            raise StoreError(f"{directory}: exists and is not a directory")
        try:
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "checkpoints").mkdir(exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{directory}: cannot create the sweep directory ({exc.strerror or exc})") from exc
        lock_fd = _take_lock(directory)
        path = directory / DB_NAME
        try:
            if not path.exists():
                store_file.create_file(path, _SCHEMA, SCHEMA_VERSION)
            conn = store_file.connect_writer(path)
            try:
                store_file.prepare_for_writing(conn, path, _SCHEMA, SCHEMA_VERSION)
                store = cls(directory, conn, lock_fd)
                store._refuse_damage()
            except BaseException:
                conn.close()
                raise
        except BaseException:
            os.close(lock_fd)
            raise
        return store

    @classmethod
    def open(cls, directory: str | Path) -> Store:
        """Open an existing store for reading (read-only, no lock: works while a sweep writes)."""
        directory = Path(directory)
        path = directory / DB_NAME
        if not directory.is_dir():
            raise StoreError(f"{directory}: no such sweep directory")
        if not path.is_file():
            raise StoreError(f"{directory}: not a sweep directory (no {DB_NAME}; run `overparam sweep` first)")
        conn = store_file.connect_reader(path)
        try:
            store_file.check_readable(conn, path, SCHEMA_VERSION)
        except BaseException:
            conn.close()
            raise
        return cls(directory, conn, None)

    @property
    def path(self) -> Path:
        return self.dir / DB_NAME

    def close(self) -> None:
        self.conn.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- damage ----------------------------------------------------------------------------
    def damage(self, full: bool = False) -> list[Damage]:
        """Everything unreadable in the store: SQLite's page check, then every row, curve point, meta value.

        ``full``: SQLite's ``integrity_check`` (indexes against tables too, O(N log N)) instead of its
        linear ``quick_check`` (page structure), which a sweep runs each time it opens a store.
        """
        found: list[Damage] = []
        check = "integrity_check" if full else "quick_check"
        try:
            problems = [r[0] for r in self.conn.execute(f"PRAGMA {check}(20)").fetchall()]
        except sqlite3.DatabaseError as exc:
            if "malformed" not in str(exc) and "not a database" not in str(exc):
                raise store_file.sql_error(self.path, exc, "cannot check the store") from None  # a full disk, a lock
            problems = [" ".join(str(exc).split())]
        if problems != ["ok"]:
            return [Damage(str(self.path), None, "file", p) for p in problems]  # rows would only repeat it
        with self._reading("check the store"):
            rows = self.conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY idx").fetchall()
            keys = self.conn.execute("SELECT key, value FROM meta").fetchall()
            points = self.conn.execute("SELECT run_id, step, name, value FROM curves").fetchall()
        for row in rows:
            try:
                decode_run(row)
            except RowError as exc:
                found.append(Damage(str(self.path), str(row[0]), exc.what, exc.problem))
        for key, value in keys:
            try:
                decode_meta(key, value)
            except RowError as exc:
                found.append(Damage(str(self.path), None, exc.what, exc.problem))
        bad_curves: dict[str, str] = {}
        for run_id, step, name, value in points:
            problem = curve_problem(step, name, value)
            if problem and str(run_id) not in bad_curves:
                bad_curves[str(run_id)] = problem
        found += [Damage(str(self.path), r, "curve", p) for r, p in bad_curves.items()]
        return found

    def _refuse_damage(self) -> None:
        """A sweep writes only into an intact store: adding runs to a damaged one adds to the damage."""
        found = self.damage()
        if found:
            more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            raise StoreError(f"{self.path}: corrupt store: {found[0].line()}{more}; a sweep does not write into "
                             f"a damaged store: `overparam runs {self.dir} --check` lists the damage; move the "
                             f"directory aside and rerun into a fresh --out")

    def _note(self, damage: Damage) -> None:
        """Report a damaged part once per store object (the CLI turns these into one error line)."""
        if damage not in self._noted:
            self._noted.add(damage)
            warnings.warn(StoreDamageWarning(f"corrupt store {damage.store}: {damage.line()}"), stacklevel=3)

    @contextlib.contextmanager
    def _reading(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise store_file.sql_error(self.path, exc, f"cannot {doing}") from None

    @contextlib.contextmanager
    def _writing(self, doing: str) -> Iterator[None]:
        """One transaction; any SQLite error (full disk, read-only, corrupt) as one ``StoreError``."""
        try:
            with self.conn:
                yield
        except sqlite3.Error as exc:
            raise store_file.sql_error(self.path, exc, f"cannot {doing}") from None

    # -- writing -------------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        with self._writing(f"record {key!r}"):
            self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, _json(value)))

    def add_runs(self, runs: Iterable[Any]) -> int:
        """Insert planned runs as pending; runs already stored (any status) are left untouched."""
        with self._writing("add the planned runs"):
            before = self.conn.total_changes
            start = self.conn.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM runs").fetchone()[0]
            for i, run in enumerate(runs):
                self.conn.execute(
                    "INSERT OR IGNORE INTO runs(id, idx, config, point, status) VALUES (?, ?, ?, ?, 'pending')",
                    (run.id, start + i, _json(run.config), _json(run.point)))
            return self.conn.total_changes - before

    def reset_interrupted(self) -> int:
        """Runs left 'running' by a killed process go back to 'pending' (their result never landed)."""
        with self._writing("reset interrupted runs"):
            return self.conn.execute("UPDATE runs SET status='pending' WHERE status='running'").rowcount

    def mark_running(self, run_ids: list[str]) -> None:
        with self._writing("mark runs as running"):
            self.conn.executemany("UPDATE runs SET status='running' WHERE id=? AND status='pending'",
                                  [(r,) for r in run_ids])

    def record(self, run_id: str, status: str, params: int | None, flops: float | None,
               metrics: dict[str, Any], curve: list[tuple[int, dict[str, float]]],
               seconds: float, error: str | None = None) -> None:
        """Write one run's result and its curve in a single transaction."""
        if status not in STATUSES:
            raise ValueError(status)
        with self._writing(f"store the result of run {run_id}"):
            self.conn.execute("DELETE FROM curves WHERE run_id=?", (run_id,))
            self.conn.executemany(
                "INSERT INTO curves(run_id, step, name, value) VALUES (?, ?, ?, ?)",
                [(run_id, int(step), name, _finite(value)) for step, point in curve
                 for name, value in point.items() if isinstance(value, (int, float)) and not isinstance(value, bool)])
            self.conn.execute(
                "UPDATE runs SET status=?, params=?, flops=?, metrics=?, error=?, seconds=?, finished_at=? "
                "WHERE id=?", (status, params, flops, _json(metrics), error, seconds, time.time(), run_id))

    # -- reading -------------------------------------------------------------------------
    def meta(self, key: str, default: Any = None) -> Any:
        with self._reading(f"read {key!r}"):
            row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        if not row:
            return default
        try:
            return decode_meta(key, row[0])
        except RowError as exc:
            self._note(Damage(str(self.path), None, exc.what, exc.problem))
            return default

    def runs(self, status: str | None = None) -> list[dict[str, Any]]:
        """Runs in plan order as dicts: id, status, config, point, params, flops, metrics, …

        A damaged row is left out and reported (``StoreDamageWarning``, naming the run).
        """
        query = f"SELECT {_RUN_COLUMNS} FROM runs"
        args: tuple = ()
        if status:
            query += " WHERE status=?"
            args = (status,)
        with self._reading("read the runs"):
            rows = self.conn.execute(query + " ORDER BY idx", args).fetchall()
        out = []
        for row in rows:
            try:
                out.append(decode_run(row))
            except RowError as exc:
                self._note(Damage(str(self.path), str(row[0]), exc.what, exc.problem))
        return out

    def curves(self) -> list[tuple[str, int, str, float | None]]:
        """Curve points (run_id, step, name, value); a run's damaged points are left out and reported."""
        with self._reading("read the curves"):
            rows = self.conn.execute("SELECT run_id, step, name, value FROM curves ORDER BY run_id, step").fetchall()
        bad = {}
        for run_id, step, name, value in rows:
            problem = curve_problem(step, name, value)
            if problem and run_id not in bad:
                bad[run_id] = problem
        for run_id, problem in bad.items():
            self._note(Damage(str(self.path), str(run_id), "curve", problem))
        return [r for r in rows if r[0] not in bad] if bad else rows

    def checkpoint_path(self, run_id: str) -> Path:
        return self.dir / "checkpoints" / f"{run_id}.safetensors"


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _take_lock(directory: Path) -> int:
    try:
        fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"{directory / LOCK_NAME}: cannot write in the sweep directory ({exc.strerror or exc}); "
                         f"a sweep needs a writable --out (runs, analyze and report read a store read-only)") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StoreError(f"{directory}: another overparam process (pid {holder}) is writing this sweep "
                         f"directory; wait for it to finish or use another --out") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
    except OSError:
        pass  # the pid is only a courtesy for the message above (a full disk must not stop here)
    return fd


def open_store(directory: str | Path) -> Store:
    """Open a sweep directory's store for reading."""
    return Store.open(directory)


def flatten_config(config: dict[str, Any]) -> dict[str, Any]:
    """{"task": {"kind": …}} → {"task.kind": …}; ``seed`` stays ``seed``; a mapping setting
    becomes one column per entry ({"model": {"config": {"n_embd": 64}}} → "model.config.n_embd")."""
    flat: dict[str, Any] = {}
    for section, value in config.items():
        if isinstance(value, dict):
            for key, v in flatten_config(value).items():
                flat[f"{section}.{key}"] = v
        else:
            flat[section] = value
    return flat


def load_runs(directory: str | Path, status: str | None = None):
    """A tidy pandas DataFrame, one row per run: id, status, params, flops, seconds, every
    config setting as a dotted column (``model.width``, ``seed``, …) and every metric as a column.
    """
    import pandas as pd

    with Store.open(directory) as store:
        runs = store.runs(status)
    rows = []
    for run in runs:
        row = {"id": run["id"], "status": run["status"], "params": run["params"], "flops": run["flops"],
               "seconds": run["seconds"], "error": run["error"]}
        row.update(flatten_config(run["config"]))
        for key, value in run["metrics"].items():
            if not isinstance(value, (dict, list)):
                row[key] = value
        rows.append(row)
    return pd.DataFrame(rows)


def load_curves(directory: str | Path):
    """Curve points as a long DataFrame: run_id, step, name, value."""
    import pandas as pd

    with Store.open(directory) as store:
        points = store.curves()
    return pd.DataFrame(points, columns=["run_id", "step", "name", "value"])


def runs_and_curves(source):
    """(runs, curves) DataFrames from a sweep directory, or the pair itself when given one."""
    if isinstance(source, tuple):
        return source
    return load_runs(source), load_curves(source)
