"""``overparam attention DIR --run ID --text "…"``: attention of every layer and head, as a page and PNGs."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

EXAMPLE = """examples:
  overparam attention runs/lm --run 13692b --text "def f(x):\\n    return x"
  overparam attention runs/lm --run 1369 --out /tmp/attn.html --json
  overparam attention runs/icl --run 1369 --heads induction --top 3
  overparam attention --hf all-minilm-l6-v2 --text "The cat sat on the mat." --out /tmp/minilm.html

Writes a self-contained page (no network; open it offline) and FILE-layer<i>.png heatmaps beside it
(default FILE: DIR/attention/ID.html). Prints per head: entropy (nats), previous-token, first-token
and induction scores and, for a gpt run, importance = test-loss increase when the head is removed;
then how many heads the model uses (the rest can go for at most 1 % more loss)."""


def register(sub) -> None:
    p = sub.add_parser("attention", help="attention maps of a gpt run (or a local HF model): page, PNGs, "
                       "head statistics and head importance", epilog=EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", nargs="?", help="sweep directory (omit with --hf)")
    p.add_argument("--run", metavar="ID", help="run id (or a unique prefix; see `overparam runs DIR`)")
    p.add_argument("--hf", metavar="MODEL", help="a local Hugging Face model folder, or all-minilm-l6-v2 "
                   "(needs overparam[interp]) instead of DIR --run")
    p.add_argument("--text", help="the text to look at (default: the start of the run's test split); "
                   "a markov run reads token ids, e.g. '3 17 5'")
    p.add_argument("--out", metavar="FILE", help="the HTML page to write (PNGs go beside it)")
    p.add_argument("--no-ablation", action="store_true", help="skip head importance (gpt runs)")
    p.add_argument("--json", action="store_true", help="print the head statistics as one JSON document")
    p.add_argument("--heads", choices=("all", "induction"), default="all",
                   help="induction: only rank the run's heads by prefix-matching score (no page)")
    p.add_argument("--top", type=int, default=5, help="with --heads induction: how many heads to list")
    p.set_defaults(func=run)


def _view(args: argparse.Namespace):
    from overparam.errors import OverparamError

    text = None if args.text is None else args.text.replace("\\n", "\n").replace("\\t", "\t")
    if args.hf:
        if args.dir or args.run:
            raise OverparamError("--hf: give either --hf MODEL or DIR --run ID, not both")
        from overparam.interpret.hf import hf_view, load_hf

        view = hf_view(load_hf(args.hf), text)
        out = Path(args.out or f"attention-{re.sub(r'[^A-Za-z0-9_.-]+', '_', Path(args.hf).name)}.html")
        return view, out
    if not args.dir or not args.run:
        raise OverparamError("attention: give DIR --run ID (or --hf MODEL)")
    from overparam.interpret.attention import gpt_view
    from overparam.interpret.base import load_run

    run_ = load_run(args.dir, args.run)
    view = gpt_view(run_, text, ablate=not args.no_ablation)
    return view, Path(args.out) if args.out else Path(args.dir) / "attention" / f"{run_.id}.html"


def run(args: argparse.Namespace) -> int:
    from overparam.cli import print_json
    from overparam.interpret.attention import write_view

    if args.heads == "induction":
        return _induction(args)
    view, out = _view(args)
    page, figures = write_view(view, out)
    if args.json:
        print_json(view.document(str(page), [str(f) for f in figures]))
        return 0
    print(view.subtitle)
    print(f"page: {page}")
    print(f"heatmaps: {', '.join(str(f) for f in figures)}")
    print()
    print(table(view.heads))
    if view.ablation:
        a = view.ablation
        print()
        where = ("the windows of the run's stored test_loss" if a["measured_on"] == "test_loss" else
                 f"a subset of the stored test_loss's windows (stored: {a['stored_test_loss']:.4f})")
        print(f"test loss {a['loss']:.4f} nats/token on {a['tokens']:,} tokens, {where}; with the k least "
              f"important heads removed: " + ", ".join(f"k={p['removed']}: {p['loss']:.4f}" for p in a["curve"]))
        print(f"heads used: {a['heads_used']} of {a['heads_total']} (the others can be removed for at most "
              f"{a['tolerance']:.0%} more loss)")
    return 0


def table(heads: list[dict]) -> str:
    """Head statistics as an aligned text table."""
    cols = ["layer", "head", "entropy", "previous_token", "first_token", "induction"]
    if heads and "importance" in heads[0]:
        cols.append("importance")
    rows = [[c.replace("_token", "") for c in cols]]
    for h in heads:
        rows.append([str(h[c]) if c in ("layer", "head") else f"{h[c]:+.4f}" if c == "importance"
                     else f"{h[c]:.3f}" for c in cols])
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in rows)


def _induction(args: argparse.Namespace) -> int:
    """``--heads induction``: the run's heads ranked by prefix-matching score (``interpret.induction``)."""
    from overparam.cli import print_json
    from overparam.errors import OverparamError
    from overparam.interpret.induction import induction_heads, table

    if args.hf or not args.dir or not args.run:
        raise OverparamError("--heads induction: give DIR --run ID (a gpt run)")
    doc = induction_heads(args.dir, args.run, args.top)
    if args.json:
        print_json(doc)
    else:
        print(table(doc))
    return 0
