"""What the image tasks share: options, splits, normalization, augmentation.

``mnist``, ``cifar10`` and the user's own images (``images``: an ImageFolder tree; ``arrays``
and ``hf`` when they hold images) read their files from ``task.path`` (nothing is downloaded;
the product never needs a particular folder) and hand the trainer float32 images
``(n, C, H, W)`` of any size, channel count and number of classes, resident on the device.
The pipeline, in order:

1. split: a seeded permutation (``task.seed``) picks ``train_size`` training and ``test_size``
   test images (the defaults are in each task's docstring);
2. label noise: ``round(label_noise · n)`` training labels moved to a uniformly random *wrong*
   class (``data.noise.corrupt_labels``, as Nakkiran et al. 2019); the test set stays clean;
3. normalization (``task.normalize``): pixels / 255, then per channel minus the *training*
   mean over the training pixels, divided by the training standard deviation (the test set
   is normalized with the training statistics, never its own);
4. augmentation (``task.augment``), per batch inside training, never at evaluation:
   ``crop`` pads ``crop_padding`` pixels on every side with zeros (the training mean, after
   normalization) and takes a random H×W window; ``crop_flip`` then also mirrors each image
   left-right with probability 1/2 (the standard CIFAR-10 recipe, He et al. 2016, and what
   Nakkiran et al. train with). The draws come from a CPU ``torch.Generator`` (the run's
   ``augment`` stream), so a run sees the same augmented batches on any device and the fused
   engine reproduces them exactly.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from overparam.data.base import TaskData, common_options
from overparam.data.noise import corrupt_labels
from overparam.errors import SpecError
from overparam.options import Option, at_most


def image_options(what: str) -> dict[str, Option]:
    """The common classification options plus ``path``, ``augment``, ``crop_padding``, ``normalize``."""
    opts = common_options(classification=True)
    opts["train_size"] = Option(int, None, "training images (null: all the task offers)", check=at_most(10**8),
                                nullable=True)
    opts["test_size"] = Option(int, None, "test images (null: the task's default)", check=at_most(10**8),
                               nullable=True)
    opts["path"] = Option(str, None, what, nullable=True)
    opts["augment"] = Option(str, "none", "per-batch augmentation while training: none, crop (random crop "
                             "after zero padding) or crop_flip (also a random horizontal flip)",
                             choices=("none", "crop", "crop_flip"))
    opts["crop_padding"] = Option(int, 4, "pixels of padding on each side before the random crop",
                                  check=at_most(64))
    opts["normalize"] = Option(bool, True, "per-channel standardization with training-set statistics")
    return opts


def split_indices(n_train_pool: int, n_test_pool: int | None, opts: dict[str, Any], name: str,
                  default_test: int, unit: str = "images") -> tuple[np.ndarray, np.ndarray]:
    """Rows of the training pool and of the test pool.

    With ``n_test_pool`` None there is one pool (MNIST's 10k test set, nothing else): a seeded
    permutation is cut into ``test_size`` test rows (default ``default_test``) and then
    ``train_size`` training rows (default: the rest). Otherwise each pool is subsampled by its
    own seeded permutation (identity order when the whole pool is used).
    """
    rng = np.random.default_rng(np.random.SeedSequence([opts["seed"], 0x1AA6E]))
    if n_test_pool is None:
        n_test = opts["test_size"] if opts["test_size"] is not None else default_test
        n_train = opts["train_size"] if opts["train_size"] is not None else n_train_pool - n_test
        if n_train + n_test > n_train_pool:
            raise SpecError(f"task.train_size + task.test_size: {name} has {n_train_pool} {unit} here, "
                            f"asked for {n_train} + {n_test}")
        order = rng.permutation(n_train_pool)
        return np.sort(order[n_test:n_test + n_train]), np.sort(order[:n_test])
    n_train = opts["train_size"] if opts["train_size"] is not None else n_train_pool
    n_test = opts["test_size"] if opts["test_size"] is not None else n_test_pool
    for key, want, have in (("train_size", n_train, n_train_pool), ("test_size", n_test, n_test_pool)):
        if want > have:
            raise SpecError(f"task.{key}: {name} has {have} {unit} in that split, asked for {want}")
    tr = np.arange(n_train_pool) if n_train == n_train_pool else np.sort(rng.permutation(n_train_pool)[:n_train])
    te = np.arange(n_test_pool) if n_test == n_test_pool else np.sort(rng.permutation(n_test_pool)[:n_test])
    return tr, te


def normalize_images(x_train: np.ndarray, x_test: np.ndarray, normalize: bool, scale: float = 255.0
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, x_test, mean, std): images ``(n, C, H, W)`` / ``scale``, then per channel standardized
    with the *training* pixels' mean and standard deviation (when ``normalize``), float32 C-contiguous."""
    xtr = x_train.astype(np.float64) / scale  # (n, C, H, W)
    xte = x_test.astype(np.float64) / scale
    mean, std = np.zeros(xtr.shape[1]), np.ones(xtr.shape[1])
    if normalize and len(xtr):
        mean = xtr.mean(axis=(0, 2, 3))  # (C,) over the training pixels only
        std = np.maximum(xtr.std(axis=(0, 2, 3)), 1e-8)
        xtr = (xtr - mean[:, None, None]) / std[:, None, None]
        xte = (xte - mean[:, None, None]) / std[:, None, None]
    # C-contiguous (n, C, H, W): a transposed HWC array would reach torch as channels-last strides, on
    # which oneDNN's CPU 1×1 stride-2 conv backward corrupts memory (oneDNN #6035; resnet18k's shortcuts)
    return (np.ascontiguousarray(xtr, dtype=np.float32), np.ascontiguousarray(xte, dtype=np.float32), mean, std)


def make_task(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
              opts: dict[str, Any], source: str, n_classes: int = 10, scale: float = 255.0,
              info: dict[str, Any] | None = None) -> TaskData:
    """Noise, normalize and package images ``(n, C, H, W)`` (uint8 unless ``scale`` says otherwise) with
    int labels in 0..``n_classes``−1; ``info`` adds to the task's info (class names, say)."""
    noise_seed = opts["noise_seed"] if opts["noise_seed"] is not None else opts["seed"]
    y_clean = y_train.astype(np.int64)
    y_noisy = corrupt_labels(y_clean, opts["label_noise"], n_classes, noise_seed)
    xtr, xte, mean, std = normalize_images(x_train, x_test, opts["normalize"], scale)
    task = TaskData(kind="classification", x_train=xtr, y_train=y_noisy,
                    x_test=xte, y_test=y_test.astype(np.int64), n_classes=n_classes,
                    y_train_clean=y_clean,
                    info={"name": name, "n_train": len(xtr), "n_test": len(xte), "source": source,
                          "mean": mean.tolist(), "std": std.tolist(), "augment": opts["augment"], **(info or {})})
    task.augment_fn = augmenter(opts["augment"], opts["crop_padding"])  # read by train/loop.py
    return task


def augmenter(kind: str, pad: int):
    """The per-batch function ``(x (B, C, H, W), generator) -> x`` for ``task.augment``, or None."""
    if kind == "none":
        return None
    return functools.partial(crop_flip, pad=pad, flip=kind == "crop_flip")


def crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int, flip: bool) -> torch.Tensor:
    """Random crop of each image from its zero-padded copy, then (``flip``) a random mirror.

    out[b, :, i, j] = x_pad[b, :, i + dy_b, j' + dx_b] with dy, dx uniform in 0..2·pad and
    j' = W−1−j for mirrored images, j otherwise (crop, then flip, as torchvision orders them).
    The draws (2 or 3 per image) come from ``gen`` on the CPU; the gathers run where ``x`` is.
    """
    b, c, h, w = x.shape
    shifts = torch.randint(0, 2 * pad + 1, (2, b), generator=gen)  # (2, B): dy, dx
    cols = torch.arange(w).expand(b, w)  # (B, W)
    if flip:
        mirror = torch.randint(0, 2, (b, 1), generator=gen).bool()  # (B, 1)
        cols = torch.where(mirror, w - 1 - cols, cols)
    rows = (torch.arange(h)[None, :] + shifts[0][:, None]).to(x.device)  # (B, H)
    cols = (cols + shifts[1][:, None]).to(x.device)  # (B, W)
    padded = F.pad(x, (pad, pad, pad, pad))  # (B, C, H + 2p, W + 2p)
    tall = padded.gather(2, rows[:, None, :, None].expand(b, c, h, w + 2 * pad))  # (B, C, H, W + 2p)
    return tall.gather(3, cols[:, None, None, :].expand(b, c, h, w))  # (B, C, H, W)
