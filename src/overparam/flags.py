"""Command-line values checked before any work starts: bounded integers, output files.

``argparse`` accepts ``--bootstrap 1000000000`` or ``--seed -1`` as integers; the work then
tries to allocate 134 GiB or fails deep inside numpy. These types refuse such values at parse
time, in the one-line error of every usage mistake (``overparam: error: … argument --seed: …``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from overparam.errors import OverparamError

MAX_BOOTSTRAP = 100_000  # resamples: 1,000 give intervals to ~1 %; 100,000 already take minutes
MAX_SEED = 2**32 - 1  # numpy's seeds stop here


def int_in(low: int, high: int, what: str = "an integer") -> Callable[[str], int]:
    """An argparse type: an integer in [low, high] (spelled 1000 or 1e3), else a usage error naming the range."""
    def parse(text: str) -> int:
        try:
            value = float(text) if any(c in text.lower() for c in ".e") else int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} in {low}..{high:,}, got {text!r}") from None
        if isinstance(value, float) and not value.is_integer():
            raise argparse.ArgumentTypeError(f"expected {what} in {low}..{high:,}, got {text!r}")
        value = int(value)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {what} in {low}..{high:,}, got {text}")
        return value

    parse.__name__ = what  # argparse names the type in its own messages
    return parse


def check_output_file(flag: str, path: str) -> None:
    """An output file must be writable where it is named: not a directory, in a folder that exists."""
    if not path.strip():
        raise OverparamError(f"{flag}: empty path")
    target = Path(path)
    if target.is_dir():
        raise OverparamError(f"{flag}: {path} is a directory; name a file (e.g. {Path(path) / 'runs.csv'})")
    parent = target.parent
    if not parent.is_dir():
        raise OverparamError(f"{flag}: the folder {parent} does not exist; create it first")


THREADS_ENV = "OVERPARAM_THREADS"
THREADS_PER_CPU = 4  # more intra-op threads than this per core only spin (99999 crashed torch's OpenMP)


def max_threads() -> int:
    """The most torch threads a process may ask for: ``THREADS_PER_CPU`` × this machine's CPUs."""
    import os

    return (os.cpu_count() or 1) * THREADS_PER_CPU


def threads_from_env(default: int = 1) -> int:
    """``OVERPARAM_THREADS``: torch intra-op threads per training process, 1..4 × this machine's CPUs."""
    import os

    raw = os.environ.get(THREADS_ENV)
    if raw is None or not raw.strip():
        return default
    cpus, limit = os.cpu_count() or 1, max_threads()
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= limit:
        raise OverparamError(f"{THREADS_ENV}: expected an integer in 1..{limit} ({THREADS_PER_CPU} per CPU of the "
                             f"{cpus} here), got {raw!r}")
    return value
