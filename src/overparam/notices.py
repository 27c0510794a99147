"""Warnings on the command line: one line each, and store damage turned into the exit status.

Library code warns with Python's ``warnings`` (a notebook user sees them as usual). The CLI
installs ``CliNotices`` around a command: a warning prints as one line ``overparam: warning: …``
(never Python's two-line format with a source line), and ``StoreDamageWarning`` s (a damaged row
skipped while reading a store) are collected instead, to end the command with one
``overparam: error: corrupt store …`` line and exit code 2 once it has done its work on the
intact runs: a script notices, a person reads what was left out.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

from overparam.store_damage import StoreDamageWarning


class CliNotices:
    """Context manager: one-line warnings on stderr; store damage kept for ``damage_message``."""

    def __init__(self) -> None:
        self.damage: list[str] = []
        self._saved: Any = None

    def __enter__(self) -> CliNotices:
        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("always", StoreDamageWarning)
        warnings.showwarning = self._show
        return self

    def __exit__(self, *exc: object) -> None:
        self._catch.__exit__(*exc)

    def _show(self, message: Any, category: type, filename: str, lineno: int, file: Any = None,
              line: str | None = None) -> None:
        text = " ".join(str(message).split())
        if issubclass(category, StoreDamageWarning):
            if text not in self.damage:
                self.damage.append(text)
            return
        print(f"overparam: warning: {text}", file=sys.stderr)

    def damage_message(self) -> str | None:
        """One line for everything damaged that the command left out, or None."""
        if not self.damage:
            return None
        first = self.damage[0]
        more = f"; and {len(self.damage) - 1} more damaged part(s)" if len(self.damage) > 1 else ""
        store = first.removeprefix("corrupt store ").split(": ", 1)[0]
        directory = store.rsplit("/", 1)[0] if "/" in store else "."
        return (f"{first}{more}; the command used the intact runs; `overparam runs {directory} --check` lists "
                f"the damage")
