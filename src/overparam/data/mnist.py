"""``mnist``: LeCun et al.'s handwritten digits (28×28, one channel, 10 classes), read from IDX files.

``task.path`` is a folder holding ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``
(each gzipped, ``.gz``, or not), as distributed at https://yann.lecun.com/exdb/mnist/ (and its
mirrors). When the folder also holds ``train-images-idx3-ubyte`` / ``train-labels-idx1-ubyte``
they are the training pool and the 10k set is the test pool (``test_size`` default: all 10k).
Without them (``../shared/data/mnist`` ships only the official 10k test set) the 10k images are
split with ``task.seed``: ``test_size`` (default 2,000) held out, ``train_size`` (default: the
other 8,000) for training. See ``data.images`` for label noise, normalization and augmentation
(``crop`` suits digits; ``crop_flip`` mirrors them, which changes what a digit is).
"""

from __future__ import annotations

import functools
import gzip
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from overparam.data.base import TaskData
from overparam.data.images import image_options, make_task, split_indices
from overparam.errors import DataError

OPTIONS = image_options("folder with the MNIST IDX files t10k-images-idx3-ubyte[.gz] and "
                        "t10k-labels-idx1-ubyte[.gz] (optionally train-*)")
WHERE = ("set task.path to a folder with the MNIST IDX files (t10k-images-idx3-ubyte.gz, "
         "t10k-labels-idx1-ubyte.gz, optionally train-*), from https://yann.lecun.com/exdb/mnist/ or a mirror")
MAGIC = {"images": 2051, "labels": 2049}  # IDX: 0x0803 = unsigned bytes, 3 dims; 0x0801: 1 dim
SINGLE_POOL_TEST = 2000  # held out of the 10k when no training files are present


def find(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


@functools.lru_cache(maxsize=4)
def _decode(path: str, _stamp: tuple[int, int]) -> bytes:
    raw = Path(path).read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def read_idx(path: Path, what: str) -> np.ndarray:
    """uint8 array (n, 28, 28) for ``images``, (n,) for ``labels``; a DataError names what is wrong."""
    expected = f"expected an MNIST IDX {what} file"
    try:
        stat = path.stat()
        raw = _decode(str(path), (stat.st_mtime_ns, stat.st_size))
    except OSError as exc:  # also gzip.BadGzipFile
        raise DataError(f"{path}: cannot read ({exc.strerror or exc}); {expected}") from exc
    except (EOFError, zlib.error) as exc:
        raise DataError(f"{path}: truncated or corrupt gzip data; {expected}") from exc
    head = 16 if what == "images" else 8
    if len(raw) < head or int.from_bytes(raw[:4], "big") != MAGIC[what]:
        raise DataError(f"{path}: bad header (magic {int.from_bytes(raw[:4], 'big') if len(raw) >= 4 else None}, "
                        f"want {MAGIC[what]}); {expected}")
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range((head - 4) // 4)]
    if len(raw) != head + int(np.prod(dims)):
        raise DataError(f"{path}: {len(raw)} bytes, but its header promises {head} + {'×'.join(map(str, dims))}; "
                        f"{expected}")
    data = np.frombuffer(raw, np.uint8, offset=head).reshape(dims)
    if what == "images" and tuple(dims[1:]) != (28, 28):
        raise DataError(f"{path}: images of {dims[1]}×{dims[2]}; {expected} of 28×28 images")
    if what == "labels" and len(data) and int(data.max()) > 9:
        raise DataError(f"{path}: label {int(data.max())} out of range; {expected} with labels 0..9")
    return data


def read_pair(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(images, labels) of ``prefix`` (``t10k`` or ``train``), or None when its images are absent."""
    images = find(folder, f"{prefix}-images-idx3-ubyte")
    if images is None:
        return None
    labels = find(folder, f"{prefix}-labels-idx1-ubyte")
    if labels is None:
        raise DataError(f"{folder}: has {images.name} but no {prefix}-labels-idx1-ubyte[.gz]")
    x, y = read_idx(images, "images"), read_idx(labels, "labels")
    if len(x) != len(y):
        raise DataError(f"{folder}: {len(x)} images in {images.name} but {len(y)} labels in {labels.name}")
    return x, y


def load(opts: dict[str, Any]) -> TaskData:
    if opts["path"] is None:
        raise DataError(f"task.path: mnist reads files and has no embedded copy; {WHERE}")
    folder = Path(opts["path"]).expanduser()
    if not folder.is_dir():
        what = "no such folder" if not folder.exists() else "a file, not a folder"
        raise DataError(f"task.path: {folder}: {what}; {WHERE}")
    test = read_pair(folder, "t10k")
    if test is None:
        raise DataError(f"task.path: {folder} has no t10k-images-idx3-ubyte[.gz]; {WHERE}")
    train = read_pair(folder, "train")
    if train is None:  # one pool: split the 10k
        tr, te = split_indices(len(test[0]), None, opts, "mnist", SINGLE_POOL_TEST)
        train = test
    else:
        tr, te = split_indices(len(train[0]), len(test[0]), opts, "mnist", 0)
    return make_task("mnist", train[0][tr, None], train[1][tr], test[0][te, None], test[1][te], opts, str(folder))
