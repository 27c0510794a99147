"""Reading a spec safely: bounded bytes, bounded YAML, plain JSON-like values. No torch here.

A spec is user input, and YAML can say much more than a spec needs: ``!!binary`` and dates,
non-string keys, nesting thousands of levels deep, and aliases that expand exponentially
(the "billion laughs": nine levels of nine references name 9⁹ values in a few hundred bytes).
Each of these used to reach code that assumed plain strings and numbers, or ran until killed.
This module bounds everything *while* reading, before a Python object of that size exists:

- the file's bytes (``OVERPARAM_MAX_SPEC_BYTES``, default 1 MiB; read with that limit, so
  ``/dev/zero`` or a huge file costs one read of the limit);
- nesting depth (``MAX_DEPTH`` levels, counted while composing the YAML node graph);
- values after alias expansion (``MAX_VALUES``, counted while composing: an alias adds the size
  of the node it names, so a bomb stops after a few hundred events, not 10⁹);
- the number of runs a ``vary`` block asks for (``OVERPARAM_MAX_RUNS``, default 10,000), counted
  as the product of the axes' lengths before any run is built.

Everything left must be JSON-like: mappings with string keys, lists, strings (valid Unicode,
no lone surrogates), numbers, booleans and null. An error names the key's dotted path.
Importing this module is cheap (PyYAML only), so ``overparam sweep`` checks a hostile spec in
a fraction of a second, before torch loads.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from pathlib import Path
from typing import Any

import yaml

from overparam.errors import SpecError

DEFAULT_MAX_BYTES = 1 << 20  # 1 MiB: the largest shipped example is under 2 KiB
DEFAULT_MAX_RUNS = 10_000  # planning takes ~0.35 ms per run: 10,000 plan in ~3.5 s on one core
MAX_AXIS_COUNT = 100_000  # values of one {geometric|linear: [lo, hi], count: K} axis
MAX_DEPTH = 50  # a spec needs ~5 levels; Python's own recursion gives out near 300 in PyYAML
MAX_VALUES = 1_000_000  # scalars + containers after alias expansion; 1 MiB of text holds at most ~500k
BYTES_ENV = "OVERPARAM_MAX_SPEC_BYTES"
RUNS_ENV = "OVERPARAM_MAX_RUNS"
TOP_KEYS = ("name", "description", "task", "model", "train", "vary", "seed")  # DESIGN.md ◆ Spec


def _limit(env: str, default: int) -> int:
    """A positive integer from the environment (how a user raises a limit), else ``default``."""
    raw = os.environ.get(env)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SpecError(f"{env}: expected a positive integer, got {raw!r}") from None
    if value < 1:
        raise SpecError(f"{env}: expected a positive integer, got {raw!r}")
    return value


def max_spec_bytes() -> int:
    return _limit(BYTES_ENV, DEFAULT_MAX_BYTES)


def max_runs() -> int:
    return _limit(RUNS_ENV, DEFAULT_MAX_RUNS)


# -- bytes --------------------------------------------------------------------------------------
def read_spec_text(path: str | Path) -> str:
    """The text of a spec file, refusing a missing path, a directory, a huge stream or non-UTF-8."""
    path = Path(path)
    if not str(path).strip():
        raise SpecError("spec: the path is empty")
    if not path.exists():
        raise SpecError(f"spec file not found: {path}")
    if path.is_dir():
        raise SpecError(f"spec: {path} is a directory, expected a YAML file")
    limit = max_spec_bytes()
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)  # a device like /dev/zero never ends: read at most the limit
    except OSError as exc:
        raise SpecError(f"spec {path}: cannot read it ({exc.strerror or exc})") from exc
    if len(data) > limit:
        raise SpecError(f"spec {path}: larger than {limit:,} bytes, the limit for a spec file "
                        f"(set {BYTES_ENV} to raise it)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"spec {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


# -- YAML ---------------------------------------------------------------------------------------
class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that counts depth and alias-expanded size while composing nodes."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._values = 0
        self._sizes: dict[int, int] = {}  # id(node) -> its size with aliases expanded

    def compose_node(self, parent, index):  # noqa: ANN001 (PyYAML's signature)
        if self.check_event(yaml.AliasEvent):
            anchor = self.peek_event().anchor
            node = self.anchors.get(anchor)
            if node is not None:
                size = self._sizes.get(id(node))
                if size is None:  # the anchor's node is still open: it contains itself
                    mark = self.peek_event().start_mark
                    raise SpecError(f"spec: line {mark.line + 1}: alias *{anchor} refers to a node that "
                                    f"contains it (a recursive YAML anchor)")
                self._count(size)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise SpecError(f"spec: line {mark.line + 1}: nested deeper than {MAX_DEPTH} levels "
                            f"(a spec needs a handful)")
        before = self._values
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._count(1)
        self._sizes[id(node)] = self._values - before
        return node

    def _count(self, n: int) -> None:
        self._values += n
        if self._values > MAX_VALUES:
            raise SpecError(f"spec: more than {MAX_VALUES:,} values once YAML aliases are expanded "
                            f"(an alias bomb?); write the values out, or use a vary range "
                            f"({{geometric: [lo, hi], count: K}})")


def load_yaml(text: str, where: str = "spec") -> Any:
    """Parse spec text with every size bound; a malformed document is a one-line ``SpecError``."""
    loader = None
    try:
        loader = _BoundedLoader(text)  # its reader already refuses control characters
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{where}: malformed YAML{at}: {problem}") from exc
    except SpecError as exc:
        raise SpecError(str(exc).replace("spec:", f"{where}:", 1)) from None
    except (ValueError, OverflowError, TypeError) as exc:  # e.g. an integer of 5,000 digits
        raise SpecError(f"{where}: unreadable value ({' '.join(str(exc).split())[:160]})") from None
    finally:
        if loader is not None:
            loader.dispose()


# -- values -------------------------------------------------------------------------------------
_PLAIN = (str, int, float, bool, type(None))


def _describe(value: Any) -> str:
    if isinstance(value, bytes):
        return "binary data (a !!binary value)"
    if isinstance(value, (_dt.date, _dt.datetime)):
        return f"a date ({value.isoformat()}; YAML reads an unquoted date as one: quote it)"
    if isinstance(value, (set, frozenset)):
        return "a set (!!set)"
    names = {bool: "true/false", int: "an integer", float: "a number", type(None): "null", list: "a list",
             tuple: "a list", dict: "a mapping"}
    return names.get(type(value), f"a {type(value).__name__}")


def _key_path(path: str, key: str) -> str:
    return key if path == "" else f"{path}.{key}"


def check_plain(data: Any, path: str = "") -> None:
    """Every key a string, every value JSON-like, depth and size bounded; raises naming the path.

    Walks iteratively (no recursion to exhaust) and counts shared objects every time they are
    reached, as JSON would write them, so a Python dict built like an alias bomb is refused too.
    """
    stack: list[tuple[Any, str, int]] = [(data, path, 0)]
    seen = 0
    while stack:
        value, where, depth = stack.pop()
        seen += 1
        label = where or "spec"
        if seen > MAX_VALUES:
            raise SpecError(f"spec: more than {MAX_VALUES:,} values (shared parts counted each time they appear)")
        if depth > MAX_DEPTH:
            raise SpecError(f"{label}: nested deeper than {MAX_DEPTH} levels (a spec needs a handful)")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str) or isinstance(key, bool):
                    raise SpecError(f"{label}: every key must be a string; got {key!r} ({_describe(key)}); "
                                    f"quote it if it is a name")
                _check_text(key, f"{label}: key")
                stack.append((item, _key_path(where, key), depth + 1))
        elif isinstance(value, (list, tuple)):
            stack.extend((item, f"{label}[{i}]", depth + 1) for i, item in enumerate(value))
        elif isinstance(value, str):
            _check_text(value, label)
        elif not isinstance(value, _PLAIN):
            raise SpecError(f"{label}: expected a string, number, true/false, null, list or mapping; "
                            f"got {_describe(value)}")
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
            raise SpecError(f"{label}: integer out of range (|value| must be below 2**63)")


def _check_text(text: str, where: str) -> None:
    """Valid Unicode: a lone surrogate (YAML "\\ud800") cannot be stored, printed or drawn."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start]
        raise SpecError(f"{where}: not valid Unicode text (a lone surrogate \\u{ord(bad):04x} at "
                        f"character {exc.start})") from None


def check_top(data: Any, top_keys: tuple[str, ...] = TOP_KEYS) -> None:
    """The top level: a mapping of known keys; ``name``/``description`` text; sections mappings."""
    if not isinstance(data, dict):
        raise SpecError(f"spec: expected a mapping at the top level, got {type(data).__name__}")
    check_plain(data)
    unknown = sorted(set(data) - set(top_keys))
    if unknown:
        raise SpecError(f"{unknown[0]}: unknown top-level key (known: {', '.join(top_keys)})")
    for key in ("name", "description"):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int, float))):
            raise SpecError(f"{key}: expected a string, got {_short(value)}")
    for key in ("task", "model", "train", "vary"):
        value = data.get(key)
        if value is not None and not isinstance(value, dict):
            raise SpecError(f"{key}: expected a mapping, got {_short(value)}")
    for section, leaf in (("task", "kind"), ("model", "family")):
        value = (data.get(section) or {}).get(leaf)
        if value is not None and not isinstance(value, str):
            raise SpecError(f"{section}.{leaf}: expected a string (one name, e.g. "
                            f"{'kind: digits' if leaf == 'kind' else 'family: mlp'}), got {_short(value)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def count_runs(vary: Any) -> int:
    """The most runs a ``vary`` block can make: the product of its axes' lengths (nothing expanded).

    A list axis has its length; a range axis ``count`` plus its ``include`` list. Malformed axes
    count 1 here: ``spec.expand_axis`` names what is wrong with them.
    """
    if not isinstance(vary, dict):
        return 1
    sizes = []
    for raw in vary.values():
        if isinstance(raw, list):
            sizes.append(len(raw))
        elif isinstance(raw, dict):
            count = raw.get("count")
            include = raw.get("include")
            valid = isinstance(count, int) and not isinstance(count, bool) and 0 < count <= MAX_AXIS_COUNT
            n = count if valid else 1  # expand_axis names a bad count
            sizes.append(n + (len(include) if isinstance(include, list) else 0))
    return math.prod(max(s, 1) for s in sizes)


def check_run_count(n: int, detail: str = "") -> None:
    """Refuse a sweep of more runs than the limit, before any run is built."""
    limit = max_runs()
    if n > limit:
        raise SpecError(f"vary: the sweep asks for {n:,} runs{detail}, more than the limit of {limit:,} "
                        f"(shrink an axis, or set {RUNS_ENV} to raise the limit)")


def axes_detail(sizes: dict[str, int]) -> str:
    """' (model.width 24 × seed 3)': the product spelled out, for the run-count message."""
    if len(sizes) < 2:
        return ""
    return " (" + " × ".join(f"{k} {n:,}" for k, n in sizes.items()) + ")"


def axis_sizes(vary: Any) -> dict[str, int]:
    if not isinstance(vary, dict):
        return {}
    return {str(k): count_runs({k: v}) for k, v in vary.items()}


def check_spec_data(data: Any) -> None:
    """Everything that needs no option table: JSON-like values, the top level, the run count."""
    check_top(data)
    vary = data.get("vary")
    check_run_count(count_runs(vary), axes_detail(axis_sizes(vary)))


def parse_spec_data(text: str, where: str = "spec") -> dict[str, Any]:
    """YAML text → a checked plain mapping, every size bound applied (the torch-free half of a spec)."""
    data = load_yaml(text, where)
    if data is None:
        raise SpecError(f"{where}: the spec is empty")
    check_spec_data(data)
    return data


def read_spec(path: str | Path) -> dict[str, Any]:
    """A spec file, read and checked with every bound (``overparam sweep`` calls this before torch loads)."""
    return parse_spec_data(read_spec_text(path), str(path))
