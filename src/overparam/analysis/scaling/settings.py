"""The settings of a sweep that ``fit`` and ``advise`` never pool: one scaling law per setting.

A sweep that varies something besides model size, the data it sees (D) and its seeds (a text ``task.mix``
of specialists and generic models, a label-noise or weight-decay axis) holds several curves: each setting
is a task of its own, or trains on data of its own. One law fitted across them would read their
differences as an effect of N or D. The settings are the report's (``scaling_report.setting_axes``: the
keys that vary besides the size axes, ``train.steps`` / ``train.batch_size`` and the replicate seeds), less
``task.train_size`` where it *is* D: a closed-form or full-batch fit of a non-language task sees each of
its n examples once per step (``points.examples_seen``), so n is the data axis there, not a setting.

``--setting KEY=VALUE`` picks one: VALUE as the reading prints it (``task.mix=docs + stdlib``,
``task.label_noise=0.2``) or as YAML (``task.mix=[{path: "embedded:docs", name: docs}]``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from overparam.errors import OverparamError


@dataclass
class Setting:
    """One setting of a sweep: its values (``fixed``), how a reading names them, and its points."""

    fixed: dict[str, Any]
    label: str
    runs: pd.DataFrame


def fit_setting_axes(runs: pd.DataFrame, size_axes: list[str] | None) -> list[str]:
    """The keys whose values split ``runs`` (``load_runs``' frame) into separate scaling curves."""
    from overparam.analysis.double_descent import SIZE_COLUMNS
    from overparam.analysis.scaling_report import REPLICATES, TOKEN_AXES
    from overparam.train.recipe import CLOSED_FORM

    done = runs[runs["status"] == "done"] if "status" in runs else runs
    skip = {*(size_axes or []), *SIZE_COLUMNS, *TOKEN_AXES, *REPLICATES}
    no_tokens = "tokens" not in done or done["tokens"].isna().all()
    optimizers = set(done["train.optimizer"].astype(str)) if "train.optimizer" in done else set()
    if no_tokens and optimizers and optimizers <= {*CLOSED_FORM, "gd"}:
        skip.add("task.train_size")  # D = n: the data axis (points.examples_seen)
    return [c for c in done.columns if "." in c and c not in skip and done[c].astype(str).nunique() > 1]


def sweep_settings(directory: str | Path, runs: pd.DataFrame | None = None) -> tuple[list[str], list[Setting]]:
    """(setting axes, settings in the order the sweep first ran them) of a sweep's finished runs."""
    from overparam.analysis.claims import fmt_settings
    from overparam.store import load_runs, open_store

    runs = load_runs(directory) if runs is None else runs
    if runs.empty:
        return [], [Setting({}, "", runs)]
    with open_store(directory) as store:
        size_axes = store.meta("size_axes")
    axes = fit_setting_axes(runs, size_axes)
    done = runs[runs["status"] == "done"] if "status" in runs else runs
    if not axes or done.empty:
        return axes, [Setting({}, "", runs)]
    keys = done[axes].apply(lambda row: json.dumps([_plain(v) for v in row], sort_keys=True, default=str), axis=1)
    out = []
    for key in dict.fromkeys(keys):
        sub = done[keys == key]
        fixed = {a: _plain(sub[a].iloc[0]) for a in axes}
        out.append(Setting(fixed, fmt_settings(fixed), sub))
    return axes, out


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def parse_choice(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` of ``--setting``, or an error naming the expected form."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise OverparamError(f"--setting: expected KEY=VALUE (e.g. task.mix=docs), got {text!r}")
    return key.strip(), value.strip()


def _matches(value: Any, wanted: str) -> bool:
    """Whether ``wanted`` names ``value``: as a reading prints it, or as YAML for the same value."""
    import yaml

    from overparam.analysis.claims import fmt_setting

    if fmt_setting(value) == wanted or str(value) == wanted:
        return True
    try:
        parsed = yaml.safe_load(wanted)
    except yaml.YAMLError:
        return False
    return json.dumps(parsed, sort_keys=True, default=str) == json.dumps(value, sort_keys=True, default=str)


def choose(axes: list[str], settings: list[Setting], choices: list[str], where: str | Path) -> list[Setting]:
    """The settings that every ``--setting KEY=VALUE`` in ``choices`` names (one at least), or an error."""
    picked = settings
    for text in choices:
        key, wanted = parse_choice(text)
        if key not in axes:
            varied = ", ".join(axes) if axes else "nothing besides size, data and seeds"
            raise OverparamError(f"--setting {text}: {key} is not a setting of {where} (its runs vary in {varied})")
        picked = [s for s in picked if _matches(s.fixed[key], wanted)]
        if not picked:
            raise OverparamError(f"--setting {text}: no finished run of {where} has {key} = {wanted}; its settings: "
                                 f"{listing(settings)}")
    return picked


def listing(settings: list[Setting]) -> str:
    """'task.mix = docs; task.mix = docs + stdlib': the settings, as ``--setting`` takes them."""
    return "; ".join(s.label for s in settings)


def several_settings_error(where: str | Path, axes: list[str], settings: list[Setting], command: str) -> OverparamError:
    """The refusal of a command that answers for one task when the sweep holds several."""
    from overparam.analysis.claims import fmt_setting

    key = axes[0]
    return OverparamError(
        f"{where}: the runs differ in {', '.join(axes)} ({len(settings)} settings: {listing(settings)}), each a task "
        f"of its own, and one law across them would pool them; choose one with --setting, e.g. "
        f"overparam {command} {where} --setting '{key}={fmt_setting(settings[0].fixed[key])}' ...")
