"""``overparam runs DIR --check``: everything damaged in a sweep directory, listed, nothing changed.

What it reads: SQLite's own page check (``PRAGMA quick_check``), every run's row, curve points
and meta values (``store_damage``), every finished run's checkpoint against the checksum written
with it, the training snapshots in ``checkpoints/partial`` and the saved analyses in
``analyses/*.json``. A damaged snapshot is listed too, though a resume discards it on its own.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from overparam.errors import StoreError
from overparam.store import DB_NAME, Store
from overparam.store_damage import Damage, StoreDamageWarning


def check_sweep(directory: str | Path) -> dict[str, Any]:
    """{"store", "ok", "runs", "checkpoints", "snapshots", "analyses", "damage": [{store, run, what, problem}]}."""
    directory = Path(directory)
    path = directory / DB_NAME
    counts = {"runs": 0, "checkpoints": 0, "snapshots": 0, "analyses": 0}
    try:
        store = Store.open(directory)
    except StoreError as exc:
        if not path.is_file():
            raise
        problem = str(exc).removeprefix(f"{path}: ").split("; `overparam runs")[0]  # we are that command
        damage = [Damage(str(path), None, "file", problem)]
        return _doc(path, counts, damage)
    with store:
        damage = store.damage(full=True)
        if any(d.what == "file" for d in damage):
            return _doc(path, counts, damage)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StoreDamageWarning)  # listed above already
            runs = store.runs()
        counts["runs"] = len(runs) + len({d.run_id for d in damage if d.run_id and d.what != "curve"})
        damage += _checkpoints(store, runs, counts)
    damage += _snapshots(directory, counts) + _analyses(directory, counts)
    return _doc(path, counts, damage)


def _doc(path: Path, counts: dict[str, int], damage: list[Damage]) -> dict[str, Any]:
    return {"store": str(path), "ok": not damage, **counts, "damage": [d.as_dict() for d in damage]}


def _checkpoints(store: Store, runs: list[dict[str, Any]], counts: dict[str, int]) -> list[Damage]:
    from overparam.sweep.checkpoints import load_checkpoint

    found = []
    for run in runs:
        if run["status"] not in ("done", "diverged") or not run["config"]["train"].get("checkpoint", True):
            continue
        ckpt = store.checkpoint_path(run["id"])
        if not ckpt.is_file():
            found.append(Damage(str(store.path), run["id"], "checkpoint", f"missing ({ckpt})"))
            continue
        counts["checkpoints"] += 1
        try:
            load_checkpoint(ckpt, run["id"], run["config"], finite=False)  # NaN weights are not damage
        except StoreError as exc:
            found.append(Damage(str(store.path), run["id"], "checkpoint", str(exc).removeprefix(f"{ckpt}: ")))
    return found


def _snapshots(directory: Path, counts: dict[str, int]) -> list[Damage]:
    from safetensors import SafetensorError, safe_open

    from overparam import checksum

    found = []
    folder = directory / "checkpoints" / "partial"
    for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
        counts["snapshots"] += 1
        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
                tensors = {k: fh.get_tensor(k) for k in fh.keys()}
            problem = "damaged (checksum mismatch)" if checksum.mismatch(tensors, meta) else None
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            problem = f"unreadable ({' '.join(str(exc).split())[:160]})"
        if problem:
            found.append(Damage(str(path), None, f"snapshot {path.name}",
                                f"{problem}; its run restarts from step 0 when the sweep resumes"))
    return found


def _analyses(directory: Path, counts: dict[str, int]) -> list[Damage]:
    found = []
    folder = directory / "analyses"
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        counts["analyses"] += 1
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            problem = None if isinstance(doc, dict) else f"expected a JSON object, found {type(doc).__name__}"
        except (OSError, ValueError) as exc:
            problem = f"unreadable ({' '.join(str(exc).split())[:160]})"
        if problem:
            found.append(Damage(str(path), None, f"analysis {path.name}",
                                f"{problem}; the report skips it (rerun the command that wrote it)"))
    return found


def check_lines(doc: dict[str, Any]) -> list[str]:
    """The human listing: a summary line, then one line per damaged part."""
    head = (f"{doc['store']}: {doc['runs']} runs, {doc['checkpoints']} checkpoints, {doc['snapshots']} snapshots, "
            f"{doc['analyses']} saved analyses checked: " + ("no damage found" if doc["ok"] else
                                                             f"{len(doc['damage'])} damaged"))
    lines = [head]
    for d in doc["damage"]:
        who = f"run {d['run']} {d['what']}" if d["run"] else d["what"]
        lines.append(f"  DAMAGED {who}: {d['problem']}")
    return lines
