"""``table``: the user's own CSV, TSV or Parquet file, one row per example and a ``target`` column.

Keys: ``path`` (the file), ``target`` (the column to predict), ``features`` (columns used as
inputs; default every other column), ``test_path`` (a second file with the same columns as the
test set; without it a seeded split holds out ``test_size`` rows, default 20 %), ``problem``
(``auto``: an integer, string or bool target with at most 100 distinct values is classification,
anything else numeric is regression), ``missing`` (``error``, ``drop`` or ``mean``), and the
common ``train_size``, ``test_size``, ``seed``, ``label_noise``, ``noise_seed``.

Reading: ``.csv`` (comma), ``.tsv`` / ``.tab`` (tab), each optionally compressed (``.gz``, ``.bz2``,
``.xz``, ``.zip``, ``.zst``), through pandas; ``.parquet`` / ``.pq`` through pyarrow (extra
``table``). The first line of a text file is the header. Rows in messages count data rows from 1.

Encoding, fitted on the training split only (never the test rows):

- a numeric column is standardized: minus the training mean, over the training standard
  deviation (a constant column becomes 0);
- a bool, category or text column with at most ``MAX_CATEGORIES`` distinct values, repeated
  (``categorical_looking``), is one-hot encoded over the categories of the training split in
  sorted order; a test value the training split never saw encodes as all zeros;
- anything else (free text, ids, dates, a numeric column with a stray word) is an error naming
  the column, so nothing is silently dropped or mis-read;
- the target: classification labels are the training pool's sorted distinct values as 0..K−1
  (``info["classes"]`` holds their text); a regression target is standardized (``data.own``).

Missing values (empty cells, NaN, and ±inf in numeric columns) are an error naming the column,
the file, how many rows and the first one, unless ``missing: drop`` (rows with a missing value in
a used column are dropped from both files before splitting) or ``missing: mean`` (a missing
feature takes the training mean of its encoded column: 0 after standardization, the training
category frequencies for a one-hot column; rows whose *target* is missing are still dropped,
since no label is invented).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from overparam.data.base import TaskData
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
)
from overparam.errors import DataError, SpecError, require
from overparam.options import Option

TEXT_FORMATS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
PARQUET = (".parquet", ".pq")
COMPRESSION = (".gz", ".bz2", ".xz", ".zip", ".zst")
MAX_CATEGORIES = 100  # distinct values a text column may have and still be one-hot encoded
COMPRESSED_RATIO = 10.0  # assumed expansion of a compressed text file when estimating memory
SNIFF_BYTES = 1 << 16  # bytes read to tell text from binary
CONTROL_FRACTION = 0.05  # more control bytes than this (not \t \n \r \f \v) reads as binary, as data.text


def _names(v: list[str]) -> list[str]:
    return list(dict.fromkeys(v))  # keep the user's order, drop repeats


OPTIONS: dict[str, Option] = {
    **own_options("the CSV, TSV or Parquet file (.csv, .tsv, .tab, .parquet, .pq; text files may be compressed)"),
    "target": Option(str, None, "the column to predict", nullable=True),
    "features": Option(list, None, "input columns (null: every column but the target)", nullable=True,
                       check=lambda v: None if v and all(isinstance(c, str) for c in v) else
                       "must be a non-empty list of column names", normalize=_names),
    "test_path": Option(str, None, "a second file with the same columns, the test set (null: a seeded split "
                        "of path)", nullable=True),
    "missing": Option(str, "error", "empty cells, NaN or ±inf: error, drop (those rows) or mean (the training "
                      "mean of the encoded column)", choices=("error", "drop", "mean")),
}


def file_format(path: Path) -> tuple[str, bool]:
    """(``csv`` | ``tsv`` | ``parquet``, compressed?) from the file's suffixes."""
    suffixes = [s.lower() for s in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] in COMPRESSION
    last = suffixes[-2] if compressed and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    if last in PARQUET and not compressed:
        return "parquet", False
    if last in TEXT_FORMATS:
        return ("csv" if last == ".csv" else "tsv"), compressed
    raise DataError(f"{path}: unknown table format {''.join(path.suffixes) or '(no suffix)'!r}; expected .csv, "
                    f".tsv, .tab (optionally {', '.join(COMPRESSION)}) or .parquet")


def _sniff_binary(path: Path, fmt: str) -> None:
    with path.open("rb") as f:
        head = f.read(SNIFF_BYTES)
    nul = head.find(b"\x00")
    if nul >= 0:
        raise DataError(f"{path}: binary file (NUL byte at offset {nul}), expected {fmt.upper()} text")
    control = sum(head.count(bytes([c])) for c in (*range(1, 9), *range(14, 32), 127))
    if head and control > CONTROL_FRACTION * len(head):
        raise DataError(f"{path}: binary file ({control / len(head):.0%} control bytes), expected {fmt.upper()} text")


def _parquet_estimate(path: Path) -> float:
    pq = require("pyarrow.parquet", "table")
    try:
        meta = pq.ParquetFile(path).metadata
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError subclasses for junk
        raise DataError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from exc
    return float(sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)))


def read_frame(path: Path) -> pd.DataFrame:
    """The file as a DataFrame with a 0..n−1 index; every failure is a DataError naming the file."""
    fmt, compressed = file_format(path)
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"{path}: empty file (expected a header and rows)")
    if fmt == "parquet":
        need = BUFFER_FACTOR * _parquet_estimate(path)
        check_fits(path, need, "its columns' uncompressed size × 3")
    else:
        ratio = COMPRESSED_RATIO if compressed else 1.0
        check_fits(path, BUFFER_FACTOR * ratio * size, f"{size:,} bytes on disk{' compressed' if compressed else ''}"
                   f" × {BUFFER_FACTOR * ratio:g}")
        if not compressed:
            _sniff_binary(path, fmt)
    try:
        if fmt == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep=TEXT_FORMATS[".csv" if fmt == "csv" else ".tsv"], low_memory=False,
                                encoding="utf-8-sig")  # -sig: a byte-order mark (Excel's CSV) is not part of a name
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: empty file (no header, no rows)") from exc
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: malformed {fmt.upper()}: {str(exc).strip().splitlines()[-1]}") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte offset {exc.start})") from exc
    except ImportError as exc:  # a compression codec pandas reads through an optional package (.zst)
        raise DataError(f"{path}: reading it needs an optional package ({str(exc).splitlines()[0]})") from exc
    except (OSError, EOFError, ValueError) as exc:  # corrupt compression, pyarrow errors (ArrowInvalid is one)
        raise DataError(f"{path}: cannot read as {fmt.upper()} ({str(exc).strip().splitlines()[0]})") from exc
    except Exception as exc:  # pyarrow's own error types do not all derive from the above
        if type(exc).__module__.startswith("pyarrow"):
            raise DataError(f"{path}: cannot read as Parquet ({str(exc).strip().splitlines()[0]})") from exc
        raise
    if len(frame) == 0:
        raise DataError(f"{path}: no data rows (only a header: {', '.join(map(str, frame.columns[:10]))})")
    frame.columns = [str(c) for c in frame.columns]
    return frame.reset_index(drop=True)


def validate(task: dict[str, Any]) -> None:
    """Checked with the spec, before anything loads."""
    require_keys(task, {"path": "a CSV, TSV or Parquet file", "target": "the column to predict"})


def load(opts: dict[str, Any]) -> TaskData:
    validate(opts)
    path = existing(opts["path"], "path", "a CSV, TSV or Parquet file")
    pool = read_frame(path)
    if opts["test_path"] is None:
        return frame_task("table", pool, None, opts, str(path), None)
    test_path = existing(opts["test_path"], "test_path", "a CSV, TSV or Parquet file with path's columns")
    return frame_task("table", pool, read_frame(test_path), opts, str(path), str(test_path))


def frame_task(name: str, pool: pd.DataFrame, test: pd.DataFrame | None, opts: dict[str, Any], source: str,
               test_source: str | None, target: str | None = None, features: list[str] | None = None,
               class_names: list[str] | None = None) -> TaskData:
    """Split and encode DataFrames (a table's rows, or a Hugging Face dataset's) into a task.

    ``target`` / ``features`` default to ``opts``' keys; ``class_names``: the target already holds
    integer labels with these names.
    """
    target = target if target is not None else opts["target"]
    features = features if features is not None else opts.get("features")
    _check_columns(pool, target, features, source)
    if test is not None:
        _check_columns(test, target, features, test_source)
    features = features or [c for c in pool.columns if c != target]
    if target in features:
        raise SpecError(f"task.features: lists the target column {target!r}")
    kinds = {c: column_kind(pool[c], c, source) for c in features}
    pool = _as_kinds(pool, kinds, source)
    test = _as_kinds(test, kinds, test_source) if test is not None else None
    pool, dropped = _handle_missing(pool, [target, *features], opts["missing"], source)
    info: dict[str, Any] = {"source": source, "target": target, "dropped_rows": dropped}
    if test is not None:
        test, info["dropped_test_rows"] = _handle_missing(test, [target, *features], opts["missing"], test_source)
    problem = resolve_problem(_values(pool[target]), opts["problem"], f"{source}: column {target!r}")
    tr, te = split_pools(len(pool), None if test is None else len(test), opts, source)
    test_rows = (test if test is not None else pool).iloc[te]
    test_where = test_source if test is not None else source
    train_rows = pool.iloc[tr]
    x_train, x_test, names, stats = encode_features(train_rows, test_rows, features, kinds, source)
    info.update(features=names, standardized=stats, test_source=test_where)
    if problem == "regression":
        return regression_task(name, x_train, _values(train_rows[target]), x_test, _values(test_rows[target]),
                               opts, info)
    y_pool, y_test, classes = encode_classes(
        _values(pool[target]), _values(test_rows[target]), f"{source}: column {target!r}",
        lambda i: f"{test_where}: row {test_rows.index[i] + 1}", class_names)
    return classification_task(name, x_train, y_pool[tr], x_test, y_test, classes, opts, info)


def _check_columns(frame: pd.DataFrame, target: str, features: list[str] | None, source: str | None) -> None:
    found = ", ".join(map(repr, frame.columns[:30])) + (", …" if len(frame.columns) > 30 else "")
    if target not in frame.columns:
        raise DataError(f"{source}: no target column {target!r} (columns: {found})")
    missing = [c for c in features or () if c not in frame.columns]
    if missing:
        raise DataError(f"{source}: no column {missing[0]!r} (task.features; columns: {found})")


def categorical_looking(series: pd.Series) -> bool:
    """A text column reads as categories: at most ``MAX_CATEGORIES`` distinct values, and values repeat
    (some value twice, and at most 10 distinct or one distinct value per two rows): not free text, not an id."""
    values = series.dropna()
    distinct = values.astype(str).nunique()
    return distinct <= MAX_CATEGORIES and distinct < len(values) and (distinct <= 10 or 2 * distinct <= len(values))


def column_kind(series: pd.Series, name: str, source: str) -> str:
    """``numeric`` or ``categorical``; a DataError for a column that is neither."""
    if pd.api.types.is_bool_dtype(series) or isinstance(series.dtype, pd.CategoricalDtype):
        return "categorical"
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_complex_dtype(series):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(series) or pd.api.types.is_timedelta64_dtype(series):
        raise DataError(f"{source}: column {name!r} holds dates or times, which are not features; leave it out of "
                        f"task.features or turn it into numbers")
    values = series.dropna()
    if len(values) and values.map(lambda v: isinstance(v, bool)).all():
        return "categorical"
    as_numbers = pd.to_numeric(values, errors="coerce")
    numbers = int(as_numbers.notna().sum())
    if len(values) and numbers == len(values):
        return "numeric"
    if numbers * 2 >= len(values) and len(values):
        bad = as_numbers.index[as_numbers.isna()][0]
        raise DataError(f"{source}: column {name!r} is numeric except row {bad + 1}: {series[bad]!r} (fix the cell, "
                        f"or set it empty and use task.missing)")
    if categorical_looking(series):
        return "categorical"
    sample = values.iloc[0] if len(values) else None
    distinct = values.astype(str).nunique()
    raise DataError(f"{source}: column {name!r} is neither numeric nor categorical-looking ({distinct} distinct values "
                    f"in {len(values)} rows, e.g. {sample!r}; a category column has at most {MAX_CATEGORIES} distinct "
                    f"values, repeated): leave it out of task.features or turn it into numbers")


def _as_kinds(frame: pd.DataFrame, kinds: dict[str, str], source: str | None) -> pd.DataFrame:
    """Numeric columns as float64 (a test file's stray text is an error naming its row)."""
    frame = frame.copy()
    for col, kind in kinds.items():
        if kind != "numeric" or pd.api.types.is_float_dtype(frame[col]):
            continue
        if pd.api.types.is_bool_dtype(frame[col]) or not pd.api.types.is_numeric_dtype(frame[col]):
            as_numbers = pd.to_numeric(frame[col].astype(object), errors="coerce")
            bad = as_numbers.isna() & frame[col].notna()
            if bad.any():
                row = bad.index[bad][0]
                raise DataError(f"{source}: column {col!r} is numeric in the training data but row {row + 1} "
                                f"holds {frame[col][row]!r}")
            frame[col] = as_numbers.to_numpy(dtype=np.float64, na_value=np.nan)
        else:  # integers, nullable ones (Int64 with <NA>) included
            frame[col] = frame[col].to_numpy(dtype=np.float64, na_value=np.nan)
    return frame


def _missing_mask(series: pd.Series) -> pd.Series:
    mask = series.isna()
    if pd.api.types.is_float_dtype(series):
        mask |= np.isinf(series.to_numpy(dtype=np.float64, na_value=np.nan))
    return mask


def _handle_missing(frame: pd.DataFrame, columns: list[str], policy: str, source: str | None
                    ) -> tuple[pd.DataFrame, int]:
    """The frame after the ``missing`` policy, and how many rows it dropped."""
    masks = {c: _missing_mask(frame[c]) for c in columns}
    if policy == "error":
        for col, mask in masks.items():
            if mask.any():
                rows = mask.index[mask]
                infinite = int((mask & frame[col].notna()).sum())
                what = (f"{len(rows) - infinite} missing" if infinite < len(rows) else "") + \
                    (" and " if 0 < infinite < len(rows) else "") + (f"{infinite} infinite" if infinite else "")
                raise DataError(f"{source}: column {col!r} has {what} value{'s' if len(rows) > 1 else ''} in "
                                f"{len(rows)} row{'s' if len(rows) > 1 else ''} (first: row {rows[0] + 1}); fill them, "
                                f"or set task.missing: drop (skip those rows) or mean (the training mean)")
        return frame, 0
    drop = masks[columns[0]].copy()  # the target: never imputed
    if policy == "drop":
        for mask in masks.values():
            drop |= mask
    kept = frame[~drop]
    if len(kept) == 0:
        raise DataError(f"{source}: every row has a missing value in a used column (task.missing: {policy})")
    if policy == "mean":
        kept = kept.copy()
        for col in columns[1:]:
            if pd.api.types.is_float_dtype(kept[col]):
                kept.loc[_missing_mask(kept[col]), col] = np.nan
    return kept, int(drop.sum())


def _values(series: pd.Series) -> np.ndarray:
    """A column as a plain numpy array: bool, int64 or float64 when it is numeric, else objects."""
    if pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=bool)
    if pd.api.types.is_integer_dtype(series):
        return series.to_numpy(dtype=np.int64)
    if pd.api.types.is_float_dtype(series):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    return series.astype(object).to_numpy()


def encode_features(train: pd.DataFrame, test: pd.DataFrame, features: list[str], kinds: dict[str, str],
                    source: str = "the data") -> tuple[np.ndarray, np.ndarray, list[str], dict[str, list[float]]]:
    """(x_train, x_test, encoded column names, {numeric column: [training mean, std]}), float64, fitted
    on ``train`` alone (see the module doc)."""
    blocks_tr, blocks_te, names, stats = [], [], [], {}
    for col in features:
        if kinds[col] == "numeric":
            a = train[col].to_numpy(dtype=np.float64, na_value=np.nan)
            b = test[col].to_numpy(dtype=np.float64, na_value=np.nan)
            known = a[np.isfinite(a)]
            if not len(known):
                raise DataError(f"{source}: column {col!r} has no value in the training split (every one is missing)")
            mean, std = known.mean(), known.std()
            std = std if std > 0 else 1.0
            stats[col] = [float(mean), float(std)]
            a, b = (a - mean) / std, (b - mean) / std
            a[~np.isfinite(a)] = 0.0  # missing: mean → the training mean, which standardizes to 0
            b[~np.isfinite(b)] = 0.0
            blocks_tr.append(a[:, None])
            blocks_te.append(b[:, None])
            names.append(col)
        else:
            cats = sorted(set(train[col].dropna().astype(str)))
            index = {c: i for i, c in enumerate(cats)}
            a, b = _one_hot(train[col], index), _one_hot(test[col], index)
            known = ~np.isnan(a).any(axis=1)
            freq = a[known].mean(axis=0) if known.any() else np.zeros(len(cats))
            a = np.where(np.isnan(a), freq, a)  # missing: mean → the training category frequencies
            b = np.where(np.isnan(b), freq, b)
            blocks_tr.append(a)
            blocks_te.append(b)
            names.extend(f"{col}={c}" for c in cats)
    if not names:
        raise DataError(f"{source}: no feature to encode (the features' training values are all missing)")
    return np.concatenate(blocks_tr, axis=1), np.concatenate(blocks_te, axis=1), names, stats


def _one_hot(series: pd.Series, index: dict[str, int]) -> np.ndarray:
    """(n, K) one-hot of a column over the training categories; unseen → zeros, missing → NaN row."""
    out = np.zeros((len(series), len(index)))
    for i, v in enumerate(series.tolist()):
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            out[i] = np.nan
        elif str(v) in index:
            out[i, index[str(v)]] = 1.0
    return out
