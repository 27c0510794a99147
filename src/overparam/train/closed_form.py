"""Closed-form least squares for models linear in their parameters: min-norm and ridge.

Min-norm interpolation w = Φ⁺y (the limit of gradient descent from zero, and of ridge as
λ → 0) is where the model-wise double-descent peak is sharpest (Belkin et al. 2019; Hastie
et al. 2019). It is solved in float64 by default: in float32, or with a large ``rcond``, the
tiny singular values near N = n are cut off, which regularizes silently and hides the peak.
Each run records the condition number and the smallest singular value of Φ so this is visible.
"""

from __future__ import annotations

from typing import Any

import torch

from overparam.data.base import TaskData
from overparam.train.evaluate import evaluate, to_tensors
from overparam.train.result import TrainResult


def _design(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    phi = model.features(x)  # (n, N)
    if model.readout.bias is not None:
        phi = torch.cat([phi, torch.ones(len(phi), 1, dtype=phi.dtype, device=phi.device)], dim=1)
    return phi


def solve(phi: torch.Tensor, y: torch.Tensor, train: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
    """Weights (N, out) minimizing (1/n)‖Φw − y‖² + λ‖w‖² (λ = 0: the min-norm solution).

    Ridge via the SVD Φ = U S Vᵀ: w = V diag(s / (s² + nλ)) Uᵀ y. Singular values below
    rcond·s_max are treated as zero (rcond null: eps·max(n, N), numpy's convention).
    """
    n, p = phi.shape
    lam = train["ridge"] if train["optimizer"] == "ridge" else 0.0
    eps = torch.finfo(phi.dtype).eps
    rcond = train["rcond"] if train["rcond"] is not None else eps * max(n, p)
    s_all = torch.linalg.svdvals(phi) if train["solver"] != "svd" else None
    if train["solver"] == "svd" or lam > 0:
        u, s, vt = torch.linalg.svd(phi, full_matrices=False)
        keep = s > rcond * s[0]
        inv = torch.where(keep, s / (s**2 + n * lam), torch.zeros_like(s))
        w = vt.T @ (inv[:, None] * (u.T @ y))
        s_all = s
    elif train["solver"] == "lstsq":
        driver = "gelsd" if phi.device.type == "cpu" else None
        w = torch.linalg.lstsq(phi, y, rcond=rcond, driver=driver).solution
    else:
        w = torch.linalg.pinv(phi, rtol=rcond) @ y
    s_max, s_min = float(s_all[0]), float(s_all[-1])
    info = {"singular_max": s_max, "singular_min": s_min,
            "condition_number": s_max / s_min if s_min > 0 else float("inf"),
            "rank": int((s_all > rcond * s_all[0]).sum()), "rcond_used": float(rcond)}
    return w, info


def fit_closed_form(model: torch.nn.Module, task: TaskData, train: dict[str, Any], device: torch.device,
                    dtype: torch.dtype) -> TrainResult:
    data = to_tensors(task, device, dtype)
    model = model.to(device=device, dtype=dtype)
    with torch.no_grad():
        phi = _design(model, data["x_train"])
        if task.kind == "classification":
            y = torch.nn.functional.one_hot(data["y_train"], task.n_classes).to(dtype)
        else:
            y = data["y_train"]
        w, info = solve(phi, y, train)
        n_feat = model.readout.weight.shape[1]
        model.readout.weight.copy_(w[:n_feat].T)
        if model.readout.bias is not None:
            model.readout.bias.copy_(w[n_feat])
    metrics = evaluate(model, data, task, "mse")
    metrics.update(info)
    metrics["param_norm"] = float(torch.linalg.norm(w))
    metrics["unstable"] = False
    curve = [(0, {k: v for k, v in metrics.items() if k in ("train_loss", "test_loss", "train_error",
                                                                   "test_error")})]
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return TrainResult("done", metrics, curve, state)
