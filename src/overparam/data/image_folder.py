"""``images``: the user's own pictures in the ImageFolder layout, one subfolder per class.

``task.path`` is a folder laid out as ``train/<class>/<image>`` and, optionally,
``test/<class>/<image>`` (``val``, ``valid`` or ``validation`` also name the test split); without a
test folder a seeded split of the training images holds out ``test_size`` (default 20 %). A folder
without ``train/`` whose subfolders are the classes is one pool, split the same way. Images may
sit in nested folders under their class folder; files whose suffix is not an image
(``IMAGE_SUFFIXES``, any case) and hidden files are ignored. Classes are the training class
folders' names in sorted order (0..K−1, ``info["classes"]``); a test class without a training
folder is an error.

Decoding (Pillow): every image becomes ``image_size`` (an int for square, or ``[height, width]``;
default: the images' own size when all share it, else an error asking for ``image_size``), resized
with Pillow's antialiased bilinear filter. Channels are as stored: 1 when every image is
grayscale, else 3 (RGB; grayscale images are repeated over three channels, palettes expanded,
alpha dropped). 16-bit grayscale keeps its top 8 bits. An animated image gives its first frame.
Then ``data.images`` does the rest as for ``cifar10``: label noise, per-channel normalization
with training statistics, augmentation.

The cache: decoding dominates loading, and a sweep loads its task once per distinct task
setting (every ``train_size`` or ``label_noise`` of a data sweep). The decoded uint8 pixels
``(n, C, H, W)`` are therefore kept in ``cache_dir`` (a sweep's ``DIR/cache``, which every command
that rebuilds a stored run reads through ``data.load_sweep_task``) as
``images-<folder>-<key>.npz``, keyed by the SHA-256 of every image's relative path, size and
modification time and of ``image_size``: the second load reads one array; touching, adding or
removing an image changes the key and decodes again (the stale file is removed). The last two
decodings are also kept in this process's memory. Without a cache folder (library use, a Ray
worker that does not see the sweep directory) loading decodes, uncached on disk; a cache folder
that cannot be written (a read-only sweep) is read if it holds the folder, and otherwise skipped.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from overparam.data.base import TaskData
from overparam.data.images import image_options, make_task
from overparam.data.own import BUFFER_FACTOR, check_fits, encode_classes, existing, require_keys, split_pools
from overparam.errors import DataError
from overparam.options import Option

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")
TEST_FOLDERS = ("test", "val", "valid", "validation")
GRAY_MODES = ("1", "L", "LA", "La", "I", "F", "I;16", "I;16B", "I;16L", "I;16N")
CACHE_VERSION = 1  # bump when the decoding changes, so old caches are not read
MEMORY_KEEP = 2  # decoded folders kept in this process
DECODED_BYTES = 1 + 8 + 4  # per pixel value: uint8 decoded, float64 working copy, float32 result


def _image_size(v: Any) -> str | None:
    if isinstance(v, int):
        return None if 1 <= v <= 4096 else "must be in 1..4096"
    if len(v) == 2 and all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= 4096 for s in v):
        return None
    return "must be an integer or [height, width], each in 1..4096"


OPTIONS: dict[str, Option] = {
    **image_options("a folder: train/<class>/<image> (and optionally test/<class>/<image>)"),
    "image_size": Option((int, list), None, "decoded size: an integer (square) or [height, width] (null: the "
                         "images' own size when they all share it)", check=_image_size, nullable=True),
}
OPTIONS["train_size"] = Option(int, None, "training images, a seeded subset of the training pool (null: all)",
                               check=OPTIONS["train_size"].check, nullable=True)
OPTIONS["test_size"] = Option(int, None, "test images (null: all of test/, or 20 % of the pool held out with "
                              "task.seed)", check=OPTIONS["test_size"].check, nullable=True)


@dataclass
class Decoded:
    """A folder's images: uint8 pixels, class index per image, and which images are the test pool's."""

    x: np.ndarray  # (n, C, H, W) uint8
    y: np.ndarray  # (n,) int64, into classes
    is_test: np.ndarray  # (n,) bool
    classes: list[str]
    files: list[str]  # relative paths, in the order of x


_MEMORY: OrderedDict[str, Decoded] = OrderedDict()


def _images_in(folder: Path) -> list[Path]:
    found = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
             and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _class_folders(pool: Path) -> list[Path]:
    folders = sorted((p for p in pool.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
    loose = [p for p in pool.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if loose:
        raise DataError(f"{loose[0]}: an image directly in {pool}; images go in one subfolder per class "
                        f"({pool}/<class>/<image>)")
    if not folders:
        raise DataError(f"{pool}: no class folders (expected {pool}/<class>/<image>, e.g. .png or .jpg files)")
    return folders


def list_images(root: Path) -> tuple[list[tuple[Path, str, bool]], list[str]]:
    """[(file, class name, is test)] and the class names (the training class folders, sorted)."""
    train = root / "train"
    pools = [(train if train.is_dir() else root, False)]
    test = next((root / name for name in TEST_FOLDERS if (root / name).is_dir()), None) if train.is_dir() else None
    if test is not None:
        pools.append((test, True))
    entries: list[tuple[Path, str, bool]] = []
    classes: list[str] = []
    for pool, is_test in pools:
        for folder in _class_folders(pool):
            files = _images_in(folder)
            if not files:
                raise DataError(f"{folder}: an empty class folder (no {', '.join(IMAGE_SUFFIXES[:4])}, … images)")
            if not is_test:
                classes.append(folder.name)
            if is_test and folder.name not in classes:
                raise DataError(f"{folder}: test class {folder.name!r} has no training folder (classes: "
                                f"{', '.join(classes[:20])})")
            entries.extend((f, folder.name, is_test) for f in files)
    return entries, classes


def folder_key(root: Path, entries: list[tuple[Path, str, bool]], size: tuple[int, int] | None) -> str:
    """SHA-256 of the file list (relative paths, sizes, mtimes), ``image_size`` and the decoder version."""
    h = hashlib.sha256(f"v{CACHE_VERSION} size={size}\n".encode())
    for path, _, _ in entries:
        st = path.stat()
        h.update(f"{path.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _open(path: Path):
    """The image, header read; its pixels load later. Pillow's decompression-bomb guard stays on for
    images past twice its pixel limit (an error naming the file); below that, ``check_fits`` decides."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: image too large to decode ({exc})") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable image ({exc.__class__.__name__}: {str(exc).splitlines()[0]})") from exc


def _headers(entries: list[tuple[Path, str, bool]]) -> tuple[list[tuple[int, int]], list[str]]:
    """(width, height) and mode of each image, from its header alone."""
    sizes, modes = [], []
    for path, _, _ in entries:
        with _open(path) as img:
            sizes.append(img.size)
            modes.append(img.mode)
    return sizes, modes


def pil_pixels(img: Any, gray: bool, size: tuple[int, int]) -> np.ndarray:
    """(C, H, W) uint8 of a loaded Pillow image at ``size`` (height, width), 1 or 3 channels."""
    from PIL import Image

    if gray and img.mode.startswith("I;16"):
        img = Image.fromarray((np.asarray(img, dtype=np.uint16) >> 8).astype(np.uint8))
    img = img.convert("L" if gray else "RGB")
    if img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    a = np.asarray(img, dtype=np.uint8)
    return a[None] if gray else a.transpose(2, 0, 1)


def _pixels(path: Path, gray: bool, size: tuple[int, int]) -> np.ndarray:
    try:
        with _open(path) as img:
            img.load()
            return pil_pixels(img, gray, size)
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data past the header
        raise DataError(f"{path}: unreadable image ({exc.__class__.__name__}: {str(exc).splitlines()[0]})") from exc


def size_of(sizes: list[tuple[int, int]], names: list[str], where: str) -> tuple[int, int]:
    """(height, width) shared by every image (Pillow sizes are (width, height)); else a DataError."""
    other = next((i for i, s in enumerate(sizes) if s != sizes[0]), None)
    if other is not None:
        (w0, h0), (w1, h1) = sizes[0], sizes[other]
        raise DataError(f"{where}: images of different sizes ({names[0]} is {w0}×{h0}, {names[other]} is {w1}×{h1}); "
                        f"set task.image_size (e.g. image_size: {min(h0, h1)}) to resize them all")
    return sizes[0][1], sizes[0][0]


def decode(root: Path, entries: list[tuple[Path, str, bool]], classes: list[str],
           image_size: tuple[int, int] | None) -> Decoded:
    """Every image as uint8 (n, C, H, W); DataErrors name the file (unreadable, mixed sizes, too large)."""
    sizes, modes = _headers(entries)
    if image_size is None:
        image_size = size_of(sizes, [str(p) for p, _, _ in entries], str(root))
    gray = all(m in GRAY_MODES for m in modes)
    channels = 1 if gray else 3
    check_fits(root, BUFFER_FACTOR * len(entries) * channels * image_size[0] * image_size[1] * DECODED_BYTES,
               f"{len(entries):,} images of {channels}×{image_size[0]}×{image_size[1]}")
    x = np.empty((len(entries), channels, *image_size), dtype=np.uint8)
    for i, (path, _, _) in enumerate(entries):
        x[i] = _pixels(path, gray, image_size)
    index = {c: i for i, c in enumerate(classes)}
    y = np.asarray([index[c] for _, c, _ in entries], dtype=np.int64)
    return Decoded(x, y, np.asarray([t for _, _, t in entries], dtype=bool), classes,
                   [p.relative_to(root).as_posix() for p, _, _ in entries])


def _cache_file(cache_dir: Path, root: Path, key: str) -> Path:
    folder = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:10]
    return cache_dir / f"images-{folder}-{key[:20]}.npz"


def _read_cache(path: Path, key: str) -> Decoded | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            return Decoded(z["x"], z["y"], z["is_test"], z["classes"].tolist(), z["files"].tolist())
    except (OSError, ValueError, KeyError, EOFError):  # absent, partial or corrupt: decode again
        return None


def _write_cache(path: Path, key: str, d: Decoded) -> None:
    """Atomically (a temporary file renamed), best effort: a read-only or odd folder only skips the cache."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".images-", suffix=".npz")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, key=np.asarray(key), x=d.x, y=d.y, is_test=d.is_test, classes=np.asarray(d.classes, dtype=str),
                     files=np.asarray(d.files, dtype=str))
        os.replace(tmp, path)
        tmp = None
        for stale in path.parent.glob(path.name.rsplit("-", 1)[0] + "-*.npz"):
            if stale != path:
                stale.unlink(missing_ok=True)
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def read_folder(root: Path, image_size: tuple[int, int] | None, cache_dir: Path | None
                ) -> tuple[Decoded, str, Callable[[], None]]:
    """The folder decoded; where it came from (``memory``, ``disk``: the cache, or ``decoded``); and the
    function that keeps it in the cache, for the caller to run once the task is built (a load that
    fails later leaves the sweep directory as it was)."""
    entries, classes = list_images(root)
    key = folder_key(root, entries, image_size)
    cached = _cache_file(cache_dir, root, key) if cache_dir is not None else None
    if key in _MEMORY:
        _MEMORY.move_to_end(key)
        found, how = _MEMORY[key], "memory"
    else:
        found, how = (_read_cache(cached, key) if cached is not None else None), "disk"
        if found is None:
            found, how = decode(root, entries, classes, image_size), "decoded"
        _MEMORY[key] = found
        while len(_MEMORY) > MEMORY_KEEP:
            _MEMORY.popitem(last=False)

    def keep() -> None:
        if cached is not None and how != "disk" and not cached.is_file():
            _write_cache(cached, key, found)

    return found, how, keep


def validate(task: dict[str, Any]) -> None:
    """Checked with the spec, before anything loads."""
    require_keys(task, {"path": "a folder of images: train/<class>/<image>"})


def load(opts: dict[str, Any], cache_dir: Path | None = None) -> TaskData:
    root = existing(opts["path"], "path", "a folder of images: train/<class>/<image>", folder=True)
    size = opts["image_size"]
    size = None if size is None else (size, size) if isinstance(size, int) else (size[0], size[1])
    d, how, keep = read_folder(root, size, cache_dir)
    pool, test = np.flatnonzero(~d.is_test), np.flatnonzero(d.is_test)
    tr, te = split_pools(len(pool), len(test) if len(test) else None, opts, str(root), "images")
    test_rows = test[te] if len(test) else pool[te]
    _, _, classes = encode_classes(d.y[pool], d.y[test_rows], f"{root}", lambda i: d.files[test_rows[i]],
                                   names=d.classes)
    task = make_task("images", d.x[pool[tr]], d.y[pool[tr]], d.x[test_rows], d.y[test_rows], opts, str(root),
                     n_classes=len(classes),
                     info={"classes": classes, "image_size": list(d.x.shape[2:]), "channels": d.x.shape[1],
                           "cache": how})
    keep()
    return task
