"""Loss and error on the full train and test sets, the numbers every curve is made of."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from overparam.data.base import TaskData

CHUNK = 4096  # examples per forward pass during evaluation (bounds memory)


def loss_kind(task: TaskData, train: dict[str, Any]) -> str:
    if train["optimizer"] in ("min_norm", "ridge"):
        return "mse"
    if train["loss"] != "auto":
        return train["loss"]
    return "cross_entropy" if task.kind == "classification" else "mse"


def targets_for_mse(task: TaskData, y: torch.Tensor) -> torch.Tensor:
    """One-hot targets for classification, the targets themselves for regression."""
    if task.kind == "classification":
        return F.one_hot(y, task.n_classes).to(torch.get_default_dtype())
    return y


def batch_loss(out: torch.Tensor, y: torch.Tensor, kind: str, n_classes: int | None) -> torch.Tensor:
    """Mean over examples. MSE sums over output dimensions (squared distance to the target)."""
    if kind == "cross_entropy":
        return F.cross_entropy(out, y)
    target = F.one_hot(y, n_classes).to(out.dtype) if n_classes and y.dtype == torch.int64 else y
    return ((out - target) ** 2).sum(dim=1).mean()


@torch.no_grad()
def split_metrics(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, kind: str,
                  n_classes: int | None) -> tuple[float, float | None]:
    """(mean loss, error rate or None for regression) over a whole split, in chunks."""
    total_loss, wrong = 0.0, 0
    for start in range(0, len(x), CHUNK):
        out = model(x[start:start + CHUNK])
        yb = y[start:start + CHUNK]
        total_loss += float(batch_loss(out, yb, kind, n_classes)) * len(yb)
        if n_classes:
            wrong += int((out.argmax(dim=1) != yb).sum())
    n = len(x)
    return total_loss / n, (wrong / n if n_classes else None)


def evaluate(model: torch.nn.Module, data: dict[str, torch.Tensor], task: TaskData, kind: str) -> dict[str, Any]:
    """train_loss/train_error on the labels trained on (noisy), test_* on clean test labels."""
    was_training = model.training
    model.eval()
    k = task.n_classes if task.kind == "classification" else None
    train_loss, train_error = split_metrics(model, data["x_train"], data["y_train"], kind, k)
    test_loss, test_error = split_metrics(model, data["x_test"], data["y_test"], kind, k)
    metrics = {"train_loss": train_loss, "test_loss": test_loss, "train_error": train_error,
               "test_error": test_error}
    if k and "y_train_clean" in data:
        metrics["train_error_clean"] = split_metrics(model, data["x_train"], data["y_train_clean"], kind, k)[1]
    model.train(was_training)
    return metrics


def to_tensors(task: TaskData, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The task's arrays as tensors on ``device``: data stays resident for the whole run."""
    out = {"x_train": torch.as_tensor(task.x_train, dtype=dtype, device=device),
           "x_test": torch.as_tensor(task.x_test, dtype=dtype, device=device)}
    ydtype = torch.int64 if task.kind == "classification" else dtype
    out["y_train"] = torch.as_tensor(task.y_train, dtype=ydtype, device=device)
    out["y_test"] = torch.as_tensor(task.y_test, dtype=ydtype, device=device)
    if task.y_train_clean is not None:
        out["y_train_clean"] = torch.as_tensor(task.y_train_clean, dtype=ydtype, device=device)
    return out
