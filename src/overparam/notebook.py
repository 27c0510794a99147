"""Jupyter helpers: a sweep's figures, displayed inline.

The report's figures are PNG bytes (``overparam.report.plots``, matplotlib's Agg backend, so
they render the same headless, in CI and in a notebook). ``Png`` wraps those bytes with
``_repr_png_``, which Jupyter calls to show an object inline: no IPython import needed here.

    from overparam.notebook import show_double_descent
    show_double_descent("runs/dd")          # the last expression of a cell is displayed
"""

from __future__ import annotations

from pathlib import Path

from overparam.errors import OverparamError


class Png(bytes):
    """PNG bytes that Jupyter displays as an image; ``save(path)`` writes them."""

    def _repr_png_(self) -> bytes:
        return bytes(self)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_bytes(self)
        return path


class Figures(list):
    """Several figures: Jupyter shows them one under the other (``_repr_html_``)."""

    def _repr_html_(self) -> str:
        import base64

        return "".join(f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}"/>' for png in self)


def figures(directory: str | Path) -> Figures:
    """The report's double-descent figures for ``directory``: each curve vs size, then over training time."""
    from overparam.report.sections import SweepContext, double_descent_section

    ctx = SweepContext(Path(directory))
    section = double_descent_section(ctx)
    return Figures(Png(png) for _, png, _ in (section.figures if section else []))


def show_double_descent(directory: str | Path, curve: int = 0) -> Png:
    """The double-descent figure of one curve of a sweep (train and test metric vs parameters).

    ``curve`` picks among the sweep's curves when it holds several (one per fixed setting,
    e.g. per label-noise level), in the order ``overparam analyze`` lists them.
    """
    from overparam.report.plots import double_descent_figure
    from overparam.report.sections import SweepContext

    ctx = SweepContext(Path(directory))
    dd = ctx.double_descent
    if not dd or not dd["curves"]:
        raise OverparamError(f"{directory}: no finished runs to draw a double-descent curve from")
    if not 0 <= curve < len(dd["curves"]):
        raise OverparamError(f"curve={curve}: this sweep has {len(dd['curves'])} curve(s)")
    chosen = dd["curves"][curve]
    frame = ctx.runs
    for key, value in chosen["fixed"].items():
        frame = frame[frame[key].astype(str) == str(value)]
    fixed = ", ".join(f"{k} = {v}" for k, v in chosen["fixed"].items())
    return Png(double_descent_figure(chosen, frame, ctx.name + (f" ({fixed})" if fixed else "")))
