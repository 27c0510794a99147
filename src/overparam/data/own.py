"""What the user's own-data tasks (``table``, ``arrays``, ``images``, ``hf``) share.

Every one of them turns a training pool (and optionally a separate test pool) into the same
``TaskData`` the built-in tasks give, in the same order of steps:

1. split: a second file or folder is the test pool; without one, a seeded permutation of the
   pool (``task.seed``) holds out ``test_size`` rows (default ``DEFAULT_TEST_FRACTION`` of the
   pool) and ``train_size`` of the rest train (default: all of it). ``data.images.split_indices``
   does the cutting, so the rule is the one ``mnist`` and ``cifar10`` follow;
2. labels: the distinct target values of the training pool, sorted, become classes 0..K−1
   (``info["classes"]`` keeps their names); a class seen fewer than twice in the training pool
   is an error (an id column or a typo, never a class a model can learn);
3. label noise: ``data.noise.corrupt_labels`` with ``task.noise_seed`` (default ``task.seed``),
   on the training labels only, as every built-in classification task does;
4. normalization with statistics of the training split only, never the test set's.

Regression targets are standardized with the training split's mean and standard deviation
(``info["target_mean"]``, ``info["target_std"]``), so a run's ``test_loss`` is the test MSE in
units of the training targets' variance: about 1.0 for a model that predicts the training mean
whatever the input, 0 for a perfect one (1 − R² up to the test set's own mean), comparable
across data sets and with the default learning rates. Multiply by ``target_std²`` for the MSE in
the target's own units.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from overparam.data.base import TaskData, common_options
from overparam.data.images import split_indices
from overparam.data.noise import corrupt_labels
from overparam.errors import DataError, SpecError
from overparam.options import Option, at_most

DEFAULT_TEST_FRACTION = 0.2  # of a single pool, held out for testing when test_size is null
MAX_AUTO_CLASSES = 100  # problem: auto reads a discrete target with at most this many values as classes
MIN_CLASS_EXAMPLES = 2  # a class needs this many training examples
BUFFER_FACTOR = 3.0  # peak memory while decoding ≈ this × the arrays it produces (parser buffers, copies)


def own_options(path_doc: str) -> dict[str, Option]:
    """The common classification options, sizes defaulting to "everything", ``path`` and ``problem``."""
    opts = common_options(classification=True)
    opts["train_size"] = Option(int, None, "training examples, a seeded subset of the training pool (null: all)",
                                check=at_most(10**9), nullable=True)
    opts["test_size"] = Option(int, None, "test examples (null: all of the test file or folder; without one, "
                               f"{DEFAULT_TEST_FRACTION * 100:g} % of the pool, held out with task.seed)",
                               check=at_most(10**9), nullable=True)
    opts["path"] = Option(str, None, path_doc, nullable=True)
    opts["problem"] = Option(str, "auto", "classification or regression (auto: an integer, string or bool target "
                             f"with at most {MAX_AUTO_CLASSES} distinct values is classification)",
                             choices=("auto", "classification", "regression"))
    return opts


def require_keys(task: dict[str, Any], keys: dict[str, str]) -> None:
    """Spec-time check (a task module's ``validate``): each key in ``keys`` is set; the value says what it is."""
    for key, what in keys.items():
        if task.get(key) is None:
            raise SpecError(f"task.{key}: missing; set it to {what}")


def existing(value: str | None, key: str, what: str, folder: bool = False) -> Path:
    """``task.<key>`` as a path that exists and is a file (or a folder); a DataError says what is wrong."""
    kind = "folder" if folder else "file"
    if value is None:
        raise DataError(f"task.{key}: missing; set it to {what} (a path on this machine; nothing is downloaded)")
    path = Path(value).expanduser()
    if not path.exists():
        raise DataError(f"task.{key}: {path}: no such {kind}; expected {what}")
    if folder and not path.is_dir():
        raise DataError(f"task.{key}: {path}: a file, not a folder; expected {what}")
    if not folder and path.is_dir():
        raise DataError(f"task.{key}: {path}: a folder, not a file; expected {what}")
    return path


def memory_limit() -> float:
    """Bytes a task may take: the share of physical memory the sweep planner allows a run."""
    from overparam.machine import MEMORY_FRACTION, physical_memory

    return physical_memory() * MEMORY_FRACTION


def check_fits(source: Path | str, need: float, basis: str) -> None:
    """Refuse, before reading, data estimated to need more than ``memory_limit()`` bytes."""
    limit = memory_limit()
    if need > limit:
        raise DataError(f"{source}: too large to load: about {need / 2**30:.1f} GiB in memory ({basis}), more "
                        f"than the {limit / 2**30:.1f} GiB this machine allows; use a subset of it")


def split_pools(n_pool: int, n_test_pool: int | None, opts: dict[str, Any], source: str,
                unit: str = "rows") -> tuple[np.ndarray, np.ndarray]:
    """Rows of the pool that train and rows (of the test pool, or of the same pool) that test."""
    default_test = max(1, int(round(DEFAULT_TEST_FRACTION * n_pool))) if n_test_pool is None else 0
    tr, te = split_indices(n_pool, n_test_pool, opts, source, default_test, unit)
    if len(tr) == 0:
        raise SpecError(f"task.train_size: {source} leaves no training {unit} ({n_pool} in the pool, "
                        f"{len(te)} held out for testing)")
    if len(te) == 0:
        raise DataError(f"{source}: no test {unit} (the test pool is empty)")
    return tr, te


def _is_integral(values: np.ndarray) -> bool:
    return values.dtype.kind in "biu" or (values.dtype.kind == "f" and bool(np.all(np.mod(values, 1) == 0)))


def resolve_problem(values: np.ndarray, problem: str, what: str) -> str:
    """``classification`` or ``regression`` for a target; ``auto`` follows the rule in ``own_options``."""
    numeric = values.dtype.kind in "biuf"
    if problem == "regression":
        if not numeric or values.dtype.kind == "b":
            sample = values[0] if len(values) else None
            raise DataError(f"{what}: task.problem is regression but the target is not numeric (e.g. {sample!r})")
        return problem
    if problem == "classification":
        return problem
    if numeric and not _is_integral(values):
        return "regression"
    distinct = len(np.unique(values if numeric else values.astype(str)))
    if distinct <= MAX_AUTO_CLASSES:
        return "classification"
    if numeric:
        return "regression"
    raise DataError(f"{what}: the target has {distinct} distinct text values, more than the {MAX_AUTO_CLASSES} "
                    f"classes problem: auto accepts; set task.problem: classification if they are classes")


def _class_name(v: Any) -> str:
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def sorted_classes(values: np.ndarray) -> list[Any]:
    """Distinct values in a stable order: numbers numerically, anything else by its text."""
    uniq = list(dict.fromkeys(values.tolist()))
    if all(isinstance(v, (bool, int, float)) for v in uniq):
        return sorted(uniq)
    return sorted(uniq, key=str)


def encode_classes(pool: np.ndarray, test: np.ndarray, source: str, test_row: Callable[[int], str],
                   names: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(pool labels, test labels, class names): the training pool's sorted distinct values → 0..K−1.

    ``names``: labels already integers 0..K−1 with these names (a Hugging Face ``ClassLabel``).
    ``source`` names the training data and ``test_row(i)`` test row i in an error.
    """
    if names is None:
        classes = sorted_classes(pool)
        index = {v: i for i, v in enumerate(classes)}
        names = [_class_name(v) for v in classes]
        y_pool = np.fromiter((index[v] for v in pool.tolist()), dtype=np.int64, count=len(pool))
        test_list = test.tolist()
        bad = next((i for i, v in enumerate(test_list) if v not in index), None)
        if bad is not None:
            raise DataError(f"{test_row(bad)}: class {_class_name(test_list[bad])!r} does not occur in the "
                            f"training data ({source}; classes: {', '.join(names[:20])})")
        y_test = np.fromiter((index[v] for v in test_list), dtype=np.int64, count=len(test_list))
    else:
        y_pool, y_test = pool.astype(np.int64), test.astype(np.int64)
        for labels, row in ((y_pool, lambda i: source), (y_test, test_row)):
            bad = np.flatnonzero((labels < 0) | (labels >= len(names)))
            if len(bad):
                raise DataError(f"{row(int(bad[0]))}: label {int(labels[bad[0]])} is not a class id 0..{len(names) - 1}"
                                f" ({len(bad)} such rows; -1 marks a missing label)")
    if len(names) < 2:
        raise DataError(f"{source}: only one class ({names[0] if names else 'none'!r}) in the target; "
                        f"classification needs at least 2")
    counts = np.bincount(y_pool, minlength=len(names))
    rare = int(np.argmin(counts))
    if counts[rare] < MIN_CLASS_EXAMPLES:
        raise DataError(f"{source}: class {names[rare]!r} has {counts[rare]} training example"
                        f"{'' if counts[rare] == 1 else 's'}; each class needs at least {MIN_CLASS_EXAMPLES} "
                        f"(drop or merge it)")
    return y_pool, y_test, names


def classification_task(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                        y_test: np.ndarray, classes: list[str], opts: dict[str, Any],
                        info: dict[str, Any]) -> TaskData:
    """A feature-vector classification task with label noise on the training labels."""
    noise_seed = opts["noise_seed"] if opts["noise_seed"] is not None else opts["seed"]
    y_noisy = corrupt_labels(y_train, opts["label_noise"], len(classes), noise_seed)
    return TaskData(kind="classification", x_train=x_train, y_train=y_noisy, x_test=x_test, y_test=y_test,
                    n_classes=len(classes), y_train_clean=y_train,
                    info={"name": name, "n_train": len(x_train), "n_test": len(x_test), "classes": classes, **info})


def regression_task(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                    y_test: np.ndarray, opts: dict[str, Any], info: dict[str, Any]) -> TaskData:
    """A regression task with targets standardized by the training split (see the module doc)."""
    if opts.get("label_noise"):
        raise SpecError(f"task.label_noise: applies to classification; {info.get('source', name)} is a regression "
                        f"task (set task.problem: classification if the target is classes)")
    ytr = np.asarray(y_train, dtype=np.float64).reshape(len(y_train), -1)  # (n, out)
    yte = np.asarray(y_test, dtype=np.float64).reshape(len(y_test), -1)
    mean = ytr.mean(axis=0)
    std = ytr.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return TaskData(kind="regression", x_train=x_train, y_train=(ytr - mean) / std, x_test=x_test,
                    y_test=(yte - mean) / std,
                    info={"name": name, "n_train": len(x_train), "n_test": len(x_test),
                          "target_mean": mean.tolist(), "target_std": std.tolist(), **info})


def standardize_columns(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Features minus the training mean, over the training standard deviation (constant columns: 0)."""
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return (x_train - mean) / std, (x_test - mean) / std, {"feature_mean": mean.tolist(), "feature_std": std.tolist()}


HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def looks_like_hub_name(value: str) -> bool:
    """``imdb`` or ``user/dataset``: a Hugging Face Hub id rather than a path (no suffix, at most one slash)."""
    return bool(HUB_NAME.match(value)) and not Path(value).suffix and not value.startswith((".", "~"))
