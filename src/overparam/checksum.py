"""Checksums of saved tensors: a flipped bit in a checkpoint or snapshot is caught on load.

safetensors checks a file's layout (header, offsets), not its numbers: a bit flipped inside the
tensor data loads silently, and a compression or resume then computes from damaged weights with
exit code 0. Every file ``tensor_file.write_atomically`` writes carries, in its metadata,
the SHA-256 of its tensors (names, dtypes, shapes and raw bytes, in name order); loaders compare.
Files written before checksums existed carry none and load as before.
"""

from __future__ import annotations

import hashlib

import torch

KEY = "sha256"  # the metadata key


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor in name order: its name, dtype, shape, then its bytes (no copy on CPU)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def mismatch(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bool:
    """True when the metadata records a checksum and the tensors no longer match it."""
    recorded = metadata.get(KEY)
    return recorded is not None and recorded != tensor_digest(tensors)
