"""What every task hands the trainer: arrays in memory plus what the model needs to know."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from overparam.options import Option, fraction_below_one, nonnegative, positive


@dataclass
class TaskData:
    """A task's data, already split, noised and normalized.

    Classification: ``y_*`` are int64 class labels; ``y_train`` carries the label noise and
    ``y_train_clean`` the true labels; ``y_test`` is always clean, so test error measures the
    task, not the noise. Regression: ``y_*`` are float64 of shape (n, out); ``y_test`` holds
    noise-free targets, so test MSE is the *excess* risk that theory curves predict.
    Language modelling: ``tokens_train`` / ``tokens_test`` are int64 streams and ``x_*``/``y_*``
    are None.
    """

    kind: str  # "classification" | "regression" | "lm"
    x_train: np.ndarray | None = None  # (n_train, *input_shape)
    y_train: np.ndarray | None = None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    n_classes: int | None = None
    y_train_clean: np.ndarray | None = None
    tokens_train: np.ndarray | None = None
    tokens_test: np.ndarray | None = None
    vocab_size: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:]) if self.x_train is not None else ()

    @property
    def input_dim(self) -> int:
        return int(np.prod(self.input_shape)) if self.x_train is not None else 0

    @property
    def output_dim(self) -> int:
        if self.kind == "classification":
            return int(self.n_classes)
        if self.kind == "regression":
            return int(self.y_train.shape[1])
        return int(self.vocab_size)

    @property
    def n_train(self) -> int:
        return len(self.x_train) if self.x_train is not None else len(self.tokens_train)


def common_options(classification: bool) -> dict[str, Option]:
    """Options every task has. ``seed`` fixes the split and the label noise, not the model."""
    opts = {
        "kind": Option(str, None, "which task (digits, teacher, ...)"),
        "train_size": Option(int, 500, "training examples", check=positive),
        "test_size": Option(int, None, "test examples (null: all the rest, or 2000 for generated data)",
                            check=positive, nullable=True),
        "seed": Option(int, 0, "fixes the train/test split and the label-noise draw", check=nonnegative),
    }
    if classification:
        opts["label_noise"] = Option(float, 0.0, "fraction of training labels replaced by a random "
                                     "wrong class", check=fraction_below_one)
        opts["noise_seed"] = Option(int, None, "seed of the label-noise draw (null: task.seed)",
                                    check=nonnegative, nullable=True)
    return opts
