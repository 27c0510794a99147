"""The landscape reading of a sweep as one JSON document, ``DIR/analyses/landscape.json``.

Two measurements against width (``overparam.analysis.landscape`` computes them):
steps to a train-loss threshold per size, read off the stored curves, and the loss along the
straight line from init to the trained weights per run, rebuilt from the checkpoints. The
document records the finished run ids it describes, so the report can tell a fresh file from
one written before the sweep grew. The sweep's own store is only read.

When no threshold is given, ``auto_threshold`` picks the lowest value that at least half the
sizes reached (each in at least half its seeds), rounded up to two significant digits. A fixed
fraction of the initial loss would not travel across tasks: with label noise the narrow nets
plateau far above any fraction the wide ones pass in a few steps, so one fraction is either
reached by nobody or by everybody at the first evaluation. The median rule guarantees sizes on
both sides of the threshold, which is what a comparison of speeds needs.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from overparam.analysis.epochwise import size_axis
from overparam.analysis.landscape import DEFAULT_ALPHAS, steps_to_threshold
from overparam.data import is_language_task
from overparam.errors import OverparamError
from overparam.store_damage import SkippedRunWarning

VERSION = 1
ARTIFACT = "landscape"  # DIR/analyses/landscape.json
METRICS = ("train_loss", "train_error")
MIN_POINTS = 3  # evaluated steps per run before "the first step at or below" says anything


def fmt_num(v: float | None) -> str:
    """Three significant digits, the precision every sentence here states; from 1,000 up with separators."""
    if v is None:
        return "n/a"
    return f"{float(f'{v:.3g}'):,.0f}" if 1e3 <= abs(v) < 1e15 else f"{v:.3g}"


def fmt_size(v: Any) -> str:
    """A size as the sweep names it: '1,091' for a width, the value itself otherwise."""
    if isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer():
        return f"{int(v):,}"
    return str(v)


def fmt_int(v: float) -> str:
    return f"{int(round(float(v))):,}"


# ---------------------------------------------------------------- thresholds


def pooled_settings(runs: pd.DataFrame, axis: str) -> list[str]:
    """Settings besides size and seeds that vary among finished runs: the per-size numbers pool over them."""
    from overparam.analysis.double_descent import IGNORED, SIZE_COLUMNS

    done = runs[runs["status"] == "done"]
    skip = IGNORED | set(SIZE_COLUMNS) | {axis}
    return [c for c in done.columns if "." in c and c not in skip and done[c].astype(str).nunique() > 1]


def evaluated_steps(runs: pd.DataFrame, curves: pd.DataFrame, metric: str) -> int:
    """Median number of stored steps of ``metric`` per finished run (0 when none are stored)."""
    done = set(runs.loc[runs["status"] == "done", "id"]) if not runs.empty else set()
    data = curves[(curves["name"] == metric) & curves["run_id"].isin(done) & curves["value"].notna()]
    if data.empty:
        return 0
    return int(data.groupby("run_id")["step"].nunique().median())


def _at_least_half(values: list[float]) -> float:
    """The lowest value that at least half of ``values`` are at or below."""
    ordered = sorted(values)
    return ordered[math.ceil(len(ordered) / 2) - 1]


def round_up(x: float, digits: int = 2) -> float:
    """``x`` rounded up (towards +inf) to ``digits`` significant digits: 0.7481 → 0.75, never below x."""
    if x == 0 or not math.isfinite(x):
        return float(x)
    exponent = math.floor(math.log10(abs(x))) - digits + 1
    n = math.ceil(x / 10.0**exponent - 1e-9)
    value = float(f"{n}e{exponent}")
    return value if value >= x else float(f"{n + 1}e{exponent}")


def auto_threshold(runs: pd.DataFrame, curves: pd.DataFrame, metric: str = "train_loss") -> float:
    """The lowest ``metric`` value that at least half the sizes reached, each in at least half its
    runs, rounded up to 2 significant digits (the reading says 0.75, not 0.7481563)."""
    done = runs[runs["status"] == "done"]
    axis = size_axis(done)
    data = curves[(curves["name"] == metric) & curves["value"].notna()]
    best = data.groupby("run_id")["value"].min()
    done = done[done["id"].isin(best.index)]
    if done.empty:
        raise OverparamError(f"no stored {metric} curves to choose a threshold from")
    per_size = [_at_least_half(best[frame["id"]].tolist()) for _, frame in done.groupby(axis)]
    return round_up(_at_least_half(per_size))


def initial_value(curves: pd.DataFrame, metric: str = "train_loss") -> float:
    """Median over runs of the first stored value of ``metric`` (step 0 when curves start there)."""
    data = curves[(curves["name"] == metric) & curves["value"].notna()].sort_values(["run_id", "step"])
    return float(data.groupby("run_id")["value"].first().median())


def check_alphas(alphas: tuple[float, ...] | list[float]) -> tuple[float, ...]:
    """Sorted, finite, at least 3 points, and holding 0 and 1 exactly (the chord's endpoints)."""
    values = tuple(float(a) for a in alphas)
    if len(values) < 3 or not all(math.isfinite(a) for a in values):
        raise OverparamError(f"alphas: expected at least 3 finite values, got {list(values)}")
    if 0.0 not in values or 1.0 not in values:
        raise OverparamError("alphas: the grid must contain 0 and 1 (init and trained weights), "
                             "e.g. 0:1:21 or -0.5:1.5:41")
    return tuple(sorted(set(values)))


def parse_alphas(text: str) -> tuple[float, ...]:
    """``A:B:K`` → K evenly spaced values from A to B (rounded to 6 decimals, so 0 and 1 land exactly)."""
    import numpy as np

    parts = text.split(":")
    try:
        start, stop, count = float(parts[0]), float(parts[1]), int(parts[2])
        if len(parts) != 3:
            raise ValueError
    except (ValueError, IndexError):
        raise OverparamError(f"--alphas: expected START:STOP:COUNT like 0:1:21, got {text!r}") from None
    if not (math.isfinite(start) and math.isfinite(stop)) or start >= stop or not 3 <= count <= 1001:
        raise OverparamError(f"--alphas: expected finite START < STOP and 3 <= COUNT <= 1001, got {text!r}")
    return check_alphas(np.round(np.linspace(start, stop, count), 6).tolist())


# ---------------------------------------------------------------- which runs get a path


def choose_path_runs(runs: pd.DataFrame, axis: str, max_runs: int | None, has_checkpoint: Any) -> list[str]:
    """Finished runs with a checkpoint, in rounds: every size's lowest seed, then every size's next.

    ``max_runs`` None means one run per size; a round larger than what is left is thinned to
    evenly spaced sizes, so a cap keeps the whole width range rather than its narrow end.
    """
    done = runs[(runs["status"] == "done") & runs["id"].map(has_checkpoint)]
    if done.empty:
        return []
    order = "seed" if "seed" in done else "id"
    by_size = [frame.sort_values(order, kind="stable")["id"].tolist()
               for _, frame in done.sort_values("params", kind="stable").groupby(axis, sort=False)]
    budget = len(by_size) if max_runs is None else max_runs
    chosen: list[str] = []
    for depth in range(max(len(ids) for ids in by_size)):
        batch = [ids[depth] for ids in by_size if depth < len(ids)]
        left = budget - len(chosen)
        if left <= 0:
            break
        if len(batch) > left:
            picks = sorted({round(i * (len(batch) - 1) / max(left - 1, 1)) for i in range(left)})
            batch = [batch[i] for i in picks]
        chosen.extend(batch)
    return chosen


# ---------------------------------------------------------------- the document


def analyze_landscape(directory: str | Path, *, threshold: float | None = None, threshold_frac: float | None = None,
                      metric: str = "train_loss", alphas: tuple[float, ...] = DEFAULT_ALPHAS,
                      max_runs: int | str | None = None, write: bool = True) -> dict[str, Any]:
    """Steps to the threshold per size and the linear path per chosen run; writes
    ``DIR/analyses/landscape.json`` unless ``write`` is False.

    ``threshold`` is absolute; ``threshold_frac`` a fraction of the median initial value; neither:
    ``auto_threshold``. ``max_runs``: how many runs get a linear path (None: one per size, its
    lowest seed; "all": every run with a checkpoint). Raises OverparamError for a sweep it cannot
    read (no checkpoints, no curves)."""
    from overparam.store import load_curves, load_runs, open_store

    start = time.perf_counter()
    directory = Path(directory)
    if metric not in METRICS:
        raise OverparamError(f"metric: expected one of {', '.join(METRICS)}, got {metric!r}")
    if threshold is not None and threshold_frac is not None:
        raise OverparamError("give a threshold or a threshold fraction, not both")
    if threshold is not None and not math.isfinite(threshold):
        raise OverparamError(f"threshold: expected a finite number, got {threshold}")
    if threshold_frac is not None and not (math.isfinite(threshold_frac) and 0 < threshold_frac <= 1):
        raise OverparamError(f"threshold fraction: expected 0 < F <= 1, got {threshold_frac}")
    if max_runs is not None and max_runs != "all" and not (isinstance(max_runs, int) and max_runs >= 1):
        raise OverparamError(f"max runs: expected a positive integer or 'all', got {max_runs!r}")
    alphas = check_alphas(alphas)
    runs, curves = load_runs(directory), load_curves(directory)
    done = runs[runs["status"] == "done"] if not runs.empty else runs
    if done.empty:
        raise OverparamError(f"{directory}: no finished runs")
    if is_language_task({k: done[f"task.{k}"].iloc[0] for k in ("kind", "text_column") if f"task.{k}" in done}):
        raise OverparamError(f"{directory}: a language-model sweep; the linear path needs a task with inputs "
                             f"(see `overparam fit` for language models)")
    axis = size_axis(done)
    with open_store(directory) as store:
        budget = len(runs) if max_runs == "all" else max_runs
        with_checkpoint = {i for i in done["id"] if store.checkpoint_path(i).is_file()}
    if not with_checkpoint:
        raise OverparamError(f"{directory}: no finished run has a checkpoint (train.checkpoint was false); the "
                             f"linear path needs the trained weights")
    points = evaluated_steps(runs, curves, metric)
    if points < MIN_POINTS:
        hint = (" (a regression task stores only losses: use --metric train_loss)"
                if points == 0 and metric == "train_error" else "")
        raise OverparamError(f"{directory}: no {metric} curves: runs have {points} evaluated step(s), at least "
                             f"{MIN_POINTS} are needed; set train.eval_every or train.eval_log_points{hint}")
    rule = threshold_rule(runs, curves, metric, threshold, threshold_frac, axis)
    steps = steps_to_threshold((runs, curves), rule["threshold"], metric)
    measured, broken = measure_paths(directory, runs, axis, budget, with_checkpoint, alphas)
    skipped = not_trained(runs, axis) + broken
    if not measured:
        raise OverparamError(f"{directory}: no run could be measured along the linear path: "
                             + "; ".join(skip_text(s, size_word(axis)) for s in skipped))
    if skipped:
        warnings.warn(SkippedRunWarning(skip_note(skipped, size_word(axis))), stacklevel=2)
    paths = {"runs": measured}
    paths["runs"].sort(key=lambda p: (p["params"], p["seed"] if p["seed"] is not None else 0))  # size, then seed
    for p in paths["runs"]:
        p["has_barrier"] = has_barrier(p)
    doc: dict[str, Any] = {
        "version": VERSION, "directory": str(directory), "metric": metric, "threshold": rule["threshold"],
        "threshold_rule": rule, "axis": axis, "pooled": pooled_settings(runs, axis), "run_ids": sorted(done["id"]),
        "evaluated_steps": points,
        "steps": steps, "alphas": list(alphas), "paths": paths["runs"], "skipped": skipped,
    }
    doc["sentences"] = read_steps(doc) + read_paths(doc) + read_skipped(doc)
    doc["seconds"] = round(time.perf_counter() - start, 2)
    if write:
        write_artifact(directory, doc)
    return doc


def measure_paths(directory: Path, runs: pd.DataFrame, axis: str, budget: int | None, with_checkpoint: set[str],
                  alphas: tuple[float, ...]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The linear path of each run ``choose_path_runs`` picks, and the runs left out because their weights
    are not finite (``{"run_id", "status", "size", "reason"}``).

    A run with NaN or infinite weights is replaced by the next one the rule picks (another seed of its
    size, when there is one), so one broken checkpoint costs its size nothing when a sibling can stand in.
    """
    from overparam.analysis.landscape import linear_path_from_store
    from overparam.sweep.checkpoints import NonFiniteWeights

    sizes = runs.set_index("id")[axis] if axis in runs else runs.set_index("id")["params"]
    status = runs.set_index("id")["status"]
    measured: dict[str, dict[str, Any]] = {}
    broken: dict[str, dict[str, Any]] = {}
    while True:  # ends: each pass measures a new run or breaks one, and both sets only grow
        ids = choose_path_runs(runs, axis, budget, lambda i: i in with_checkpoint and i not in broken)
        todo = [i for i in ids if i not in measured]
        if not todo:
            break
        for run_id in todo:
            try:
                measured[run_id] = linear_path_from_store(directory, run_id, alphas)
            except NonFiniteWeights as exc:
                broken[run_id] = {"run_id": run_id, "status": str(status[run_id]), "size": _plain(sizes[run_id]),
                                  "reason": "non-finite weights", "detail": str(exc)}
    rows = runs.set_index("id")
    out = []
    for run_id in ids:
        path = measured[run_id]
        row = rows.loc[run_id]
        path.update({"size": _plain(row[axis]) if axis in row else None, "params": int(row["params"]),
                     "seed": _plain(row.get("seed"))})
        out.append(path)
    return out, list(broken.values())


def not_trained(runs: pd.DataFrame, axis: str) -> list[dict[str, Any]]:
    """Runs that diverged or failed: no trained weights to put on a line (``{"run_id", "status", "size",
    "reason"}``; ``diverged_at``: the step whose loss was not finite, when recorded)."""
    out = []
    for _, row in runs[runs["status"].isin(("diverged", "failed"))].iterrows():
        entry = {"run_id": row["id"], "status": row["status"], "size": _plain(row[axis] if axis in row else
                                                                                row["params"])}
        step = row.get("diverged_at")
        if row["status"] == "diverged":
            entry["reason"] = "diverged (non-finite loss)"
            if step is not None and not pd.isna(step):
                entry["diverged_at"] = int(step)
        else:
            entry["reason"] = "failed"
        out.append(entry)
    return out


def skip_text(entry: dict[str, Any], word: str = "size") -> str:
    """``run 9348a240a35c (width 8): diverged (non-finite loss) at step 4``."""
    at = f" at step {entry['diverged_at']:,}" if entry.get("diverged_at") is not None else ""
    return f"run {entry['run_id']} ({word} {entry['size']}): {entry['reason']}{at}"


def skip_note(skipped: list[dict[str, Any]], word: str = "size") -> str:
    """The one stderr line naming every run the landscape left out, and why."""
    return (f"landscape: {len(skipped)} run{'s' if len(skipped) > 1 else ''} left out ("
            + "; ".join(skip_text(s, word) for s in skipped) + "); the others are measured")


def read_skipped(doc: dict[str, Any]) -> list[str]:
    """One sentence naming the runs left out, every number from ``doc["skipped"]``."""
    skipped = doc.get("skipped")
    skipped = [s for s in skipped if isinstance(s, dict) and {"run_id", "size", "reason"} <= set(s)] \
        if isinstance(skipped, list) else []  # a file edited by hand: what cannot be read is not said
    if not skipped:
        return []
    word = size_word(doc["axis"])
    named = "; ".join(skip_text(s, word) for s in skipped)
    return [f"Left out ({len(skipped)} run{'s' if len(skipped) > 1 else ''}, no trained weights to put on the "
            f"line from init): {named}."]


def threshold_rule(runs: pd.DataFrame, curves: pd.DataFrame, metric: str, threshold: float | None,
                   threshold_frac: float | None, axis: str) -> dict[str, Any]:
    """``{"kind": given|fraction|auto, "threshold", "text"}``: the threshold and how it was chosen."""
    name = metric.replace("_", " ")
    if threshold is not None:
        return {"kind": "given", "threshold": float(threshold), "text": f"{name} {fmt_num(threshold)} (set by hand)"}
    if threshold_frac is not None:
        init = initial_value(curves, metric)
        return {"kind": "fraction", "threshold": threshold_frac * init, "fraction": threshold_frac, "initial": init,
                "text": f"{name} {fmt_num(threshold_frac * init)} ({threshold_frac:g} × the median initial "
                        f"{name}, {fmt_num(init)})"}
    value = auto_threshold(runs, curves, metric)
    return {"kind": "auto", "threshold": value,
            "text": f"{name} {fmt_num(value)} (chosen automatically: the lowest value that at least half the "
                    f"{size_word(axis)}s reached, rounded up to 2 significant digits)"}


def has_barrier(path: dict[str, Any]) -> bool:
    """Whether the train loss rose above the chord by more than rounding (1e-9 of the larger endpoint)."""
    loss = path["train_loss"]
    alphas = path["alpha"]
    ends = max(abs(loss[alphas.index(0.0)]), abs(loss[alphas.index(1.0)]), 1e-12)
    return bool(path["barrier"] > 1e-9 * ends)


def write_artifact(directory: Path, doc: dict[str, Any]) -> Path:
    """Write ``DIR/analyses/landscape.json`` in one step (temp file + rename: never half-written)."""
    path = directory / "analyses" / f"{ARTIFACT}.json"
    try:
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(_plain(doc), indent=1, allow_nan=False))
        tmp.replace(path)
    except OSError as exc:
        raise OverparamError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def load_fresh(directory: str | Path, runs: pd.DataFrame) -> dict[str, Any] | None:
    """``DIR/analyses/landscape.json`` if it describes exactly the sweep's finished runs, else None."""
    path = Path(directory) / "analyses" / f"{ARTIFACT}.json"
    if not path.is_file() or runs.empty:
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    done = sorted(runs.loc[runs["status"] == "done", "id"])
    if not isinstance(doc, dict) or doc.get("version") != VERSION or doc.get("run_ids") != done:
        return None
    return doc


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# ---------------------------------------------------------------- the reading


def size_word(axis: str) -> str:
    """``model.width`` → ``width``: the noun the sentences use for a size."""
    return "size" if axis == "params" else axis.split(".")[-1]


def _list(sizes: list[Any]) -> str:
    text = [str(s) for s in sizes]
    if len(text) > 5:
        return f"{text[0]}, {text[1]}, …, {text[-1]}"
    return text[0] if len(text) == 1 else ", ".join(text[:-1]) + " and " + text[-1]


def read_steps(doc: dict[str, Any]) -> list[str]:
    """Sentences on how fast each size reached the threshold, every number from ``doc["steps"]``."""
    steps, word = doc["steps"], size_word(doc["axis"])
    sizes = steps["sizes"]
    name = f"{steps['metric'].replace('_', ' ')} {fmt_num(steps['threshold'])}"
    reached = [s for s in sizes if s["n_reached"]]
    never = [s for s in sizes if not s["n_reached"]]
    last = max((r["last_step"] for r in steps["runs"]), default=0)
    runs = "runs" if doc.get("pooled") else "seeds"  # pooled over another setting, a width's runs are not seeds
    seeds = f" (median over the {runs} that reached it)" if any(s["n_runs"] > 1 for s in reached) else ""
    out = []
    if not reached:
        finals = [r["final"] for r in steps["runs"] if r["final"] is not None]
        out.append(f"No {word} reached {name} within {fmt_int(last)} steps" +
                   (f"; the lowest final value was {fmt_num(min(finals))}." if finals else "."))
    elif len(reached) == 1:
        only = reached[0]
        out.append(f"Only {word} {fmt_size(only['size'])} reached {name}, at step {fmt_int(only['median_step'])}.")
    else:
        narrow, wide = reached[0], reached[-1]
        bigger = "Wider" if word == "width" else "Larger"
        verdict = (f"{bigger} networks fit faster" if wide["median_step"] < narrow["median_step"] else
                   f"{bigger} networks did not fit faster here" if wide["median_step"] > narrow["median_step"] else
                   f"The narrowest and the widest {word} that reached it got there at the same evaluated step")
        out.append(f"{verdict}: {word} {fmt_size(wide['size'])} reached {name} at step {fmt_int(wide['median_step'])}, "
                   f"{word} {fmt_size(narrow['size'])} at step {fmt_int(narrow['median_step'])}{seeds}.")
    if never and reached:
        names = [s["size"] for s in never]
        which = (f"the {len(never)} narrowest, {word}s {names[0]} to {names[-1]}"
                 if len(never) > 2 and never == sizes[:len(never)] else
                 f"{word}{'s' if len(never) > 1 else ''} {_list(names)}")
        out.append(f"{len(never)} of {len(sizes)} {word}s never reached it in {fmt_int(last)} steps ({which}).")
    partial = [s for s in reached if s["n_reached"] < s["n_runs"]]
    if partial:
        s = partial[0]
        share = f"{s['n_reached']} of {s['n_runs']}"
        out.append(f"Only {share} {runs} of {word} {fmt_size(s['size'])} reached it." if len(partial) == 1 else
                   f"At {len(partial)} {word}s only some {runs} reached it "
                   f"(e.g. {word} {fmt_size(s['size'])}: {share}).")
    out.append(f"Threshold: {doc['threshold_rule']['text']}. A step is the first evaluated step at or below it, "
               f"so it is only as fine as the stored curve ({doc['evaluated_steps']} evaluated steps per run).")
    if doc.get("pooled"):
        out.append(f"Each {word} pools its runs over {', '.join(doc['pooled'])}, which also vary in this sweep.")
    return out


def read_paths(doc: dict[str, Any]) -> list[str]:
    """Sentences on the loss along the straight line, every number from ``doc["paths"]``."""
    paths, word = doc["paths"], size_word(doc["axis"])
    if not paths:
        return []
    one_per_size = len({p["size"] for p in paths}) == len(paths)
    noun = f"{word}s" if one_per_size else "runs"
    mono = sum(p["monotonic"] for p in paths)
    n = len(paths)
    out = [f"Along the straight line from the initial to the trained weights the train loss decreased "
           f"monotonically for {mono} of {n} {noun}" + (" (one run per size, its lowest seed)." if one_per_size
                                                         else ".")]
    bumps = [p for p in paths if p["has_barrier"]]
    first: dict[Any, dict[str, Any]] = {}
    for p in paths:
        first.setdefault(p["size"], p)  # the lowest seed of a size: paths come in size, then seed, order
    narrow, wide = paths[0], first[paths[-1]["size"]]
    if bumps:
        top = max(bumps, key=lambda p: p["barrier"])
        at_wide = [p for p in paths if p["size"] == wide["size"]]
        clear = _clear_from(paths)
        tail = (f"from {word} {fmt_size(clear)} up there is none" if clear is not None and clear != wide["size"] else
                f"at the widest, {word} {fmt_size(wide['size'])}, there is none" if clear is not None else
                f"at the widest, {word} {fmt_size(wide['size'])}, it is {'at most ' if len(at_wide) > 1 else ''}"
                f"{fmt_num(max(p['barrier'] for p in at_wide))}")
        out.append(f"The loss rose above the straight chord between the endpoints (a barrier) for {len(bumps)} of "
                   f"{n}; the largest barrier, {fmt_num(top['barrier'])}, is at {word} {fmt_size(top['size'])}; "
                   f"{tail}.")
    else:
        out.append(f"No {noun[:-1]} shows a barrier: the train loss never rose above the straight chord between "
                   f"its endpoints.")
    if 0.5 in doc["alphas"] and narrow is not wide:
        i = doc["alphas"].index(0.5)
        seed = "" if one_per_size else " (lowest seeds)"
        out.append(f"Halfway (α = 0.5) the train loss is {fmt_num(narrow['train_loss'][i])} at {word} "
                   f"{fmt_size(narrow['size'])} and {fmt_num(wide['train_loss'][i])} at {word} "
                   f"{fmt_size(wide['size'])}{seed}.")
    dips = [d for d in (_test_dip(p, doc["alphas"]) for p in paths) if d]
    if dips:
        p, alpha, low, end = max(dips, key=lambda d: 1 - d[2] / d[3])
        out.append(f"Part-way along the line the test loss is lower than at the trained weights (by more than "
                   f"{100 * DIP:.0f} %) for {len(dips)} of {n} {noun}; most at {word} {fmt_size(p['size'])}: "
                   f"{fmt_num(low)} at α = {alpha:g}, {fmt_num(end)} trained.")
    return out


def _clear_from(paths: list[dict[str, Any]]) -> Any:
    """The smallest size from which no run of any larger size has a barrier (None: the widest has one)."""
    clear = None
    for size in reversed(list(dict.fromkeys(p["size"] for p in paths))):
        if any(p["has_barrier"] for p in paths if p["size"] == size):
            break
        clear = size
    return clear


DIP = 0.01  # relative test-loss gap below the trained end that a sentence calls a dip


def _test_dip(path: dict[str, Any], alphas: list[float]) -> tuple[dict[str, Any], float, float, float] | None:
    """(path, α, lowest test loss on 0 < α < 1, test loss at α = 1) when the low is DIP below the end."""
    end = path["test_loss"][alphas.index(1.0)]
    inside = [(a, t) for a, t in zip(alphas, path["test_loss"], strict=True) if 0 < a < 1 and t is not None]
    if end is None or not inside or end <= 0:
        return None
    alpha, low = min(inside, key=lambda x: x[1])
    return (path, alpha, low, end) if low < (1 - DIP) * end else None
