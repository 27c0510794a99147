"""Keep stdout for the ``--json`` document alone while a command works.

``--json`` promises one JSON document on stdout and nothing else there (DESIGN.md ◆). A sweep
runs code that prints: Ray forwards its workers' and raylet's log lines to the driver's stdout
(a node fault produced a 20-line dump ahead of the document), libraries print notices, child
processes inherit file descriptor 1. Inside ``stdout_to_stderr`` all of that goes to stderr:
Python's ``sys.stdout`` and the process's descriptor 1 both point at stderr, and are restored
for the document.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Route everything written to stdout (Python, C libraries, child processes) to stderr."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no descriptor 1 (an embedded interpreter): Python's stream is all there is
        saved = None
    python_stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout = python_stdout
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)
