"""What every interpretability view shares: a trained ``gpt`` run rebuilt, its tokens, its text.

A :class:`LoadedRun` is a run of a sweep directory rebuilt from its checkpoint, in eval mode,
float32, on the CPU. Tokens map to the text they stand for through :func:`token_bytes`: one
byte (``byte``), one character's UTF-8 (``char``), a BPE token's bytes (``bpe``: GPT-2's
byte-to-character alphabet, Radford et al. 2019, undone) or the decimal id (``markov``). The
character a token *ends on* is what the character-level probe targets label it by
(:func:`last_chars`): the hidden state at a token has seen that character and nothing after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from overparam.errors import OverparamError


@dataclass
class LoadedRun:
    """One finished language-model run of a sweep (``gpt``, ``hf-causal-lm``), rebuilt from its checkpoint."""

    id: str
    config: dict[str, Any]
    task: Any  # overparam.data.TaskData
    model: nn.Module
    params: int | None
    metrics: dict[str, Any]

    @property
    def context(self) -> int:
        return int(self.config["model"]["context"])

    @property
    def kind(self) -> str:
        return str(self.config["task"]["kind"])

    def describe(self) -> str:
        m = self.config["model"]
        if m["family"] == "gpt":
            what = f"gpt n_layer={m['n_layer']} d_model={m['d_model']} n_head={m['n_head']} context={m['context']}"
        elif hasattr(self.model, "describe"):
            what = f"{m['family']} {self.model.describe()}"
        else:
            what = f"{m['family']} context={m['context']}"
        return f"run {self.id}: {what} on {self.kind}, {self.params or 0:,} params"

    @property
    def shape(self) -> dict[str, int]:
        """n_layer, d_model, n_head of the model, whatever its family calls them."""
        m = self.config["model"]
        if m["family"] == "gpt":
            return {"n_layer": m["n_layer"], "d_model": m["d_model"], "n_head": m["n_head"]}
        c = getattr(getattr(self.model, "net", None), "config", None)
        if c is not None:
            return {"n_layer": c.num_hidden_layers, "d_model": c.hidden_size, "n_head": c.num_attention_heads}
        return {"n_layer": len(self.model.hidden_states(torch.zeros(1, 1, dtype=torch.int64))) - 1,
                "d_model": 0, "n_head": 0}


def find_run(runs: list[dict[str, Any]], run_id: str, directory: Any) -> dict[str, Any]:
    """The run whose id is ``run_id`` or starts with it; one line of error otherwise."""
    matches = [r for r in runs if r["id"] == run_id] or [r for r in runs if run_id and r["id"].startswith(run_id)]
    if not matches:
        raise OverparamError(f"--run: no run {run_id!r} in {directory} (see `overparam runs {directory}`)")
    if len(matches) > 1:
        raise OverparamError(f"--run: {run_id!r} matches {len(matches)} runs; give more of the id")
    return matches[0]


def rebuild(run: dict[str, Any], checkpoint: Path, task: Any = None) -> LoadedRun:
    """Rebuild a stored run (a ``store.runs()`` dict) from its checkpoint; ``task`` may be passed in
    when several runs share it (loading the text task tokenizes the corpus)."""
    from overparam.data import load_sweep_task
    from overparam.models import family_module
    from overparam.provenance import check_rebuild
    from overparam.sweep.checkpoints import load_checkpoint, load_weights
    from overparam.train.run import shape_of

    config = run["config"]
    family = config["model"]["family"]
    if config["model"].get("context") is None:
        raise OverparamError(f"--run: run {run['id']} is a {family!r} model; attention and probes need a language "
                             f"model run (gpt, hf-causal-lm)")
    if run["status"] != "done":
        raise OverparamError(f"--run: run {run['id']} is {run['status']}, not done")
    if not checkpoint.is_file():
        raise OverparamError(f"--run: run {run['id']} has no checkpoint ({checkpoint}); rerun its sweep with "
                             f"train.checkpoint true")
    check_rebuild(checkpoint.parent.parent, config)  # DIR/checkpoints/<id>.safetensors: DIR's record of its inputs
    state = load_checkpoint(checkpoint, run["id"], config)
    task = task if task is not None else load_sweep_task(checkpoint.parent.parent, config["task"])
    model = family_module(family).build(config["model"], shape_of(task), config["seed"])
    if not (hasattr(model, "hidden_states") and hasattr(model, "attention_maps")):
        raise OverparamError(f"--run: run {run['id']}'s model ({family!r}) has no hidden_states and attention_maps "
                             f"methods; attention and probes need gpt, hf-causal-lm, or a module with both")
    load_weights(model, {k: v.float() for k, v in state.items()}, run["id"])
    return LoadedRun(run["id"], config, task, model.float().eval(), run.get("params"), run.get("metrics") or {})


def load_run(directory: str | Path, run_id: str) -> LoadedRun:
    """Run ``run_id`` (or a unique prefix of it) of the sweep in ``directory``, ready to inspect."""
    from overparam.store import open_store

    with open_store(directory) as store:
        run = find_run(store.runs(), run_id, directory)
        path = store.checkpoint_path(run["id"])
    return rebuild(run, Path(path))


# -- tokens and text ----------------------------------------------------------------------------------


def _byte_alphabet() -> dict[str, int]:
    """GPT-2's byte-level alphabet, inverted: the character that stands for each byte -> the byte.

    Printable bytes (33-126, 161-172, 174-255) stand for themselves; the other 68, in increasing
    order, for the code points 256, 257, … (so a space is 'Ġ', U+0120).
    """
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    rest = [b for b in range(256) if b not in printable]
    table = {chr(b): b for b in printable}
    table.update({chr(256 + i): b for i, b in enumerate(rest)})
    return table


def token_bytes(ids: Any, info: dict[str, Any]) -> list[bytes]:
    """The bytes each token stands for (``markov``: its decimal id and a space)."""
    ids = [int(t) for t in ids]
    kind = info.get("tokenizer")
    if info.get("name") == "markov" or kind is None:
        return [f"{t} ".encode() for t in ids]
    if kind == "byte":
        return [bytes([t]) for t in ids]
    if kind == "char":
        return [info["chars"][t].encode("utf-8") for t in ids]
    from overparam.errors import require

    tk = require("tokenizers", "text")
    tok = tk.Tokenizer.from_str(info["tokenizer_json"])
    alphabet = _byte_alphabet()
    return [bytes(alphabet[c] for c in (tok.id_to_token(t) or "")) for t in ids]


def display_token(raw: bytes) -> str:
    """A token as a short visible string: whitespace shown as ␣ ⏎ ⇥, broken UTF-8 as \\xNN."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = "".join(f"\\x{b:02x}" if b >= 0x80 else chr(b) for b in raw)
    return text.replace(" ", "␣").replace("\n", "⏎").replace("\t", "⇥").replace("\r", "␍") or "∅"


def last_chars(pieces: list[bytes]) -> tuple[str, np.ndarray]:
    """(text, index in it of the character each token ends on) for consecutive token bytes.

    Decoded one character at a time so a stream that starts or breaks mid-character (byte tokens)
    stays aligned: an invalid byte becomes one U+FFFD. A token of zero bytes ends where the one
    before it did (index −1 at the very start).
    """
    buf = b"".join(pieces)
    char_of = np.empty(len(buf), dtype=np.int64)
    chars: list[str] = []
    i = 0
    while i < len(buf):
        lead = buf[i]
        size = 1 if lead < 0x80 else 2 if lead >> 5 == 0b110 else 3 if lead >> 4 == 0b1110 else \
            4 if lead >> 3 == 0b11110 else 1
        try:
            chars.append(buf[i:i + size].decode("utf-8"))
        except UnicodeDecodeError:
            chars.append("\ufffd")
            size = 1
        char_of[i:i + size] = len(chars) - 1
        i += size
    ends = np.cumsum([len(p) for p in pieces], dtype=np.int64) - 1  # each token's last byte
    if not len(buf):
        return "", np.full(len(pieces), -1, dtype=np.int64)
    return "".join(chars), np.where(ends >= 0, char_of[np.clip(ends, 0, None)], -1)


def encode_text(text: str, info: dict[str, Any], vocab_size: int) -> np.ndarray:
    """Token ids of ``text`` under a task's tokenizer (``markov``: whitespace-separated ids)."""
    if info.get("name") == "markov":
        try:
            ids = [int(t) for t in text.split()]
        except ValueError:
            raise OverparamError("--text: a markov run reads whitespace-separated token ids, e.g. "
                                 "'3 17 5'") from None
        bad = [t for t in ids if not 0 <= t < vocab_size]
        if bad:
            raise OverparamError(f"--text: token {bad[0]} is outside the vocabulary 0..{vocab_size - 1}")
        return np.asarray(ids, dtype=np.int64)
    kind = info["tokenizer"]
    if kind == "byte":
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)
    if kind == "char":
        index = {c: i for i, c in enumerate(info["chars"])}
        missing = sorted({c for c in text if c not in index})
        if missing:
            raise OverparamError(f"--text: {len(missing)} character(s) not in the model's vocabulary: "
                                 f"{''.join(missing[:10])!r}")
        return np.asarray([index[c] for c in text], dtype=np.int64)
    from overparam.errors import require

    tk = require("tokenizers", "text")
    return np.asarray(tk.Tokenizer.from_str(info["tokenizer_json"]).encode(text).ids, dtype=np.int64)


def windows_of(tokens: np.ndarray, context: int, n_tokens: int) -> np.ndarray:
    """Consecutive non-overlapping windows (B, context) from the start of ``tokens``, about ``n_tokens``
    tokens in all (at least one window)."""
    if len(tokens) < context:
        raise OverparamError(f"{len(tokens)} tokens cannot fill one window of {context}")
    n = max(1, min(len(tokens) // context, -(-n_tokens // context)))
    return np.asarray(tokens[:n * context], dtype=np.int64).reshape(n, context)


@torch.no_grad()
def gpt_hidden(model: nn.Module, windows: np.ndarray, batch: int = 64) -> list[np.ndarray]:
    """Residual stream after the embeddings and after each block, each (B·T, d) float32."""
    out: list[list[np.ndarray]] = []
    for start in range(0, len(windows), batch):
        states = model.hidden_states(torch.as_tensor(windows[start:start + batch]))
        if not out:
            out = [[] for _ in states]
        for i, h in enumerate(states):
            out[i].append(h.reshape(-1, h.shape[-1]).float().numpy())
    return [np.concatenate(parts) for parts in out]


@torch.no_grad()
def gpt_attention(model: nn.Module, ids: np.ndarray) -> np.ndarray:
    """Attention weights of a ``gpt`` model: (L, H, T, T) for one sequence (T,) of T ≤ context
    tokens, (B, L, H, T, T) for a batch (B, T)."""
    ids = np.asarray(ids, dtype=np.int64)
    maps = model.attention_maps(torch.as_tensor(ids if ids.ndim == 2 else ids[None]))
    out = torch.stack(maps, dim=1).float().numpy()  # (B, L, H, T, T)
    return out if ids.ndim == 2 else out[0]
