"""Implicit regularization diagnostics: norms, the min-norm solution, and the loss Hessian.

Everything here works on a built model and a ``TaskData`` (the full training set), so it applies
equally to a model rebuilt from a sweep directory (``diagnose_run``) and to one in a notebook.

- **Distance to the min-norm solution** (models linear in their parameters, f(x) = Φ(x)·w):
  gradient descent on the squared loss from w₀ stays in w₀ + row-space(Φ), so it converges to
  the interpolant closest to its init, w* = w₀ + Φ⁺(y − Φw₀); from zero init that is Φ⁺y, the
  minimum-norm solution (Gunasekar et al. 2018, "Characterizing implicit bias in terms of
  optimization geometry"; Hastie et al. 2019, §2). ``distance_to_min_norm`` measures ‖w − w*‖.
- **Hessian spectrum** by Hessian-vector products over the whole training set, in chunks:
  Hv = ∂/∂θ (∇L(θ)·v) (Pearlmutter 1994), never forming H. The top eigenvalues come from
  Lanczos (``scipy.sparse.linalg.eigsh`` on a ``LinearOperator``) or power iteration; the trace
  from Hutchinson's estimator tr H = E[zᵀHz], z Rademacher (Hutchinson 1989; used for networks
  in Yao et al. 2020, "PyHessian").
- **Sharpness vs 2/lr**: for full-batch GD with step η on a quadratic, the iterates diverge along
  any direction with curvature > 2/η. Cohen et al. 2021 ("Gradient descent on neural networks
  typically occurs at the edge of stability") observe that the top eigenvalue rises during
  training ("progressive sharpening") until it reaches 2/η and then hovers there.

The loss is the one the trainer minimizes (``overparam.train.evaluate.batch_loss``): for MSE,
L(θ) = (1/n) Σᵢ ‖f(xᵢ) − yᵢ‖² (summed over outputs, mean over examples), so a linear
least-squares model has Hessian H = (2/n) ΦᵀΦ (per output). Dropout is switched off (eval mode):
the Hessian is that of the deterministic network.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from overparam.data.base import TaskData
from overparam.errors import OverparamError

CHUNK = 2048  # training examples per forward/backward pass in a Hessian-vector product (bounds memory)


# ---------------------------------------------------------------- norms and the min-norm solution


def trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def flat_params(model: nn.Module) -> torch.Tensor:
    """All trainable parameters as one vector, in ``model.parameters()`` order."""
    return torch.cat([p.detach().reshape(-1) for p in trainable(model)])


def param_norm(model: nn.Module) -> float:
    """‖θ‖₂ over trainable parameters (fixed random features are not parameters)."""
    return float(torch.linalg.norm(flat_params(model).double()))


def distance_from_init(model: nn.Module, init: nn.Module) -> float:
    """‖θ − θ₀‖₂: how far training moved the weights (small for wide nets in the lazy regime,
    Chizat, Oyallon & Bach 2019; Jacot et al. 2018)."""
    return float(torch.linalg.norm(flat_params(model).double() - flat_params(init).double()))


def _check_linear(model: nn.Module) -> None:
    if not (hasattr(model, "features") and isinstance(getattr(model, "readout", None), nn.Linear)):
        raise OverparamError("the min-norm solution needs a model linear in its parameters "
                             "(features(x) then a linear readout: linear, rff)")


def _design(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    phi = model.features(x)  # (n, N)
    if model.readout.bias is not None:
        phi = torch.cat([phi, torch.ones(len(phi), 1, dtype=phi.dtype)], dim=1)
    return phi


def _readout(model: nn.Module) -> torch.Tensor:
    w = model.readout.weight.detach().T  # (N, out)
    if model.readout.bias is not None:
        w = torch.cat([w, model.readout.bias.detach()[None, :]], dim=0)
    return w.double()


def min_norm_solution(model: nn.Module, task: TaskData, init: nn.Module | None = None) -> torch.Tensor:
    """w* = w₀ + Φ⁺(y − Φw₀), shape (N[+1 bias], outputs), float64: the limit of GD on the squared
    loss from w₀ (``init``'s readout; zero when ``init`` is None, giving Φ⁺y).

    Classification targets are one-hot, as the closed-form solver uses them.
    """
    _check_linear(model)
    if task.x_train is None:
        raise OverparamError("the min-norm solution needs a task with inputs (not a language model)")
    with torch.no_grad():
        x = torch.as_tensor(task.x_train, dtype=model.readout.weight.dtype)
        phi = _design(model, x).double()  # (n, N[+1])
        if task.kind == "classification":
            y = torch.nn.functional.one_hot(torch.as_tensor(task.y_train), task.n_classes).double()
        else:
            y = torch.as_tensor(task.y_train, dtype=torch.float64)
        w0 = _readout(init) if init is not None else torch.zeros(phi.shape[1], y.shape[1], dtype=torch.float64)
        return w0 + torch.linalg.pinv(phi) @ (y - phi @ w0)


def distance_to_min_norm(model: nn.Module, task: TaskData, init: nn.Module | None = None) -> float:
    """‖w − w*‖₂ (Frobenius over outputs) between the readout and ``min_norm_solution``."""
    return float(torch.linalg.norm(_readout(model) - min_norm_solution(model, task, init)))


# ---------------------------------------------------------------- Hessian-vector products


def _loss_setup(task: TaskData, loss: str) -> tuple[str, int | None]:
    if task.x_train is None:
        raise OverparamError("Hessian diagnostics need a task with inputs and targets (not a language model)")
    if loss == "auto":
        loss = "cross_entropy" if task.kind == "classification" else "mse"
    if loss not in ("mse", "cross_entropy"):
        raise OverparamError(f"loss: expected auto, mse or cross_entropy, got {loss!r}")
    return loss, (task.n_classes if task.kind == "classification" else None)


class HessianOperator:
    """v ↦ H v for the full-batch training loss, accumulated over chunks of ``chunk`` examples.

    L = Σ_c (n_c / n) L_c, so H v = Σ_c (n_c / n) H_c v: exact, whatever the chunk size.
    ``n_products`` counts the products computed (the cost unit of every method here).
    """

    def __init__(self, model: nn.Module, task: TaskData, loss: str = "auto", chunk: int = CHUNK,
                 device: torch.device | str | None = None):
        from overparam.train.evaluate import to_tensors

        self.kind, self.n_classes = _loss_setup(task, loss)
        self.params = trainable(model)
        if not self.params:
            raise OverparamError("the model has no trainable parameters")
        self.model = model
        self.dtype = self.params[0].dtype
        self.device = torch.device(device) if device is not None else self.params[0].device
        data = to_tensors(task, self.device, self.dtype)
        self.x, self.y = data["x_train"], data["y_train"]
        self.n = len(self.x)
        self.chunk = max(1, int(chunk))
        self.size = sum(p.numel() for p in self.params)
        self.n_products = 0

    def _chunks(self):
        for start in range(0, self.n, self.chunk):
            yield self.x[start:start + self.chunk], self.y[start:start + self.chunk]

    def loss(self) -> float:
        from overparam.train.evaluate import batch_loss

        was = self.model.training
        self.model.eval()
        with torch.no_grad():
            total = sum(float(batch_loss(self.model(xc), yc, self.kind, self.n_classes)) * len(xc)
                        for xc, yc in self._chunks())
        self.model.train(was)
        return total / self.n

    def gradient(self) -> torch.Tensor:
        """∇L(θ), flattened."""
        from overparam.train.evaluate import batch_loss

        was = self.model.training
        self.model.eval()
        out = torch.zeros(self.size, dtype=self.dtype, device=self.device)
        for xc, yc in self._chunks():
            loss = batch_loss(self.model(xc), yc, self.kind, self.n_classes) * (len(xc) / self.n)
            out += torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, self.params)])
        self.model.train(was)
        return out

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """H v (v flat, in parameter order) by double backward, chunk by chunk."""
        from overparam.train.evaluate import batch_loss

        was = self.model.training
        self.model.eval()
        v = v.to(device=self.device, dtype=self.dtype)
        pieces = list(torch.split(v, [p.numel() for p in self.params]))
        vs = [piece.view_as(p) for piece, p in zip(pieces, self.params)]
        out = torch.zeros(self.size, dtype=self.dtype, device=self.device)
        for xc, yc in self._chunks():
            loss = batch_loss(self.model(xc), yc, self.kind, self.n_classes) * (len(xc) / self.n)
            grads = torch.autograd.grad(loss, self.params, create_graph=True)
            dot = sum((g * u).sum() for g, u in zip(grads, vs))
            hv = torch.autograd.grad(dot, self.params, allow_unused=True)
            out += torch.cat([(h if h is not None else torch.zeros_like(p)).reshape(-1)
                              for h, p in zip(hv, self.params)])
        self.model.train(was)
        self.n_products += 1
        return out.detach()

    def numpy_matvec(self, v: np.ndarray) -> np.ndarray:
        return self.matvec(torch.as_tensor(np.asarray(v).reshape(-1))).double().cpu().numpy()

    def dense(self) -> np.ndarray:
        """The full Hessian from ``size`` products (small models only): H[:, j] = H e_j."""
        eye = np.eye(self.size)
        h = np.stack([self.numpy_matvec(eye[j]) for j in range(self.size)], axis=1)
        return 0.5 * (h + h.T)


def hessian_top_eigenvalues(model: nn.Module, task: TaskData, k: int = 1, method: str = "lanczos",
                            which: str = "LA", loss: str = "auto", chunk: int = CHUNK, tol: float | None = None,
                            max_iter: int = 1000, seed: int = 0, return_vectors: bool = False):
    """The k top eigenvalues of the full-batch training-loss Hessian, in descending order.

    ``method="lanczos"``: implicitly restarted Lanczos (ARPACK via ``scipy.sparse.linalg.eigsh``)
    on a ``LinearOperator`` whose matvec is ``HessianOperator.matvec``; ``which="LA"`` gives the
    largest algebraic eigenvalues (the sharpest directions; a network's Hessian is indefinite),
    "LM" the largest in magnitude. ``method="power"``: power iteration on H with deflation
    against the eigenvectors already found, x ← Hx/‖Hx‖, λ = xᵀHx (largest magnitude; stops when
    λ changes by < tol·|λ|). ``which="SA"`` (Lanczos) gives the most negative ones instead, still
    sorted descending. ``tol`` defaults to 1e-10 for float64 models and 1e-5 for float32 (whose
    products carry ~1e-7 relative rounding). A model with ≤ k + 1 parameters is solved densely.
    Returns the eigenvalues (np.ndarray), and their unit eigenvectors (columns) if ``return_vectors``.
    """
    from scipy.sparse.linalg import LinearOperator, eigsh

    if not (isinstance(k, int) and k >= 1):
        raise OverparamError(f"k: expected an integer >= 1, got {k!r}")
    if which not in ("LA", "LM", "SA"):
        raise OverparamError(f"which: expected LA, LM or SA, got {which!r}")
    op = HessianOperator(model, task, loss, chunk)
    if tol is None:
        tol = 1e-10 if op.dtype == torch.float64 else 1e-5
    rng = np.random.default_rng(seed)
    if op.size <= k + 1:
        vals, vecs = np.linalg.eigh(op.dense())
        order = np.argsort(-np.abs(vals) if which == "LM" else (vals if which == "SA" else -vals))[:k]
        order = order[np.argsort(-vals[order])] if which != "LM" else order
        vals, vecs = vals[order], vecs[:, order]
    elif method == "lanczos":
        lin = LinearOperator((op.size, op.size), matvec=op.numpy_matvec, dtype=np.float64)
        vals, vecs = eigsh(lin, k=k, which=which, tol=tol, maxiter=max_iter,
                           v0=rng.standard_normal(op.size))
        order = np.argsort(-np.abs(vals) if which == "LM" else -vals)
        vals, vecs = vals[order], vecs[:, order]
    elif method == "power":
        vals, vecs = _power(op.numpy_matvec, op.size, k, tol, max_iter, rng)
    else:
        raise OverparamError(f"method: expected lanczos or power, got {method!r}")
    return (vals, vecs) if return_vectors else vals


def _power(matvec: Callable[[np.ndarray], np.ndarray], size: int, k: int, tol: float, max_iter: int,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    found_vals: list[float] = []
    found_vecs: list[np.ndarray] = []

    def deflated(x: np.ndarray) -> np.ndarray:
        hx = matvec(x)
        for lam, u in zip(found_vals, found_vecs):
            hx = hx - lam * u * (u @ x)
        return hx

    for _ in range(k):
        x = rng.standard_normal(size)
        x /= np.linalg.norm(x)
        lam = 0.0
        for _ in range(max_iter):
            hx = deflated(x)
            new = float(x @ hx)
            norm = np.linalg.norm(hx)
            if norm == 0:
                break
            x = hx / norm
            if abs(new - lam) <= tol * max(abs(new), 1e-300):
                lam = new
                break
            lam = new
        found_vals.append(lam)
        found_vecs.append(x)
    return np.array(found_vals), np.stack(found_vecs, axis=1)


def hessian_trace(model: nn.Module, task: TaskData, samples: int = 64, loss: str = "auto",
                  chunk: int = CHUNK, seed: int = 0) -> tuple[float, float]:
    """Hutchinson's estimate of tr H and its standard error: tr H ≈ (1/m) Σⱼ zⱼᵀ H zⱼ with zⱼ
    i.i.d. Rademacher (E zzᵀ = I). The standard error is std(zⱼᵀHzⱼ)/√m; for H = (2/n)XᵀX its
    variance is 2 Σ_{i≠j} H_ij² per sample (Avron & Toledo 2011)."""
    if samples < 2:
        raise OverparamError(f"samples: expected >= 2 (for a standard error), got {samples}")
    op = HessianOperator(model, task, loss, chunk)
    gen = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(samples):
        z = torch.randint(0, 2, (op.size,), generator=gen).to(op.dtype) * 2 - 1
        values.append(float(z.to(op.device) @ op.matvec(z)))
    arr = np.array(values)
    return float(arr.mean()), float(arr.std(ddof=1) / math.sqrt(samples))


# ---------------------------------------------------------------- sharpness over training


def stability_threshold(train: dict[str, Any]) -> float | None:
    """The largest curvature GD can follow at step η: 2/η, or (2 + 2β)/η with heavy-ball momentum β
    (Cohen et al. 2021, §2 and App. for momentum). None for adaptive optimizers (their threshold
    applies to the preconditioned Hessian; Cohen et al. 2022, "Adaptive gradient methods at the
    edge of stability")."""
    if train["optimizer"] not in ("gd", "sgd"):
        return None
    return (2.0 + 2.0 * train["momentum"]) / train["lr"]


def sharpness_over_training(model: nn.Module, task: TaskData, train: dict[str, Any], every: int = 10,
                            seed: int = 0, method: str = "power", power_iters: int = 100,
                            tol: float | None = 1e-6) -> dict[str, Any]:
    """Train ``model`` in place with the recipe ``train`` (``train.*`` options; missing keys take
    their defaults) and measure the top Hessian eigenvalue of the full-batch training loss every
    ``every`` steps and at the end (power iteration by default: ``power_iters`` products at most).

    Batches, learning-rate schedule and loss are the trainer's (``overparam.train.loop``), so the
    result describes the same trajectory a sweep trains. Returns ``{"step", "sharpness",
    "train_loss", "lr", "threshold", "late_ratio"}`` with ``threshold`` = ``stability_threshold(train)``
    and ``late_ratio`` the median sharpness over the second half of the measurements divided by
    it: ≈ 1 at the edge of stability, well below 1 when training never got there. Measured on
    an ``mlp`` of width 64 on a ReLU teacher (dim 20, n = 200), full-batch GD: at lr = 0.16
    (2/lr = 12.5) sharpness rose from 10.6 to 13.6, then held at 12.48–12.49 for 1,700 steps
    while the loss went down non-monotonically (late_ratio 0.999); at lr = 0.05 (2/lr = 40) it
    sharpened progressively from 10.6 to 15.4 and stayed far below (0.38).
    """
    from overparam.options import resolve_section
    from overparam.train import recipe
    from overparam.train.batches import batch_indices
    from overparam.train.evaluate import batch_loss
    from overparam.train.optim import build_optimizer, lr_at

    train = resolve_section("train", recipe.OPTIONS, dict(train))
    if train["optimizer"] in recipe.CLOSED_FORM:
        raise OverparamError("sharpness over training needs a gradient optimizer (gd, sgd, adam, adamw)")
    kind, n_classes = _loss_setup(task, train["loss"])
    op = HessianOperator(model, task, kind)
    opt = build_optimizer(op.params, train)
    batch = task.n_train if train["optimizer"] == "gd" else train["batch_size"]
    steps, out = train["steps"], {"step": [], "sharpness": [], "train_loss": []}

    def measure(step: int) -> None:
        top = hessian_top_eigenvalues(model, task, 1, method=method, loss=kind, tol=tol,
                                      max_iter=power_iters, seed=seed + step)
        out["step"].append(step)
        out["sharpness"].append(float(top[0]))
        out["train_loss"].append(op.loss())

    measure(0)
    model.train()
    torch.manual_seed(seed)
    for step, idx in enumerate(batch_indices(task.n_train, batch, steps, seed), start=1):
        for group in opt.param_groups:
            group["lr"] = lr_at(step - 1, train)
        loss = batch_loss(model(op.x[idx]), op.y[idx], kind, n_classes)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if not math.isfinite(float(loss.detach())):
            break
        if step % every == 0 or step == steps:
            measure(step)
    threshold = stability_threshold(train)
    out.update({"lr": train["lr"], "threshold": threshold, "late_ratio": None})
    if threshold is not None:
        late = np.array(out["sharpness"][len(out["sharpness"]) // 2:])
        out["late_ratio"] = float(np.median(late) / threshold)
    return out


# ---------------------------------------------------------------- one stored run


def diagnose_run(directory: str, run_id: str, k: int = 1, trace_samples: int = 0) -> dict[str, Any]:
    """Implicit-regularization numbers of one finished run, rebuilt from its config and checkpoint:
    ‖θ‖, ‖θ − θ₀‖, the distance to the min-norm interpolant nearest θ₀ (linear-in-parameters
    models), the top-``k`` Hessian eigenvalues of the training loss and, for gd/sgd, 2/lr.
    ``trace_samples`` > 1 adds Hutchinson's trace estimate (and its standard error)."""
    from overparam.analysis.landscape import load_run_models
    from overparam.options import resolve_section
    from overparam.train import recipe

    init, final, task, config = load_run_models(directory, run_id)
    train = resolve_section("train", recipe.OPTIONS, config["train"])
    out: dict[str, Any] = {"run_id": run_id, "param_norm": param_norm(final),
                           "distance_from_init": distance_from_init(final, init),
                           "distance_to_min_norm": None, "min_norm_norm": None}
    if hasattr(final, "features") and isinstance(getattr(final, "readout", None), nn.Linear):
        w_star = min_norm_solution(final, task, init)
        out["distance_to_min_norm"] = float(torch.linalg.norm(_readout(final) - w_star))
        out["min_norm_norm"] = float(torch.linalg.norm(w_star))
    kind = "mse" if train["optimizer"] in recipe.CLOSED_FORM else train["loss"]
    out["hessian_top"] = [float(v) for v in hessian_top_eigenvalues(final, task, k, loss=kind)]
    out["stability_threshold"] = stability_threshold(train)
    if trace_samples > 1:
        out["hessian_trace"], out["hessian_trace_se"] = hessian_trace(final, task, trace_samples, loss=kind)
    return out
