"""Typed options with defaults: the vocabulary every spec section is checked against.

Tasks, model families and the training recipe each declare a ``dict[str, Option]``; the spec
module validates user values against them (reporting the key's full dotted path) and fills
defaults. Keeping this tiny schema separate lets every registry share one validator.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Check = Callable[[Any], "str | None"]


@dataclass(frozen=True)
class Option:
    """One setting: its type(s), default, allowed choices and an extra check.

    ``check`` returns None when the value is fine, or a short phrase saying what it must be
    ("must be > 0"). ``nullable`` allows ``null`` (meaning "automatic"). ``normalize`` maps an
    accepted value to its canonical form (a list of names sorted), so equal settings name equal runs.
    """

    type: type | tuple[type, ...]
    default: Any
    doc: str = ""
    choices: tuple[Any, ...] | None = None
    check: Check | None = None
    nullable: bool = False
    normalize: Callable[[Any], Any] | None = None


def positive(v: Any) -> str | None:
    return None if v > 0 else "must be > 0"


def nonnegative(v: Any) -> str | None:
    return None if v >= 0 else "must be >= 0"


def fraction_below_one(v: Any) -> str | None:
    return None if 0 <= v < 1 else "must be in [0, 1)"


def fraction(v: Any) -> str | None:
    return None if 0 <= v <= 1 else "must be in [0, 1]"


def at_most(limit: float) -> Check:
    def check(v: Any) -> str | None:
        if v <= 0:
            return "must be > 0"
        return None if v <= limit else f"must be <= {limit:g}"

    return check


EXTRA = "*"  # an options table holding this key takes any other key too, checked by its Option


class OptionTable(dict):
    """An options table that says whose keys they are: a user's factory, whose parameters they are
    (an unknown key is then "make_net in 'net.py:make_net' takes no keyword 'widht'")."""

    def __init__(self, *args: Any, owner: str = "", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.owner = owner


def unknown_key(path: str, key: str, options: dict[str, Option]) -> str:
    """The one-line message for a key the table does not take, with the accepted ones."""
    owner = getattr(options, "owner", "")
    if owner:
        accepted = ", ".join(k for k in options if k not in ("family", "kind", EXTRA)) or "none"
        return f"{path}.{key}: {owner} takes no keyword {key!r} (accepted: {accepted})"
    return f"{path}.{key}: unknown key (known keys: {known_keys(options)})"


def lookup(options: dict[str, Option], key: str) -> Option | None:
    """The option a key is checked against: its own, the table's ``EXTRA`` one, or None (unknown)."""
    if key != EXTRA and key in options:
        return options[key]
    return options.get(EXTRA)


def known_keys(options: dict[str, Option]) -> str:
    """The keys a table names, for an "unknown key" message (``EXTRA`` said in words)."""
    names = sorted(k for k in options if k != EXTRA)
    return ", ".join(names) + (" and any other keyword" if EXTRA in options else "")


def json_value(v: Any) -> str | None:
    """A value that round-trips through canonical JSON: what a run's config and id are made of.

    Mapping keys must be strings; numbers finite; nothing but null, true/false, numbers,
    strings, lists and mappings (a YAML date or a Python object would not name a run stably).
    """
    if v is None or isinstance(v, (bool, int, str)):
        return None
    if isinstance(v, float):
        return None if math.isfinite(v) else "must hold finite numbers only"
    if isinstance(v, (list, tuple)):
        return next((p for p in map(json_value, v) if p), None)
    if isinstance(v, dict):
        if not all(isinstance(k, str) for k in v):
            return "mapping keys must be strings"
        return next((p for p in map(json_value, v.values()) if p), None)
    return f"must be JSON-like (null, true/false, numbers, strings, lists, mappings), not {type(v).__name__}"


def json_copy(v: Any) -> Any:
    """A deep, canonical copy of a JSON-like value (tuples as lists): equal settings, equal runs."""
    if isinstance(v, dict):
        return {k: json_copy(v[k]) for k in sorted(v)}
    if isinstance(v, (list, tuple)):
        return [json_copy(x) for x in v]
    return v


def _type_name(t: type | tuple[type, ...]) -> str:
    types = t if isinstance(t, tuple) else (t,)
    names = {int: "integer", float: "number", str: "string", bool: "true/false", list: "list", dict: "mapping",
             object: "any JSON-like value"}
    return " or ".join(dict.fromkeys(names.get(x, x.__name__) for x in types))


def coerce(path: str, option: Option, value: Any) -> Any:
    """Check ``value`` against ``option`` and return it normalized (ints accepted as floats).

    Raises ``SpecError`` naming ``path`` when the value has the wrong type or is impossible.
    """
    from overparam.errors import SpecError

    if value is None:
        if option.nullable or option.default is None:
            return None
        raise SpecError(f"{path}: must not be null (expected {_type_name(option.type)})")
    types = option.type if isinstance(option.type, tuple) else (option.type,)
    if isinstance(value, bool) and bool not in types and object not in types:
        raise SpecError(f"{path}: expected {_type_name(option.type)}, got {value!r}")
    if float in types and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if int in types and float not in types and isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, types):
        raise SpecError(f"{path}: expected {_type_name(option.type)}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(f"{path}: must be a finite number, got {value!r}")
    if option.choices is not None and value not in option.choices:
        raise SpecError(f"{path}: must be one of {', '.join(map(str, option.choices))}; got {value!r}")
    if option.check is not None:
        problem = option.check(value)
        if problem:
            raise SpecError(f"{path}: {problem}; got {value!r}")
    if option.normalize is not None:
        value = option.normalize(value)
    return value


def resolve_section(path: str, options: dict[str, Option], given: dict[str, Any]) -> dict[str, Any]:
    """Validate a section against its options and return it with every default filled in."""
    from overparam.errors import SpecError

    if not isinstance(given, dict):
        raise SpecError(f"{path}: expected a mapping, got {given!r}")
    unknown = sorted(k for k in given if lookup(options, k) is None)
    if unknown:
        raise SpecError(unknown_key(path, unknown[0], options))
    resolved = {key: coerce(f"{path}.{key}", opt, given.get(key, opt.default)) for key, opt in options.items()
                if key != EXTRA}
    extra = options.get(EXTRA)
    for key in sorted(set(given) - set(resolved)):  # taken by the table's EXTRA option
        resolved[key] = coerce(f"{path}.{key}", extra, given[key])
    return resolved


def non_default(options: dict[str, Option], resolved: dict[str, Any]) -> dict[str, Any]:
    """The settings that differ from their defaults: what names a run (OpenLTH-style)."""
    return {k: v for k, v in resolved.items() if k not in options or options[k].default != v}
