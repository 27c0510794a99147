"""Every member's train and test metrics in one pass over each split (``evaluate.evaluate``, fused)."""

from __future__ import annotations

from typing import Any

import torch

from overparam.train.fused.data import GroupData, example_losses
from overparam.train.fused.nets import FusedNet

EVAL_ELEMENTS = 1 << 24  # activations per evaluation chunk, all members together (64 MiB in fp32)


def _chunk_rows(net: FusedNet, n: int) -> int:
    units = sum(b.size * b.width for b in net.layout.buckets)
    return max(1, min(n, 4096, EVAL_ELEMENTS // max(units, 1)))


def wrong_counts(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(M,) examples whose ``argmax`` over classes (dim 1, first maximum on ties) is not the label.

    ``argmax`` itself is slow on CPU (≈ 40 ns per element measured); this is the same
    decision from ``amax`` and comparisons: label y wins iff out[y] is the maximum and no
    earlier class reaches it.
    """
    top = out.amax(dim=1, keepdim=True)  # (M, 1, C)
    is_max = out == top  # (M, K, C)
    classes = torch.arange(out.shape[1], device=out.device)[None, :, None]  # (1, K, 1)
    earlier = (is_max & (classes < y[:, None, :])).any(dim=1)  # (M, C)
    right = is_max.gather(1, y[:, None, :]).squeeze(1) & ~earlier  # (M, C)
    return (~right).sum(dim=1)


@torch.no_grad()
def _split(net: FusedNet, x: torch.Tensor, y: torch.Tensor, member_axis: bool, kind: str,
           data: GroupData) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(M,) mean loss and (M,) error rate (None for regression) over a split."""
    members, n = net.layout.size, len(x)
    loss = torch.zeros(members, dtype=torch.float64, device=x.device)
    wrong = torch.zeros(members, dtype=torch.long, device=x.device)
    step = _chunk_rows(net, n)
    for start in range(0, n, step):
        out = net(x[start:start + step])  # (M, K, C)
        if member_axis:
            yb = y[:, start:start + step]  # (M, C, …)
        else:
            rows = y[start:start + step]
            yb = rows.expand(members, *rows.shape)  # (M, C, …)
        loss += example_losses(out, yb, kind, data).sum(dim=1).double()
        if data.classification:
            wrong += wrong_counts(out, yb)
    return loss / n, (wrong.double() / n if data.classification else None)


def evaluate_group(net: FusedNet, data: GroupData, kind: str) -> list[dict[str, Any]]:
    """Per slot: train_loss/train_error on its own (noisy) labels, test_* on clean labels."""
    train_loss, train_error = _split(net, data.x_train, data.y_train, not data.shared_labels, kind, data)
    test_loss, test_error = _split(net, data.x_test, data.y_test, False, kind, data)
    clean = None
    if data.classification and data.y_train_clean is not None:
        clean = _split(net, data.x_train, data.y_train_clean, False, kind, data)[1].tolist()
    rows = []
    for i, (trl, tel) in enumerate(zip(train_loss.tolist(), test_loss.tolist(), strict=True)):
        row = {"train_loss": trl, "test_loss": tel,
               "train_error": train_error[i].item() if train_error is not None else None,
               "test_error": test_error[i].item() if test_error is not None else None}
        if clean is not None:
            row["train_error_clean"] = clean[i]
        rows.append(row)
    return rows
