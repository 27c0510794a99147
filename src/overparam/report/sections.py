"""Report sections: each reads one sweep directory's stored facts and returns a ``Section``.

A section builder is ``(SweepContext) -> Section | None`` (None when it does not apply). Other
analyses add theirs to ``BUILDERS``; nothing here trains or fits from hidden state: every
number comes from the store or from an analysis file written beside it.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from overparam.analysis.claims import Sentence, fmt_settings, texts
from overparam.analysis.double_descent import EPS, TOLERANCE
from overparam.data import is_language_task
from overparam.report import plots
from overparam.report.reading import read_curve_claims


@dataclass
class Section:
    title: str
    sentences: list[str] = field(default_factory=list)
    figures: list[tuple[str, bytes, str]] = field(default_factory=list)  # (file name, PNG, caption)
    tables: list[str] = field(default_factory=list)  # HTML, already escaped
    summary: dict[str, Any] = field(default_factory=dict)
    collapsed: bool = False
    claims: list[dict[str, Any]] = field(default_factory=list)  # the sentences with their numbers (analysis.claims)
    brief: bool = False  # nothing to show: the title and its one sentence on one line


@dataclass(frozen=True)
class ReportSettings:
    """What a page reads its numbers with, the same for every section: ``overparam report --eps/--tolerance/--stat``
    and ``overparam analyze`` share the defaults, so both give the same numbers."""

    eps: float = EPS
    tolerance: float = TOLERANCE
    stat: str = "mean"


class SweepContext:
    """Lazy access to one sweep directory's runs, curves, metadata and analyses."""

    def __init__(self, directory: Path, settings: ReportSettings | None = None):
        self.dir = Path(directory)
        self.settings = settings or ReportSettings()

    @cached_property
    def meta(self) -> dict[str, Any]:
        from overparam.store import open_store

        with open_store(self.dir) as store:
            return {"name": store.meta("name", self.dir.name), "spec": store.meta("spec", {}),
                    "size_axes": store.meta("size_axes")}

    @property
    def name(self) -> str:
        return str(self.meta["name"])

    @cached_property
    def runs(self) -> pd.DataFrame:
        from overparam.store import load_runs

        return load_runs(self.dir)

    @cached_property
    def curves(self) -> pd.DataFrame:
        from overparam.store import load_curves

        return load_curves(self.dir)

    @cached_property
    def double_descent(self) -> dict[str, Any] | None:
        from overparam.analysis.double_descent import analyze_double_descent

        if self.runs.empty or not (self.runs["status"] == "done").any():
            return None
        return analyze_double_descent(self.dir, eps=self.settings.eps, stat=self.settings.stat,
                                      tolerance=self.settings.tolerance)

    def artifact(self, name: str) -> Any:
        """An analysis result stored beside the store as ``DIR/analyses/<name>.json``, or None."""
        path = self.dir / "analyses" / f"{name}.json"
        if not path.is_file():
            return None
        from overparam.store_damage import skip_analysis

        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            return skip_analysis(path, f"unreadable ({' '.join(str(exc).split())[:120]})")  # None, and a warning
        return doc if isinstance(doc, dict) else skip_analysis(path, f"not a JSON object ({type(doc).__name__})")

    def first(self, column: str) -> Any:
        if column in self.runs and len(self.runs):
            return self.runs[column].iloc[0]
        return None


def language_sweep(ctx: SweepContext) -> bool:
    """A sweep of language models (``text``, ``markov``, ``hf`` with a text_column): no error rates."""
    return is_language_task({"kind": ctx.first("task.kind"), "text_column": ctx.first("task.text_column")})


def double_descent_section(ctx: SweepContext) -> Section | None:
    if language_sweep(ctx):
        return None  # language models: the scaling section reads them
    dd = ctx.double_descent
    if not dd:
        return None
    short = too_few_sizes(dd["curves"])
    if short:
        return Section(title="Double descent", sentences=[short["text"]], brief=True, claims=[short],
                       summary={"curves": dd["curves"], "answer": dd["answer"], "sentences": [short["text"]],
                                "claims": [short], "n_sizes": max(len(c["points"]) for c in dd["curves"]),
                                "min_sizes": MIN_SIZES, "n_curves": len(dd["curves"])})
    family = ctx.first("model.family")
    section = Section(title="Double descent")
    for i, curve in enumerate(dd["curves"]):
        fixed = fmt_settings(curve["fixed"])
        label = f"{ctx.name}" + (f" ({fixed})" if fixed else "")
        claims = read_curve_claims(curve, family)
        if fixed:
            claims = [{"text": f"{fixed}:", "numbers": [], "comparisons": [], "label": True}] + claims
        section.claims.extend(claims)
        ids = set()
        if curve["points"]:
            frame = ctx.runs
            for key, value in curve["fixed"].items():
                frame = frame[frame[key].astype(str) == str(value)]
            ids = set(frame["id"])
            png = plots.double_descent_figure(curve, frame, label)
            section.figures.append((f"double_descent_{i}.png", png,
                                    f"Train and {curve['metric'].replace('_', ' ')} vs trainable parameters: "
                                    f"line = {curve['stat']} over seeds, band = seed range, dots = single runs."))
        if len(ctx.curves) and ctx.curves["step"].nunique() >= 3 and ids and curve["axis"] in ctx.runs:
            sub = ctx.curves[ctx.curves["run_id"].isin(ids)]
            png = plots.curves_over_time_figure(sub, ctx.runs[ctx.runs["id"].isin(ids)], curve["axis"], label)
            if png:
                section.figures.append((f"over_time_{i}.png", png,
                                        "Test metric over training steps, one line per size (mean over seeds)."))
    section.sentences = texts(section.claims)
    section.summary = {"curves": [{k: v for k, v in c.items()} for c in dd["curves"]], "answer": dd["answer"],
                       "sentences": section.sentences, "claims": section.claims}
    return section


MIN_SIZES = 3  # a threshold, a peak and a descent after it need three sizes on a curve


def too_few_sizes(curves: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The one claim a double-descent section makes when no curve has ``MIN_SIZES`` sizes, else None."""
    counts = [len(c["points"]) for c in curves]
    if not counts or max(counts) >= MIN_SIZES:
        return None
    say = Sentence()
    sizes = sorted({p["size"] for c in curves for p in c["points"]}, key=lambda v: (str(type(v)), v))
    axis = curves[0]["axis"]
    fixed = sorted({k for c in curves for k in c["fixed"]})
    what = (f"each of the {_count(len(curves))} curves (one per setting of {', '.join(fixed)}) has"
            if len(curves) > 1 else "the curve has")
    named = " and ".join(say.num(v) if isinstance(v, (int, float)) else str(v) for v in sizes)
    most = max(counts)
    return say.claim(f"not read: {what} {_count(most)} size{'s' if most != 1 else ''} ({axis} {named}); a "
                     f"threshold and a peak need at least {_count(MIN_SIZES)}.")


def _count(n: int) -> str:
    """A small count in words: a structural fact of the sweep, not a measured number to check against JSON."""
    words = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
    return words[n] if 0 <= n < len(words) else f"{n:,}"


def runs_table_section(ctx: SweepContext) -> Section | None:
    frame = ctx.runs
    if frame.empty:
        return None
    axes = [c for c in frame.columns if ("." in c or c == "seed") and frame[c].astype(str).nunique() > 1]
    metrics = [m for m in ("train_error", "test_error", "train_loss", "test_loss", "condition_number")
               if m in frame and frame[m].notna().any()]
    cols = ["id", "status", *axes, "params", *metrics]
    if "unstable" in frame:
        cols.append("unstable")
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = []
    for _, row in frame[cols].iterrows():
        cells = []
        for c in cols:
            v = row[c]
            if isinstance(v, float):
                text = f"{v:.4g}"
            else:
                text = str(v)
            cls = f' class="status-{html.escape(text)}"' if c == "status" else ""
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    counts = frame["status"].value_counts().to_dict()
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    status = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return Section(title=f"Runs ({len(frame)}: {status})", tables=[table], collapsed=True,
                   summary={"n_runs": int(len(frame)), "status": {k: int(v) for k, v in counts.items()}})


def scaling_section(ctx: SweepContext) -> Section | None:
    """Scaling law of a language-model sweep (``scaling_section.py``; imported here only when called)."""
    from overparam.report.scaling_section import scaling_section as build

    return build(ctx)


BUILDERS: list[Callable[[SweepContext], Section | None]] = [double_descent_section, scaling_section,
                                                             runs_table_section]


def theory_section(ctx: SweepContext) -> Section | None:
    """Closed-form curve beside a teacher sweep (``theory_section.py``; imported only when called)."""
    from overparam.report.theory_section import theory_section as build

    return build(ctx)


def regularization_section(ctx: SweepContext) -> Section | None:
    """Per-λ curves and the tuned envelope (``regularization_section.py``; imported only when called)."""
    from overparam.report.regularization_section import regularization_section as build

    return build(ctx)


def epochwise_section(ctx: SweepContext) -> Section | None:
    """Size × steps heatmap of test error (``epochwise_section.py``; imported only when called)."""
    from overparam.report.epochwise_section import epochwise_section as build

    return build(ctx)


BUILDERS[-1:-1] = [theory_section, regularization_section, epochwise_section]  # the runs table stays last


def interpret_section(ctx: SweepContext) -> Section | None:
    """Head statistics, probe selectivity and heads used across sizes (``interpret_section.py``)."""
    from overparam.report.interpret_section import interpret_section as build

    return build(ctx)


BUILDERS[-1:-1] = [interpret_section]  # LM sweeps of gpt runs only; the runs table stays last


def compression_section(ctx: SweepContext) -> Section | None:
    """The compression frontier, when ``overparam compress`` wrote ``analyses/compress.json``."""
    from overparam.report.compression_section import compression_section as build

    return build(ctx)


BUILDERS[-1:-1] = [compression_section]  # the runs table stays last


def landscape_section(ctx: SweepContext) -> Section | None:
    """Steps to a train-loss threshold and the init-to-trained path per width (``landscape_section.py``)."""
    from overparam.report.landscape_section import landscape_section as build

    return build(ctx)


BUILDERS.insert(BUILDERS.index(epochwise_section) + 1, landscape_section)  # beside the other over-time reading


def implicit_section(ctx: SweepContext) -> Section | None:
    """Norms, min-norm distance and sharpness vs 2/lr recorded with ``train.diagnostics`` (``implicit_section.py``)."""
    from overparam.report.implicit_section import implicit_section as build

    return build(ctx)


BUILDERS.insert(BUILDERS.index(regularization_section) + 1, implicit_section)  # beside explicit regularization


def _in_context_builder(name: str) -> Callable[[SweepContext], Section | None]:
    """A lazy builder of ``in_context_section.<name>`` (in-context, few-shot, position, specialization)."""
    def build(ctx: SweepContext) -> Section | None:
        from overparam.report import in_context_section

        return getattr(in_context_section, name)(ctx)

    build.__name__ = name
    return build


BUILDERS[-1:-1] = [_in_context_builder(n) for n in ("in_context_section", "few_shot_section", "position_section",
                                                    "specialization_section")]  # the runs table stays last
