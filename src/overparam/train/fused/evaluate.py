"""Every member's train and test metrics in one pass over each split (``evaluate.evaluate``, fused)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from overparam.train.fused.data import GroupData
from overparam.train.fused.nets import FusedNet

EVAL_ELEMENTS = 1 << 24  # activations per evaluation chunk, all members together (64 MiB in fp32)


def _chunk_rows(net: FusedNet, n: int) -> int:
    units = sum(b.size * b.width for b in net.layout.buckets)
    return max(1, min(n, 4096, EVAL_ELEMENTS // max(units, 1)))


@torch.no_grad()
def _split(net: FusedNet, x: torch.Tensor, y: torch.Tensor, member_axis: bool, kind: str,
           data: GroupData) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(M,) mean loss and (M,) error rate (None for regression) over a split."""
    members, n = net.layout.size, len(x)
    loss = torch.zeros(members, dtype=torch.float64, device=x.device)
    wrong = torch.zeros(members, dtype=torch.long, device=x.device)
    step = _chunk_rows(net, n)
    for start in range(0, n, step):
        out = net(x[start:start + step])  # (M, C, K)
        if member_axis:
            yb = y[:, start:start + step]  # (M, C, …)
        else:
            rows = y[start:start + step]
            yb = rows.expand(members, *rows.shape)  # (M, C, …)
        if kind == "cross_entropy":
            per = F.cross_entropy(out.flatten(0, 1), yb.reshape(-1), reduction="none").view(members, -1)
        else:
            per = ((out - data.targets(yb, out.dtype)) ** 2).sum(dim=2)  # (M, C)
        loss += per.sum(dim=1).double()
        if data.classification:
            wrong += (out.argmax(dim=2) != yb).sum(dim=1)
    return loss / n, (wrong.double() / n if data.classification else None)


def evaluate_group(net: FusedNet, data: GroupData, kind: str) -> list[dict[str, Any]]:
    """Per slot: train_loss/train_error on its own (noisy) labels, test_* on clean labels."""
    train_loss, train_error = _split(net, data.x_train, data.y_train, not data.shared_labels, kind, data)
    test_loss, test_error = _split(net, data.x_test, data.y_test, False, kind, data)
    clean = None
    if data.classification and data.y_train_clean is not None:
        clean = _split(net, data.x_train, data.y_train_clean, False, kind, data)[1].tolist()
    rows = []
    for i, (trl, tel) in enumerate(zip(train_loss.tolist(), test_loss.tolist())):
        row = {"train_loss": trl, "test_loss": tel,
               "train_error": train_error[i].item() if train_error is not None else None,
               "test_error": test_error[i].item() if test_error is not None else None}
        if clean is not None:
            row["train_error_clean"] = clean[i]
        rows.append(row)
    return rows
