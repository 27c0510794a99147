"""One SQLite file per sweep directory: runs, curves, status. Results are append-only facts.

Layout (DESIGN.md ◆): ``DIR/overparam.sqlite`` in WAL mode, ``DIR/checkpoints/<id>.safetensors``.
A run's result (status, metrics, curve) is written in one transaction after its checkpoint
file is complete, so a kill at any moment leaves either the old row or the whole new result.
Only one process writes a directory at a time (an ``flock`` on ``DIR/overparam.lock``, freed
by the kernel even on SIGKILL); readers never take it.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from overparam.errors import StoreError

SCHEMA_VERSION = 1
DB_NAME = "overparam.sqlite"
LOCK_NAME = "overparam.lock"
STATUSES = ("pending", "running", "done", "diverged", "failed")

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

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def create(cls, directory: str | Path) -> Store:
        """Open for writing, creating the directory and schema; refuses if another writer holds it."""
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise StoreError(f"{directory}: exists and is not a directory")
        try:
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "checkpoints").mkdir(exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{directory}: cannot create the sweep directory ({exc.strerror})") from exc
        lock_fd = _take_lock(directory)
        try:
            conn = _connect(directory / DB_NAME, create=True)
            _ensure_schema(conn, directory / DB_NAME)
        except BaseException:
            os.close(lock_fd)
            raise
        return cls(directory, conn, lock_fd)

    @classmethod
    def open(cls, directory: str | Path) -> Store:
        """Open an existing store for reading (no lock: works while a sweep writes)."""
        directory = Path(directory)
        path = directory / DB_NAME
        if not directory.is_dir():
            raise StoreError(f"{directory}: no such sweep directory")
        if not path.is_file():
            raise StoreError(f"{directory}: not a sweep directory (no {DB_NAME}; run `overparam sweep` first)")
        conn = _connect(path, create=False)
        _check_schema(conn, path)
        return cls(directory, conn, None)

    def close(self) -> None:
        self.conn.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, _json(value)))

    def add_runs(self, runs: Iterable[Any]) -> int:
        """Insert planned runs as pending; runs already stored (any status) are left untouched."""
        with self.conn:
            before = self.conn.total_changes
            start = self.conn.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM runs").fetchone()[0]
            for i, run in enumerate(runs):
                self.conn.execute(
                    "INSERT OR IGNORE INTO runs(id, idx, config, point, status) VALUES (?, ?, ?, ?, 'pending')",
                    (run.id, start + i, _json(run.config), _json(run.point)))
            return self.conn.total_changes - before

    def reset_interrupted(self) -> int:
        """Runs left 'running' by a killed process go back to 'pending' (their result never landed)."""
        with self.conn:
            return self.conn.execute("UPDATE runs SET status='pending' WHERE status='running'").rowcount

    def mark_running(self, run_ids: list[str]) -> None:
        with self.conn:
            self.conn.executemany("UPDATE runs SET status='running' WHERE id=? AND status='pending'",
                                  [(r,) for r in run_ids])

    def record(self, run_id: str, status: str, params: int | None, flops: float | None,
               metrics: dict[str, Any], curve: list[tuple[int, dict[str, float]]],
               seconds: float, error: str | None = None) -> None:
        """Write one run's result and its curve in a single transaction."""
        if status not in STATUSES:
            raise ValueError(status)
        with self.conn:
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
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def runs(self, status: str | None = None) -> list[dict[str, Any]]:
        """Runs in plan order as dicts: id, status, config, point, params, flops, metrics, …"""
        query = "SELECT id, idx, config, point, status, params, flops, metrics, error, seconds FROM runs"
        args: tuple = ()
        if status:
            query += " WHERE status=?"
            args = (status,)
        rows = self.conn.execute(query + " ORDER BY idx", args).fetchall()
        return [{"id": r[0], "index": r[1], "config": json.loads(r[2]), "point": json.loads(r[3]),
                 "status": r[4], "params": r[5], "flops": r[6],
                 "metrics": json.loads(r[7]) if r[7] else {}, "error": r[8], "seconds": r[9]} for r in rows]

    def curves(self) -> list[tuple[str, int, str, float | None]]:
        return self.conn.execute("SELECT run_id, step, name, value FROM curves ORDER BY run_id, step").fetchall()

    def checkpoint_path(self, run_id: str) -> Path:
        return self.dir / "checkpoints" / f"{run_id}.safetensors"


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _take_lock(directory: Path) -> int:
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StoreError(f"{directory}: another overparam process (pid {holder}) is writing this sweep "
                         f"directory; wait for it to finish or use another --out") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _connect(path: Path, create: bool) -> sqlite3.Connection:
    if not create:
        with open(path, "rb") as fh:
            header = fh.read(16)
        if header != b"SQLite format 3\x00":
            raise StoreError(f"{path}: not an overparam store (the file is not SQLite; corrupt or overwritten)")
    try:
        conn = sqlite3.connect(path, timeout=30.0, isolation_level="DEFERRED")
        if create:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: cannot open the store ({exc})") from exc


def _check_schema(conn: sqlite3.Connection, path: Path) -> None:
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(f"{path}: corrupt store ({exc})") from exc
    if version > SCHEMA_VERSION:
        conn.close()
        raise StoreError(f"{path}: store schema version {version} is newer than this overparam "
                         f"understands ({SCHEMA_VERSION}); upgrade overparam")
    if not {"runs", "curves", "meta"} <= tables:
        conn.close()
        raise StoreError(f"{path}: not an overparam store (missing tables)")


def _ensure_schema(conn: sqlite3.Connection, path: Path) -> None:
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(f"{path}: corrupt store ({exc})") from exc
    if version > SCHEMA_VERSION:
        conn.close()
        raise StoreError(f"{path}: store schema version {version} is newer than this overparam "
                         f"understands ({SCHEMA_VERSION}); upgrade overparam")
    if tables and not {"runs", "curves", "meta"} <= tables:
        conn.close()
        raise StoreError(f"{path}: not an overparam store (it holds other tables)")
    with conn:
        conn.executescript(_SCHEMA)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


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
