"""Label noise: a chosen fraction of training labels moved to a uniformly random *wrong* class."""

from __future__ import annotations

import numpy as np


def corrupt_labels(labels: np.ndarray, fraction: float, n_classes: int, seed: int) -> np.ndarray:
    """Return a copy of ``labels`` where exactly ``round(fraction * n)`` are wrong.

    Each corrupted label is drawn uniformly from the other ``n_classes - 1`` classes (never the
    true one), as in Nakkiran et al. 2019; which labels and which wrong class depend only on
    ``seed``, so the same task seed always gives the same noisy training set.
    """
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x1A8E1]))
    n_bad = int(round(fraction * len(labels)))
    noisy = labels.copy()
    if n_bad == 0:
        return noisy
    which = rng.choice(len(labels), size=n_bad, replace=False)
    shift = rng.integers(1, n_classes, size=n_bad)  # 1..K-1: never lands on the true class
    noisy[which] = (labels[which] + shift) % n_classes
    return noisy
