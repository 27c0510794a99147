"""The ``overparam`` command line: a thin layer over the library.

Contract (DESIGN.md): ``--json`` prints exactly one JSON document on stdout; errors are one
line on stderr starting ``overparam: error:``, with exit code 2 for bad input and 1 for a bug.
Set ``OVERPARAM_DEBUG=1`` to see the traceback of a bug.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import math
import os
import sys
from typing import Any

from overparam.errors import OverparamError

# Command modules, in the order `--help` lists them (see overparam/commands/__init__.py).
COMMANDS = (
    "demo",
    "sweep",
    "runs",
    "analyze",
    "fit",
    "advise",
    "theory",
    "compress",
    "implicit",
    "landscape",
    "probe",
    "attention",
    "report",
    "completion",
)


class _ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is our one-line error with exit code 2, named by its command:
    "overparam: error: sweep: the following arguments are required: --out" (not "overparam sweep:"
    after the prefix that already says overparam)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        command = self.prog.removeprefix("overparam").strip()
        raise OverparamError(f"{command}: {message}" if command else message)


def _clean_json(obj: Any) -> Any:
    """Make NaN/inf JSON-safe (null) and numpy scalars plain, so the output parses anywhere."""
    if isinstance(obj, dict):
        return {str(k): _clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean_json(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        try:
            obj = obj.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def print_json(doc: Any) -> None:
    """Print one JSON document on stdout (the ``--json`` contract)."""
    sys.stdout.write(json.dumps(_clean_json(doc), indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()


def print_reading(table: str, sentences: list[str]) -> None:
    """A command's human output: its table, a blank line, then each sentence of the reading as a bullet."""
    print(table)
    print()
    for s in sentences:
        print(f"- {s}")


def build_parser() -> argparse.ArgumentParser:
    from overparam import __version__

    parser = _ArgumentParser(
        prog="overparam",
        description="How many parameters does this task really need? Sweeps, double descent, "
        "scaling laws, compression.",
        epilog="Start with `overparam demo --quick --out /tmp/op`, then open /tmp/op/report.html.",
    )
    parser.add_argument("--version", action="version", version=f"overparam {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_ArgumentParser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"overparam.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"overparam.commands.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


# An OSError with one of these causes is the user's disk or permissions, not a bug: one line, exit 2.
USER_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EISDIR,
                         errno.ENOTDIR, errno.ENOENT, errno.EFBIG, errno.ENAMETOOLONG})


def main(argv: list[str] | None = None) -> int:
    from overparam.notices import CliNotices

    with CliNotices() as notices:
        code = _main(argv)
        damage = notices.damage_message()
    if damage and code == 0:  # the command did its work on the intact runs; say what it left out
        print(f"overparam: error: {' '.join(damage.split())}", file=sys.stderr)
        return 2
    return code


def _main(argv: list[str] | None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return 2
        return int(args.func(args) or 0)
    except OverparamError as exc:
        msg = " ".join(str(exc).split())  # one line, whatever the message held
        print(f"overparam: error: {msg}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except OSError as exc:
        if exc.errno not in USER_ERRNOS:
            return _bug(exc)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"overparam: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("overparam: error: interrupted; finished runs are stored, rerun to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: say so in one line, traceback on request
        return _bug(exc)


def _bug(exc: BaseException) -> int:
    if os.environ.get("OVERPARAM_DEBUG"):
        raise exc
    msg = " ".join(f"{type(exc).__name__}: {exc}".split())
    print(f"overparam: error: internal error (a bug; OVERPARAM_DEBUG=1 shows the traceback): {msg}",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
