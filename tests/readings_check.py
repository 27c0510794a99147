"""Hold a report's sentences to the numbers they came from (issue 16's "done when").

Two checks, both used by ``test_readings.py``:

- ``check_claims``: a claim records (value, text) for each number it quotes and (a, op, b) for each
  comparison it states (``overparam.report.claims``). Each value must be a number of the analysis
  JSON (exactly, or its magnitude), its text must be in the sentence, each comparison must hold, and
  hold as displayed (two numbers printed equal cannot be said to differ).
- ``unmatched_numbers``: generic, for any sentence of any section, including ones written later:
  every number printed in it must be one of the JSON's numbers under the product's formatting rules
  (3 significant digits, thousands separators, percents, ×-ratios, k/M suffixes, KiB/MiB) — the
  printed digits must equal the JSON number rounded to the digits printed.
"""

from __future__ import annotations

import html.parser
import math
import operator
import re
from collections.abc import Iterable
from typing import Any

OUTPUT_KEYS = {"sentences", "sentence", "claims", "headline", "lead", "text", "claim", "intro"}

NUMBER = re.compile(
    r"(?<![\w.^/])(?P<sign>[-−])?(?P<num>\d{1,3}(?:,\d{3})+|\d+)(?P<frac>\.\d+)?(?P<exp>e[+-]?\d+)?"
    r"(?P<unit>\s?%|×|k(?![A-Za-z])|M(?![A-Za-z])| KiB| MiB| kB| bytes)?(?![\w])")
YEAR_CITATION = re.compile(r"(?:et al\.,?|\(|[A-Z][a-z]+,?)\s*$")  # "et al. 2019", "(2019)", "Hewitt & Liang 2019"
OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}


def json_numbers(doc: Any, out: list[float] | None = None, lengths: set[int] | None = None,
                 key: str | None = None) -> tuple[list[float], set[int]]:
    """Every number of a JSON document (also those written inside its non-output strings, and the lengths
    of its lists, which a sentence may count)."""
    out = [] if out is None else out
    lengths = set() if lengths is None else lengths
    if isinstance(doc, bool) or doc is None:
        return out, lengths
    if isinstance(doc, (int, float)):
        if math.isfinite(doc):
            out.append(float(doc))
    elif isinstance(doc, str):
        if key not in OUTPUT_KEYS:
            for m in NUMBER.finditer(doc):
                out.append(_plain_value(m))
    elif isinstance(doc, dict):
        lengths.add(len(doc))
        for k, v in doc.items():
            if str(k) in OUTPUT_KEYS:
                continue
            for m in NUMBER.finditer(str(k)):  # numbers that key a mapping ("0.1": {...})
                out.append(_plain_value(m))
            json_numbers(v, out, lengths, str(k))
    elif isinstance(doc, (list, tuple)):
        lengths.add(len(doc))
        for v in doc:
            json_numbers(v, out, lengths, key)
    return out, lengths


def _plain_value(m: re.Match) -> float:
    text = m.group("num").replace(",", "") + (m.group("frac") or "") + (m.group("exp") or "")
    v = float(text)
    return -v if m.group("sign") else v


def _half_unit(m: re.Match) -> float:
    """Half of the last printed digit's place: the rounding a printed number can hide."""
    frac = m.group("frac") or ""
    digits = m.group("num").replace(",", "")
    zeros = len(digits) - len(digits.rstrip("0")) if len(digits) > 3 and not m.group("exp") else 0
    place = 10.0 ** -(len(frac) - 1) if frac else 10.0 ** zeros  # "1,460": 3 significant digits of 1,456
    if m.group("exp"):
        place *= 10.0 ** int(m.group("exp")[1:])
    return place / 2


def _candidates(v: float, unit: str) -> list[float]:
    """What a JSON value v reads as when printed with ``unit``."""
    unit = unit.strip()
    if unit == "%":
        return [100 * v, v]  # a fraction shown as a percent, or a value stored in percent
    if unit == "k":
        return [v / 1e3]
    if unit == "M":
        return [v / 1e6]
    if unit == "KiB":
        return [v / 1024, v]
    if unit == "MiB":
        return [v / 2**20, v]
    if unit == "kB":
        return [v / 1e3]
    if unit == "×" and v > 0:
        return [v, 1 / v]  # "2.5× slower" reads a speed-up of 0.4
    return [v]


def number_matches(m: re.Match, numbers: list[float], lengths: set[int]) -> bool:
    x = abs(_plain_value(m))
    tol = _half_unit(m) * (1 + 1e-9) + 1e-12
    unit = m.group("unit") or ""
    for v in numbers:
        for c in _candidates(abs(v), unit):
            if abs(c - x) <= tol:
                return True
    return not unit and not m.group("frac") and float(x).is_integer() and int(x) in lengths


def unmatched_numbers(sentence: str, numbers: list[float], lengths: set[int]) -> list[str]:
    """The printed numbers of ``sentence`` that no JSON number accounts for (citation years aside)."""
    bad = []
    for m in NUMBER.finditer(sentence):
        if not m.group("frac") and not m.group("unit") and 1900 <= _plain_value(m) <= 2100 \
                and YEAR_CITATION.search(sentence[:m.start()]):
            continue
        if not number_matches(m, numbers, lengths):
            bad.append(m.group(0))
    return bad


def check_claims(claims: Iterable[dict[str, Any]], doc: Any) -> list[str]:
    """Problems with recorded claims against their analysis JSON ``doc`` (empty: all hold)."""
    numbers = json_numbers(doc)[0]
    exact = set(numbers) | {abs(v) for v in numbers}
    problems = []
    for claim in claims:
        text = claim["text"]
        for value, printed in claim["numbers"]:
            if printed not in text:
                problems.append(f"{printed!r} is recorded but not in: {text}")
            if value not in exact and not any(math.isclose(value, v, rel_tol=1e-12, abs_tol=1e-15) for v in exact):
                problems.append(f"{value!r} ({printed}) is not a number of the analysis JSON: {text}")
        printed_of = {}
        for value, printed in claim["numbers"]:
            printed_of.setdefault(value, printed)
        for a, op, b in claim["comparisons"]:
            if not OPS[op](a, b):
                problems.append(f"states {a} {op} {b}, which is false: {text}")
            if a in printed_of and b in printed_of and op != "==":
                shown_a, shown_b = (float(printed_of[v].replace(",", "").split()[0].rstrip("×%")) for v in (a, b))
                if not OPS[op](shown_a, shown_b):
                    problems.append(f"states {printed_of[a]} {op} {printed_of[b]} as printed: {text}")
    return problems


class ReadingText(html.parser.HTMLParser):
    """The text of every reading on a rendered page: list items of ``ul.reading``, ``p.reading``, ``p.setup``."""

    def __init__(self) -> None:
        super().__init__()
        # (the part's id: its sweep directory's name, None at the top; the section's title; the sentence)
        self.items: list[tuple[str | None, str | None, str]] = []
        self._part: str | None = None
        self._section: str | None = None
        self._title: list[str] | None = None
        self._stack: list[bool] = []
        self._buf: list[str] | None = None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        cls = dict(attrs).get("class") or ""
        if tag == "section" and "part" in cls.split():
            self._part, self._section = dict(attrs).get("id"), None
        if tag in ("h3", "summary"):
            self._title = []
        if tag == "ul":
            self._stack.append("reading" in cls.split())
        elif tag == "li" and self._stack and self._stack[-1] or tag == "p" and {"reading", "setup"} & set(cls.split()):
            self._buf, self._depth = [], 0
        elif self._buf is not None:
            self._depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h3", "summary") and self._title is not None:
            self._section, self._title = "".join(self._title).strip(), None
        if tag == "ul" and self._stack:
            self._stack.pop()
        elif self._buf is not None and tag in ("li", "p") and self._depth == 0:
            self.items.append((self._part, self._section, " ".join("".join(self._buf).split())))
            self._buf = None
        elif self._buf is not None:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._title is not None:
            self._title.append(data)
        if self._buf is not None:
            self._buf.append(data)


def page_readings(page: str) -> list[tuple[str | None, str | None, str]]:
    parser = ReadingText()
    parser.feed(page)
    return parser.items
