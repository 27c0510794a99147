"""``text`` with ``mix``: several domains, mixed by weight for training, each with its own test split.

``task.mix`` is a list of ``{path, weight, name}``. ``path`` is a UTF-8 file or folder (read as
``task.path`` is), or one of two embedded domains that need no file:

- ``embedded:docs`` (or null): the CPython documentation topics, ``text``'s default corpus;
- ``embedded:stdlib``: the docstrings of the standard library's top-level modules, read at run
  time from their source with ``ast`` (nothing is imported, so no module's side effects run):
  every ``*.py`` file directly in ``sysconfig.get_paths()["stdlib"]``, sorted by name, each
  file's module, class and function docstrings in ``ast.walk`` order, joined by blank lines
  (CPython 3.11.7: 168 files, 901,437 characters). Its SHA-256 is recorded like the docs'.

Each domain is tokenized alone (``byte``, or ``char`` over the characters of all the domains;
``bpe`` is refused: a vocabulary trained on each mixture would make per-domain losses
incomparable between runs) and split as ``text`` splits a corpus: the first ``1 − val_fraction``
of its tokens train, the rest is *its* test split (``test_size`` caps each domain's). The
training stream is the domains' training tokens laid end to end, domain i contributing the
share w_i / Σw of it (a prefix of its own split); ``train_size`` sets the total, and null takes
the largest total every domain can fill. Training windows are drawn uniformly over the stream,
so a step sees each domain in proportion to its weight (the few windows that straddle two
domains are kept). The test stream is the domains' test splits end to end; ``test_loss`` pools
them, and ``train.lm_measures`` reports each domain's own (``domain_test_loss``).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import math
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np

from overparam.data.base import TaskData
from overparam.errors import DataError, SpecError

EMBEDDED = {"embedded:docs": "docs", "embedded:stdlib": "stdlib"}  # path -> default domain name
ENTRY_KEYS = ("path", "weight", "name")


def check_mix(value: Any) -> str | None:
    """Each entry a mapping of path (string or null), weight (> 0) and name; names distinct.

    Raises ``SpecError`` naming the entry's own path (``task.mix[1].weight``), which is more than
    the option's one phrase can say.
    """
    if not value:
        return "must list at least one domain ({path, weight, name})"
    names = []
    for i, entry in enumerate(value):
        where = f"task.mix[{i}]"
        if not isinstance(entry, dict):
            raise SpecError(f"{where}: expected a mapping {{path, weight, name}}, got {entry!r}")
        unknown = sorted(set(entry) - set(ENTRY_KEYS))
        if unknown:
            raise SpecError(f"{where}.{unknown[0]}: unknown key (known keys: {', '.join(ENTRY_KEYS)})")
        path = entry.get("path")
        if path is not None and (not isinstance(path, str) or not path):
            raise SpecError(f"{where}.path: expected a file or folder path, embedded:docs or embedded:stdlib, "
                            f"got {path!r}")
        weight = entry.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise SpecError(f"{where}.weight: expected a number > 0, got {weight!r}")
        if weight <= 0:
            raise SpecError(f"{where}.weight: must be > 0, got {weight!r}")
        name = entry.get("name", domain_name(path))
        if not isinstance(name, str) or not name.strip():
            raise SpecError(f"{where}.name: expected a non-empty string, got {name!r}")
        if name in names:
            raise SpecError(f"{where}.name: {name!r} names two domains; give each its own name")
        names.append(name)
    return None


def normalize_mix(value: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every entry with all three keys (weight a float, name defaulted), so equal mixes name equal runs."""
    return [{"path": e.get("path"), "weight": float(e.get("weight", 1.0)),
             "name": e.get("name", domain_name(e.get("path")))} for e in value]


def domain_name(path: str | None) -> str:
    """The default name of a domain: docs, stdlib, or the file's or folder's name without suffix."""
    if path is None:
        return "docs"
    return EMBEDDED.get(path) or Path(path).stem or str(path)


@functools.lru_cache(maxsize=1)
def stdlib_docstrings() -> str:
    """Docstrings of the standard library's top-level modules (see the module docstring)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    parts = []
    for path in sorted(root.glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            continue  # an unreadable file is skipped: the corpus is what parses
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    parts.append(doc)
    text = "\n\n".join(parts)
    if not text:
        raise DataError(f"embedded:stdlib: no docstrings found under {root} (this Python ships no library source)")
    return text


def domain_text(path: str | None, where: str) -> tuple[str, str]:
    """(text, source) of one domain; a missing or unusable file is a ``DataError`` naming ``where``."""
    from overparam.data.text import EMBEDDED as DOCS_SOURCE
    from overparam.data.text import embedded_corpus, read_corpus

    if path is None or path == "embedded:docs":
        return embedded_corpus(), DOCS_SOURCE
    if path == "embedded:stdlib":
        return stdlib_docstrings(), "embedded standard-library docstrings (ast of the stdlib's top-level modules)"
    if path.startswith("embedded:"):
        raise SpecError(f"{where}: unknown embedded domain {path!r} (known: {', '.join(EMBEDDED)})")
    if not Path(path).expanduser().exists():
        raise DataError(f"{where}: no such file or folder: {Path(path).expanduser()}")
    try:
        return read_corpus(path)
    except DataError as exc:
        raise DataError(f"{where}: {str(exc).removeprefix('task.path: ')}") from exc


def _shares(total: int, weights: np.ndarray) -> np.ndarray:
    """Integer tokens per domain summing to ``total``, ∝ weights (the remainder to the first domains)."""
    shares = np.floor(total * weights / weights.sum()).astype(np.int64)
    shares[:total - int(shares.sum())] += 1
    return shares


def load_mix(opts: dict[str, Any]) -> TaskData:
    """Read, tokenize and split every domain, then mix their training splits by weight."""
    if opts["tokenizer"] == "bpe":
        raise SpecError("task.mix: tokenizer bpe would train a vocabulary per mixture, so per-domain losses "
                        "would not compare between runs; use tokenizer byte or char")
    if opts.get("path") is not None:
        raise SpecError("task.path: give the corpus either as task.path or as the domains of task.mix, not both")
    mix = normalize_mix(opts["mix"])
    texts = [domain_text(e["path"], f"task.mix[{i}].path") for i, e in enumerate(mix)]
    extra: dict[str, Any] = {}
    if opts["tokenizer"] == "char":
        chars = np.unique(np.concatenate([np.frombuffer(t.encode("utf-32-le"), dtype=np.uint32) for t, _ in texts]))
        extra["chars"] = "".join(map(chr, chars.tolist()))
        ids = [np.searchsorted(chars, np.frombuffer(t.encode("utf-32-le"), dtype=np.uint32)).astype(np.int64)
               for t, _ in texts]
        vocab = len(chars)
    else:
        ids = [np.frombuffer(t.encode("utf-8"), dtype=np.uint8).astype(np.int64) for t, _ in texts]
        vocab = 256
    trains, tests = [], []
    for i, (entry, tokens) in enumerate(zip(mix, ids, strict=True)):
        cut = int(len(tokens) * (1 - opts["val_fraction"]))
        train, test = tokens[:cut], tokens[cut:]
        if opts["test_size"] is not None:
            test = test[:opts["test_size"]]
        if len(train) < 2 or len(test) < 2:
            raise DataError(f"task.mix[{i}].path: domain {entry['name']!r} is too short: {len(tokens)} tokens leave "
                            f"{len(train)} for training and {len(test)} for its test split")
        trains.append(train)
        tests.append(test)
    weights = np.array([e["weight"] for e in mix])
    available = np.array([len(t) for t in trains])
    total = opts["train_size"] if opts["train_size"] is not None else \
        int(np.floor(np.min(available / (weights / weights.sum()))))
    shares = _shares(total, weights)
    for i, (share, have) in enumerate(zip(shares.tolist(), available.tolist(), strict=True)):
        if share > have:
            raise SpecError(f"task.train_size: domain {mix[i]['name']!r} has {have:,} training tokens, its share "
                            f"(weight {mix[i]['weight']:g} of {weights.sum():g}) of {total:,} asks for {share:,}")
    starts = np.cumsum([0] + [len(t) for t in tests])
    domains = [{"name": e["name"], "source": src, "weight": e["weight"], "n_train": int(share),
                "n_test": int(len(test)), "test_start": int(start), "sha256": hashlib.sha256(t.encode()).hexdigest()}
               for e, (t, src), share, test, start in zip(mix, texts, shares.tolist(), tests, starts[:-1].tolist(),
                                                         strict=True)]
    info = {"name": "text", "source": "mix of " + ", ".join(e["name"] for e in mix), "tokenizer": opts["tokenizer"],
            "n_chars": sum(len(t) for t, _ in texts), "n_train": int(total), "n_test": int(starts[-1]),
            "domains": domains, **extra}
    train = np.concatenate([t[:s] for t, s in zip(trains, shares.tolist(), strict=True)])
    return TaskData(kind="lm", tokens_train=np.ascontiguousarray(train), tokens_test=np.concatenate(tests),
                    vocab_size=vocab, info=info)
