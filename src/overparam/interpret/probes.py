"""Linear probes on each layer's hidden states, with Hewitt & Liang's control task.

A probe is a multinomial logistic regression on standardized features, its L2 strength chosen
by cross-validation (:class:`LinearProbe`, scikit-learn's ``LogisticRegressionCV``). A probe's
accuracy alone says little: a flexible enough probe learns the task itself from any rich
representation. Hewitt & Liang (2019, "Designing and Interpreting Probes with Control Tasks")
pair each target with a **control task**: every token *type* gets a label drawn at random from
the target's label distribution, fixed for that type (:func:`control_labels`), so the control is
learnable only by memorizing types. We report

    selectivity = accuracy − control accuracy

on held-out tokens, both probes fit the same way on the same features. High selectivity means
the representation makes the property linearly readable beyond what token identity allows.

Tokens are split by position (:func:`probe_layers`): the first ``1 − test_fraction`` train,
the rest test, so overlapping contexts never leak across the split.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from overparam.analysis.scaling.base import NotFittedError
from overparam.errors import OverparamError


class LinearProbe:
    """Multinomial logistic regression with a cross-validated L2 penalty (scikit-learn style).

    ``Cs``: the inverse regularization strengths tried (an int n: n values log-spaced over
    1e-2 … 1e1, which on standardized features spans "nearly constant" to "nearly unregularized");
    ``cv``: folds; ``tol``: L-BFGS gradient tolerance. Features are standardized with the training
    mean and std.
    Learned: ``classes_``, ``C_``, ``mean_``, ``scale_``, ``model_``.
    """

    def __init__(self, Cs: int | Sequence[float] = 4, cv: int = 3, max_iter: int = 200, tol: float = 1e-3,
                 random_state: int = 0) -> None:
        self.Cs = Cs
        self.cv = cv
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def get_params(self) -> dict[str, Any]:
        """The constructor's keyword arguments (scikit-learn's ``get_params``, shallow)."""
        return {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}

    def fit(self, X: Any, y: Any) -> LinearProbe:
        """Fit on features ``X`` (n, d) and integer or string labels ``y`` (n,); returns ``self``."""
        from sklearn.linear_model import LogisticRegressionCV
        from sklearn.model_selection import StratifiedKFold

        X, y = self._check(X), np.asarray(y)
        if y.ndim != 1 or len(y) != len(X):
            raise OverparamError(f"probe: {len(X)} feature rows but labels of shape {y.shape}")
        classes, counts = np.unique(y, return_counts=True)
        if len(classes) < 2:
            raise OverparamError(f"probe: the labels hold {len(classes)} class; a probe needs at least 2")
        if not isinstance(self.cv, int) or self.cv < 2:
            raise OverparamError(f"probe: cv must be an integer >= 2, got {self.cv!r}")
        Cs = np.logspace(-2, 1, self.Cs) if isinstance(self.Cs, int) else np.asarray(self.Cs, dtype=float)
        mean, scale = X.mean(axis=0), X.std(axis=0)
        scale = np.where(scale > 1e-12, scale, 1.0)
        folds = StratifiedKFold(n_splits=int(min(self.cv, counts.min())) if counts.min() >= 2 else 2,
                                shuffle=True, random_state=self.random_state)
        kwargs: dict[str, Any] = {"Cs": Cs, "cv": folds, "max_iter": self.max_iter, "tol": self.tol,
                                  "scoring": "accuracy",
                                  "random_state": self.random_state}
        accepted = inspect.signature(LogisticRegressionCV.__init__).parameters
        if "use_legacy_attributes" in accepted:  # scikit-learn >= 1.8: L2 is l1_ratio 0
            kwargs.update(l1_ratios=(0.0,), use_legacy_attributes=False)
        from threadpoolctl import threadpool_limits

        # One BLAS thread: these fits are small, and more threads on busy cores run several times slower.
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore")  # convergence and tiny-class warnings: the CV score judges
            model = LogisticRegressionCV(**kwargs).fit((X - mean) / scale, y)
        self.classes_, self.mean_, self.scale_, self.model_ = classes, mean, scale, model
        self.C_ = float(np.ravel(model.C_)[0])
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted label per row of ``X``."""
        if not hasattr(self, "model_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit(X, y) first")
        return self.model_.predict((self._check(X) - self.mean_) / self.scale_)

    def score(self, X: Any, y: Any) -> float:
        """Accuracy on ``(X, y)``."""
        return float(np.mean(self.predict(X) == np.asarray(y)))

    @staticmethod
    def _check(X: Any) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or not np.isfinite(X).all():
            raise OverparamError(f"probe: features must be a finite 2-d array, got shape {X.shape}")
        return X


def control_labels(types: np.ndarray, labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Hewitt & Liang's control task: each token type gets one label drawn from the empirical
    distribution of ``labels`` (codes ≥ 0), the same for every occurrence of the type; tokens
    with no label (−1) keep none."""
    rng = np.random.default_rng(seed)
    have = labels >= 0
    values, counts = np.unique(labels[have], return_counts=True)
    kinds = np.unique(types[have])
    drawn = dict(zip(kinds.tolist(), rng.choice(values, size=len(kinds), p=counts / counts.sum()).tolist(),
                     strict=True))
    return np.asarray([drawn.get(int(t), -1) if ok else -1 for t, ok in zip(types, have, strict=True)],
                      dtype=np.int64)


def _keep_classes(labels: np.ndarray, n_train: int, max_classes: int | None, min_count: int) -> np.ndarray:
    """Labels with rare classes (fewer than ``min_count`` training examples, or beyond the
    ``max_classes`` most frequent in training) set to −1; test tokens of unseen classes too."""
    train = labels[:n_train]
    values, counts = np.unique(train[train >= 0], return_counts=True)
    order = np.argsort(-counts, kind="stable")
    keep = values[order][counts[order] >= min_count]
    if max_classes is not None:
        keep = keep[:max_classes]
    return np.where(np.isin(labels, keep), labels, -1)


def probe_layers(hidden: Sequence[np.ndarray], labels: np.ndarray, types: np.ndarray, *,
                 test_fraction: float = 0.2, max_classes: int | None = 32, min_count: int = 6,
                 seed: int = 0, probe: LinearProbe | None = None) -> dict[str, Any]:
    """Probe and control accuracy of every layer's features (each (n, d), rows aligned with ``labels``
    and ``types``), on the last ``test_fraction`` of the rows.

    Returns ``{"layers": [{"layer", "accuracy", "control_accuracy", "selectivity", "C",
    "control_C"}], "n_train", "n_test", "classes", "majority", "control_majority"}``; classes are
    kept when they have ``min_count`` training rows, the ``max_classes`` most frequent at most.
    """
    labels, types = np.asarray(labels, dtype=np.int64), np.asarray(types, dtype=np.int64)
    if not hidden or any(len(h) != len(labels) for h in hidden) or len(types) != len(labels):
        raise OverparamError("probe: every layer's features, the labels and the token types must align")
    n_train = int(round(len(labels) * (1 - test_fraction)))
    labels = _keep_classes(labels, n_train, max_classes, min_count)
    control = _keep_classes(control_labels(types, labels, seed), n_train, max_classes, min_count)
    train, test = np.arange(len(labels)) < n_train, np.arange(len(labels)) >= n_train
    rows = {name: (train & (y >= 0), test & (y >= 0)) for name, y in (("task", labels), ("control", control))}
    for name, (tr, te) in rows.items():
        if len(np.unique((labels if name == "task" else control)[tr])) < 2 or not te.any():
            raise OverparamError(f"probe: too few labelled tokens for the {name} probe ({int(tr.sum())} train, "
                                 f"{int(te.sum())} test, need 2 classes); probe more tokens")
    template = probe or LinearProbe(random_state=seed)
    layers = []
    for i, h in enumerate(hidden):
        result: dict[str, Any] = {"layer": i}
        for name, y in (("task", labels), ("control", control)):
            tr, te = rows[name]
            fitted = type(template)(**template.get_params()).fit(h[tr], y[tr])
            key = "accuracy" if name == "task" else "control_accuracy"
            result[key] = fitted.score(h[te], y[te])
            result["C" if name == "task" else "control_C"] = fitted.C_
        result["selectivity"] = result["accuracy"] - result["control_accuracy"]
        order = ("layer", "accuracy", "control_accuracy", "selectivity", "C", "control_C")
        layers.append({k: result[k] for k in order})

    def majority(y: np.ndarray, tr: np.ndarray, te: np.ndarray) -> float:
        values, counts = np.unique(y[tr], return_counts=True)
        return float(np.mean(y[te] == values[np.argmax(counts)]))

    return {"layers": layers, "n_train": int(rows["task"][0].sum()), "n_test": int(rows["task"][1].sum()),
            "classes": int(len(np.unique(labels[labels >= 0]))),
            "majority": majority(labels, *rows["task"]), "control_majority": majority(control, *rows["control"])}


# -- a stored run ------------------------------------------------------------------------------------

DEFAULT_TOKENS = 4096  # probed tokens: 80 % fit the probes, 20 % score them


def target_for_run(run: Any, target: str, n_tokens: int = DEFAULT_TOKENS) -> tuple[np.ndarray, np.ndarray,
                                                                                   tuple[str, ...]]:
    """(token ids, label codes, class names) of a built-in target, or of a labels file, for a run.

    Built-in targets read the start of the run's test split; a labels file (see
    :func:`overparam.interpret.targets.read_labels`) brings its own text or tokens, or labels the
    start of the test split.
    """
    from pathlib import Path

    from overparam.interpret import targets as T
    from overparam.interpret.base import encode_text, last_chars, token_bytes, windows_of

    info, tokens = run.task.info, np.asarray(run.task.tokens_test, dtype=np.int64)
    if target in T.TARGETS:
        kinds = T.MARKOV_TARGETS if run.kind == "markov" else T.TEXT_TARGETS
        if target not in kinds:
            raise OverparamError(f"--target: {target!r} does not apply to a {run.kind} run (use one of "
                                 f"{', '.join(kinds)})")
        ids = windows_of(tokens, run.context, n_tokens).ravel()
        if run.kind == "markov":
            states = np.asarray(info["states_test"], dtype=np.int64)
            following = np.full(len(ids), -1, dtype=np.int64)
            avail = min(len(ids), len(states) - 1)
            following[:avail] = states[1:avail + 1]
            codes, names = T.markov_target(following[following >= 0], run.task.vocab_size,
                                           int(run.config["task"]["order"]))
            labels = np.full(len(ids), -1, dtype=np.int64)
            labels[following >= 0] = codes
            return ids, labels, names
        text, ends = last_chars(token_bytes(ids, info))
        labels, names = T.text_target(target, text, ends)
        return ids, labels, names
    path = Path(target)
    if not path.is_file():
        raise OverparamError(f"--target: {target!r} is neither a built-in target ({', '.join(T.TARGETS)}) "
                             f"nor a labels file")
    doc = T.read_labels(path)
    if "text" in doc:
        ids = encode_text(doc["text"], info, run.task.vocab_size)
    elif "tokens" in doc:
        ids = np.asarray(doc["tokens"], dtype=np.int64)
        if ids.size and not (0 <= ids.min() and ids.max() < run.task.vocab_size):
            raise OverparamError(f"--target: {path}: token ids must be in 0..{run.task.vocab_size - 1}")
    else:
        ids = tokens[:len(doc["labels"])]
    if len(ids) != len(doc["labels"]):
        raise OverparamError(f"--target: {path} has {len(doc['labels'])} labels for {len(ids)} tokens; "
                             f"give one label per token")
    labels, names = T.encode_labels(doc["labels"])
    return ids, labels, names


def stream_hidden(model: Any, ids: np.ndarray, context: int) -> list[np.ndarray]:
    """Hidden states (L + 1 arrays (n, d)) of a token stream read in consecutive windows of ``context``."""
    from overparam.interpret.base import gpt_hidden

    full = len(ids) // context * context
    parts = []
    if full:
        parts.append(gpt_hidden(model, ids[:full].reshape(-1, context)))
    if full < len(ids):
        parts.append(gpt_hidden(model, ids[full:][None]))
    return [np.concatenate(layer) for layer in zip(*parts, strict=True)]


def probe_run(run: Any, target: str, n_tokens: int = DEFAULT_TOKENS, seed: int = 0,
              probe: LinearProbe | None = None) -> dict[str, Any]:
    """Probe every layer of a loaded run (``overparam.interpret.base.LoadedRun``) for ``target``.

    Layer 0 is the embedding (token + position), layer i the residual stream after block i.
    Returns the ``overparam probe --json`` document.
    """
    ids, labels, names = target_for_run(run, target, n_tokens)
    hidden = stream_hidden(run.model, ids, run.context)
    doc = probe_layers(hidden, labels, ids, seed=seed, probe=probe)
    return {"target": target, "run": run.id, "params": run.params, **doc, "n_class_names": len(names),
            "class_names": list(names[:64])}
