"""``hf-causal-lm``: a Hugging Face ``transformers`` causal language model built from a config, no download.

``model: {family: hf-causal-lm, context: 128, config: {model_type: gpt2, n_layer: 2, n_embd: 128, n_head: 4}}``
(``llama``, or any ``model_type`` with a causal-LM class, too). The config holds the architecture's
own keys, checked against that ``model_type``'s config class (a misspelt key is an error, not a
silently ignored attribute); sweep one entry with ``vary: {model.config.n_embd: [64, 128]}``.
Set by overparam, never by the config: the vocabulary (from the task), the positions
(``model.context``: ``n_positions`` / ``max_position_embeddings``), and every dropout probability
(``train.dropout``; gpt2's ``resid_pdrop``, ``embd_pdrop``, ``attn_pdrop``, llama's
``attention_dropout``). Optional extra ``hf`` (``pip install 'overparam[hf]'``).

Weights are drawn by transformers' own init from torch's global generator, seeded with the run's
init seed (restored after): same seed, same model. The module maps token ids (B, T) to logits
(B, T, V) as the ``gpt`` family's does, and exposes ``hidden_states`` and ``attention_maps`` (eager
attention) for ``overparam probe`` and ``overparam attention``.

Parameter counts follow the ``gpt`` family's convention (scaling fits read ``count_params``):

- ``count_params``: every trainable parameter, a tied unembedding counted once (what
  ``count_trainable`` sees). For gpt2 (V vocabulary, T positions, L layers, width d) this is
  V·d + T·d + L·(12d² + 13d) + 2d, exactly the ``gpt`` family's count for the same shape; for
  llama (no biases, RMSNorm gains only, rotary positions, MLP width I, untied by default)
  V·d·(1 + untied) + L·(4d² + 3dI + 2d) + d with as many key/value heads as heads;
- ``nonembedding_params`` (Kaplan et al. 2020's N): the same without the token and position
  embeddings and without a separate unembedding.

Training FLOPs per token follow ``gpt.flops_per_example`` (Kaplan et al. 2020, Table 1):
6·N_nonembedding + 6·L·T·d + 6·d·V, with d the hidden size and L the layers; not the FLOP
counter, so that a gpt2-shaped run and the ``gpt`` family's run of the same shape sit at the same
compute (a test holds them equal).
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

import torch
from torch import nn

from overparam.errors import SpecError, require
from overparam.models.base import Shape, count_trainable, generator
from overparam.options import Option, at_most, json_copy, json_value

OPTIONS = {
    "family": Option(str, None),
    "config": Option(dict, {}, "the transformers config: model_type and its own keys (n_layer, n_embd, ...)",
                     check=json_value, normalize=json_copy),
    "context": Option(int, 128, "tokens per training window (the model's positions)", check=at_most(1_000_000)),
}
# Entries of model.config that set the size (the x axis when swept): gpt2's and llama's names.
SIZE_KEYS = tuple(f"config.{k}" for k in ("n_layer", "n_embd", "n_head", "n_inner", "num_hidden_layers",
                                           "hidden_size", "num_attention_heads", "intermediate_size"))
LINEAR_IN_PARAMS = False
POSITION_KEYS = ("n_positions", "max_position_embeddings", "n_ctx", "max_seq_len", "seq_length")
TOKEN_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id")  # gpt2's 50256 is outside a small vocabulary


def _transformers():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing downloads: configs are built here
    transformers = require("transformers", "hf")
    transformers.utils.logging.set_verbosity_error()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    return transformers


def _is_dropout(key: str) -> bool:
    return key.endswith("pdrop") or key.endswith("dropout") or key.endswith("dropout_prob")


@functools.cache
def _defaults(model_type: str):
    """The default config object of ``model_type`` (its keys are what a spec may set); read, never changed."""
    from transformers import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if model_type not in CONFIG_MAPPING:
        raise SpecError(f"model.config.model_type: unknown transformers model type {model_type!r} (e.g. gpt2, llama)")
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise SpecError(f"model.config.model_type: {model_type!r} has no causal language model class in "
                        f"transformers (e.g. gpt2, llama)")
    return CONFIG_MAPPING[model_type]()


def validate(cfg: dict[str, Any]) -> None:
    """The config names a causal-LM model type, and only keys of its config class that the spec may set."""
    config = cfg["config"]
    model_type = config.get("model_type")
    if not isinstance(model_type, str):
        raise SpecError("model.config.model_type: missing (e.g. model: {family: hf-causal-lm, config: {model_type: "
                        "gpt2, n_layer: 2, n_embd: 128, n_head: 4}})")
    _transformers()
    defaults = _defaults(model_type)
    for key in config:
        if key == "model_type":
            continue
        if key == "vocab_size":
            raise SpecError("model.config.vocab_size: set by the task (its tokenizer's vocabulary); remove it")
        if key in POSITION_KEYS:
            raise SpecError(f"model.config.{key}: set by model.context (the training window); remove it")
        if _is_dropout(key):
            raise SpecError(f"model.config.{key}: dropout is train.dropout (it sets every dropout of the model)")
        if not hasattr(defaults, key):
            known = ", ".join(k for k in ("n_layer", "n_embd", "n_head", "num_hidden_layers", "hidden_size",
                                          "num_attention_heads", "intermediate_size") if hasattr(defaults, k))
            raise SpecError(f"model.config.{key}: not a {model_type} config key (e.g. {known})")


def hf_config(cfg: dict[str, Any], shape: Shape, dropout: float = 0.0):
    """The transformers config of a run: the spec's keys, the task's vocabulary, the context, train.dropout."""
    validate(cfg)
    transformers = _transformers()
    given = {k: v for k, v in cfg["config"].items() if k != "model_type"}
    defaults = _defaults(cfg["config"]["model_type"])
    vocab = shape.vocab_size or shape.output_dim
    extra: dict[str, Any] = {"vocab_size": vocab}
    extra.update({k: cfg["context"] for k in POSITION_KEYS if k in defaults.to_dict()})
    extra.update({k: dropout for k, v in defaults.to_dict().items() if _is_dropout(k) and isinstance(v, float)})
    extra.update({k: None for k in TOKEN_KEYS if k not in given})
    try:
        return transformers.AutoConfig.for_model(cfg["config"]["model_type"], **given, **extra)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"model.config: transformers refused it ({' '.join(str(exc).split())[:200]})") from exc


class CausalLM(nn.Module):
    """A transformers causal LM as overparam's language models are: ids (B, T) -> logits (B, T, V).

    State-dict keys are transformers' own under ``net.`` (``net.transformer.h.0.attn.c_attn.weight``).
    """

    def __init__(self, net: nn.Module, context: int):
        super().__init__()
        self.net, self.context = net, context

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.net(input_ids=idx, use_cache=False).logits  # (B, T, V)

    def hidden_states(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """The embeddings and each layer's output: L + 1 tensors (B, T, d) (transformers' hidden_states;
        the last has the final norm applied, as transformers returns it)."""
        return list(self.net(input_ids=idx, use_cache=False, output_hidden_states=True).hidden_states)

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Each layer's attention weights (B, H, T, T), from the eager implementation (fused kernels never
        form them); the model's own implementation is restored after."""
        before = self.net.config._attn_implementation
        self.net.set_attn_implementation("eager")
        try:
            return list(self.net(input_ids=idx, use_cache=False, output_attentions=True).attentions)
        finally:
            self.net.set_attn_implementation(before)

    def head_projections(self) -> list[tuple[torch.Tensor, int, int]]:
        """Per layer: (output projection weight, heads, the weight's dimension that reads the heads' outputs),
        for removing a head (``interpret.ablation``): gpt2's ``attn.c_proj`` (a Conv1D, (in, out)), llama's
        ``self_attn.o_proj`` (a Linear, (out, in))."""
        heads = self.net.config.num_attention_heads
        out = []
        for name, module in self.net.named_modules():
            leaf = name.rpartition(".")[2]
            if leaf == "o_proj" and isinstance(module, nn.Linear):
                out.append((module.weight, heads, 1))
            elif leaf == "c_proj" and name.endswith("attn.c_proj"):
                out.append((module.weight, heads, 0))
        return out

    def describe(self) -> str:
        c = self.net.config
        return (f"{c.model_type} {c.num_hidden_layers} layers, {c.num_attention_heads} heads, width "
                f"{c.hidden_size}, context {self.context}")


def build(cfg: dict[str, Any], shape: Shape, seed: int, dropout: float = 0.0) -> nn.Module:
    """The model of ``hf_config``, initialised by transformers from the run's init seed."""
    config = hf_config(cfg, shape, dropout)
    transformers = _transformers()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(generator(seed, "init").initial_seed())
        try:
            net = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
        except (TypeError, ValueError, RuntimeError, AssertionError) as exc:
            raise SpecError(f"model.config: cannot build a {cfg['config']['model_type']} model "
                            f"({' '.join(str(exc).split())[:200]})") from exc
    return CausalLM(net.float(), cfg["context"])


_COUNTS: dict[str, tuple[int, int]] = {}


def _counts(cfg: dict[str, Any], shape: Shape) -> tuple[int, int]:
    """(every trainable parameter, the embeddings' share), from one built model per config."""
    import json

    key = json.dumps([cfg, shape.vocab_size, shape.output_dim], sort_keys=True)
    if key not in _COUNTS:
        net = build(cfg, shape, 0).net
        total = count_trainable(net)
        seen, embedding = set(), 0
        tables = [m.weight for m in net.modules() if isinstance(m, nn.Embedding)]
        out = net.get_output_embeddings()
        if out is not None:
            tables.append(out.weight)
        for w in tables:  # token and position tables, and an untied unembedding (a tied one is the same tensor)
            if id(w) not in seen and w.requires_grad:
                seen.add(id(w))
                embedding += w.numel()
        _COUNTS[key] = (total, embedding)
    return _COUNTS[key]


def count_params(cfg: dict[str, Any], shape: Shape) -> int:
    """Every trainable parameter, a tied unembedding once (the ``gpt`` family's convention)."""
    return _counts(cfg, shape)[0]


def nonembedding_params(cfg: dict[str, Any], shape: Shape) -> int:
    """Kaplan et al.'s N: all but token/position embeddings and a separate unembedding."""
    total, embedding = _counts(cfg, shape)
    return total - embedding


def flops_per_example(cfg: dict[str, Any], shape: Shape) -> int:
    """Training FLOPs per token: 6·N_nonembedding + 6·L·T·d + 6·d·V (the ``gpt`` family's formula)."""
    c = hf_config(cfg, shape)
    d, layers, vocab = c.hidden_size, c.num_hidden_layers, c.vocab_size
    return 6 * nonembedding_params(cfg, shape) + 6 * layers * cfg["context"] * d + 6 * d * vocab
