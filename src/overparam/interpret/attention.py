"""``overparam attention``: one model's attention on a text, as a page, PNG heatmaps and head numbers.

:func:`attention_view` gathers, for a ``gpt`` run (or a Hugging Face model, :mod:`.hf`): the
weights of every layer and head on the text (L, H, T, T), the head statistics of
:mod:`.head_stats` and, for a ``gpt`` run, head importance by ablation (:mod:`.ablation`).
:func:`write_view` writes the self-contained page (:mod:`.page`) and one PNG per layer beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from overparam.errors import OverparamError

MAX_TOKENS = 256  # a page of T² weights per head: beyond this it is unreadable and heavy


@dataclass
class AttentionView:
    """Everything a page, a figure or ``--json`` shows about one model on one text."""

    title: str
    subtitle: str
    tokens: list[str]  # display strings, one per position
    weights: np.ndarray  # (L, H, T, T): row = query, column = key; rows sum to 1
    heads: list[dict[str, Any]] = field(default_factory=list)  # per head: stats (+ importance)
    layers: list[dict[str, Any]] = field(default_factory=list)  # per layer summaries
    ablation: dict[str, Any] | None = None
    source: dict[str, Any] = field(default_factory=dict)

    def document(self, html_path: str | None = None, figures: list[str] | None = None) -> dict[str, Any]:
        """The ``--json`` document (weights left out: they are in the page)."""
        doc = {**self.source, "title": self.title, "tokens": self.tokens,
               "n_layer": int(self.weights.shape[0]), "n_head": int(self.weights.shape[1]),
               "heads": self.heads, "layers": self.layers}
        if self.ablation is not None:
            doc["ablation"] = {k: v for k, v in self.ablation.items() if k != "heads"}
        if html_path:
            doc["html"] = html_path
            doc["figures"] = figures or []
        return doc


def gpt_view(run: Any, text: str | None = None, ablate: bool = True, n_windows: int = 16,
             ablation_tokens: int | None = None) -> AttentionView:
    """The view of a loaded ``gpt`` run (:class:`overparam.interpret.base.LoadedRun`) on ``text``
    (default: the first ``context`` tokens of its test split). Head importance is measured on the
    windows of the run's stored test loss (``ablation_tokens``: fewer, said so in the result)."""
    from overparam.interpret.ablation import ablate_run
    from overparam.interpret.base import display_token, encode_text, gpt_attention, token_bytes
    from overparam.interpret.head_stats import gpt_head_stats

    info = run.task.info
    if text is None:
        ids = np.asarray(run.task.tokens_test[:run.context], dtype=np.int64)
    else:
        ids = encode_text(text, info, run.task.vocab_size)
    if len(ids) == 0:
        raise OverparamError("--text: empty text (nothing to attend over)")
    if len(ids) > run.context:
        raise OverparamError(f"--text: {len(ids)} tokens, but the model reads at most {run.context} "
                             f"(model.context); shorten the text")
    weights = gpt_attention(run.model, ids)
    stats = gpt_head_stats(run.model, run.task.tokens_test, run.context, run.task.vocab_size, n_windows)
    heads, layers = stats.heads(), stats.layers()
    ablation = None
    if ablate and (hasattr(run.model, "blocks") or hasattr(run.model, "head_projections")):
        ablation = ablate_run(run, n_tokens=ablation_tokens)
        for h, a in zip(heads, ablation["heads"], strict=True):
            h["importance"] = a["importance"]
    tokens = [str(int(t)) for t in ids] if run.kind == "markov" else \
        [display_token(b) for b in token_bytes(ids, info)]
    return AttentionView(title=f"Attention of run {run.id}", subtitle=run.describe(), tokens=tokens,
                         weights=weights, heads=heads, layers=layers, ablation=ablation,
                         source={"run": run.id, "params": run.params, "config": run.config})


def layer_figure(view: AttentionView, layer: int) -> bytes:
    """PNG: one heatmap per head of ``layer`` (rows: queries, columns: keys), tokens on the axes
    when there are at most 48."""
    from overparam.report import plots

    plt = plots.plt
    w = view.weights[layer]
    n_head, T = w.shape[0], w.shape[-1]
    cols = min(n_head, 4)
    rows = -(-n_head // cols)
    size = 2.6 if T <= 48 else 2.2
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols + 0.6, size * rows + 0.4), squeeze=False)
    for h in range(rows * cols):
        ax = axes[h // cols][h % cols]
        if h >= n_head:
            ax.axis("off")
            continue
        ax.imshow(w[h], cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
        title = f"head {h}"
        if view.heads:
            s = next(s for s in view.heads if s["layer"] == layer and s["head"] == h)
            title += f"  prev {s['previous_token']:.2f} ind {s['induction']:.2f}"
        ax.set_title(title, fontsize=7)
        if T <= 48:
            ax.set_xticks(range(T), view.tokens, fontsize=5, rotation=90)
            ax.set_yticks(range(T), view.tokens, fontsize=5)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"{view.title}: layer {layer} (row: query, column: key)", fontsize=9)
    fig.tight_layout()
    return plots.to_png(fig)


def write_view(view: AttentionView, out: Path) -> tuple[Path, list[Path]]:
    """Write the page to ``out`` and ``<stem>-layer<i>.png`` beside it; return their paths."""
    from overparam.interpret.page import attention_page

    if len(view.tokens) > MAX_TOKENS:
        raise OverparamError(f"--text: {len(view.tokens)} tokens; the view shows at most {MAX_TOKENS}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(attention_page(view.tokens, view.weights, view.title, view.subtitle, view.heads),
                       encoding="utf-8")
        figures = []
        for layer in range(view.weights.shape[0]):
            path = out.with_name(f"{out.stem}-layer{layer}.png")
            path.write_bytes(layer_figure(view, layer))
            figures.append(path)
    except OSError as exc:
        raise OverparamError(f"--out: cannot write {out} ({exc.strerror or exc})") from exc
    return out, figures
