"""``arrays``: the user's own NumPy arrays, an ``.npz`` file or a pair of ``.npy`` files.

``task.path`` names either

- an ``.npz`` (``np.savez`` / ``np.savez_compressed``) holding ``x`` and ``y``, and optionally
  ``x_test`` and ``y_test`` (the test set; without them a seeded split of ``x``, ``y`` holds out
  ``test_size`` rows, default 20 %); or
- an ``.npy`` of inputs, with ``task.labels`` the ``.npy`` of targets (and optionally
  ``test_path`` / ``test_labels``, the test pair).

Nothing is unpickled: files load with ``allow_pickle=False``, so an array of Python objects is
refused with a message that says so. The headers are read first, so a file too large for this
machine's memory is refused before its data is read.

Inputs: ``x`` of shape (n, d) (or (n,)) are feature vectors, standardized per column with the
training split's mean and standard deviation (``task.normalize``); (n, H, W) or (n, H, W, C)
(C ≤ 4; also (n, C, H, W) when the last axis is longer than 4 and the second is not) are images,
handed to models as float32 (n, C, H, W) like ``cifar10``: uint8 pixels scaled by 1/255, then
per-channel standardization with training statistics, and ``task.augment`` as for ``cifar10``
(``data.images``). Targets: (n,) integer, bool or string labels make a classification task
(``problem: auto``, at most 100 distinct values; classes are the sorted distinct values, names in
``info["classes"]``); floats, or (n, k), a regression task with standardized targets (``data.own``).
NaN or ±inf anywhere in the inputs or targets is an error naming the array and the first row.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from overparam.data.base import TaskData
from overparam.data.images import augmenter, image_options, make_task, normalize_images
from overparam.data.own import (
    BUFFER_FACTOR,
    check_fits,
    classification_task,
    encode_classes,
    existing,
    own_options,
    regression_task,
    require_keys,
    resolve_problem,
    split_pools,
    standardize_columns,
)
from overparam.errors import DataError, SpecError
from overparam.options import Option

OPTIONS: dict[str, Option] = {
    **image_options("an .npz with x, y (optionally x_test, y_test), or an .npy of inputs (with task.labels)"),
    **{k: v for k, v in own_options("").items() if k in ("train_size", "test_size", "problem")},
    "labels": Option(str, None, "with an .npy path: the .npy of targets (n,) or (n, k)", nullable=True),
    "test_path": Option(str, None, "with an .npy path: an .npy of test inputs (null: a seeded split)", nullable=True),
    "test_labels": Option(str, None, "with test_path: the .npy of test targets", nullable=True),
}
OPTIONS["normalize"] = Option(bool, True, "standardize inputs with training-split statistics (per channel for "
                                          "images, per column for features)")
NPZ_KEYS = ("x", "y", "x_test", "y_test")
FLOAT_BYTES = 8 + 4  # per element: the float64 working copy and the float32 (images) or float64 result


def _header(f: Any, name: str, source: str) -> tuple[tuple[int, ...], np.dtype]:
    try:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{source}: {name} is not a NumPy array file ({exc})") from exc
    if dtype.hasobject:
        raise DataError(f"{source}: array {name!r} holds Python objects ({dtype}), which would need unpickling; "
                        f"overparam loads arrays with allow_pickle=False: save plain numbers or strings "
                        f"(e.g. np.asarray(x, dtype=np.float32))")
    return shape, dtype


def _estimate(headers: dict[str, tuple[tuple[int, ...], np.dtype]]) -> float:
    return sum(float(np.prod(shape)) * (dtype.itemsize + FLOAT_BYTES) for shape, dtype in headers.values())


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """``x``, ``y`` and, when present, ``x_test``, ``y_test`` of an .npz, checked before loading."""
    if not zipfile.is_zipfile(path):
        what = "empty file" if path.stat().st_size == 0 else "not a zip archive"
        raise DataError(f"{path}: cannot read as .npz ({what}); expected np.savez(path, x=..., y=...)")
    try:
        with zipfile.ZipFile(path) as zf:
            members = {n[:-4]: n for n in zf.namelist() if n.endswith(".npy")}
            headers = {}
            for key in NPZ_KEYS:
                if key in members:
                    with zf.open(members[key]) as f:
                        headers[key] = _header(f, key, str(path))
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read as .npz ({exc})") from exc
    for key in ("x", "y"):
        if key not in headers:
            raise DataError(f"{path}: no array {key!r} (has {', '.join(sorted(members)) or 'none'}); expected x, y "
                            f"and optionally x_test, y_test")
    if ("x_test" in headers) != ("y_test" in headers):
        raise DataError(f"{path}: has {'x_test' if 'x_test' in headers else 'y_test'} without "
                        f"{'y_test' if 'x_test' in headers else 'x_test'}; give both or neither")
    check_fits(path, BUFFER_FACTOR * _estimate(headers), "from its arrays' shapes")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in headers}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: unreadable array ({exc})") from exc


def read_npy(path: Path, key: str) -> np.ndarray:
    """One .npy file (``task.<key>``), checked before loading."""
    if path.stat().st_size == 0:
        raise DataError(f"task.{key}: {path}: empty file; expected a NumPy .npy array")
    with path.open("rb") as f:
        shape, dtype = _header(f, path.name, str(path))
    check_fits(path, BUFFER_FACTOR * _estimate({key: (shape, dtype)}), "from the array's shape")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: unreadable array ({exc})") from exc


def _pools(opts: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The arrays and, for each, where it came from (file and array name) for messages."""
    path = existing(opts["path"], "path", "an .npz with x, y, or an .npy of inputs with task.labels")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        for key in ("labels", "test_path", "test_labels"):
            if opts[key] is not None:
                raise SpecError(f"task.{key}: only with an .npy task.path; an .npz holds x, y, x_test, y_test")
        arrays = read_npz(path)
        return arrays, {k: f"{path}: array {k!r}" for k in arrays}
    if suffix != ".npy":
        raise DataError(f"task.path: {path}: expected an .npz or .npy file, not {path.suffix or 'no suffix'!r}")
    if opts["labels"] is None:
        raise SpecError("task.labels: missing; with an .npy task.path, name the .npy of targets")
    files = {"x": path, "y": existing(opts["labels"], "labels", "an .npy of targets")}
    if (opts["test_path"] is None) != (opts["test_labels"] is None):
        raise SpecError("task.test_path, task.test_labels: give both or neither")
    if opts["test_path"] is not None:
        files["x_test"] = existing(opts["test_path"], "test_path", "an .npy of test inputs")
        files["y_test"] = existing(opts["test_labels"], "test_labels", "an .npy of test targets")
    keys = {"x": "path", "y": "labels", "x_test": "test_path", "y_test": "test_labels"}
    return {k: read_npy(p, keys[k]) for k, p in files.items()}, {k: str(p) for k, p in files.items()}


def _check(arrays: dict[str, np.ndarray], where: dict[str, str]) -> None:
    for xk, yk in (("x", "y"), ("x_test", "y_test")):
        if xk not in arrays:
            continue
        x, y = arrays[xk], arrays[yk]
        if x.ndim == 0 or y.ndim == 0:
            raise DataError(f"{where[xk if x.ndim == 0 else yk]}: a scalar; expected one row per example")
        if len(x) != len(y):
            file, _, name = where[yk].partition(": ")
            other = name if name and where[xk].startswith(f"{file}: ") else where[yk]
            raise DataError(f"{where[xk]} has {len(x)} rows but {other} has {len(y)}; they must match")
        if len(x) == 0:
            raise DataError(f"{where[xk]}: no rows")
        if x.dtype.kind not in "biuf":
            raise DataError(f"{where[xk]}: inputs must be numbers, not {x.dtype}")
        if y.ndim > 2:
            raise DataError(f"{where[yk]}: targets must be (n,) or (n, k), not {y.shape}")
        for key, a in ((xk, x), (yk, y)):
            if a.dtype.kind == "f":
                bad = ~np.isfinite(a).reshape(len(a), -1).all(axis=1)
                if bad.any():
                    row = int(np.argmax(bad))
                    raise DataError(f"{where[key]}: NaN or infinite value in row {row} (counting from 0; "
                                    f"{int(bad.sum())} such row{'s' if bad.sum() > 1 else ''})")
    if "x_test" in arrays and arrays["x_test"].shape[1:] != arrays["x"].shape[1:]:
        raise DataError(f"{where['x_test']} has rows of shape {arrays['x_test'].shape[1:]} but {where['x']} "
                        f"{arrays['x'].shape[1:]}")


def image_layout(shape: tuple[int, ...]) -> str | None:
    """``features`` for (n,) / (n, d), ``nhwc`` or ``nchw`` for images (see the module doc), else None."""
    if len(shape) <= 2:
        return "features"
    if len(shape) == 3:
        return "nhwc"
    if len(shape) == 4:
        if shape[3] <= 4:
            return "nhwc"
        if shape[1] <= 4:
            return "nchw"
    return None


def _chw(x: np.ndarray, layout: str) -> np.ndarray:
    if x.ndim == 3:
        return x[:, None]
    return x.transpose(0, 3, 1, 2) if layout == "nhwc" else x


def validate(task: dict[str, Any]) -> None:
    """Checked with the spec, before anything loads."""
    require_keys(task, {"path": "an .npz with x, y, or an .npy of inputs (with task.labels)"})
    if (task["test_path"] is None) != (task["test_labels"] is None):
        raise SpecError("task.test_path, task.test_labels: give both or neither")


def load(opts: dict[str, Any]) -> TaskData:
    validate(opts)
    arrays, where = _pools(opts)
    _check(arrays, where)
    x, y = arrays["x"], arrays["y"]
    layout = image_layout(x.shape)
    if layout is None:
        raise DataError(f"{where['x']}: inputs of shape {x.shape}; expected (n, d) features or (n, H, W[, C]) images")
    if layout == "features" and opts["augment"] != "none":
        raise SpecError(f"task.augment: {opts['augment']} needs images (n, H, W[, C]); {where['x']} holds "
                        f"features {x.shape}")
    has_test = "x_test" in arrays
    source = where["x"].split(": array")[0]
    tr, te = split_pools(len(x), len(arrays["x_test"]) if has_test else None, opts, source)
    x_test, y_test = (arrays["x_test"], arrays["y_test"]) if has_test else (x, y)
    x_test, y_test = x_test[te], y_test[te]
    if y.ndim == 2 and y.shape[1] == 1:  # (n, 1): one target per row
        y, y_test = y[:, 0], y_test[:, 0]
    if y.ndim == 1:
        problem = resolve_problem(y, opts["problem"], where["y"])
    elif opts["problem"] == "classification":
        raise DataError(f"{where['y']}: classification labels must be (n,), not {y.shape}")
    else:
        problem = "regression"
    info: dict[str, Any] = {"source": source, "input_layout": layout}
    if layout == "features":
        xtr = x[tr].reshape(len(tr), -1).astype(np.float64)
        xte = x_test.reshape(len(x_test), -1).astype(np.float64)
        if opts["normalize"]:
            xtr, xte, stats = standardize_columns(xtr, xte)
            info.update(stats)
    if problem == "regression":
        if y.dtype.kind not in "biuf":
            raise DataError(f"{where['y']}: regression targets must be numbers, not {y.dtype}")
        if layout != "features":
            xtr, xte, mean, std = normalize_images(_chw(x[tr], layout), _chw(x_test, layout), opts["normalize"],
                                                   255.0 if x.dtype == np.uint8 else 1.0)
            info.update(mean=mean.tolist(), std=std.tolist(), augment=opts["augment"])
        task = regression_task("arrays", xtr, y[tr], xte, y_test, opts, info)
        if layout != "features":
            task.augment_fn = augmenter(opts["augment"], opts["crop_padding"])
        return task
    y_pool, y_te, classes = encode_classes(y, y_test, where["y"],
                                           lambda i: f"{where['y_test' if has_test else 'y']}: row {int(te[i])}")
    if layout == "features":
        return classification_task("arrays", xtr, y_pool[tr], xte, y_te, classes, opts, info)
    return make_task("arrays", _chw(x[tr], layout), y_pool[tr], _chw(x_test, layout), y_te, opts, source,
                     n_classes=len(classes), scale=255.0 if x.dtype == np.uint8 else 1.0,
                     info={**info, "classes": classes})
