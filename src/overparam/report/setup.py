"""A sweep's setup in one line, read from its store: task, n, label noise, model sizes, recipe, seeds.

"Setup: digits, 500 training and 1,297 test examples, 20 % label noise; mlp, 6 sizes from 4 to 512
hidden units; adam, lr 0.003, 1,200 steps of batch 128 (307 epochs); 1 seed."
A setting that differs between runs reads as its range. ``sweep_setup`` returns the numbers (they go
to ``summary.json``), ``setup_claim`` the sentence built from them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from overparam.analysis.claims import Sentence, fmt_setting
from overparam.analysis.double_descent import REPLICATES, SIZE_COLUMNS
from overparam.data import is_language_task

CLOSED_FORM = ("min_norm", "ridge")
OWN_DATA = ("table", "arrays", "images", "hf")  # task kinds that read the user's file or folder
SEQUENCE_TASKS = ("icl-markov", "fewshot")  # train_size / test_size count sequences, each its own task


def _values(runs: pd.DataFrame, col: str) -> list[float]:
    if col not in runs:
        return []
    vals = pd.to_numeric(runs[col], errors="coerce").dropna()
    return sorted({float(v) for v in vals})


def _span(runs: pd.DataFrame, *cols: str) -> dict[str, float] | None:
    """{"min", "max"} of the first column that has numbers (a metric, then the spec's setting)."""
    for col in cols:
        vals = _values(runs, col)
        if vals:
            return {"min": vals[0], "max": vals[-1]}
    return None


def _first(runs: pd.DataFrame, col: str) -> Any:
    if col not in runs or runs[col].dropna().empty:
        return None
    v = runs[col].dropna().iloc[0]
    return v.item() if hasattr(v, "item") else v


def sweep_setup(runs: pd.DataFrame) -> dict[str, Any]:
    """The numbers of the setup line, from the finished runs (all runs when none finished)."""
    done = runs[runs["status"] == "done"] if "status" in runs and (runs["status"] == "done").any() else runs
    kind, family, optimizer = _first(done, "task.kind"), _first(done, "model.family"), _first(done, "train.optimizer")
    size_col = next((c for c in SIZE_COLUMNS if c in done and done[c].astype(str).nunique() > 1), None)
    reps = [c for c in REPLICATES if c in done and done[c].astype(str).nunique() > 1]
    n_seeds = int(done[reps].drop_duplicates().shape[0]) if reps else 1
    language = is_language_task({"kind": kind, "text_column": _first(done, "task.text_column")})
    path = _first(done, "task.path") if kind in OWN_DATA else None  # the user's file names their task
    mixes = list(dict.fromkeys(fmt_setting(m) for m in done["task.mix"] if isinstance(m, list) and m)) \
        if "task.mix" in done else []
    setup: dict[str, Any] = {
        "task": kind, "task_file": Path(str(path)).name if path else None, "language": language,
        "task_mix": mixes or None,
        "family": family, "optimizer": optimizer, "n_runs": int(len(runs)), "n_seeds": n_seeds,
        "n_train": _span(done, "n_train", "task.train_size"), "n_test": _span(done, "n_test", "task.test_size"),
        "label_noise": _span(done, "task.label_noise"), "size_axis": size_col,
        "sizes": _span(done, size_col) if size_col else None,
        "n_sizes": int(done[size_col].nunique()) if size_col else int(done["params"].nunique()),
        "params": _span(done, "params"), "lr": _span(done, "train.lr"), "steps": _span(done, "train.steps"),
        "batch_size": _span(done, "train.batch_size"), "tokens": _span(done, "tokens"), "epochs": None}
    n_train, steps, batch = setup["n_train"], setup["steps"], setup["batch_size"]
    if not language and optimizer not in CLOSED_FORM and optimizer != "gd" and n_train and steps and batch \
            and n_train["min"] == n_train["max"] and batch["min"] == batch["max"] and n_train["min"] > 0:
        per = batch["min"] / n_train["min"]  # full passes over the training set
        setup["epochs"] = {"min": steps["min"] * per, "max": steps["max"] * per}
    return setup


def _range(s: Sentence, span: dict[str, float], fmt: str = "int") -> str:
    put = s.int if fmt == "int" else s.num
    if span["min"] == span["max"]:
        return put(span["min"])
    return f"{put(span['min'])} to {put(span['max'])}"


def setup_claim(setup: dict[str, Any]) -> dict[str, Any]:
    s = Sentence()
    source = setup.get("task_file") or ("; ".join(setup["task_mix"]) if setup.get("task_mix") else None)
    head = [str(setup["task"] or "task") + (f" ({source})" if source else "")]
    n_train, n_test = setup["n_train"], setup["n_test"]
    unit = "sequences" if setup["task"] in SEQUENCE_TASKS else "tokens" if setup["language"] else "examples"
    if n_train and n_test:
        head.append(f"{_range(s, n_train)} training and {_range(s, n_test)} test {unit}")
    elif n_train:
        head.append(f"{_range(s, n_train)} training {unit}")
    noise = setup["label_noise"]
    if noise and noise["max"] > 0:
        head.append(f"{s.pct(noise['min'])} label noise" if noise["min"] == noise["max"] else
                    f"{s.pct(noise['min'])} to {s.pct(noise['max'])} label noise")
    family = str(setup["family"] or "model")
    if ".py:" in family:  # a user's model factory: its file's name and function, not the whole path
        file, _, func = family.rpartition(":")
        family = f"{Path(file).name}:{func}"
    model = [family]
    if setup["sizes"]:
        axis = setup["size_axis"].split(".")[-1]
        model.append(f"{s.int(setup['n_sizes'])} sizes, {axis} {_range(s, setup['sizes'])}")
    elif setup["params"]:
        model.append(f"{_range(s, setup['params'])} parameters")
    recipe = [str(setup["optimizer"] or "")]
    if setup["optimizer"] in CLOSED_FORM:
        recipe = [f"{setup['optimizer'].replace('_', '-')} least squares, solved in closed form"]
    else:
        if setup["lr"]:
            recipe.append(f"lr {_range(s, setup['lr'], 'num')}")
        if setup["steps"]:
            steps = f"{_range(s, setup['steps'])} steps"
            if setup["batch_size"] and setup["optimizer"] != "gd":
                steps += f" of batch {_range(s, setup['batch_size'])}"
            if setup["epochs"]:
                epochs = setup["epochs"]
                steps += (f" ({s.num(epochs['min'])} epochs)" if epochs["min"] == epochs["max"] else
                          f" ({s.num(epochs['min'])} to {s.num(epochs['max'])} epochs)")
            recipe.append(steps)
        if setup["tokens"] and setup["language"]:
            recipe.append(f"{_range(s, setup['tokens'])} training tokens seen")
    seeds = f"{s.int(setup['n_seeds'])} seed" + ("s" if setup["n_seeds"] != 1 else "")
    text = "Setup: " + ", ".join(head) + "; " + ", ".join(model) + "; " + ", ".join(p for p in recipe if p)
    return s.claim(f"{text}; {seeds}.")

