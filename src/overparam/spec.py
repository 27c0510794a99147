"""The sweep spec: parse, validate, expand the axes into runs, name each run by its settings.

A spec (YAML file, YAML text or Python dict) has ``name``, ``task``, ``model``, ``train``,
``vary`` and ``seed`` (DESIGN.md ◆ Spec). Every key is checked against the option tables of
the task kind, the model family and the recipe before anything trains; an error names the
key's dotted path. A run's id is a hash of its *non-default* settings, so adding an option
with a default later does not rename (or retrain) finished runs.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from overparam.data import is_language_task, task_module
from overparam.errors import SpecError
from overparam.models import family_module
from overparam.options import (
    Option,
    coerce,
    json_copy,
    json_value,
    known_keys,
    lookup,
    non_default,
    resolve_section,
    unknown_key,
)
from overparam.spec_input import (
    MAX_AXIS_COUNT,
    axes_detail,
    check_run_count,
    check_spec_data,
    parse_spec_data,
    read_spec_text,
)
from overparam.spec_input import TOP_KEYS as TOP_KEYS  # re-exported: the spec's top-level keys
from overparam.train import recipe

MAX_SEED = 2**32 - 1  # numpy's seeds stop here; torch's at 2**64 - 1
SEED_OPTION = Option(int, 0, "the run's seed: init, batch order, dropout",
                     check=lambda v: None if 0 <= v <= MAX_SEED else f"must be in 0..{MAX_SEED}")


@dataclass(frozen=True)
class Run:
    """One planned run: its id, its resolved config and the axis values that made it."""

    id: str
    config: dict[str, Any]
    point: dict[str, Any] = field(default_factory=dict)


def section_options(config: dict[str, Any]) -> dict[str, dict[str, Option]]:
    """The option tables that apply to a config (they depend on task kind and model family)."""
    task = config.get("task") or {}
    model = config.get("model") or {}
    if not isinstance(task, dict) or "kind" not in task:
        raise SpecError("task.kind: missing (e.g. task: {kind: digits})")
    if not isinstance(model, dict) or "family" not in model:
        raise SpecError("model.family: missing (e.g. model: {family: mlp, width: 64})")
    for path, value in (("task.kind", task["kind"]), ("model.family", model["family"])):
        if not isinstance(value, str):
            raise SpecError(f"{path}: expected a string (one name), got {value!r}")
    return {"task": task_module(task["kind"]).OPTIONS, "model": family_module(model["family"]).OPTIONS,
            "train": recipe.OPTIONS}


def resolve_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate one run's config and fill every default: the 'resolved spec of this run'."""
    tables = section_options(config)
    resolved = {name: resolve_section(name, tables[name], config.get(name) or {}) for name in tables}
    resolved["seed"] = coerce("seed", SEED_OPTION, config.get("seed", 0))
    _check_consistency(resolved)
    return resolved


def _check_consistency(cfg: dict[str, Any]) -> None:
    """Checks that span keys (a family's own ``validate``, closed form needs a linear model)."""
    train, family = cfg["train"], cfg["model"]["family"]
    for module, section in ((task_module(cfg["task"]["kind"]), "task"), (family_module(family), "model")):
        validate = getattr(module, "validate", None)  # a task's or family's own cross-key checks
        if validate is not None:
            validate(cfg[section])
    check_recipe = getattr(family_module(family), "check_recipe", None)  # e.g. train.dropout needs a user
    if check_recipe is not None:  # factory that takes it
        check_recipe(train)
    validate_run = getattr(task_module(cfg["task"]["kind"]), "validate_run", None)  # a task's limits on the model
    if validate_run is not None:
        validate_run(cfg)
    if train["optimizer"] in recipe.CLOSED_FORM and not family_module(family).LINEAR_IN_PARAMS:
        raise SpecError(f"train.optimizer: {train['optimizer']} is closed form and needs a model linear in "
                        f"its parameters (linear, rff), not {family!r}")
    if train["autocast"] != "off":
        if train["optimizer"] in recipe.CLOSED_FORM:
            raise SpecError(f"train.autocast: {train['autocast']} applies to gradient training, not the closed-form "
                            f"{train['optimizer']} solve (use autocast: off)")
        if train["dtype"] == "float64":
            raise SpecError(f"train.autocast: {train['autocast']} needs float32 parameters; train.dtype float64 "
                            f"would leave every op in float64 (use dtype: float32 or autocast: off)")
    curvature = [d for d in train["diagnostics"] if d in ("sharpness", "trace")]
    if curvature and is_language_task(cfg["task"]):
        raise SpecError(f"train.diagnostics: {curvature[0]} needs a task with inputs and targets; a language "
                        f"model ({cfg['task']['kind']}) can record norms only")


def run_id(resolved: dict[str, Any]) -> str:
    """12 hex digits of the SHA-256 of the run's non-default settings (canonical JSON)."""
    tables = section_options(resolved)
    named: dict[str, Any] = {name: non_default(tables[name], resolved[name]) for name in tables}
    named["task"]["kind"] = resolved["task"]["kind"]
    named["model"]["family"] = resolved["model"]["family"]
    if resolved["seed"] != 0:
        named["seed"] = resolved["seed"]
    canonical = json.dumps(named, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    """Set ``section.leaf`` (or ``section.leaf.entry`` inside a mapping setting) to ``value``."""
    if key == "seed":
        config["seed"] = value
        return
    section, leaf, *entry = key.split(".", 2)
    if entry:  # one entry of a mapping (model.config.n_embd): a fresh mapping, never the shared default
        value = {**(config.setdefault(section, {}).get(leaf) or {}), entry[0]: value}
    config.setdefault(section, {})[leaf] = value


# An entry of a mapping setting swept on its own (vary: {model.config.n_embd: [64, 128]}); what the
# entry may hold is the mapping's owner's to check (e.g. a transformers config).
ENTRY_OPTION = Option((object,), None, "one entry of a mapping setting", check=json_value, normalize=json_copy)


def _axis_option(key: str, tables: dict[str, dict[str, Option]]) -> Option:
    if key == "seed":
        return SEED_OPTION
    parts = key.split(".")
    if len(parts) not in (2, 3) or parts[0] not in tables:
        raise SpecError(f"vary.{key}: an axis is 'seed' or a dotted leaf task.X, model.X or train.X")
    section, leaf = parts[:2]
    option = lookup(tables[section], leaf)
    if option is None:
        if getattr(tables[section], "owner", ""):
            raise SpecError(unknown_key(f"vary.{section}", leaf, tables[section]))
        raise SpecError(f"vary.{key}: unknown key {leaf!r} for {section} (known keys: {known_keys(tables[section])})")
    if leaf in ("kind", "family"):
        raise SpecError(f"vary.{key}: sweep one task kind and model family per spec")
    if len(parts) == 3:
        types = option.type if isinstance(option.type, tuple) else (option.type,)
        if dict not in types:
            raise SpecError(f"vary.{key}: {section}.{leaf} is not a mapping; an axis is a dotted leaf "
                            f"{section}.{leaf} (three parts only for an entry of a mapping setting)")
        return ENTRY_OPTION
    return option


def expand_axis(key: str, raw: Any, option: Option) -> list[Any]:
    """Turn an axis (a list, or {geometric|linear: [lo, hi], count: K, include: [...]}) into values."""
    path = f"vary.{key}"
    if isinstance(raw, list):
        values = raw
    elif isinstance(raw, dict):
        kinds = [k for k in ("geometric", "linear") if k in raw]
        extra = sorted(set(raw) - {"geometric", "linear", "count", "include"})
        if len(kinds) != 1 or extra:
            raise SpecError(f"{path}: expected a list or {{geometric: [lo, hi], count: K}} "
                            f"(or linear:), optionally include: [...]")
        bounds, count = raw[kinds[0]], raw.get("count")
        if (not isinstance(bounds, list) or len(bounds) != 2
                or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)):
            raise SpecError(f"{path}.{kinds[0]}: expected [lo, hi], got {bounds!r}")
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_AXIS_COUNT:
            raise SpecError(f"{path}.count: expected an integer in 1..{MAX_AXIS_COUNT}, got {count!r}")
        lo, hi = float(bounds[0]), float(bounds[1])
        if kinds[0] == "geometric":
            if lo <= 0 or hi <= 0:
                raise SpecError(f"{path}.geometric: bounds must be > 0, got {bounds!r}")
            values = [lo * (hi / lo) ** (i / max(count - 1, 1)) for i in range(count)]
        else:
            values = [lo + (hi - lo) * i / max(count - 1, 1) for i in range(count)]
        include = raw.get("include", [])
        if not isinstance(include, list):
            raise SpecError(f"{path}.include: expected a list, got {include!r}")
        for i, v in enumerate(include):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise SpecError(f"{path}.include[{i}]: expected a number, got {v!r}")
        values = values + include
        types = option.type if isinstance(option.type, tuple) else (option.type,)
        if int in types and float not in types:
            values = [int(round(v)) if isinstance(v, (int, float)) and math.isfinite(v) else v for v in values]
        values = sorted(set(values), key=lambda v: (float(v) if isinstance(v, (int, float)) else 0.0))
    else:
        raise SpecError(f"{path}: expected a list of values or a {{geometric: ...}} mapping, got {raw!r}")
    if not values:
        raise SpecError(f"{path}: the axis is empty")
    out = []
    for i, v in enumerate(values):
        out.append(coerce(f"{path}[{i}]", option, v))
    if len({json.dumps(v, sort_keys=True) for v in out}) != len(out):
        raise SpecError(f"{path}: repeated values {out!r}")
    return out


class Spec:
    """A validated sweep spec. ``runs()`` is the product of its axes, in a stable order."""

    def __init__(self, data: dict[str, Any]):
        check_spec_data(data)  # plain values, known top-level keys, the run count bounded (spec_input)
        self.data = copy.deepcopy(data)
        self.name = str(data.get("name") or "sweep")
        base = {k: copy.deepcopy(data.get(k) or {}) for k in ("task", "model", "train")}
        base["seed"] = data.get("seed", 0)
        self.base = resolve_config(base)  # validates the base settings
        vary = data.get("vary") or {}
        if not isinstance(vary, dict):
            raise SpecError(f"vary: expected a mapping of axis -> values, got {vary!r}")
        tables = section_options(self.base)
        self.axes = {key: expand_axis(key, raw, _axis_option(key, tables)) for key, raw in vary.items()}
        sizes = {key: len(values) for key, values in self.axes.items()}
        check_run_count(math.prod(sizes.values()), axes_detail(sizes))  # before any run is built
        self._runs: list[Run] | None = None

    def runs(self) -> list[Run]:
        if self._runs is None:
            self._runs = self._expand()
        return self._runs

    def _expand(self) -> list[Run]:
        points: list[dict[str, Any]] = [{}]
        for key, values in self.axes.items():
            points = [{**p, key: v} for p in points for v in values]
        runs, seen = [], set()
        for point in points:
            config = copy.deepcopy({k: self.base[k] for k in ("task", "model", "train", "seed")})
            for key, value in point.items():
                _set_dotted(config, key, value)
            resolved = resolve_config(config)
            rid = run_id(resolved)
            if rid not in seen:
                seen.add(rid)
                runs.append(Run(rid, resolved, point))
        return runs

    def size_axes(self) -> list[str]:
        """Varied keys that set the model's size (the x axis of a double-descent curve)."""
        sizes = family_module(self.base["model"]["family"]).SIZE_KEYS
        return [k for k in self.axes if k.startswith("model.") and k.split(".", 1)[1] in sizes]

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.data)


def load_spec(source: str | Path | dict[str, Any] | Spec) -> Spec:
    """A Spec from a YAML file path, a dict, or a Spec (returned as is)."""
    if isinstance(source, Spec):
        return source
    if isinstance(source, dict):
        return Spec(source)
    if not isinstance(source, (str, Path)):
        raise SpecError(f"spec: expected a file path, a mapping or a Spec, got {type(source).__name__}")
    return parse_spec_text(read_spec_text(source), str(source))


def parse_spec_text(text: str, where: str = "spec") -> Spec:
    """A Spec from YAML text, with every bound of ``spec_input`` (bytes aside: the text is here)."""
    return Spec(parse_spec_data(text, where))
