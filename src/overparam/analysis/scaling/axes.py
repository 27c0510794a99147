"""Which scaling laws a set of points can identify: the axes it varies, and the law fitted by default.

A law in a variable needs that variable to take several values: E + A/X^α has three constants, so
three distinct X at least; the joint law L(N, D) = E + A/N^α + B/D^β needs three model sizes *and*
three token budgets (with one budget, B/D^β is a constant that merges into E and β is anything; with
two, (B, β) still trades off against E). A width sweep of an MLP has one budget: every run saw the
same examples, so its D = C/(6N) drifts only with the bias terms of the FLOP count. Fitting the joint
law to it anyway gives B = 6.4e30 and β = 9.4, and a compute-optimal split of 3.4e10 parameters on
4,845 tokens. So values within ``SAME_DECADES`` of each other count as one budget, and:

- ``check(points, law, x)`` refuses a law the points do not identify, naming the missing axis;
- ``choose(points)`` picks the law fitted by default (``--law auto``): the joint law when both axes
  are identified, else the power law in the one axis that is (at the largest value of the other),
  else a refusal.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from overparam.errors import OverparamError

SAME_DECADES = 0.05  # values within 12 % of each other are one budget (a non-LM D drifts ~3 % with N)
MIN_VALUES = 3  # distinct values a power law with an offset (3 constants) needs in its variable
JOINT_LAWS = ("chinchilla", "chinchilla-envelope", "chinchilla-isoflop", "kaplan")
NOUNS = {"params": ("model size", "parameters"), "tokens": ("token budget", "tokens"),
         "flops": ("compute budget", "FLOPs")}


def budgets(values: Any, decades: float = SAME_DECADES) -> list[float]:
    """The distinct values of ``values`` (positive), those within ``decades`` of a group's first
    (smallest) value merged into the group; each group is reported by its geometric mean."""
    v = np.sort(np.log10(np.asarray(values, dtype=float)))
    out, i = [], 0
    while i < len(v):  # one step per group, not per value: 10^5 points are a handful of budgets
        j = int(np.searchsorted(v, v[i] + decades, side="right"))
        while j < len(v) and v[j] - v[i] <= decades:  # the rule is on the difference: settle rounding
            j += 1
        while j > i + 1 and v[j - 1] - v[i] > decades:
            j -= 1
        out.append(float(10 ** np.mean(v[i:j])))
        i = j
    return out


def axes(points: pd.DataFrame) -> dict[str, list[float]]:
    """The distinct budgets of params, tokens and flops in ``points`` (see :func:`budgets`)."""
    return {c: budgets(points[c]) for c in ("params", "tokens", "flops") if c in points}


def _describe(values: list[float], axis: str) -> str:
    noun, unit = NOUNS[axis]
    if len(values) == 1:
        return f"one {noun} (≈ {values[0]:.3g} {unit})"
    return f"{len(values)} {noun}s ({', '.join(f'{v:.3g}' for v in values)} {unit})"


def missing(points: pd.DataFrame, needed: tuple[str, ...]) -> str | None:
    """Why ``points`` do not identify a law in ``needed`` axes (naming the axis), or None."""
    found = axes(points)
    for axis in needed:
        if len(found[axis]) < MIN_VALUES:
            noun = NOUNS[axis][0]
            name = {"tokens": "token", "params": "model-size"}.get(axis, noun)
            what = f"the {name} axis is {'missing' if len(found[axis]) == 1 else 'too short'}"
            return (f"the {len(points)} points have {_describe(found[axis], axis)}: {what} "
                    f"(at least {MIN_VALUES} distinct {noun}s are needed)")
    return None


def needed_axes(law: str, x: str | None = None) -> tuple[str, ...]:
    """The axes ``law`` (with variable ``x`` for power/bnsl) must see vary."""
    if law in JOINT_LAWS:
        return ("params", "tokens")
    return (x or "params",)


def check(points: pd.DataFrame, law: str, x: str | None = None) -> None:
    """Refuse, in one line naming the missing axis, a law that ``points`` do not identify."""
    why = missing(points, needed_axes(law, x))
    if why is None:
        return
    if law in JOINT_LAWS:
        only = [a for a in ("params", "tokens") if missing(points, (a,)) is None]
        hint = (f"; vary the data (e.g. train.steps) too, or fit L({'N' if only == ['params'] else 'D'}) "
                f"alone: --law power --x {only[0]}" if only else "")
        raise OverparamError(f"--law {law} fits a law in both model size N and tokens D, but {why}{hint}")
    raise OverparamError(f"--law {law} --x {x or 'params'}: {why}")


def choose(points: pd.DataFrame) -> dict[str, Any]:
    """The default law for ``points``: ``{"law", "x", "rows", "reason"}`` (``rows``: the points it fits).

    Both axes identified: Chinchilla's joint law on every point. One axis: the power law in it,
    on the points at the largest budget of the other (all points when the other never varied).
    Neither: an OverparamError that names both counts.
    """
    has = {a: missing(points, (a,)) is None for a in ("params", "tokens")}
    if all(has.values()):
        return {"law": "chinchilla", "x": None, "rows": points, "reason": None}
    found = axes(points)
    for axis, other in (("params", "tokens"), ("tokens", "params")):
        if not has[axis]:
            continue
        top = found[other][-1]
        rows = points[np.log10(points[other]) >= np.log10(top) - SAME_DECADES].reset_index(drop=True)
        if missing(rows, (axis,)) is not None:
            continue
        where = (f"fitted at the largest {NOUNS[other][0]} ({top:.3g} {NOUNS[other][1]}, {len(rows)} of "
                 f"{len(points)} points)" if len(found[other]) > 1 else "")
        symbol = "N" if axis == "params" else "D"
        reason = (f"the points have {_describe(found[other], other)}, so only L({symbol}) is identified"
                  + (f", {where}" if where else ""))
        return {"law": "power", "x": axis, "rows": rows, "reason": reason}
    raise OverparamError(f"no scaling law is identified: the {len(points)} points have "
                         f"{_describe(found['params'], 'params')} and {_describe(found['tokens'], 'tokens')}; "
                         f"a law needs at least {MIN_VALUES} distinct values of the axis it is fitted in")
