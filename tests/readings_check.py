"""Hold a report's sentences to the numbers they came from (issue 16's "done when").

Two checks, both used by ``test_readings.py``:

- ``check_claims``: a claim records (value, text) for each number it quotes and (a, op, b) for each
  comparison it states (``overparam.analysis.claims``). Each value must be a number of the analysis
  JSON (exactly, or its magnitude), its text must be in the sentence, each comparison must hold, and
  hold as displayed (two numbers printed equal cannot be said to differ).
- ``unmatched_numbers``: generic, for any sentence of any section, including ones written later:
  every number printed in it must be one of the JSON's numbers under the product's formatting rules
  (3 significant digits, thousands separators, percents, ×-ratios, k/M suffixes, KiB/MiB) — the
  printed digits must equal the JSON number rounded to the digits printed.

``style_problems`` holds every sentence to the page's writing rules: no raw backtick, no parenthesis
inside another, no "n/a" without its reason, no Python ``None``/``nan``/``inf`` or repr of a list.
"""

from __future__ import annotations

import html.parser
import json
import math
import operator
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from overparam.cli import main

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


SUFFIX = {"k": 1e3, "M": 1e6, "B": 1e9}


def printed_value(text: str) -> float:
    """The value a printed number reads as: "1,460" 1460, "30.8k" 30800, "12.5 %" 12.5, "2.6×" 2.6."""
    word = text.replace(",", "").split()[0].rstrip("×%")
    scale = SUFFIX.get(word[-1:], 1.0)
    return float(word[:-1] if scale != 1.0 else word) * scale


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
            if abs(value) not in exact and not any(math.isclose(abs(value), v, rel_tol=1e-12, abs_tol=1e-15)
                                                   for v in exact):  # a difference may be stated either way
                problems.append(f"{value!r} ({printed}) is not a number of the analysis JSON: {text}")
        printed_of = {}
        for value, printed in claim["numbers"]:
            printed_of.setdefault(value, printed)
        for a, op, b in claim["comparisons"]:
            if not OPS[op](a, b):
                problems.append(f"states {a} {op} {b}, which is false: {text}")
            if a in printed_of and b in printed_of and op != "==":
                shown_a, shown_b = (printed_value(printed_of[v]) for v in (a, b))
                if not OPS[op](shown_a, shown_b):
                    problems.append(f"states {printed_of[a]} {op} {printed_of[b]} as printed: {text}")
    return problems


class ReadingText(html.parser.HTMLParser):
    """The text of every reading on a rendered page: list items of ``ul.reading``, ``p.reading``, ``p.setup``,
    and the one line of a brief section (``p.brief``: its title in ``<strong>``, then its sentence)."""

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
        self._brief = False  # inside a brief section's line, before its title has ended

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if tag == "section" and "part" in classes:
            self._part, self._section = dict(attrs).get("id"), None
        if tag in ("h3", "summary") or tag == "strong" and self._brief:
            self._title = []
        elif tag == "p" and "brief" in classes:
            self._brief = True
        elif tag == "ul":
            self._stack.append("reading" in classes)
        elif tag == "li" and self._stack and self._stack[-1] or tag == "p" and {"reading", "setup"} & set(classes):
            self._buf, self._depth = [], 0
        elif self._buf is not None:
            self._depth += 1

    def handle_endtag(self, tag: str) -> None:
        if self._title is not None and tag in ("h3", "summary", "strong"):
            self._section, self._title = "".join(self._title).strip(), None
            if self._brief:  # the sentence follows the title, up to the end of the paragraph
                self._brief, self._buf, self._depth = False, [], 0
        elif tag == "ul" and self._stack:
            self._stack.pop()
        elif self._buf is not None and tag in ("li", "p") and self._depth == 0:
            text = " ".join("".join(self._buf).split())
            self.items.append((self._part, self._section, text.removeprefix(": ")))
            self._buf = None
        elif self._buf is not None:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._title is not None:
            self._title.append(data)
        elif self._buf is not None:
            self._buf.append(data)


def page_readings(page: str) -> list[tuple[str | None, str | None, str]]:
    parser = ReadingText()
    parser.feed(page)
    return parser.items


def section_key(title: str | None) -> str:
    """A section's key in summary.json, from its title on the page (as ``report.html`` names them)."""
    return (title or "part header").split(" (")[0].lower().replace(" ", "_")


def analyze_json(directory: Path, capsys, *args: str) -> dict:
    capsys.readouterr()
    assert main(["analyze", str(directory), "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def part_documents(report_dir: Path, summary: dict, part: str) -> list:
    """What a part's sentences may quote: its summary (each section's JSON) and its analyses/*.json."""
    sub = report_dir / part if (report_dir / part / "overparam.sqlite").is_file() else report_dir
    return [summary["parts"][part]] + [json.loads(p.read_text()) for p in sorted((sub / "analyses").glob("*.json"))]


def scan_page(report_dir: Path) -> dict[str, list[tuple[str, list[str]]]]:
    """Section key → [(sentence, numbers no JSON number accounts for)] over every reading on the page."""
    summary = json.loads((report_dir / "summary.json").read_text())
    numbers = {p: json_numbers(part_documents(report_dir, summary, p)) for p in summary["parts"]}
    every = json_numbers([part_documents(report_dir, summary, p) for p in summary["parts"]])
    owners = [(key, sentence) for part in summary["parts"].values() for key, section in part.items()
              if isinstance(section, dict) for sentence in section.get("sentences", [])]
    found: dict[str, list[tuple[str, list[str]]]] = {}
    for part, title, text in page_readings((report_dir / "report.html").read_text()):
        if part is None:  # the top of the page reads every part: a line belongs to the section it repeats
            nums, lens = every
            key = next((k for k, sentence in owners if sentence[1:].lower() in text.lower()), "top of the page")
        else:
            nums, lens = numbers[part if part in numbers else next(iter(numbers))]
            key = section_key(title)
        found.setdefault(key, []).append((text, unmatched_numbers(text, nums, lens)))
    return found


def assert_page_numbers_hold(report_dir: Path) -> dict[str, list[tuple[str, list[str]]]]:
    """Every number on the page is its JSON's and every sentence keeps the writing rules; returns the scan."""
    found = scan_page(report_dir)
    assert found, "no readings on the page"
    for key, items in found.items():
        bad = [(text, miss) for text, miss in items if miss]
        assert not bad, f"{key}: numbers not in its JSON: {bad}"
        style = [(text, problems) for text, _ in items if (problems := style_problems(text))]
        assert not style, f"{key}: {style}"
    return found


NOT_APPLICABLE = re.compile(r"\bn/a\b(?!\s*[:(—])")  # "n/a: no 2/lr line for adam" says why; "n/a" alone does not
RAW_VALUE = re.compile(r"\b(?:None|nan|NaN|inf)\b|\[\{'|\{'\w+': ")  # a Python value printed as it is
# A count of 1,000 or more printed without its thousands separator ("1069-wide"); years (19xx, 20xx) are not counts.
UNSEPARATED = re.compile(r"(?<![\d.,\w])(?!(?:19|20)\d\d(?!\d))\d{4,}(?![\d.,]\d)")


def style_problems(text: str) -> list[str]:
    """What breaks the page's writing rules in one sentence (empty: none)."""
    problems = []
    if "`" in text:
        problems.append("a raw backtick")
    depth = 0
    for c in text:
        depth += (c == "(") - (c == ")")
        if depth > 1:
            problems.append("a parenthesis inside another")
            break
    if NOT_APPLICABLE.search(text):
        problems.append("n/a without its reason")
    if RAW_VALUE.search(text):
        problems.append(f"a raw Python value ({RAW_VALUE.search(text).group(0)!r})")
    if UNSEPARATED.search(text):
        problems.append(f"a count without its thousands separator ({UNSEPARATED.search(text).group(0)!r})")
    return problems


def assert_claims_hold(report_dir: Path, capsys) -> None:
    """Recorded claims against their JSON: the setup line, each section's, and the answer against analyze --json."""
    summary = json.loads((report_dir / "summary.json").read_text())
    for name, part in summary["parts"].items():
        directory = report_dir / name if (report_dir / name / "overparam.sqlite").is_file() else report_dir
        setup = {k: v for k, v in part["setup"].items() if k != "claim"}
        assert check_claims([part["setup"]["claim"]], setup) == []
        for title, section in part.items():
            if isinstance(section, dict) and section.get("claims"):
                problems = check_claims(section["claims"], {k: v for k, v in section.items() if k != "claims"})
                assert problems == [], (title, problems)
        dd = part.get("double_descent")
        if dd:
            doc = analyze_json(directory, capsys)  # the report and analyze agree by default
            assert json.loads(json.dumps(dd["curves"])) == doc["curves"] and dd["answer"] == doc["answer"]
            assert check_claims(dd["claims"], doc) == []
    leads = [c for c in summary["lead"] if c["numbers"]]
    assert leads, "the top of the page has no answer"
    assert check_claims(leads, list(summary["parts"].values())) == []


COMPARATIVE = ("above", "below", "beats", "does not beat", "worse", "falls to", "before the threshold",
               "past the threshold", "at the threshold")


def assert_comparisons_recorded(report_dir: Path) -> None:
    """A double-descent sentence that compares records its comparison (so the claims check covers it)."""
    summary = json.loads((report_dir / "summary.json").read_text())
    for part in summary["parts"].values():
        for claim in (part.get("double_descent") or {}).get("claims", []):
            if any(w in claim["text"] for w in COMPARATIVE) and claim["numbers"]:
                assert claim["comparisons"], claim["text"]


