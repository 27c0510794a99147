"""Checkpoints as safetensors (nothing is unpickled), written atomically, tied to their config."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from overparam.errors import StoreError


def write_atomically(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write safetensors to a temporary file, fsync, then rename: a kill never leaves half a file.

    The temporary name carries the process id, so two writers of one path (a retried task and
    the attempt it replaced) never write into each other's file. Raises ``OSError``.
    """
    from safetensors.torch import save_file

    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable (best effort: not every filesystem allows it)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def unshared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state with every tensor that shares memory with an earlier one copied: safetensors refuses
    shared tensors, and a model with tied weights (an unembedding tied to the token embedding) lists
    the one tensor under two names. Loading writes the same values into the tied parameter twice."""
    seen: set[tuple[int, int]] = set()
    out = {}
    for key, value in state.items():
        where = (value.untyped_storage().data_ptr(), value.device.index or 0) if value.numel() else None
        out[key] = value.clone() if where in seen else value
        if where is not None:
            seen.add(where)
    return out


def save_checkpoint(path: Path, state: dict[str, torch.Tensor], run_id: str, config: dict[str, Any]) -> None:
    """A run's final weights, tied to its id and config (see ``load_checkpoint``)."""
    metadata = {"run_id": run_id, "config": json.dumps(config, sort_keys=True), "format": "overparam-1"}
    try:
        write_atomically(path, unshared(state), metadata)
    except OSError as exc:
        raise StoreError(f"cannot write checkpoint {path} ({exc.strerror or exc}); "
                         f"stored results are unaffected") from exc


def load_checkpoint(path: Path, run_id: str, config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Read a run's weights, refusing a file that belongs to another run or config."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise StoreError(f"{path}: no checkpoint for run {run_id} (was train.checkpoint false?)")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            state = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise StoreError(f"{path}: unreadable checkpoint ({exc})") from exc
    if meta.get("run_id") != run_id or meta.get("config") != json.dumps(config, sort_keys=True):
        raise StoreError(f"{path}: the checkpoint does not match run {run_id}'s config")
    return state
