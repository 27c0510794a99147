"""Gaussian features and a linear teacher: the setting where double-descent theory is exact.

x ~ N(0, I_dim), y = x·β + ε with ‖β‖² = r2 and ε ~ N(0, sigma2). Test targets are noise-free,
so a model's test MSE is its excess risk, directly comparable with ``overparam.analysis.theory``
(Hastie et al. 2019; Belkin, Hsu & Xu 2019). A ``linear`` model of width p sees the first p
coordinates: the rest of the signal then acts as noise (Belkin–Hsu–Xu's weak-features model).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from overparam.data.base import TaskData, common_options
from overparam.options import Option, at_most, nonnegative, positive

OPTIONS = {
    **common_options(classification=False),
    "dim": Option(int, 100, "number of Gaussian input features", check=at_most(100_000)),
    "r2": Option(float, 1.0, "signal strength ‖β‖²", check=nonnegative),
    "sigma2": Option(float, 0.25, "label-noise variance σ² on training targets", check=nonnegative),
    "teacher": Option(str, "linear", "linear: y = x·β; relu: y = mean of relu random features",
                      choices=("linear", "relu")),
    "outputs": Option(int, 1, "target dimensions", check=positive),
}


def load(opts: dict[str, Any]) -> TaskData:
    rng = np.random.default_rng(np.random.SeedSequence([opts["seed"], 0x7EAC]))
    d, k = opts["dim"], opts["outputs"]
    n_train = opts["train_size"]
    n_test = opts["test_size"] or 2000
    beta = rng.standard_normal((d, k))
    beta *= np.sqrt(opts["r2"]) / np.linalg.norm(beta, axis=0, keepdims=True)
    x = rng.standard_normal((n_train + n_test, d))
    if opts["teacher"] == "linear":
        f = x @ beta
    else:  # a fixed wide ReLU network as teacher: a nonlinear target with ‖f‖² ≈ r2
        w = rng.standard_normal((d, 4 * d)) / np.sqrt(d)
        h = np.maximum(x @ w, 0.0) - 1.0 / np.sqrt(2 * np.pi)
        f = h @ rng.standard_normal((4 * d, k))
        f *= np.sqrt(opts["r2"]) / f[:n_train].std(axis=0, keepdims=True)
    noise = rng.standard_normal((n_train, k)) * np.sqrt(opts["sigma2"])
    return TaskData(kind="regression", x_train=x[:n_train], y_train=f[:n_train] + noise,
                    x_test=x[n_train:], y_test=f[n_train:],
                    info={"name": "teacher", "n_train": n_train, "n_test": n_test, "beta": beta})
