"""scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10 classes): no download needed."""

from __future__ import annotations

from typing import Any

import numpy as np

from overparam.data.base import TaskData, common_options
from overparam.data.noise import corrupt_labels
from overparam.errors import SpecError

OPTIONS = common_options(classification=True)
N_TOTAL = 1797  # images in sklearn.datasets.load_digits


def load(opts: dict[str, Any]) -> TaskData:
    """Split the digits with ``task.seed``; pixels scaled from 0..16 to 0..1."""
    from sklearn.datasets import load_digits

    n_train = opts["train_size"]
    if n_train >= N_TOTAL:
        raise SpecError(f"task.train_size: digits has {N_TOTAL} images, asked for {n_train} training images "
                        f"(leave some for the test set)")
    n_test = opts["test_size"] if opts["test_size"] is not None else N_TOTAL - n_train
    if n_train + n_test > N_TOTAL:
        raise SpecError(f"task.train_size + task.test_size: digits has {N_TOTAL} images, "
                        f"asked for {n_train} + {n_test}")
    bunch = load_digits()
    x = bunch.data.astype(np.float64) / 16.0
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(np.random.SeedSequence([opts["seed"], 0xD161])).permutation(N_TOTAL)
    tr, te = order[:n_train], order[n_train:n_train + n_test]
    noise_seed = opts["noise_seed"] if opts["noise_seed"] is not None else opts["seed"]
    y_noisy = corrupt_labels(y[tr], opts["label_noise"], 10, noise_seed)
    return TaskData(kind="classification", x_train=x[tr], y_train=y_noisy, x_test=x[te], y_test=y[te],
                    n_classes=10, y_train_clean=y[tr],
                    info={"name": "digits", "n_train": n_train, "n_test": n_test})
