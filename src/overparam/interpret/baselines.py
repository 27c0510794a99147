"""What a probe must beat: the target read from the current token alone.

A character-level model's hidden state encodes which token it sits on almost perfectly, so any
target that is a function of the current token (``char_class`` at char level) is read by a probe from
any layer, and Hewitt & Liang's control task (a random label per token type) is read as easily:
selectivity says little there, and is negative for a target that the current token does *not*
determine (``next_char_class``): the control is then the easier task. The comparison that says what a
layer adds is against the best that token identity alone can do:

- **identity**: the same linear probe on a one-hot of the current token (the 255 most frequent types
  of the probe's training rows, one column for the rest), fitted and scored on the same rows;
- **bigram** (next-token targets): for each current token, the label most often seen after it in
  the run's *training* text, the Bayes decision from the bigram statistics (ties: the lower label;
  an unseen token: the most frequent label).

For a next-token target the baseline is the better of the two: the bigram table has far more text
behind it, but the identity probe is fitted on the probed split itself, whose statistics can differ
from the training text's (on the embedded corpus the identity probe was the stronger one).
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_TYPES = 255  # one-hot columns for the most frequent types; the rest share one
BIGRAM_TOKENS = 200_000  # training tokens read for the bigram table (the demo corpus has ~418k)


def one_hot(types: np.ndarray, fit_rows: np.ndarray, max_types: int = MAX_TYPES) -> np.ndarray:
    """(n, k + 1) one-hot of ``types``: the ``max_types`` most frequent in ``fit_rows``, then 'other'."""
    values, counts = np.unique(types[fit_rows], return_counts=True)
    keep = values[np.argsort(-counts, kind="stable")[:max_types]]
    column = {int(t): i for i, t in enumerate(keep)}
    out = np.zeros((len(types), len(keep) + 1), dtype=np.float64)
    out[np.arange(len(types)), [column.get(int(t), len(keep)) for t in types]] = 1.0
    return out


def bigram_table(ids: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """The most frequent label per token over a training stream (labels < 0 are skipped)."""
    ok = labels >= 0
    ids, labels = np.asarray(ids)[ok], np.asarray(labels)[ok]
    n_labels = int(labels.max()) + 1 if labels.size else 1
    counts = np.zeros((int(ids.max()) + 1 if ids.size else 1, n_labels), dtype=np.int64)
    np.add.at(counts, (ids, labels), 1)
    seen = counts.sum(axis=1) > 0
    default = int(np.argmax(np.bincount(labels, minlength=n_labels))) if labels.size else 0
    return {"best": np.where(seen, np.argmax(counts, axis=1), default), "default": default,
            "tokens": int(ok.sum())}


def bigram_predict(table: dict[str, Any], types: np.ndarray) -> np.ndarray:
    best = table["best"]
    types = np.asarray(types)
    inside = (types >= 0) & (types < len(best))
    return np.where(inside, best[np.clip(types, 0, len(best) - 1)], table["default"])


def run_bigram(run: Any, target: str, max_tokens: int = BIGRAM_TOKENS) -> dict[str, Any]:
    """The bigram table of a text ``target`` over the start of the run's training split."""
    from overparam.interpret import targets as T
    from overparam.interpret.base import last_chars, token_bytes

    ids = np.asarray(run.task.tokens_train[:max_tokens], dtype=np.int64)
    text, ends = last_chars(token_bytes(ids, run.task.info))
    labels, _ = T.text_target(target, text, ends)
    return bigram_table(ids, labels)
