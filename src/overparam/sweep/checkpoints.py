"""Checkpoints as safetensors (nothing is unpickled), written atomically, tied to their config.

Every file carries the SHA-256 of its tensors in its metadata (``overparam.checksum``), checked
on load: a damaged checkpoint is an error naming its run, never weights silently wrong.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from overparam import checksum
from overparam.errors import StoreError
from overparam.store_damage import SkippedRunWarning as SkippedRunWarning  # raised by readers of checkpoints
from overparam.tensor_file import write_atomically as write_atomically  # used by the writers below


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
        raise StoreError(f"cannot write checkpoint {path} ({exc.strerror or exc}); stored results are "
                         f"unaffected: fix the cause (free space?) and rerun the sweep to resume") from exc


class NonFiniteWeights(StoreError):
    """A run's checkpoint holds NaN or infinite weights: nothing measured from it would mean anything."""


def first_nonfinite(state: dict[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding NaN or ±inf, or None."""
    for name in sorted(state):
        t = state[name]
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name
    return None


def load_checkpoint(path: Path, run_id: str, config: dict[str, Any], finite: bool = True) -> dict[str, torch.Tensor]:
    """Read a run's weights, refusing a file that belongs to another run or config, or that is damaged.

    ``finite``: refuse weights holding NaN or ±inf (``NonFiniteWeights``, naming the run and tensor).
    """
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
    if checksum.mismatch(state, meta):
        raise StoreError(f"{path}: the checkpoint of run {run_id} is damaged (its tensors no longer match the "
                         f"checksum written with them); `overparam runs {path.parent.parent} --check` lists "
                         f"every damaged file")
    bad = first_nonfinite(state) if finite else None
    if bad is not None:
        raise NonFiniteWeights(f"run {run_id} has non-finite weights (NaN or inf in {bad!r}, {path}); there is "
                               f"nothing to measure in it")
    return state


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], run_id: str) -> None:
    """``model.load_state_dict(state)``, or a StoreError saying why the checkpoint does not fit.

    The model is rebuilt from the run's config and its task (the vocabulary of a corpus, the classes of
    a table); a store from before input fingerprints (``overparam.provenance``) cannot say that an
    input changed since, so the shapes that no longer match are the first sign of it.
    """
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        detail = (" ".join(str(exc).split("\n\t")[1:2]).strip() or " ".join(str(exc).split()))[:200]
        raise StoreError(f"run {run_id}: its checkpoint does not fit the model rebuilt from its config ({detail}); "
                         f"did the task's data or the model's file change since the sweep? Revert it, or rerun the "
                         f"sweep with a new --out") from None
