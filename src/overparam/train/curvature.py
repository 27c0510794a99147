"""Curvature and norms of a trained model: what the trainer records per run (``train.diagnostics``)
and what ``overparam.analysis.implicit`` reads for a stored run.

Everything here works on a built model and a ``TaskData`` (the full training set); it lives under
``train`` so the trainer can measure during training without importing the analysis layer.

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
from overparam.train.evaluate import batch_loss, to_tensors

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


def readout_weights(model: nn.Module) -> torch.Tensor:
    """The readout as one (N[+1 bias], outputs) float64 matrix, the layout of ``min_norm_solution``."""
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
        w0 = readout_weights(init) if init is not None else torch.zeros(phi.shape[1], y.shape[1], dtype=torch.float64)
        return w0 + torch.linalg.pinv(phi) @ (y - phi @ w0)


def distance_to_min_norm(model: nn.Module, task: TaskData, init: nn.Module | None = None) -> float:
    """‖w − w*‖₂ (Frobenius over outputs) between the readout and ``min_norm_solution``."""
    return float(torch.linalg.norm(readout_weights(model) - min_norm_solution(model, task, init)))


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
        was = self.model.training
        self.model.eval()
        with torch.no_grad():
            total = sum(float(batch_loss(self.model(xc), yc, self.kind, self.n_classes)) * len(xc)
                        for xc, yc in self._chunks())
        self.model.train(was)
        return total / self.n

    def gradient(self) -> torch.Tensor:
        """∇L(θ), flattened."""
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
    """The k top eigenvalues of the full-batch training-loss Hessian, in descending order
    (``top_eigenvalues`` on a fresh ``HessianOperator``; see there for the methods)."""
    op = HessianOperator(model, task, loss, chunk)
    return top_eigenvalues(op, k, method, which, tol, max_iter, seed, return_vectors=return_vectors)


def top_eigenvalues(op: HessianOperator, k: int = 1, method: str = "lanczos", which: str = "LA",
                    tol: float | None = None, max_iter: int = 1000, seed: int = 0, v0: np.ndarray | None = None,
                    return_vectors: bool = False):
    """The k top eigenvalues of ``op``'s Hessian, in descending order.

    ``method="lanczos"``: implicitly restarted Lanczos (ARPACK via ``scipy.sparse.linalg.eigsh``)
    on a ``LinearOperator`` whose matvec is ``HessianOperator.matvec``; ``which="LA"`` gives the
    largest algebraic eigenvalues (the sharpest directions; a network's Hessian is indefinite),
    "LM" the largest in magnitude. At most ``max_iter`` restarts; if ARPACK has not converged by
    then, the converged Ritz values are kept, or power iteration takes over. ``method="power"``:
    power iteration on H with deflation against the eigenvectors already found, x ← Hx/‖Hx‖,
    λ = xᵀHx (largest magnitude; stops when λ changes by < tol·|λ|, or after ``max_iter``
    products per eigenvalue). ``which="SA"`` (Lanczos) gives the most negative ones instead,
    still sorted descending. ``tol`` defaults to 1e-10 for float64 models and 1e-5 for float32
    (whose products carry ~1e-7 relative rounding). ``v0`` starts the iteration (e.g. the previous
    top eigenvector, when measuring along training); otherwise a Gaussian vector from ``seed``.
    A model with ≤ k + 1 parameters is solved densely. Returns the eigenvalues (np.ndarray), and
    their unit eigenvectors (columns) if ``return_vectors``.
    """
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

    if not (isinstance(k, int) and k >= 1):
        raise OverparamError(f"k: expected an integer >= 1, got {k!r}")
    if which not in ("LA", "LM", "SA"):
        raise OverparamError(f"which: expected LA, LM or SA, got {which!r}")
    if method not in ("lanczos", "power"):
        raise OverparamError(f"method: expected lanczos or power, got {method!r}")
    if tol is None:
        tol = 1e-10 if op.dtype == torch.float64 else 1e-5
    rng = np.random.default_rng(seed)
    start = np.asarray(v0, dtype=np.float64) if v0 is not None else rng.standard_normal(op.size)
    if op.size <= k + 1:
        vals, vecs = np.linalg.eigh(op.dense())
        order = np.argsort(-np.abs(vals) if which == "LM" else (vals if which == "SA" else -vals))[:k]
        order = order[np.argsort(-vals[order])] if which != "LM" else order
        vals, vecs = vals[order], vecs[:, order]
    elif method == "lanczos":
        lin = LinearOperator((op.size, op.size), matvec=op.numpy_matvec, dtype=np.float64)
        try:
            vals, vecs = eigsh(lin, k=k, which=which, tol=tol, maxiter=max_iter, v0=start)
        except ArpackNoConvergence as exc:
            if len(exc.eigenvalues) >= k:
                vals, vecs = exc.eigenvalues, exc.eigenvectors
            elif which == "SA":  # power iteration finds the largest magnitude: no substitute here
                raise OverparamError(f"Lanczos did not converge in {max_iter} restarts") from None
            else:
                vals, vecs = _power(op.numpy_matvec, op.size, k, tol, max_iter, rng, start)
        order = np.argsort(-np.abs(vals) if which == "LM" else -vals)
        vals, vecs = vals[order], vecs[:, order]
    else:
        vals, vecs = _power(op.numpy_matvec, op.size, k, tol, max_iter, rng, start)
    return (vals, vecs) if return_vectors else vals


def _power(matvec: Callable[[np.ndarray], np.ndarray], size: int, k: int, tol: float, max_iter: int,
           rng: np.random.Generator, start: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    found_vals: list[float] = []
    found_vecs: list[np.ndarray] = []

    def deflated(x: np.ndarray) -> np.ndarray:
        hx = matvec(x)
        for lam, u in zip(found_vals, found_vecs):
            hx = hx - lam * u * (u @ x)
        return hx

    for i in range(k):
        x = start.copy() if (i == 0 and start is not None) else rng.standard_normal(size)
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
    """Hutchinson's estimate of tr H and its standard error (``trace_estimate`` on a fresh operator)."""
    if samples < 2:
        raise OverparamError(f"samples: expected >= 2 (for a standard error), got {samples}")
    return trace_estimate(HessianOperator(model, task, loss, chunk), samples, seed)


def trace_estimate(op: HessianOperator, samples: int = 64, seed: int = 0) -> tuple[float, float]:
    """tr H ≈ (1/m) Σⱼ zⱼᵀ H zⱼ with zⱼ i.i.d. Rademacher (E zzᵀ = I), and its standard error
    std(zⱼᵀHzⱼ)/√m; for H = (2/n)XᵀX the variance is 2 Σ_{i≠j} H_ij² per sample (Avron & Toledo 2011)."""
    if samples < 2:
        raise OverparamError(f"samples: expected >= 2 (for a standard error), got {samples}")
    gen = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(samples):
        z = torch.randint(0, 2, (op.size,), generator=gen).to(op.dtype) * 2 - 1
        values.append(float(z.to(op.device) @ op.matvec(z)))
    arr = np.array(values)
    return float(arr.mean()), float(arr.std(ddof=1) / math.sqrt(samples))


# ---------------------------------------------------------------- the edge of stability


def stability_threshold(train: dict[str, Any]) -> float | None:
    """The largest curvature GD can follow at step η: 2/η, or (2 + 2β)/η with heavy-ball momentum β
    (Cohen et al. 2021, §2 and App. for momentum). None for adaptive optimizers (their threshold
    applies to the preconditioned Hessian; Cohen et al. 2022, "Adaptive gradient methods at the
    edge of stability")."""
    if train["optimizer"] not in ("gd", "sgd"):
        return None
    return (2.0 + 2.0 * train["momentum"]) / train["lr"]
