"""One self-contained HTML report: every style inline, every figure a base64 PNG, no network.

``build_report(DIR)`` works on a sweep directory, or on a directory of sweep directories
(what ``overparam demo`` writes), and also writes ``DIR/figures/*.png`` and ``DIR/summary.json``.
Every user-provided string (sweep names, settings) is escaped.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from overparam.errors import StoreError
from overparam.report.guard import guarded, notices_html, noticing
from overparam.report.sections import BUILDERS, ReportSettings, Section, SweepContext
from overparam.store import DB_NAME


def sweep_dirs(directory: Path) -> list[Path]:
    """The sweep directories a report covers: DIR itself, or its parts in the demo's order."""
    if (directory / DB_NAME).is_file():
        return [directory]
    if not directory.is_dir():
        raise StoreError(f"{directory}: no such directory")
    order = []
    manifest = directory / "demo.json"
    if manifest.is_file():
        try:
            order = [p["dir"] for p in json.loads(manifest.read_text()).get("parts", [])]
        except (ValueError, KeyError, TypeError):
            order = []
    found = sorted(p for p in directory.iterdir() if (p / DB_NAME).is_file())
    found.sort(key=lambda p: order.index(p.name) if p.name in order else len(order))
    if not found:
        raise StoreError(f"{directory}: not a sweep directory (no {DB_NAME}, and no sweep directories inside)")
    return found


def inline(text: str) -> str:
    """Escaped text with `code` spans (a command, an option) set as <code>, never as raw backticks."""
    parts = html.escape(text).split("`")
    if len(parts) % 2 == 0:  # an unmatched backtick: keep it, literally
        return html.escape(text)
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _render_section(section: Section, figure_dir: Path, prefix: str) -> str:
    if section.brief:  # a section with nothing to show: one line, not a heading over a lone verdict
        line = inline(" ".join(section.sentences))
        return f'<p class="brief"><strong>{html.escape(section.title)}</strong>: {line}</p>'
    parts = [f"<h3>{html.escape(section.title)}</h3>"]
    if section.sentences:
        items = "".join(f"<li>{inline(s)}</li>" for s in section.sentences)
        parts.append(f'<ul class="reading">{items}</ul>')
    for name, png, caption in section.figures:
        (figure_dir / f"{prefix}{name}").write_bytes(png)
        data = base64.b64encode(png).decode()
        parts.append(f'<figure><img alt="{html.escape(caption.replace("`", ""))}" '
                     f'src="data:image/png;base64,{data}"><figcaption>{inline(caption)}</figcaption></figure>')
    tables = "".join(section.tables)
    if section.collapsed and tables:
        parts = [f"<details><summary>{html.escape(section.title)}</summary>{tables}</details>"]
    else:
        parts.append(tables)
    return "\n".join(parts)


def _part_html(ctx: SweepContext, figure_dir: Path, prefix: str, intro: str | None,
               notes: list[str]) -> tuple[str, dict]:
    from overparam.report.setup import setup_claim, sweep_setup

    with noticing(notes):  # damaged analyses and runs: skipped, and named at the top of the part
        setup = sweep_setup(ctx.runs)
        setup_line = setup_claim(setup)
        body, summary = [], {"name": ctx.name, "directory": str(ctx.dir), "setup": {**setup, "claim": setup_line},
                             "spec": ctx.meta.get("spec")}  # the settings sentences quote ("read from the run configs")
        if ctx.double_descent:
            summary["answer"] = ctx.double_descent["answer"]
        for builder in BUILDERS:
            section = guarded(builder, ctx)
            if section is None:
                continue
            body.append(_render_section(section, figure_dir, prefix))
            summary[section.title.split(" (")[0].lower().replace(" ", "_")] = section.summary
    if notes:
        summary["left_out"] = notes
    anchor = html.escape(ctx.dir.name)
    head = f'<section class="part" id="{anchor}"><h2>{html.escape(ctx.name)}</h2>'
    head += f'<p class="setup">{html.escape(setup_line["text"])}</p>'
    if intro:
        head += f'<p class="reading">{inline(intro)}</p>'
    head += f'<p class="meta">sweep directory: {html.escape(str(ctx.dir))}</p>' + notices_html(notes)
    return head + "\n".join(body) + "</section>", summary


def require_finished(contexts: list[SweepContext], directory: Path) -> None:
    """A report of nothing is an error, as ``fit`` and ``landscape`` say: one line, exit code 2."""
    if any(not c.runs.empty and (c.runs["status"] == "done").any() for c in contexts):
        return
    from overparam.analysis.double_descent import require_finished as check

    check(contexts[0].runs if len(contexts) == 1 else _concat([c.runs for c in contexts]), directory)


def _concat(frames: list) -> Any:
    import pandas as pd

    return pd.concat([f for f in frames if not f.empty] or frames[:1], ignore_index=True)


def _lead_claims(contexts: list[SweepContext], extras: dict[str, list[str]], settings: ReportSettings,
                 several: bool) -> list[dict[str, Any]]:
    """The answer of each sweep, the shape it was read on, then what the demo adds (compression)."""
    from overparam.report.lead import part_lead, statistic_claim

    claims = []
    for ctx in contexts:
        claims.extend(part_lead(ctx, ctx.name if several else None))
        claims.extend({"text": line, "numbers": [], "comparisons": []} for line in extras.get(ctx.dir.name, []))
    claims.extend({"text": line, "numbers": [], "comparisons": []} for line in extras.get("", []))
    if claims:
        claims.append(statistic_claim(settings.stat))
    return claims


def build_report(directory: str | Path, title: str | None = None, settings: ReportSettings | None = None,
                 out: str | Path | None = None) -> Path:
    """Write DIR/report.html, DIR/figures/*.png and DIR/summary.json; return the HTML path.

    ``settings``: the threshold's ε, the answer's tolerance and the statistic over seeds, shared by
    every section (defaults: those of ``overparam analyze``).
    ``out``: write those into this folder instead (created if missing), e.g. for a read-only DIR.
    """
    directory = Path(directory)
    settings = settings or ReportSettings()
    dirs = sweep_dirs(directory)
    contexts = [SweepContext(d, settings) for d in dirs]
    notes: dict[Path, list[str]] = {ctx.dir: [] for ctx in contexts}
    for ctx in contexts:
        with noticing(notes[ctx.dir]):  # runs the store could not read: named in the part's notes
            ctx.runs  # noqa: B018 (loaded here, where its warnings are caught; cached for every section)
    require_finished(contexts, directory)
    target = Path(out) if out is not None else directory
    figure_dir = target / "figures"
    figure_dir.mkdir(parents=True, exist_ok=True)
    intros, extras = {}, {}
    manifest = directory / "demo.json"
    if manifest.is_file():
        try:
            doc = json.loads(manifest.read_text())
            intros = {p["dir"]: p.get("intro") for p in doc.get("parts", [])}
            extras = {p["dir"]: list(p.get("headline", [])) for p in doc.get("parts", [])}
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
    bodies, parts = [], {}
    for ctx in contexts:
        prefix = "" if ctx.dir == directory else f"{ctx.dir.name}_"
        body, summary = _part_html(ctx, figure_dir, prefix, intros.get(ctx.dir.name), notes[ctx.dir])
        bodies.append(body)
        parts[ctx.dir.name] = summary
    from overparam import __version__

    name = title or (contexts[0].name if len(dirs) == 1 else "overparam report")
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lead_claims = _lead_claims(contexts, extras, settings, several=len(dirs) > 1)
    headline = [c["text"] for c in lead_claims]
    lead = ""
    if headline:
        lead = '<section class="part lead"><h2>The answer</h2><ul class="reading">' + "".join(
            f"<li><strong>{inline(c['text'])}</strong></li>" if c.get("kind") == "answer" else
            f"<li>{inline(c['text'])}</li>" for c in lead_claims) + "</ul></section>"
    nav = " ".join(f'<a href="#{html.escape(d.name)}">{html.escape(parts[d.name]["name"])}</a>' for d in dirs)
    template = Template(resources.files("overparam.report").joinpath("templates/report.html").read_text())
    page = template.substitute(
        title=html.escape(name), subtitle=html.escape("How many parameters does this task really need?"),
        nav=nav, body=lead + "\n".join(bodies),
        footer=html.escape(f"overparam {__version__} · generated {now} · every number is read from the "
                           f"sweep store"))
    page_path = target / "report.html"
    page_path.write_text(page, encoding="utf-8")
    summary_doc: dict[str, Any] = {"overparam_version": __version__, "generated": now, "headline": headline,
                                   "lead": lead_claims, "settings": {"eps": settings.eps, "tolerance":
                                                                     settings.tolerance, "stat": settings.stat},
                                   "parts": parts}
    (target / "summary.json").write_text(json.dumps(_clean(summary_doc), indent=2, default=str))
    return page_path


def _clean(obj: Any) -> Any:
    import math

    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        try:
            return obj.item()
        except (ValueError, AttributeError):
            return obj
    return obj
