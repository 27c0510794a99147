"""The store's SQLite file: created atomically, opened read-only by readers, its errors in words.

Creation builds the whole schema in a temporary file beside the store and links it into place
only when complete, so a full disk or a kill leaves either no store or a whole one, never a
file with half its tables. A file already at the store's path is never re-initialized: an
overparam store is opened as it is, a store whose creation an older overparam left half-made
(some of our tables, all empty, nothing else) is completed with a warning, and anything else
(zero bytes, another program's database, garbage) is refused with what to do.

Readers open the file read-only (``mode=ro``), so ``runs``, ``analyze`` and ``report`` work on a
read-only directory or file system; where SQLite cannot even create its shared-memory file
there, a store with no pending write-ahead log is opened ``immutable``.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
import warnings
from pathlib import Path

from overparam.errors import StoreError

HEADER = b"SQLite format 3\x00"
TABLES = frozenset({"meta", "runs", "curves"})
TMP_PREFIX = ".creating-"  # DIR/.creating-overparam.sqlite.<pid>: a store being built


def sql_error(path: Path, exc: BaseException, doing: str) -> StoreError:
    """A ``StoreError`` naming the file and the cause in words, for any ``sqlite3`` error."""
    text = " ".join(str(exc).split())
    low = text.lower()
    if "full" in low or ("i/o" in low and _nearly_full(path.parent)):  # WAL's shared memory fails as I/O
        why = (f"the disk is full ({text}); results already stored are intact: free space and rerun "
               f"to resume")
    elif "readonly" in low or "read-only" in low:
        why = f"it is read-only ({text})"
    elif "locked" in low or "busy" in low:
        why = f"another process holds it locked ({text}); retry when it finishes"
    elif "malformed" in low or "not a database" in low or "corrupt" in low:
        why = f"corrupt store ({text}); `overparam runs {path.parent} --check` lists what is damaged"
    elif "unable to open" in low or "i/o" in low:
        why = f"cannot read or write it ({text}); check the disk and permissions"
    else:
        why = f"{text}"
    return StoreError(f"{path}: {doing}: {why}")


def _nearly_full(directory: Path) -> bool:
    """Under 1 MiB free where the store lives: SQLite reports a full disk as 'disk I/O error' at times."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < (1 << 20)


def check_header(path: Path) -> None:
    """Refuse what is not an SQLite file before SQLite sees it (it would call it 'not a database')."""
    try:
        with open(path, "rb") as fh:
            header = fh.read(16)
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the store ({exc.strerror or exc})") from None
    if not header:
        raise StoreError(f"{path}: not an overparam store (the file is empty, 0 bytes); overparam never "
                         f"overwrites a file it did not create: delete it if it is yours, or use another --out")
    if header != HEADER:
        raise StoreError(f"{path}: not an overparam store (the file is not SQLite; corrupt or overwritten)")


def _uri(path: Path, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"file:{urllib.parse.quote(str(path.absolute()))}?{query}"


def connect_reader(path: Path) -> sqlite3.Connection:
    """A read-only connection; works on a read-only directory, file or file system."""
    check_header(path)
    try:
        conn = sqlite3.connect(_uri(path, mode="ro"), uri=True, timeout=30.0)
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.DatabaseError as exc:
        if "unable to open" not in str(exc):
            raise sql_error(path, exc, "cannot open the store") from None
    # SQLite could not create DIR/overparam.sqlite-shm: a read-only directory. Without a pending
    # write-ahead log the file alone is the whole store, which immutable mode reads as is.
    wal = path.with_name(path.name + "-wal")
    if wal.is_file() and wal.stat().st_size > 0:
        raise StoreError(f"{path}: cannot open the store read-only: its write-ahead log ({wal.name}) holds "
                         f"writes not yet merged and the directory is read-only; copy the directory "
                         f"somewhere writable and read the copy")
    try:
        conn = sqlite3.connect(_uri(path, mode="ro", immutable="1"), uri=True, timeout=30.0)
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.DatabaseError as exc:
        raise sql_error(path, exc, "cannot open the store") from None


def connect_writer(path: Path) -> sqlite3.Connection:
    """A read-write connection to an existing file; nothing is written until ``prepare_for_writing``
    has found it to be an overparam store (switching a file to WAL mode rewrites its header)."""
    check_header(path)
    try:
        return sqlite3.connect(path, timeout=30.0, isolation_level="DEFERRED")
    except sqlite3.DatabaseError as exc:
        raise sql_error(path, exc, "cannot open the store for writing") from None


def _writing_mode(conn: sqlite3.Connection, path: Path) -> None:
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.DatabaseError as exc:
        raise sql_error(path, exc, "cannot open the store for writing") from None


def create_file(path: Path, schema: str, version: int) -> None:
    """Build a new store (every table, the schema version, WAL mode) and link it to ``path``.

    The caller holds the directory's writer lock. ``path`` must not exist: an existing file is
    never replaced (``os.link`` fails rather than overwrite it).
    """
    for stale in path.parent.glob(f"{TMP_PREFIX}{path.name}.*"):  # left by a killed creation
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}")
    try:
        # A rollback journal, not WAL, while building: a full disk then fails the COMMIT itself, where
        # WAL would fail later, silently, when closing merges the log into the file.
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.executescript(_script(schema, version))
        finally:
            conn.close()
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        _verify_new(tmp, version)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise StoreError(f"{path}: appeared while this sweep created it; not touched") from None
        except OSError:  # a file system without hard links: we hold the lock, so nothing else creates it
            if path.exists():
                raise StoreError(f"{path}: appeared while this sweep created it; not touched") from None
            os.rename(tmp, path)
        _fsync_dir(path.parent)
    except sqlite3.Error as exc:
        raise sql_error(path, exc, "cannot create the store") from None
    except OSError as exc:
        raise StoreError(f"{path}: cannot create the store ({exc.strerror or exc})") from None
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
            try:
                leftover.unlink(missing_ok=True)
            except OSError:
                pass


def _verify_new(tmp: Path, version: int) -> None:
    """Read the new file back: every table there and the version set, or it never becomes the store."""
    conn = sqlite3.connect(_uri(tmp, mode="ro"), uri=True)
    try:
        got = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
    finally:
        conn.close()
    if got != version or not TABLES <= tables or check != "ok":
        raise sqlite3.DatabaseError(f"the new store did not read back whole ({check})")


def _script(schema: str, version: int) -> str:
    """The schema and its version in one transaction: all tables or none."""
    return f"BEGIN; {schema.strip().rstrip(';')}; PRAGMA user_version={int(version)}; COMMIT;"


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass  # best effort: not every file system allows it


def schema_state(conn: sqlite3.Connection, path: Path) -> tuple[int, set[str], int]:
    """(user_version, table names, rows in our tables); a corrupt header is a ``StoreError``."""
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        rows = sum(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables & TABLES)
    except sqlite3.DatabaseError as exc:
        raise sql_error(path, exc, "cannot read the store") from None
    return version, tables, rows


def half_made(tables: set[str], rows: int) -> bool:
    """A store whose creation was interrupted (by older overparam versions): some of our tables, empty."""
    return bool(tables) and tables < TABLES and rows == 0


def check_readable(conn: sqlite3.Connection, path: Path, newest: int) -> None:
    """A store a reader can use: our tables, a schema version it understands."""
    version, tables, rows = schema_state(conn, path)
    if version > newest:
        raise StoreError(f"{path}: store schema version {version} is newer than this overparam "
                         f"understands ({newest}); upgrade overparam")
    if not TABLES <= tables:
        if half_made(tables, rows):
            missing = ", ".join(sorted(TABLES - tables))
            raise StoreError(f"{path}: a store whose creation was interrupted (tables {missing} missing, no runs "
                             f"in it); rerun the sweep to complete it")
        raise StoreError(f"{path}: not an overparam store (missing tables)")


def prepare_for_writing(conn: sqlite3.Connection, path: Path, schema: str, newest: int) -> None:
    """An existing file a sweep may write: ours (complete it when half-made), never another's; then WAL mode."""
    version, tables, rows = schema_state(conn, path)
    if version > newest:
        raise StoreError(f"{path}: store schema version {version} is newer than this overparam "
                         f"understands ({newest}); upgrade overparam")
    if TABLES <= tables:
        _writing_mode(conn, path)
        return
    if not half_made(tables, rows):
        what = "it holds other tables" if tables else "it holds no tables"
        raise StoreError(f"{path}: not an overparam store ({what}); overparam never re-initializes a file it "
                         f"did not create: move it aside or use another --out")
    warnings.warn(f"{path}: completing a store whose creation was interrupted (it held no runs)", stacklevel=3)
    try:
        with conn:
            conn.executescript(_script(schema, newest))
    except sqlite3.Error as exc:
        raise sql_error(path, exc, "cannot complete the store") from None
    _writing_mode(conn, path)
