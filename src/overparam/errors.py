"""Errors that mean "the user gave us something we cannot use".

The CLI turns any ``OverparamError`` into one line ``overparam: error: …`` and exit code 2;
anything else is a bug (exit code 1). Raise these with a message that names the problem
(the spec key's path, the file, the expected shape), never a bare ``ValueError``.
"""

from __future__ import annotations


class OverparamError(Exception):
    """Bad input: a malformed spec, a missing file, a corrupt store, an impossible setting."""


class SpecError(OverparamError):
    """The spec is malformed: unknown key, wrong type, impossible value."""


class StoreError(OverparamError):
    """The sweep directory or its SQLite store cannot be used (missing, corrupt, locked, too new)."""


class DataError(OverparamError):
    """A task's data cannot be read or is unusable (empty, binary, wrong shape)."""


class MissingExtraError(OverparamError):
    """An optional dependency is not installed; the message names the ``pip install`` to run."""


def require(module: str, extra: str):
    """Import an optional dependency or raise a one-line error naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"this needs the optional package '{module}': pip install 'overparam[{extra}]'"
        ) from exc
