"""Probe targets: a label per token, as integer codes with ``-1`` = no label (left out of the probe).

Text targets are defined per *character* and a token takes the label of the character it ends on
(:func:`overparam.interpret.base.last_chars`), which is what its hidden state has just read:

- ``char_class``: letter, digit, space (spaces and tabs), newline, punct (punctuation and symbols),
  other;
- ``next_char_class``: the class of the character *after* the token: what a causal model must
  predict, so it is readable only if the model anticipates it;
- ``word_position``: where the character sits in its word (a maximal run of letters, digits and
  ``_``): ``0``, ``1``, ``2``, ``3``, ``4+``; ``none`` outside words;
- ``nesting_depth``: open brackets ``( [ {`` and quotes at the character (an opener counts as
  inside, a closer as outside), ``0`` … ``3+``. ``"`` and a run of backticks toggle a quote;
  ``'`` too, except between two letters (an apostrophe); a closer that does not match the
  innermost opener is ignored; a blank line closes everything (unbalanced text cannot drift).

``markov_state`` (``markov`` runs): the chain's state the *next* token is drawn from (the last
``order`` tokens, the current one included): exactly what an optimal predictor needs, so the
probe reads whether the residual stream holds it. The chain has up to vocab^order states; the
probe keeps the most frequent (see ``probe_layers``' ``max_classes``).
"""

from __future__ import annotations

import json
import string
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

from overparam.errors import OverparamError

CHAR_CLASSES = ("letter", "digit", "space", "newline", "punct", "other")
WORD_POSITIONS = ("0", "1", "2", "3", "4+", "none")
DEPTHS = ("0", "1", "2", "3+")
TEXT_TARGETS = ("char_class", "next_char_class", "word_position", "nesting_depth")
NEXT_TOKEN_TARGETS = ("next_char_class",)  # about the token after this one: compared with bigram statistics
MARKOV_TARGETS = ("markov_state",)
TARGETS = TEXT_TARGETS + MARKOV_TARGETS
OPENERS = {"(": ")", "[": "]", "{": "}"}


def char_class(c: str) -> int:
    """Index in ``CHAR_CLASSES`` of one character."""
    if c in "\n\r":
        return 3
    if c.isspace():
        return 2
    if c.isalpha():
        return 0
    if c.isdigit():
        return 1
    if c in string.punctuation or unicodedata.category(c)[0] in "PS":
        return 4
    return 5


def word_positions(text: str) -> np.ndarray:
    """Index in ``WORD_POSITIONS`` per character."""
    out = np.full(len(text), len(WORD_POSITIONS) - 1, dtype=np.int64)
    run = 0
    for i, c in enumerate(text):
        if c.isalnum() or c == "_":
            out[i] = min(run, 4)
            run += 1
        else:
            run = 0
    return out


def nesting_depths(text: str) -> np.ndarray:
    """Index in ``DEPTHS`` per character (see the module docstring for the rules)."""
    out = np.empty(len(text), dtype=np.int64)
    stack: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        j = i + 1
        if c == "\n" and text[i + 1:i + 2] == "\n":
            stack.clear()
        elif c in OPENERS:
            stack.append(OPENERS[c])
        elif c in ")]}":
            if stack and stack[-1] == c:
                stack.pop()
        elif c in "\"`'":
            if c == "`":
                while j < len(text) and text[j] == "`":
                    j += 1
            apostrophe = c == "'" and 0 < i < len(text) - 1 and text[i - 1].isalpha() and text[i + 1].isalpha()
            if not apostrophe:
                token = text[i:j]
                if stack and stack[-1] == token:
                    stack.pop()
                else:
                    stack.append(token)
        out[i:j] = min(len(stack), 3)
        i = j
    return out


def char_labels(name: str, text: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Per-character label codes of a text target, and the class names."""
    if name in ("char_class", "next_char_class"):
        return np.fromiter((char_class(c) for c in text), dtype=np.int64, count=len(text)), CHAR_CLASSES
    if name == "word_position":
        return word_positions(text), WORD_POSITIONS
    if name == "nesting_depth":
        return nesting_depths(text), DEPTHS
    raise OverparamError(f"--target: {name!r} is not a text target ({', '.join(TEXT_TARGETS)})")


def text_target(name: str, text: str, ends: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """Token labels of a text target given the index of the character each token ends on."""
    per_char, names = char_labels(name, text)
    at = ends + 1 if name == "next_char_class" else ends
    ok = (at >= 0) & (at < len(text))
    return np.where(ok, per_char[np.clip(at, 0, max(len(text) - 1, 0))], -1), names


def markov_target(states_next: np.ndarray, vocab_size: int, order: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """Codes 0..S−1 of the chain states seen, and names "a,b" (the state's tokens, oldest first)."""
    seen, codes = np.unique(states_next, return_inverse=True)
    names = tuple(",".join(str(int(s) // vocab_size ** (order - 1 - j) % vocab_size) for j in range(order))
                  for s in seen)
    return codes.astype(np.int64), names


def read_labels(path: Path) -> dict[str, Any]:
    """A user's labels: JSON ``{"labels": [...], "text": "..."}`` (or ``"tokens": [ids]``), or a
    text file with one label per line for the first tokens of the test split (``-`` or an empty
    line: no label). Returns ``{"labels": [str | None], "text"?: str, "tokens"?: [int]}``."""
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise OverparamError(f"--target: cannot read {path} ({exc})") from exc
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise OverparamError(f"--target: {path} is not valid JSON ({exc})") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("labels"), list):
            raise OverparamError(f"--target: {path} must hold an object with a \"labels\" list")
        labels = [None if v is None or v == "-" else str(v) for v in doc["labels"]]
        out: dict[str, Any] = {"labels": labels}
        if isinstance(doc.get("text"), str):
            out["text"] = doc["text"]
        elif isinstance(doc.get("tokens"), list):
            out["tokens"] = [int(t) for t in doc["tokens"]]
        return out
    lines = raw.splitlines()
    return {"labels": [None if v.strip() in ("", "-") else v.strip() for v in lines]}


def encode_labels(labels: list[str | None]) -> tuple[np.ndarray, tuple[str, ...]]:
    """String labels (None = no label) as codes, classes in sorted order."""
    names = tuple(sorted({v for v in labels if v is not None}))
    index = {v: i for i, v in enumerate(names)}
    return np.asarray([-1 if v is None else index[v] for v in labels], dtype=np.int64), names
