"""A report is built from what can be read: a damaged saved analysis skips its section, not the report.

``DIR/analyses/*.json`` are files a user can edit, truncate or replace (``{"models": "x"}``,
``[{}]``). A section that cannot use its file is skipped with a one-line warning on stderr
(``SkippedAnalysisWarning``) and a note at the top of the sweep's part of the report; every
other section is built. Runs the store could not read (``StoreDamageWarning``) are noted there
too, so a reader of the page knows what it leaves out.
"""

from __future__ import annotations

import contextlib
import html
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from overparam.store_damage import SkippedAnalysisWarning, SkippedRunWarning, StoreDamageWarning, skip_analysis

# section builder -> the saved analysis it reads (DIR/analyses/<name>.json)
ARTIFACTS = {"compression_section": "compress", "landscape_section": "landscape",
             "interpret_section": "interpret", "scaling_section": "scaling"}
SHAPE_ERRORS = (KeyError, TypeError, ValueError, IndexError, AttributeError)


NOTED = (SkippedAnalysisWarning, StoreDamageWarning, SkippedRunWarning)  # what the report's notes name


def guarded(builder: Callable[[Any], Any], ctx: Any) -> Any:
    """``builder(ctx)``; when it fails on the shape of its saved analysis, None and a warning instead."""
    name = ARTIFACTS.get(getattr(builder, "__name__", ""))
    path = ctx.dir / "analyses" / f"{name}.json" if name else None
    try:
        return builder(ctx)
    except SHAPE_ERRORS as exc:
        if path is None or not path.is_file():
            raise  # no saved analysis to blame: a bug
        problem = " ".join(f"{type(exc).__name__}: {exc}".split())[:120]
        skip_analysis(path, f"unexpected shape ({problem})")
        return None


@contextlib.contextmanager
def noticing(notes: list[str]) -> Iterator[None]:
    """Collect the skipped analyses and runs warned about inside, then pass every warning on."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SkippedAnalysisWarning)
        for category in NOTED:
            warnings.simplefilter("always", category)
        yield
    for w in caught:
        if issubclass(w.category, NOTED):
            text = " ".join(str(w.message).split())
            if text not in notes:
                notes.append(text)
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def notices_html(notes: list[str]) -> str:
    if not notes:
        return ""
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return f'<div class="notice"><p class="reading">Left out of this part:</p><ul>{items}</ul></div>'
