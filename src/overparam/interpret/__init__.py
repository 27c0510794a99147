"""Interpretability across model sizes: attention maps, head statistics, probes, head ablation.

One file per concern: :mod:`.base` (a stored ``gpt`` run rebuilt, its tokens and text),
:mod:`.attention` (``overparam attention``), :mod:`.head_stats`, :mod:`.probes` and
:mod:`.targets` (``overparam probe``), :mod:`.ablation` (heads ranked by importance, how many a
model uses), :mod:`.page` (the self-contained HTML view), :mod:`.hf` (local Hugging Face models,
optional extra ``interp``) and :mod:`.sweep` (all of it vs model size, for the report). Imports
are lazy: ``import overparam.interpret`` loads neither torch nor scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LoadedRun": "overparam.interpret.base",
    "load_run": "overparam.interpret.base",
    "gpt_attention": "overparam.interpret.base",
    "AttentionView": "overparam.interpret.attention",
    "gpt_view": "overparam.interpret.attention",
    "write_view": "overparam.interpret.attention",
    "attention_page": "overparam.interpret.page",
    "HeadStats": "overparam.interpret.head_stats",
    "gpt_head_stats": "overparam.interpret.head_stats",
    "LinearProbe": "overparam.interpret.probes",
    "control_labels": "overparam.interpret.probes",
    "probe_layers": "overparam.interpret.probes",
    "probe_run": "overparam.interpret.probes",
    "TARGETS": "overparam.interpret.targets",
    "heads_removed": "overparam.interpret.ablation",
    "head_importance": "overparam.interpret.ablation",
    "pruning_curve": "overparam.interpret.ablation",
    "ablate_run": "overparam.interpret.ablation",
    "load_hf": "overparam.interpret.hf",
    "hf_view": "overparam.interpret.hf",
    "hf_probe": "overparam.interpret.hf",
    "interpret_sweep": "overparam.interpret.sweep",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'overparam.interpret' has no attribute {name!r}")
