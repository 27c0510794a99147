"""What a sweep read, recorded with it and checked before it is trusted again: the user's model file and
every input file of its tasks.

Recorded in the store's meta when a sweep starts:

- ``model_sources``: family -> {"path", "sha256"} of a user factory's source file (``file.py:factory``;
  the module's file for ``package.module:factory``);
- ``input_files``: each file or folder a task reads (``task.path``, ``test_path``, ``labels``,
  ``test_labels``, ``mix[i].path``: a text corpus, a table and its test file, arrays, an image folder, a
  Hugging Face dataset, the MNIST / CIFAR-10 files), keyed by the value the run configs name it with, ->
  its fingerprint (:func:`fingerprint`) and the absolute path it had.

Two things read them back:

- **resume**: rerunning a sweep into the same directory with a changed model file or input is refused,
  naming the file, once runs were trained from the recorded one: finished runs would otherwise sit
  beside runs trained on something else, under the same ids (with no result yet, the new one is
  recorded instead: fixing the file and rerunning is the way on);
- **rebuild**: ``compress``, ``implicit``, ``landscape``, ``probe``, ``attention`` and the report's
  sections that rebuild runs load a checkpoint into a model built from the run's config and task. A
  changed model file builds another model; a changed corpus another vocabulary (the checkpoint then
  fails to load with a tensor-shape error, or worse, loads and is measured on other data). They refuse
  in one line naming the file and what to do; the report skips what needs it, with a warning.

Stores written before input fingerprints existed have no ``input_files``: there is nothing to compare
them with, and they keep working (a resumed sweep records its inputs from then on).

Fingerprints, and what they cost (never more than reading the input, which every rebuild does anyway):

- a file: its size and the sha256 of its bytes, read in 1 MiB chunks, up to ``CONTENT_LIMIT`` (1 GiB,
  ~1 s); a larger file: size, modification time and the sha256 of its first, middle and last MiB;
- a folder: its files (relative path, size, modification time; hidden names skipped, as the tasks
  skip them) listed in order and hashed; and, while it holds at most ``FOLDER_CONTENT_LIMIT`` bytes in
  at most ``FOLDER_CONTENT_FILES`` files, the sha256 of every file's bytes too.

With a content hash on both sides a changed modification time alone (a copy, a checkout) is no
change; without one it is, and the message says the file was modified, not that its bytes differ.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from overparam.errors import StoreError

MODEL_KEY = "model_sources"
INPUT_KEY = "input_files"
INPUT_OPTIONS = ("path", "test_path", "labels", "test_labels")  # task options naming files or folders
CONTENT_LIMIT = 1 << 30  # bytes of one file hashed in full
FOLDER_CONTENT_LIMIT = 256 << 20  # bytes of a folder's files hashed in full
FOLDER_CONTENT_FILES = 20_000  # files of a folder hashed in full (per-file overhead dominates beyond)
SAMPLE = 1 << 20  # bytes per sampled chunk of a file too large to hash in full
CHUNK = 1 << 20


# -- which inputs a task reads --------------------------------------------------------------------------


def task_inputs(task: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, value) of every file or folder the task config ``task`` reads: ``("task.path", "a.txt")``.

    Embedded data (``path: null``, ``embedded:…`` text domains) reads no user file and is left out.
    """
    out = []
    for key in INPUT_OPTIONS:
        value = task.get(key)
        if isinstance(value, str) and value and not value.startswith("embedded:"):
            out.append((f"task.{key}", value))
    for i, domain in enumerate(task.get("mix") or []):
        value = domain.get("path") if isinstance(domain, dict) else None
        if isinstance(value, str) and value and not value.startswith("embedded:"):
            out.append((f"task.mix[{i}].path", value))
    return out


# -- fingerprints ---------------------------------------------------------------------------------------


def _hash_file(path: Path, h: Any) -> None:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)


def _sample(path: Path, size: int) -> str:
    """sha256 of the first, middle and last ``SAMPLE`` bytes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for start in (0, size // 2 - SAMPLE // 2, size - SAMPLE):
            f.seek(max(0, start))
            h.update(f.read(SAMPLE))
    return h.hexdigest()


def folder_files(root: Path) -> list[Path]:
    """Regular files under ``root``, no hidden part in their relative path, sorted by relative path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in filenames if not f.startswith(".")]
    found = [p for p in found if p.is_file()]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


_SEEN: dict[tuple, str] = {}  # content hashes already computed in this process, by path, size and mtime


def _content(path: Path, key: tuple, files: list[Path] | None = None) -> str:
    """sha256 of a file's bytes, or of a folder's files (relative path, then bytes, each), memoized on
    ``key`` (which holds the modification times): a command that checks several runs of one corpus
    reads it once."""
    if key not in _SEEN:
        h = hashlib.sha256()
        for f in files if files is not None else [path]:
            if files is not None:
                h.update(f"{f.relative_to(path).as_posix()}\0".encode())
            _hash_file(f, h)
        _SEEN[key] = h.hexdigest()
    return _SEEN[key]


def fingerprint(path: str | Path) -> dict[str, Any]:
    """What identifies the file or folder at ``path`` now (module docstring); ``{"kind": "missing"}``
    when there is nothing there. An unreadable file raises ``OSError``."""
    path = Path(path).expanduser()
    if path.is_file():
        st = path.stat()
        out: dict[str, Any] = {"kind": "file", "bytes": st.st_size}
        if st.st_size <= CONTENT_LIMIT:
            key = (str(path.absolute()), st.st_ino, st.st_size, st.st_mtime_ns)
            return {**out, "sha256": _content(path, key)}
        return {**out, "mtime_ns": st.st_mtime_ns, "sample": _sample(path, st.st_size)}
    if path.is_dir():
        files = folder_files(path)
        stats = [f.stat() for f in files]
        listing, mtimes = hashlib.sha256(), hashlib.sha256()
        for f, st in zip(files, stats, strict=True):
            name = f.relative_to(path).as_posix()
            listing.update(f"{name}\0{st.st_size}\n".encode())
            mtimes.update(f"{name}\0{st.st_mtime_ns}\n".encode())
        total = sum(st.st_size for st in stats)
        out = {"kind": "folder", "files": len(files), "bytes": total, "listing": listing.hexdigest(),
               "mtimes": mtimes.hexdigest()}
        if total <= FOLDER_CONTENT_LIMIT and len(files) <= FOLDER_CONTENT_FILES:
            key = (str(path.absolute()), out["listing"], out["mtimes"])
            out["sha256"] = _content(path, key, files)
        return out
    return {"kind": "missing"}


def difference(recorded: dict[str, Any], now: dict[str, Any]) -> str | None:
    """How ``now`` differs from ``recorded`` in words, or None when it is the same input."""
    if now.get("kind") == "missing":
        return "it is gone"
    if recorded.get("kind") != now.get("kind"):
        return f"it was a {recorded.get('kind')}, it is a {now.get('kind')} now"
    counts = (recorded.get("files"), recorded.get("bytes"))
    if recorded.get("kind") == "folder" and counts != (now["files"], now["bytes"]):
        return (f"{recorded.get('files')} files, {recorded.get('bytes')} bytes then; {now['files']} files, "
                f"{now['bytes']} bytes now")
    if recorded.get("bytes") != now.get("bytes"):
        return f"{recorded.get('bytes')} bytes then, {now.get('bytes')} now"
    if recorded.get("kind") == "folder" and recorded.get("listing") != now.get("listing"):
        return "its files were renamed or replaced"
    if recorded.get("sha256") and now.get("sha256"):
        if recorded["sha256"] != now["sha256"]:
            return f"same size, other bytes (sha256 {str(recorded['sha256'])[:12]}… then, {now['sha256'][:12]}… now)"
        return None
    if recorded.get("sample") and recorded.get("sample") != now.get("sample"):
        return "same size, other bytes"
    stamp = "mtime_ns" if recorded.get("kind") == "file" else "mtimes"
    if recorded.get(stamp) != now.get(stamp):
        return "modified since (too large to compare its bytes: its modification time changed)"
    return None


# -- recorded with the sweep, checked on resume and rebuild ------------------------------------------------


def _model_source(family: str) -> dict[str, Any] | None:
    """{"path", "sha256"} of a user family's source file now; None for a built-in family."""
    from overparam.models import is_user_family
    from overparam.models.user import source_file

    if not is_user_family(family):
        return None
    path = source_file(family)
    if path is None or not path.is_file():
        return {"path": None, "sha256": None}
    h = hashlib.sha256()
    _hash_file(path, h)
    return {"path": str(path), "sha256": h.hexdigest()}


def _model_changed(family: str, recorded: dict[str, Any], now: dict[str, Any], when: str, fix: str) -> StoreError:
    old, new = (recorded.get("sha256") or "?")[:12], (now.get("sha256") or "?")[:12]
    return StoreError(f"{now.get('path') or recorded.get('path')}: the model file of {family!r} changed since "
                      f"{when} (sha256 {old}… then, {new}… now); {fix}")


def _input_now(value: str, where: str) -> dict[str, Any]:
    try:
        return fingerprint(value)
    except OSError as exc:
        raise StoreError(f"{where}: {Path(value).expanduser()}: cannot read it to compare with what the sweep "
                         f"read ({exc.strerror or exc})") from None


def _input_changed(where: str, value: str, recorded: dict[str, Any], why: str, when: str, fix: str) -> StoreError:
    then = recorded.get("path")
    now = str(Path(value).expanduser().absolute())
    read = f" (read from {then} then)" if then and then != now else ""
    return StoreError(f"{now}: {where} changed since {when}{read}: {why}; {fix}")


def check_and_record(store: Any, family: str, tasks: list[dict[str, Any]] | tuple = ()) -> None:
    """When a sweep starts: refuse a changed model file or input once runs were trained from the recorded
    one (a resume), else record them. A store whose runs all failed or wait holds no result of the old
    file, so fixing the file and rerunning is what the user should do: the new one is recorded.

    ``family``: the spec's model family; ``tasks``: the task configs of its runs.
    """
    trained = any(r["status"] in ("done", "diverged") for r in store.runs())  # results exist from the old files
    now = _model_source(family)
    if now is not None:
        sources = dict(store.meta(MODEL_KEY) or {})
        recorded = sources.get(family)
        if trained and recorded and recorded.get("sha256") and recorded.get("sha256") != now["sha256"]:
            raise _model_changed(family, recorded, now, f"this sweep trained runs from it in {store.dir}",
                                 "use a new --out or revert the file")
        sources[family] = now
        store.set_meta(MODEL_KEY, sources)
    inputs = dict(store.meta(INPUT_KEY) or {})
    added = False
    for where, value in {pair: None for task in tasks for pair in task_inputs(task)}:
        fp = _input_now(value, where)
        recorded = inputs.get(value)
        if isinstance(recorded, dict):
            why = difference(recorded, fp)
            if why is None:
                continue
            if trained:
                raise _input_changed(where, value, recorded, why, f"this sweep trained runs on it in {store.dir}",
                                     "use a new --out, or revert it")
        inputs[value] = {**fp, "path": str(Path(value).expanduser().absolute())}
        added = True
    if added:
        store.set_meta(INPUT_KEY, inputs)


def recorded_inputs(directory: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model_sources, input_files) recorded by the sweep in ``directory`` ({} where it recorded none)."""
    from overparam.store import open_store

    with open_store(directory) as store:
        models, inputs = store.meta(MODEL_KEY) or {}, store.meta(INPUT_KEY) or {}
    return (models if isinstance(models, dict) else {}), (inputs if isinstance(inputs, dict) else {})


def check_rebuild(directory: str | Path, config: dict[str, Any],
                  recorded: tuple[dict[str, Any], dict[str, Any]] | None = None) -> None:
    """Before a run is rebuilt from its checkpoint: its model file and its task's inputs must be the ones
    the sweep recorded (``config``: the run's resolved config; ``recorded``: :func:`recorded_inputs`,
    when the caller checks several runs).

    Reads a user model's recorded path first (``models.user.remember``), so a relative reference
    resolves from any working directory. What the sweep did not record (built-in families, embedded
    data, older stores) passes.
    """
    from overparam.models import is_user_family
    from overparam.models.user import remember

    models, inputs = recorded if recorded is not None else recorded_inputs(directory)
    family = config["model"]["family"]
    source = models.get(family) if is_user_family(family) else None
    if isinstance(source, dict):
        if source.get("path") and Path(source["path"]).is_file():
            remember(family, source["path"])
        now = _model_source(family)
        if source.get("sha256") and now is not None and now["sha256"] != source["sha256"]:
            raise _model_changed(family, source, now, f"the sweep in {directory} trained its runs",
                                 "its checkpoints hold the old model's weights: revert the file, or rerun the sweep "
                                 "with a new --out")
    for where, value in task_inputs(config["task"]):
        entry = inputs.get(value)
        if not isinstance(entry, dict):
            continue
        why = difference(entry, _input_now(value, where))
        if why is not None:
            raise _input_changed(where, value, entry, why, f"the sweep in {directory} trained its runs on it",
                                 "its checkpoints belong to the old data: revert it, or rerun the sweep with a new "
                                 "--out")
