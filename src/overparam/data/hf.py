"""``hf``: a Hugging Face ``datasets`` dataset on this machine (extra ``hf``), offline only.

``task.path`` is a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``, or a
data file or folder of them (``.parquet``, ``.json``, ``.jsonl``, ``.csv``, ``.arrow``; in a folder,
a file whose name, or whose folder's name, starts with ``test``, ``val`` or ``valid`` is the test
split, every other file the training split). Nothing is downloaded: a Hub name such as ``imdb``
is refused with the command that saves it on a machine with a network, and the library runs
with ``HF_DATASETS_OFFLINE`` / ``HF_HUB_OFFLINE`` set.

``task.split`` (default ``train``) trains; the test set is ``task.test_split``, by default the
dataset's ``test``, ``validation``, ``valid`` or ``val`` split when it has one, else a seeded split
of the training split (``test_size``, default 20 %).

Two tasks, by the columns named:

- ``text_column``: a language-model task. The column's rows (of ``split``) are joined with a
  newline and then tokenized and split exactly as the ``text`` task does (``tokenizer``,
  ``vocab_size``, ``val_fraction``; ``train_size`` / ``test_size`` count tokens): the last
  ``val_fraction`` of the token stream validates and ``test_split`` is not used.
- ``label_column`` with ``image_column``: image classification. Images (the ``Image`` feature,
  or raw encoded bytes) decode as the ``images`` task decodes files (``image_size``, grayscale
  or RGB as stored) and go through ``data.images`` (normalization, augmentation).
- ``label_column`` with ``feature_columns`` (default: every scalar column but the label): the
  ``table`` task's encoding of those columns (``problem``, ``missing``; see ``data.table``).

A ``ClassLabel`` label keeps its integer ids and names; any other label column is mapped to
0..K−1 as in ``table``. ``label_noise`` applies to classification as in every task.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from overparam.data import text as text_task
from overparam.data.base import TaskData
from overparam.data.image_folder import GRAY_MODES, pil_pixels, size_of
from overparam.data.image_folder import OPTIONS as IMAGE_OPTIONS
from overparam.data.images import make_task
from overparam.data.own import (
    BUFFER_FACTOR,
    check_fits,
    encode_classes,
    looks_like_hub_name,
    own_options,
    require_keys,
    split_pools,
)
from overparam.data.table import frame_task
from overparam.errors import DataError, SpecError, require
from overparam.options import Option

BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv", ".arrow": "arrow"}
TEST_SPLITS = ("test", "validation", "valid", "val")
TEST_PREFIXES = ("test", "val", "valid")
SAVED_MARKERS = ("dataset_dict.json", "dataset_info.json", "state.json")  # what save_to_disk writes
DISK_FACTOR = {"parquet": 4.0}  # in-memory size over size on disk (compressed columns); 1 otherwise


def _names(v: list[str]) -> list[str]:
    return list(dict.fromkeys(v))


OPTIONS: dict[str, Option] = {
    **own_options("a save_to_disk folder, or a .parquet/.json/.jsonl/.csv/.arrow file or folder of them"),
    "split": Option(str, "train", "the split that trains"),
    "test_split": Option(str, None, "the split that tests (null: test, validation, valid or val when present, "
                         "else a seeded split)", nullable=True),
    "text_column": Option(str, None, "a text column: makes a language-model task (tokenized as the text task)",
                          nullable=True),
    "label_column": Option(str, None, "the column of class labels (or regression targets)", nullable=True),
    "image_column": Option(str, None, "with label_column: a column of images", nullable=True),
    "feature_columns": Option(list, None, "with label_column: input columns (null: every scalar column but the "
                              "label)", nullable=True, normalize=_names,
                              check=lambda v: None if v and all(isinstance(c, str) for c in v) else
                              "must be a non-empty list of column names"),
    "missing": Option(str, "error", "feature columns: missing values are an error, dropped or the training mean",
                      choices=("error", "drop", "mean")),
    **{k: text_task.OPTIONS[k] for k in ("tokenizer", "vocab_size", "val_fraction")},
    **{k: IMAGE_OPTIONS[k] for k in ("image_size", "normalize", "augment", "crop_padding")},
}
OPTIONS["train_size"] = Option(int, None, "training examples, a seeded subset (with text_column: training tokens, a "
                               "prefix) (null: all)", check=OPTIONS["train_size"].check, nullable=True)
OPTIONS["test_size"] = Option(int, None, "test examples (with text_column: validation tokens, a prefix) (null: all "
                              "of test_split, or 20 % held out)", check=OPTIONS["test_size"].check, nullable=True)


def validate(task: dict[str, Any]) -> None:
    """Which task the columns make, checked with the spec (before anything loads)."""
    require_keys(task, {"path": "a save_to_disk folder, or .parquet/.json/.jsonl/.csv/.arrow files"})
    text, label = task["text_column"], task["label_column"]
    if (text is None) == (label is None):
        raise SpecError("task.text_column, task.label_column: name exactly one (text_column: a language-model "
                        "task; label_column: a classification task)")
    if text is not None:
        for key in ("image_column", "feature_columns"):
            if task[key] is not None:
                raise SpecError(f"task.{key}: goes with label_column, not text_column")
        if task["label_noise"]:
            raise SpecError("task.label_noise: applies to classification, not to a text_column task")
    if task["image_column"] is not None and task["feature_columns"] is not None:
        raise SpecError("task.image_column, task.feature_columns: name one (images, or columns of features)")
    if task["image_column"] is None and task["augment"] != "none":
        raise SpecError(f"task.augment: {task['augment']} needs an image_column")
    if task["image_column"] is not None and task["problem"] == "regression":
        raise SpecError("task.problem: an image_column makes a classification task (label_column holds classes)")


def _datasets() -> Any:
    """The ``datasets`` module, offline and quiet (no progress bars on stderr)."""
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    datasets = require("datasets", "hf")
    datasets.config.HF_DATASETS_OFFLINE = True
    datasets.config.HF_HUB_OFFLINE = True
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # a failed read logs its error too: one line, ours
    return datasets


def _files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in BUILDERS
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def _is_test_file(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts if path != root else (path.name,)
    return any(part.lower().startswith(TEST_PREFIXES) for part in parts)


def open_dataset(value: str | None) -> tuple[dict[str, Any], Path]:
    """{split name: Dataset} of ``task.path`` and the path; DataErrors say what is wrong and where."""
    if value is None:
        raise DataError("task.path: missing; set it to a folder written by save_to_disk, or to data files")
    root = Path(value).expanduser()
    if not root.exists():
        if looks_like_hub_name(value):
            raise DataError(f"task.path: {value!r} is not a file or folder here, and the hf task reads only local data "
                            f"(nothing downloads); on a machine with a network run "
                            f"datasets.load_dataset({value!r}).save_to_disk('FOLDER') and set task.path to that folder")
        raise DataError(f"task.path: {root}: no such file or folder")
    datasets = _datasets()
    if root.is_dir() and any((root / m).is_file() for m in SAVED_MARKERS):
        size = sum(p.stat().st_size for p in root.rglob("*.arrow"))
        check_fits(root, BUFFER_FACTOR * size, f"{size:,} bytes of Arrow files × {BUFFER_FACTOR:g}")
        try:
            loaded = datasets.load_from_disk(str(root))
        except Exception as exc:  # the library raises FileNotFoundError, ValueError, pyarrow errors...
            raise DataError(f"{root}: cannot load with datasets.load_from_disk ({_first_line(exc)})") from exc
        splits = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
        return splits, root
    files = _files(root)
    if not files:
        raise DataError(f"task.path: {root}: no dataset here (no save_to_disk folder, no "
                        f"{', '.join(BUILDERS)} files)")
    builders = {BUILDERS[f.suffix.lower()] for f in files}
    if len(builders) > 1:
        raise DataError(f"task.path: {root} mixes {', '.join(sorted(builders))} files; keep one format")
    builder = builders.pop()
    for f in files:
        if f.stat().st_size == 0:
            raise DataError(f"{f}: empty file")
    size = sum(f.stat().st_size for f in files)
    factor = BUFFER_FACTOR * DISK_FACTOR.get(builder, 1.0)
    check_fits(root, factor * size, f"{size:,} bytes on disk × {factor:g}")
    data_files: dict[str, list[str]] = {}
    for f in files:
        data_files.setdefault("test" if _is_test_file(f, root) else "train", []).append(str(f))
    if "train" not in data_files:
        raise DataError(f"task.path: {root}: every file looks like a test split ({', '.join(TEST_PREFIXES)}*); "
                        f"name the training files otherwise")
    with tempfile.TemporaryDirectory(prefix="overparam-hf-") as cache:  # the library's arrow cache, thrown away
        try:
            loaded = datasets.load_dataset(builder, data_files=data_files, cache_dir=cache, keep_in_memory=True)
        except Exception as exc:  # malformed JSON/CSV/Parquet surface as several library exception types
            cause = exc.__cause__ or exc
            raise DataError(f"{root}: cannot read as {builder} ({_first_line(cause)})") from exc
    return dict(loaded), root


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _pick_splits(splits: dict[str, Any], opts: dict[str, Any], root: Path) -> tuple[Any, Any | None, str, str | None]:
    """(train split, test split or None, their names)."""
    names = ", ".join(splits)
    if opts["split"] not in splits:
        raise DataError(f"{root}: no split {opts['split']!r} (task.split; splits: {names})")
    test_name = opts["test_split"]
    if test_name is not None and test_name not in splits:
        raise DataError(f"{root}: no split {test_name!r} (task.test_split; splits: {names})")
    if test_name is None:
        test_name = next((s for s in TEST_SPLITS if s in splits and s != opts["split"]), None)
    train = splits[opts["split"]]
    if len(train) == 0:
        raise DataError(f"{root}: split {opts['split']!r} has no rows")
    return train, (splits[test_name] if test_name else None), opts["split"], test_name


def _column(ds: Any, name: str, key: str, where: str) -> None:
    if name not in ds.column_names:
        raise DataError(f"{where}: no column {name!r} (task.{key}; columns: {', '.join(ds.column_names)})")


def load(opts: dict[str, Any]) -> TaskData:
    validate(opts)
    splits, root = open_dataset(opts["path"])
    train, test, train_name, test_name = _pick_splits(splits, opts, root)
    where = f"{root} (split {train_name!r})"
    test_where = f"{root} (split {test_name!r})" if test_name else None
    if opts["text_column"] is not None:
        return _text_task(train, opts, where)
    _column(train, opts["label_column"], "label_column", where)
    if test is not None:
        _column(test, opts["label_column"], "label_column", test_where)
    label_feature = train.features[opts["label_column"]]
    names = list(label_feature.names) if hasattr(label_feature, "names") else None
    if opts["image_column"] is not None:
        return _image_task(train, test, opts, where, test_where, names)
    return _feature_task(train, test, opts, where, test_where, names)


def _text_task(train: Any, opts: dict[str, Any], where: str) -> TaskData:
    column = opts["text_column"]
    _column(train, column, "text_column", where)
    rows = train[column]
    bad = next((i for i, v in enumerate(rows) if not isinstance(v, str)), None)
    if bad is not None:
        raise DataError(f"{where}: column {column!r} row {bad + 1} is {type(rows[bad]).__name__}, not text")
    text = "\n".join(rows)
    if not text:
        raise DataError(f"{where}: column {column!r} is empty (no text)")
    return text_task.lm_task(text, f"{where} column {column!r}", opts, name="hf")


def _feature_task(train: Any, test: Any | None, opts: dict[str, Any], where: str, test_where: str | None,
                  names: list[str] | None) -> TaskData:
    label = opts["label_column"]
    features = opts["feature_columns"]
    if features is None:
        features = [c for c, f in train.features.items() if c != label and type(f).__name__ in ("Value", "ClassLabel")]
        if not features:
            raise DataError(f"{where}: no scalar column besides {label!r} to use as features (columns: "
                            f"{', '.join(train.column_names)}); name an image_column or feature_columns")
    for ds, w in ((train, where), (test, test_where)):
        if ds is None:
            continue
        for c in features:
            _column(ds, c, "feature_columns", w)
            kind = type(ds.features[c]).__name__
            if kind not in ("Value", "ClassLabel"):
                raise DataError(f"{w}: column {c!r} holds {kind} values; feature_columns takes scalar columns "
                                f"(numbers, text categories, bools){' (use image_column)' if kind == 'Image' else ''}")
    columns = [label, *features]
    pool = train.select_columns(columns).to_pandas()
    other = test.select_columns(columns).to_pandas() if test is not None else None
    table_opts = {**opts, "problem": "classification" if names is not None else opts["problem"]}
    return frame_task("hf", pool, other, table_opts, where, test_where, target=label, features=features,
                      class_names=names)


def _pil(value: Any, where: str) -> Any:
    """A Pillow image from what a datasets image column holds (decoded image, {bytes, path}, bytes)."""
    import io

    from PIL import Image

    if isinstance(value, Image.Image):
        return value
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if not isinstance(value, (bytes, bytearray, str)):
        raise DataError(f"{where}: holds {type(value).__name__}, not an image")
    try:
        img = Image.open(io.BytesIO(value) if isinstance(value, (bytes, bytearray)) else value)
        img.load()
        return img
    except Image.DecompressionBombError as exc:
        raise DataError(f"{where}: image too large to decode ({exc})") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{where}: unreadable image ({exc.__class__.__name__}: {_first_line(exc)})") from exc


def _images(ds: Any, column: str, where: str) -> list[Any]:
    """Every image of the column, decoded here (not by the library) so a bad one is named by its row."""
    feature = ds.features[column]
    if type(feature).__name__ == "Image" and feature.decode:
        ds = ds.cast_column(column, type(feature)(decode=False))  # {bytes, path} dicts
    return [_pil(value, f"{where}: column {column!r} row {i + 1}") for i, value in enumerate(ds[column])]


def _image_task(train: Any, test: Any | None, opts: dict[str, Any], where: str, test_where: str | None,
                names: list[str] | None) -> TaskData:
    column, label = opts["image_column"], opts["label_column"]
    _column(train, column, "image_column", where)
    if test is not None:
        _column(test, column, "image_column", test_where)
    n_all = len(train) + (len(test) if test is not None else 0)
    imgs = _images(train, column, where) + (_images(test, column, test_where) if test is not None else [])
    size = opts["image_size"]
    if size is None:
        size = size_of([im.size for im in imgs], [f"row {i + 1}" for i in range(len(imgs))], f"{where}: column "
                       f"{column!r}")
    else:
        size = (size, size) if isinstance(size, int) else (size[0], size[1])
    gray = all(im.mode in GRAY_MODES for im in imgs)
    channels = 1 if gray else 3
    check_fits(where, BUFFER_FACTOR * n_all * channels * size[0] * size[1] * 13, f"{n_all:,} images")
    x = np.stack([pil_pixels(im, gray, size) for im in imgs]) if imgs else np.zeros((0, channels, *size), np.uint8)
    y_pool_raw = np.asarray(train[label])
    y_test_raw = np.asarray(test[label]) if test is not None else None
    tr, te = split_pools(len(train), len(test) if test is not None else None, opts, where, "images")
    x_pool, x_test = x[:len(train)], x[len(train):] if test is not None else x[:len(train)]
    test_raw = y_test_raw if test is not None else y_pool_raw
    y_pool, y_test, classes = encode_classes(y_pool_raw, test_raw[te], where,
                                             lambda i: f"{test_where or where}: row {int(te[i]) + 1}", names)
    return make_task("hf", x_pool[tr], y_pool[tr], x_test[te], y_test, opts, where, n_classes=len(classes),
                     info={"classes": classes, "image_size": list(size), "channels": channels})
