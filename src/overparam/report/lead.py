"""The top of a report: the answer first, then each sweep's shape, in the words its sections use.

Every line here is a claim built by the same readers, from the same cached analysis, as the
section it summarizes (``SweepContext.double_descent``): the top and the sections cannot disagree.
"""

from __future__ import annotations

from typing import Any

from overparam.analysis.claims import Sentence
from overparam.report.reading import answer_claim, read_curve_claims
from overparam.report.sections import SweepContext, language_sweep, too_few_sizes

SHAPE_CLAIM = 1  # read_curve_claims: [threshold, shape (peak / no peak), descent, regimes, ...]


def statistic_claim(stat: str) -> dict[str, Any]:
    """The page's statistic over seeds, named once."""
    other = "median" if stat == "mean" else "mean"
    return Sentence().claim(f"Over seeds, the curves and readings on this page use the {stat} unless a section "
                            f"names another statistic (overparam report --stat {other} for the {other}).")


def _prefixed(claim: dict[str, Any], prefix: str | None) -> dict[str, Any]:
    if not prefix:
        return claim
    text = claim["text"]
    return {**claim, "text": f"{prefix}: {text[0].lower()}{text[1:]}"}


def part_lead(ctx: SweepContext, prefix: str | None = None) -> list[dict[str, Any]]:
    """The answer line of one sweep, and the shape of the curve it was read on (language models: the answer only)."""
    dd = ctx.double_descent
    if not dd or not dd.get("answer"):
        return []
    family = ctx.first("model.family")
    out = []
    answer = answer_claim(dd["answer"], family)
    if answer:
        out.append({**_prefixed(answer, prefix), "kind": "answer"})
    if language_sweep(ctx):
        return out
    short = too_few_sizes(dd["curves"])
    if short:  # the section reads no shape from so few sizes: neither does the top
        return [*out, _prefixed({**short, "text": f"Double descent is {short['text']}"}, prefix)]
    curve = next((c for c in dd["curves"] if c["fixed"] == dd["answer"]["fixed"]), None)
    if curve is not None:
        claims = read_curve_claims(curve, family)
        shape = claims[SHAPE_CLAIM] if curve["threshold_params"] is not None and len(claims) > 1 else claims[0]
        out.append(_prefixed(shape, prefix))
    return out
