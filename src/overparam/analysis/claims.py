"""A sentence is a claim: build it from the numbers it quotes and the comparisons it states, and keep both.

The product's formatting rules live here, one function each: ``fmt_num`` (3 significant digits),
``fmt_int`` (thousands separators), ``fmt_pct`` (a fraction as a percent, 3 significant digits),
``fmt_times`` (a ratio, "54.1×"), ``fmt_bytes`` (KiB/MiB, 3 significant digits). A ``Sentence``
formats every number through them and records (value, text); ``states(a, op, b)`` records a
comparison the words make. ``claim(text)`` returns ``{"text", "numbers", "comparisons"}``, which
the report keeps beside the sentence so a test can hold each number equal to the analysis JSON
and each comparison true (``tests/test_readings.py``).
"""

from __future__ import annotations

import operator
from typing import Any

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}


def fmt_num(v: float | None, digits: int = 3) -> str:
    """``digits`` significant digits; from 1,000 up with thousands separators instead of an exponent."""
    if v is None:
        return "n/a"
    v = float(v)
    if 1e3 <= abs(v) < 1e15:
        return f"{float(f'{v:.{digits}g}'):,.0f}"
    return f"{v:.{digits}g}"


def fmt_int(v: Any) -> str:
    return f"{int(round(float(v))):,}"


def fmt_pct(v: float, digits: int = 3) -> str:
    return f"{100 * float(v):.{digits}g} %"


def fmt_times(v: float) -> str:
    return f"{float(v):.3g}×"


def fmt_bytes(n: float) -> str:
    n = float(n)
    if n >= 2**20:
        return f"{n / 2**20:.3g} MiB"
    return f"{n / 1024:.3g} KiB" if n >= 1024 else f"{n:.0f} bytes"


def fmt_setting(v: Any) -> str:
    """A sweep setting as a reader names it: a text mix by its domains ("docs + stdlib", weights when they
    differ: "docs 1 + stdlib 3"), a list as its items, anything else as written in the spec."""
    if isinstance(v, list) and v and all(isinstance(e, dict) and "name" in e for e in v):
        weights = {e.get("weight", 1) for e in v}
        return " + ".join(str(e["name"]) + (f" {e.get('weight', 1):g}" if len(weights) > 1 else "") for e in v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt_setting(e) for e in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {fmt_setting(e)}" for k, e in v.items()) + "}"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def fmt_settings(fixed: dict[str, Any], sep: str = " = ") -> str:
    """'task.mix = docs + stdlib, train.lr = 0.01': the settings that tell one curve or row from another."""
    return ", ".join(f"{k}{sep}{fmt_setting(v)}" for k, v in fixed.items())


class Sentence:
    """Collects the numbers a sentence quotes and the comparisons it states, as it is written."""

    def __init__(self) -> None:
        self.numbers: list[tuple[float, str]] = []
        self.comparisons: list[tuple[float, str, float]] = []

    def _keep(self, value: Any, text: str) -> str:
        self.numbers.append((float(value), text))
        return text

    def shown(self, v: float, text: str) -> str:
        """``v`` as another formatter printed it (a section's own units, e.g. "30.8k" or "1.2e15")."""
        return self._keep(v, text)

    def num(self, v: float, digits: int = 3) -> str:
        return self._keep(v, fmt_num(v, digits))

    def fixed(self, v: float, decimals: int = 1) -> str:
        """A number already rounded to ``decimals`` in its JSON (a z score: "3.0", not "3")."""
        return self._keep(v, f"{float(v):.{decimals}f}")

    def int(self, v: Any) -> str:
        return self._keep(v, fmt_int(v))

    def pct(self, v: float, digits: int = 3) -> str:
        return self._keep(v, fmt_pct(v, digits))

    def times(self, v: float) -> str:
        return self._keep(v, fmt_times(v))

    def bytes(self, v: float) -> str:
        return self._keep(v, fmt_bytes(v))

    def pair(self, a: float, b: float) -> tuple[str, str]:
        """Both values with enough significant digits (3 or more) that different values read differently."""
        digits = 3
        while a != b and fmt_num(a, digits) == fmt_num(b, digits) and digits < 12:
            digits += 1
        return self.num(a, digits), self.num(b, digits)

    def states(self, a: float, op: str, b: float) -> bool:
        """Record that the words say ``a op b``; returns whether it holds (a caller words it accordingly)."""
        self.comparisons.append((float(a), op, float(b)))
        return OPS[op](float(a), float(b))

    def claim(self, text: str) -> dict[str, Any]:
        return {"text": text, "numbers": [list(n) for n in self.numbers],
                "comparisons": [list(c) for c in self.comparisons]}


def texts(claims: list[dict[str, Any]]) -> list[str]:
    return [c["text"] for c in claims]
