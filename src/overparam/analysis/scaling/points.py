"""Scaling-law points: one row per trained model with ``params`` (N), ``tokens`` (D), ``flops`` (C), ``loss``.

Conventions: C = 6 N D (Kaplan et al. 2020, the forward + backward cost of a dense transformer) fills
``flops`` when absent, and D = C / (6 N) fills ``tokens`` when only ``flops`` is given. Every loader
ends in :func:`prepare_points`, which rejects unusable input with one :class:`OverparamError` naming
the problem.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from overparam.errors import OverparamError

COLUMNS = ("params", "tokens", "flops", "loss")
# Column names of Epoch AI's extraction of Hoffmann et al. 2022, Fig. 4 (shared/data/README.md).
EPOCH_COLUMNS = {"Model Size": "params", "Training FLOP": "flops", "loss": "loss"}


def prepare_points(points: pd.DataFrame, need_loss: bool = True, min_rows: int = 2) -> pd.DataFrame:
    """Validate ``points`` and return a float DataFrame with columns params, tokens, flops[, loss].

    ``tokens`` = flops / (6 params) when only flops is given; ``flops`` = 6 params tokens when absent.
    """
    if not isinstance(points, pd.DataFrame):
        try:
            points = pd.DataFrame(points)
        except (TypeError, ValueError) as exc:
            raise OverparamError(f"points must be a table with columns params, tokens, loss: {exc}") from exc
    cols = {str(c).strip().lower(): c for c in points.columns}
    need = ["params"] + (["loss"] if need_loss else [])
    missing = [c for c in need if c not in cols]
    if "tokens" not in cols and "flops" not in cols:
        missing.append("tokens (or flops)")
    if missing:
        have = ", ".join(map(str, points.columns)) or "none"
        raise OverparamError(f"points: missing column(s) {', '.join(missing)} (columns found: {have})")
    if len(points) < min_rows:
        raise OverparamError(f"points: need at least {min_rows} rows, got {len(points)}")
    out = pd.DataFrame(index=range(len(points)))
    for name in COLUMNS:
        if name in cols:
            out[name] = _numeric(points[cols[name]], name)
    if "tokens" not in out:
        out["tokens"] = out["flops"] / (6.0 * out["params"])
    if "flops" not in out:
        out["flops"] = 6.0 * out["params"] * out["tokens"]
    return out[[c for c in COLUMNS if c in out]]


def _numeric(column: pd.Series, name: str) -> np.ndarray:
    """The column as positive finite floats, or an error naming the first bad row (1-based)."""
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise OverparamError(f"points: column '{name}' has a missing or non-numeric value in row {row + 1} "
                             f"({column.iloc[row]!r})")
    if (values <= 0).any():
        row = int(np.flatnonzero(values <= 0)[0])
        raise OverparamError(f"points: column '{name}' must be > 0, row {row + 1} is {values[row]:g}")
    return values


def read_csv(path: str | Path) -> pd.DataFrame:
    """Read a CSV file as-is, turning every failure into a one-line OverparamError."""
    path = Path(path)
    if not path.is_file():
        raise OverparamError(f"{path}: no such file")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError as exc:
        raise OverparamError(f"{path}: empty file, expected a CSV with columns params,tokens,loss") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise OverparamError(f"{path}: not a readable CSV ({type(exc).__name__})") from exc
    if frame.empty:
        raise OverparamError(f"{path}: no data rows, expected columns params,tokens,loss")
    return frame


def load_points(path: str | Path, drop_highest: int = 0) -> pd.DataFrame:
    """Points from a CSV: ``params,tokens,loss[,flops]``, or Epoch AI's ``Model Size,Training FLOP,loss``.

    ``drop_highest`` drops that many rows with the highest loss (Besiroglu et al. 2024 drop 5 outliers).
    """
    frame = read_csv(path)
    if set(EPOCH_COLUMNS) <= set(frame.columns) and "params" not in frame.columns:
        frame = frame[list(EPOCH_COLUMNS)].rename(columns=EPOCH_COLUMNS)
    try:
        points = prepare_points(frame)
    except OverparamError as exc:
        raise OverparamError(f"{path}: {exc}") from None
    return drop_highest_losses(points, drop_highest)


def drop_highest_losses(points: pd.DataFrame, k: int) -> pd.DataFrame:
    """``points`` without its ``k`` highest-loss rows (order kept)."""
    if k < 0 or k >= len(points) - 1:
        raise OverparamError(f"cannot drop {k} of {len(points)} points")
    if k == 0:
        return points
    keep = np.sort(np.argsort(points["loss"].to_numpy(), kind="stable")[: len(points) - k])
    return points.iloc[keep].reset_index(drop=True)


def load_epoch_chinchilla(path: str | Path, drop_highest: int = 5) -> pd.DataFrame:
    """The 240 points Besiroglu et al. 2024 fit: Epoch's CSV, D = C/(6N), 5 highest losses dropped."""
    return load_points(path, drop_highest=drop_highest)


def examples_seen(runs: pd.DataFrame) -> np.ndarray:
    """D for runs that count no tokens (non-language tasks): the training examples they processed,
    ``train.steps × train.batch_size`` (full-batch gd: × ``task.train_size``; a closed-form fit sees
    each example once: ``task.train_size``). NaN where the config columns are absent."""
    from overparam.train.recipe import CLOSED_FORM

    need = ("train.optimizer", "train.steps", "train.batch_size", "task.train_size")
    if not all(c in runs for c in need):
        return np.full(len(runs), np.nan)
    n = pd.to_numeric(runs["task.train_size"], errors="coerce").to_numpy(float)
    steps = pd.to_numeric(runs["train.steps"], errors="coerce").to_numpy(float)
    batch = pd.to_numeric(runs["train.batch_size"], errors="coerce").to_numpy(float)
    opt = runs["train.optimizer"].astype(str).to_numpy()
    return np.where(np.isin(opt, list(CLOSED_FORM)), n, np.where(opt == "gd", steps * n, steps * batch))


def points_from_sweep(directory: str | Path) -> pd.DataFrame:
    """Points from a sweep directory: finished runs (status ``done``), loss = ``test_loss``.

    Runs without ``tokens`` (non-language tasks) get D = the examples they trained on
    (:func:`examples_seen`), or flops / (6 params) when the config does not say. Not flops / (6N)
    first: a closed-form fit's FLOPs grow like N²·n, which would invent a token axis where the data
    never varied.
    """
    from overparam.store import load_runs

    return points_from_runs(load_runs(directory), directory)


def points_from_runs(runs: pd.DataFrame, directory: str | Path) -> pd.DataFrame:
    """:func:`points_from_sweep` on runs already loaded (``load_runs``' columns); ``directory`` names them
    in errors."""
    if "status" in runs:
        runs = runs[runs["status"] == "done"]
    if "test_loss" not in runs:
        raise OverparamError(f"{directory}: the runs have no test_loss to fit")
    frame = pd.DataFrame({"params": runs["params"].to_numpy(), "loss": runs["test_loss"].to_numpy()})
    tokens = runs["tokens"].to_numpy(dtype=float) if "tokens" in runs else np.full(len(runs), np.nan)
    flops = runs["flops"].to_numpy(dtype=float) if "flops" in runs else np.full(len(runs), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        derived = flops / (6.0 * frame["params"].to_numpy(dtype=float))
    seen = examples_seen(runs)
    frame["tokens"] = np.where(np.isfinite(tokens), tokens, np.where(np.isfinite(seen) & (seen > 0), seen, derived))
    frame["flops"] = flops
    if not np.isfinite(flops).all():
        frame = frame.drop(columns="flops")
    try:
        return prepare_points(frame)
    except OverparamError as exc:
        raise OverparamError(f"{directory}: {len(frame)} finished run(s): {exc}") from None
