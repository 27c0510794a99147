"""Safetensors written so that a kill or a full disk never leaves half a file, with their checksum.

Shared by checkpoints (``sweep/checkpoints.py``) and training snapshots (``train/snapshot.py``):
it sits below both, so that training never imports the sweep layer.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from overparam import checksum


def write_atomically(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write safetensors to a temporary file, fsync, then rename: a kill never leaves half a file.

    The temporary name carries the process id, so two writers of one path (a retried task and
    the attempt it replaced) never write into each other's file. Raises ``OSError``.
    """
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    tensors = {k: v.contiguous() for k, v in tensors.items()}
    metadata = {**metadata, checksum.KEY: checksum.tensor_digest(tensors)}
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except SafetensorError as exc:  # its I/O errors are not OSErrors: give a full disk its errno back
            raise _os_error(exc, tmp) from exc
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


def _os_error(exc: Exception, path: Path) -> Exception:
    """safetensors says "I/O error: No space left on device (os error 28)": that errno as an ``OSError``."""
    match = re.search(r"os error (\d+)", str(exc))
    if not match:
        return exc
    code = int(match.group(1))
    return OSError(code, os.strerror(code), str(path))
