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

Selectivity is blind, though, where token identity decides the target or cannot: a char-level
state encodes its token almost perfectly, so the control is read nearly perfectly too, and a target
the current token does not determine (the next character's class) comes out *negative*. So each
layer is also compared with what the current token alone gives (:mod:`.baselines`: the same probe
on a one-hot of the token; for next-token targets also the bigram statistics of the training text,
whichever is better):

    gain = accuracy − baseline accuracy

with a 95 % t-interval over ``folds`` cross-validation folds. Tokens are split by position into
``folds`` contiguous blocks (each block is the test set once, the rest train), so overlapping
contexts leak across a split only at the block edges. The regularization C of each probe is chosen
by an inner cross-validation on the last fold (the first ``1 − 1/folds`` of the tokens) and reused
on the others.
"""

from __future__ import annotations

import inspect
import math
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
        if len(Cs) == 1:  # one strength given (chosen elsewhere): a single fit, no inner cross-validation
            return self._fit_one(X, y, classes, mean, scale, float(Cs[0]))
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

    def _fit_one(self, X: np.ndarray, y: np.ndarray, classes: np.ndarray, mean: np.ndarray, scale: np.ndarray,
                 C: float) -> LinearProbe:
        from sklearn.linear_model import LogisticRegression
        from threadpoolctl import threadpool_limits

        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore")
            model = LogisticRegression(C=C, max_iter=self.max_iter, tol=self.tol,
                                       random_state=self.random_state).fit((X - mean) / scale, y)
        self.classes_, self.mean_, self.scale_, self.model_, self.C_ = classes, mean, scale, model, C
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


def _keep_classes(labels: np.ndarray, fit_rows: np.ndarray, max_classes: int | None, min_count: int
                  ) -> np.ndarray:
    """Labels with rare classes (fewer than ``min_count`` rows among ``fit_rows``, or beyond the
    ``max_classes`` most frequent there) set to −1; rows of classes never seen there too."""
    train = labels[fit_rows]
    values, counts = np.unique(train[train >= 0], return_counts=True)
    order = np.argsort(-counts, kind="stable")
    keep = values[order][counts[order] >= min_count]
    if max_classes is not None:
        keep = keep[:max_classes]
    return np.where(np.isin(labels, keep), labels, -1)


def fold_blocks(n: int, folds: int) -> list[np.ndarray]:
    """``folds`` contiguous blocks of row positions 0…n−1 (test sets, in order; the last is the
    test split a single-split probe would use)."""
    edges = np.round(np.linspace(0, n, folds + 1)).astype(int)
    return [np.arange(edges[i], edges[i + 1]) for i in range(folds)]


LEVEL = 0.95  # the gain's t-interval over the folds, two-sided


def t_interval(values: Sequence[float], level: float = LEVEL) -> list[float]:
    """mean ± t_{(1+level)/2, k−1} · sd / √k over k values (one per fold)."""
    from scipy.stats import t

    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return [float(v.mean()), float(v.mean())]
    half = float(t.ppf((1 + level) / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return [float(v.mean() - half), float(v.mean() + half)]


class _Folds:
    """Fit-and-score of one feature set against one labelling over the cross-validation folds:
    C chosen by inner CV on the last fold, reused on the others."""

    def __init__(self, template: LinearProbe, blocks: list[np.ndarray], n: int):
        self.template, self.blocks, self.n = template, blocks, n

    def scores(self, X: np.ndarray, y: np.ndarray) -> tuple[list[float], float]:
        order = [len(self.blocks) - 1, *range(len(self.blocks) - 1)]  # the last fold first: it picks C
        out: dict[int, float] = {}
        chosen = None
        for k in order:
            test = np.zeros(self.n, dtype=bool)
            test[self.blocks[k]] = True
            tr, te = ~test & (y >= 0), test & (y >= 0)
            if not te.any() or len(np.unique(y[tr])) < 2:
                continue
            params = self.template.get_params() | ({"Cs": [chosen]} if chosen is not None else {})
            fitted = type(self.template)(**params).fit(X[tr], y[tr])
            chosen = fitted.C_ if chosen is None else chosen
            out[k] = fitted.score(X[te], y[te])
        return [out[k] for k in sorted(out)], float(chosen if chosen is not None else math.nan)


def probe_layers(hidden: Sequence[np.ndarray], labels: np.ndarray, types: np.ndarray, *,
                 folds: int = 5, max_classes: int | None = 32, min_count: int = 6, seed: int = 0,
                 probe: LinearProbe | None = None, bigram: dict[str, Any] | None = None) -> dict[str, Any]:
    """Probe, control and baseline accuracy of every layer's features (each (n, d), rows aligned with
    ``labels`` and ``types``), over ``folds`` contiguous cross-validation folds.

    ``bigram``: a table from :func:`.baselines.bigram_table` over the training text (a next-token
    target); the baseline is then the better of it and the identity probe (a one-hot of the token),
    else the identity probe.
    Returns ``{"layers": [{"layer", "accuracy", "control_accuracy", "selectivity", "C", "control_C",
    "baseline_accuracy", "gain", "gain_ci", "folds": {...}}], "baseline": {...}, "folds", "n_train",
    "n_test", "n_scored", "classes", "majority", "control_majority"}``: accuracies are means over the
    folds, ``gain_ci`` the 95 % t-interval of the per-fold gains; ``n_train``/``n_test`` are the rows
    of the last fold (its test block is the last 1/``folds`` of the tokens). Classes are kept when they
    have ``min_count`` rows before the last block, the ``max_classes`` most frequent at most.
    """
    from overparam.interpret.baselines import bigram_predict, one_hot

    labels, types = np.asarray(labels, dtype=np.int64), np.asarray(types, dtype=np.int64)
    if not hidden or any(len(h) != len(labels) for h in hidden) or len(types) != len(labels):
        raise OverparamError("probe: every layer's features, the labels and the token types must align")
    if not isinstance(folds, int) or folds < 2:
        raise OverparamError(f"probe: folds must be an integer >= 2, got {folds!r}")
    n = len(labels)
    blocks = fold_blocks(n, folds)
    last_train = np.arange(n) < blocks[-1][0]
    labels = _keep_classes(labels, last_train, max_classes, min_count)
    control = _keep_classes(control_labels(types, labels, seed), last_train, max_classes, min_count)
    for name, y in (("task", labels), ("control", control)):
        tr, te = last_train & (y >= 0), ~last_train & (y >= 0)
        if len(np.unique(y[tr])) < 2 or not te.any():
            raise OverparamError(f"probe: too few labelled tokens for the {name} probe ({int(tr.sum())} train, "
                                 f"{int(te.sum())} test, need 2 classes); probe more tokens")
    runner = _Folds(probe or LinearProbe(random_state=seed), blocks, n)
    identity, identity_C = runner.scores(one_hot(types, last_train), labels)
    baseline: dict[str, Any] = {"identity_accuracy": float(np.mean(identity)), "identity_C": identity_C,
                                "kind": "identity"}
    per_fold = identity
    if bigram is not None:
        guess = bigram_predict(bigram, types)
        by_bigram = [float(np.mean(guess[b][labels[b] >= 0] == labels[b][labels[b] >= 0])) for b in blocks
                     if (labels[b] >= 0).any()]
        baseline |= {"bigram_accuracy": float(np.mean(by_bigram)), "bigram_tokens": bigram["tokens"]}
        if np.mean(by_bigram) >= np.mean(identity):  # the stronger of the two is the one to beat
            baseline["kind"], per_fold = "bigram", by_bigram
    layers = []
    for i, h in enumerate(hidden):
        task, c_task = runner.scores(h, labels)
        ctrl, c_ctrl = runner.scores(h, control)
        gains = [a - b for a, b in zip(task, per_fold, strict=True)]
        layers.append({"layer": i, "accuracy": float(np.mean(task)), "control_accuracy": float(np.mean(ctrl)),
                       "selectivity": float(np.mean(task) - np.mean(ctrl)), "C": c_task, "control_C": c_ctrl,
                       "baseline_accuracy": float(np.mean(per_fold)), "gain": float(np.mean(gains)),
                       "gain_ci": t_interval(gains),
                       "folds": {"accuracy": task, "control_accuracy": ctrl, "baseline_accuracy": per_fold}})

    def majority(y: np.ndarray) -> float:
        tr, te = last_train & (y >= 0), ~last_train & (y >= 0)
        values, counts = np.unique(y[tr], return_counts=True)
        return float(np.mean(y[te] == values[np.argmax(counts)]))

    return {"layers": layers, "baseline": baseline, "folds": folds, "level": LEVEL,
            "n_train": int((last_train & (labels >= 0)).sum()), "n_test": int((~last_train & (labels >= 0)).sum()),
            "n_scored": int((labels >= 0).sum()), "classes": int(len(np.unique(labels[labels >= 0]))),
            "majority": majority(labels), "control_majority": majority(control)}


# -- a stored run ------------------------------------------------------------------------------------

DEFAULT_TOKENS = 4096  # probed tokens: each of 5 folds fits on 80 % and scores the other 20 %


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
    from overparam.interpret.baselines import run_bigram
    from overparam.interpret.targets import NEXT_TOKEN_TARGETS

    ids, labels, names = target_for_run(run, target, n_tokens)
    hidden = stream_hidden(run.model, ids, run.context)
    bigram = run_bigram(run, target) if target in NEXT_TOKEN_TARGETS and run.kind != "markov" else None
    doc = probe_layers(hidden, labels, ids, seed=seed, probe=probe, bigram=bigram)
    return {"target": target, "run": run.id, "params": run.params, **doc, "n_class_names": len(names),
            "class_names": list(names[:64])}
