"""``text``: a corpus of UTF-8 text, tokenized at byte, character or BPE level.

Without ``task.path`` the corpus is embedded: the English documentation text that ships inside
every CPython, module ``pydoc_data.topics`` (the topic texts joined in sorted key order), so a
language-model sweep needs no download. Its exact content depends on the Python version; the
corpus's SHA-256 is recorded in ``info["sha256"]``. Measured on CPython 3.11.7 (464,970
characters, 466,117 UTF-8 bytes, 103 distinct characters), with the default 10 % validation:

=============================  =======  =========  ==========
tokenizer                      vocab    train      validation
=============================  =======  =========  ==========
``byte``                       256      419,505    46,612
``char``                       103      418,473    46,497
``bpe`` (``vocab_size`` 512)   512      198,288    22,033
``bpe`` (``vocab_size`` 2048)  2048     120,461    13,385
=============================  =======  =========  ==========

``task.path`` may name a UTF-8 file, or a folder: all its files (recursively, hidden ones
skipped) sorted by relative path and concatenated. ``../shared/data/tinyshakespeare.txt``
(1,115,394 bytes, ASCII) gives 1,003,854 / 111,540 byte or char tokens (65 characters).

The split is deterministic: the first ``1 − val_fraction`` of the token stream trains, the
rest validates. ``train_size`` keeps only the first that many training tokens, so the
training sets of a data-size sweep are nested prefixes and the validation set never changes.
``char`` uses the sorted distinct characters of the whole corpus (so validation has no
unknown symbols, as nanoGPT's char-level Shakespeare). ``bpe`` trains a byte-level BPE
(Sennrich et al. 2016; GPT-2's byte alphabet, so any text encodes) with the ``tokenizers``
package on the first ``1 − val_fraction`` of the *characters*, so the tokenizer never sees
the validation text.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from overparam.data.base import TaskData
from overparam.errors import DataError, SpecError, require
from overparam.options import Option, at_most, positive

EMBEDDED = "embedded corpus (pydoc_data.topics)"
BINARY_CONTROL_FRACTION = 0.05  # more control bytes than this (not \t \n \r \f \v) reads as binary


def _val_fraction(v: Any) -> str | None:
    return None if 0 < v < 1 else "must be in (0, 1)"


def _bpe_vocab(v: Any) -> str | None:
    return None if 257 <= v <= 1_000_000 else "must be in 257..1000000 (above the 256 byte symbols)"


OPTIONS: dict[str, Option] = {
    "kind": Option(str, None, "which task"),
    "path": Option(str, None, "a UTF-8 text file or a folder of them (null: the embedded CPython docs)",
                   nullable=True),
    "tokenizer": Option(str, "byte", "byte (vocab 256), char (the corpus's characters) or bpe",
                        choices=("byte", "char", "bpe")),
    "vocab_size": Option(int, 512, "bpe only: vocabulary size including the 256 bytes", check=_bpe_vocab),
    "val_fraction": Option(float, 0.1, "the last this fraction of the token stream validates",
                           check=_val_fraction),
    "train_size": Option(int, None, "training tokens used, a prefix of the train split (null: all)",
                         check=positive, nullable=True),
    "test_size": Option(int, None, "validation tokens used, a prefix of the split (null: all)",
                        check=at_most(1_000_000_000), nullable=True),
    "mix": Option(list, None, "domains [{path, weight, name}] mixed by weight, each with its own test split "
                  "(path: a file or folder, embedded:docs or embedded:stdlib); see data/text_mix.py",
                  nullable=True, check=lambda v: _text_mix().check_mix(v),
                  normalize=lambda v: _text_mix().normalize_mix(v)),
}


def _text_mix():
    from overparam.data import text_mix

    return text_mix


@functools.lru_cache(maxsize=1)
def embedded_corpus() -> str:
    """The CPython documentation topics, joined in sorted key order (~465k characters)."""
    from pydoc_data.topics import topics

    return "".join(topics[key] for key in sorted(topics))


def _files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    found = [p for p in root.rglob("*")
             if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def decode_file(path: Path) -> str:
    """A file's text, or a ``DataError`` saying why it is not usable text (and where)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise DataError(f"{path}: binary file (NUL byte at offset {nul}), expected UTF-8 text")
    if raw:
        control = sum(raw.count(bytes([c])) for c in (*range(1, 9), *range(14, 32), 127))
        if control > BINARY_CONTROL_FRACTION * len(raw):
            raise DataError(f"{path}: binary file ({control / len(raw):.0%} control bytes), expected "
                            f"UTF-8 text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte offset {exc.start})") from exc


def read_corpus(path: str | None) -> tuple[str, str]:
    """(text, source) of ``task.path``, or of the embedded corpus when ``path`` is None."""
    if path is None:
        return embedded_corpus(), EMBEDDED
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"task.path: no such file or folder: {root}")
    files = _files(root)
    if not files:
        raise DataError(f"task.path: {root} is an empty folder (no text files in it)")
    text = "".join(decode_file(f) for f in files)
    if not text:
        raise DataError(f"task.path: {root} is empty (no text)")
    return text, str(root)


def _train_bpe(text: str, vocab_size: int) -> Any:
    tk = require("tokenizers", "text")
    tokenizer = tk.Tokenizer(tk.models.BPE())
    tokenizer.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False, special_tokens=[],
                                     initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(text.splitlines(keepends=True), trainer=trainer)
    return tokenizer


def tokenize(text: str, tokenizer: str, vocab_size: int, val_fraction: float) -> tuple[np.ndarray, int,
                                                                                        dict[str, Any]]:
    """(int64 token stream, vocabulary size, decoding info) of ``text``."""
    if tokenizer == "byte":
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64), 256, {}
    if tokenizer == "char":
        points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)  # one code point per character
        chars = np.unique(points)  # sorted code points = sorted(set(text))
        ids = np.searchsorted(chars, points).astype(np.int64)
        return ids, len(chars), {"chars": "".join(map(chr, chars.tolist()))}
    bpe = _train_bpe(text[:int(len(text) * (1 - val_fraction))], vocab_size)
    ids = np.asarray(bpe.encode(text).ids, dtype=np.int64)
    return ids, bpe.get_vocab_size(), {"tokenizer_json": bpe.to_str()}


def decode(tokens: Any, info: dict[str, Any]) -> str:
    """Text of a token sequence, given the ``info`` of the task that made it."""
    ids = [int(t) for t in tokens]
    if info["tokenizer"] == "byte":
        return bytes(ids).decode("utf-8", errors="replace")
    if info["tokenizer"] == "char":
        return "".join(info["chars"][i] for i in ids)
    tk = require("tokenizers", "text")
    return tk.Tokenizer.from_str(info["tokenizer_json"]).decode(ids)


def load(opts: dict[str, Any]) -> TaskData:
    """Read, tokenize and split the corpus (see the module docstring for sizes)."""
    if opts.get("mix"):  # several domains, each with its own test split
        return _text_mix().load_mix(opts)
    text, source = read_corpus(opts["path"])
    return lm_task(text, source, opts)


def lm_task(text: str, source: str, opts: dict[str, Any], name: str = "text") -> TaskData:
    """Tokenize and split ``text`` by ``opts``' tokenizer, vocab_size, val_fraction, train_size and
    test_size: the language-model task of ``text`` and of ``hf`` with a ``text_column``."""
    ids, vocab, extra = tokenize(text, opts["tokenizer"], opts["vocab_size"], opts["val_fraction"])
    n_train_all = int(len(ids) * (1 - opts["val_fraction"]))
    train, val = ids[:n_train_all], ids[n_train_all:]
    if len(train) < 2 or len(val) < 2:
        raise DataError(f"{source}: too short: {len(ids)} tokens leave {len(train)} for training and "
                        f"{len(val)} for validation")
    if opts["train_size"] is not None:
        if opts["train_size"] > len(train):
            raise SpecError(f"task.train_size: {source} has {len(train)} training tokens "
                            f"({opts['tokenizer']}), asked for {opts['train_size']}")
        train = train[:opts["train_size"]]
    if opts["test_size"] is not None:
        val = val[:opts["test_size"]]
        if len(val) < 2:
            raise SpecError(f"task.test_size: must be >= 2, got {opts['test_size']}")
    info = {"name": name, "source": source, "tokenizer": opts["tokenizer"], "n_chars": len(text),
            "n_train": len(train), "n_test": len(val), "n_train_available": n_train_all,
            "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(), **extra}
    return TaskData(kind="lm", tokens_train=np.ascontiguousarray(train),
                    tokens_test=np.ascontiguousarray(val), vocab_size=vocab, info=info)
