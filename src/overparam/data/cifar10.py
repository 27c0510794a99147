"""``cifar10``: Krizhevsky's 32×32 colour images in 10 classes, read from one ``.npz`` file.

``task.path`` names a NumPy ``.npz`` (loaded without pickle) holding ``x_train``, ``y_train``,
``x_test``, ``y_test``: images uint8 (n, 32, 32, 3), height × width × RGB as the CIFAR-10
Python batches decode, labels integers 0..9 (airplane, automobile, bird, cat, deer, dog, frog,
horse, ship, truck). ``../shared/data/cifar10_subset.npz`` is such a file: 10,000 training
images (1,000 per class) and 5,000 test images, decoded from JPEG copies of CIFAR-10. The full
dataset (https://www.cs.toronto.edu/~kriz/cifar.html) converts to it with four ``np.savez``
arguments. ``train_size`` / ``test_size`` (default: the whole split) take a seeded subset.
See ``data.images`` for label noise, normalization and augmentation (``crop_flip``: pad 4,
random 32×32 crop, random horizontal flip, the standard CIFAR-10 recipe).
"""

from __future__ import annotations

import functools
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from overparam.data.base import TaskData
from overparam.data.images import image_options, make_task, split_indices
from overparam.errors import DataError

OPTIONS = image_options("a .npz file with x_train, y_train, x_test, y_test (uint8 images n×32×32×3)")
WHERE = ("set task.path to a .npz file with x_train, y_train, x_test, y_test (uint8 n×32×32×3 images, "
         "labels 0..9), e.g. made from https://www.cs.toronto.edu/~kriz/cifar.html")
KEYS = ("x_train", "y_train", "x_test", "y_test")


@functools.lru_cache(maxsize=2)
def _read(path: str, _stamp: tuple[int, int]) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in KEYS if k not in z.files]
        if missing:
            raise DataError(f"{path}: no array {missing[0]!r} (has {', '.join(z.files) or 'none'}); "
                            f"expected {', '.join(KEYS)}")
        return {k: z[k] for k in KEYS}


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The four arrays, checked: a DataError names the path and what was expected."""
    try:
        if not zipfile.is_zipfile(path):
            raise DataError(f"{path}: cannot read as .npz (not a zip archive); {WHERE}")
        stat = path.stat()
        arrays = _read(str(path), (stat.st_mtime_ns, stat.st_size))
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot read as .npz ({exc}); {WHERE}") from exc
    except ValueError as exc:  # object arrays (pickle refused), corrupt members
        raise DataError(f"{path}: unreadable array ({exc}); expected plain uint8/integer arrays") from exc
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3):
            raise DataError(f"{path}: x_{split} is {x.dtype} {x.shape}; expected uint8 (n, 32, 32, 3)")
        if not np.issubdtype(y.dtype, np.integer) or y.shape != (len(x),):
            raise DataError(f"{path}: y_{split} is {y.dtype} {y.shape}; expected integer labels ({len(x)},)")
        if len(y) and (int(y.min()) < 0 or int(y.max()) > 9):
            raise DataError(f"{path}: y_{split} has labels outside 0..9")
    return arrays


def load(opts: dict[str, Any]) -> TaskData:
    if opts["path"] is None:
        raise DataError(f"task.path: cifar10 reads a file and has no embedded copy; {WHERE}")
    path = Path(opts["path"]).expanduser()
    if not path.is_file():
        what = "no such file" if not path.exists() else "a folder, not a file"
        raise DataError(f"task.path: {path}: {what}; {WHERE}")
    a = read_npz(path)
    tr, te = split_indices(len(a["x_train"]), len(a["x_test"]), opts, "cifar10", 0)
    chw = (0, 3, 1, 2)  # HWC -> CHW
    return make_task("cifar10", a["x_train"][tr].transpose(chw), a["y_train"][tr],
                     a["x_test"][te].transpose(chw), a["y_test"][te], opts, str(path))
