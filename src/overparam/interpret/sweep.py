"""Interpretability across a sweep: head statistics, probe selectivity and heads used vs model size.

For each model size of an LM sweep of ``gpt`` runs (distinct ``params``), the finished run with
the most training tokens (lowest seed on a tie) is inspected, so sizes are compared at the
sweep's largest budget. The result is written to ``DIR/analyses/interpret.json`` with the ids
and settings it came from: rerunning with the same ones reads it back (each stage returns
early when its output exists), and a sweep that gained runs is analysed afresh.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

VERSION = 1
ARTIFACT = "interpret"
LANGUAGE_FAMILIES = ("gpt", "hf-causal-lm")  # families whose runs the sweep view inspects


def default_target(kind: str) -> str:
    """The probe target a sweep view uses: the next character's class for text, the chain state for markov."""
    return "markov_state" if kind == "markov" else "next_char_class"


def select_runs(runs: list[dict[str, Any]], max_sizes: int = 6) -> list[dict[str, Any]]:
    """One finished gpt run per size, the most-trained one; at most ``max_sizes`` sizes spread
    evenly from the smallest to the largest."""
    done = [r for r in runs if r["status"] == "done" and r["config"]["model"]["family"] in LANGUAGE_FAMILIES
            and r.get("params")]
    best: dict[int, dict[str, Any]] = {}
    for r in done:
        t = r["config"]["train"]
        key = (t["steps"] * t["batch_size"], -r["config"]["seed"])
        old = best.get(r["params"])
        if old is None or key > (old["config"]["train"]["steps"] * old["config"]["train"]["batch_size"],
                                 -old["config"]["seed"]):
            best[r["params"]] = r
    sizes = sorted(best)
    if len(sizes) > max_sizes:
        sizes = [sizes[int(i)] for i in np.unique(np.round(np.linspace(0, len(sizes) - 1, max_sizes)))]
    return [best[s] for s in sizes]


def analyze_run(run: Any, target: str, n_tokens: int, ablation_tokens: int) -> dict[str, Any]:
    """Head statistics, probe layers and ablation of one loaded run (a compact dict)."""
    from overparam.interpret.ablation import ablate_run
    from overparam.interpret.head_stats import gpt_head_stats
    from overparam.interpret.probes import probe_run

    stats = gpt_head_stats(run.model, run.task.tokens_test, run.context, run.task.vocab_size)
    probe = probe_run(run, target, n_tokens)
    ablation = ablate_run(run, n_tokens=ablation_tokens)
    m = run.shape  # n_layer, d_model, n_head, whatever the family calls them
    return {"id": run.id, "params": run.params, "n_layer": m["n_layer"], "d_model": m["d_model"],
            "n_head": m["n_head"], "context": run.context, "test_loss": run.metrics.get("test_loss"),
            "head_layers": stats.layers(), "heads": stats.heads(), "probe": probe["layers"],
            "probe_majority": probe["majority"], "loss": ablation["loss"],
            "importance": [h["importance"] for h in ablation["heads"]], "pruning": ablation["curve"],
            "heads_used": ablation["heads_used"], "heads_total": ablation["heads_total"]}


def interpret_sweep(directory: str | Path, target: str | None = None, n_tokens: int = 2048,
                    ablation_tokens: int = 4096, max_sizes: int = 6, reuse: bool = False,
                    log: Any = None) -> dict[str, Any] | None:
    """The sweep view (see the module docstring), or None when the sweep has no finished gpt run with
    a checkpoint. Cached in ``DIR/analyses/interpret.json``; ``reuse``: take a cached view of the same
    runs whatever settings (target, tokens) made it (what the report does)."""
    from overparam.data import load_task
    from overparam.interpret.base import rebuild
    from overparam.store import open_store

    directory = Path(directory)
    with open_store(directory) as store:
        chosen = [r for r in select_runs(store.runs(), max_sizes) if store.checkpoint_path(r["id"]).is_file()]
        paths = {r["id"]: store.checkpoint_path(r["id"]) for r in chosen}
    if not chosen:
        return None
    kind = chosen[0]["config"]["task"]["kind"]
    target = target or default_target(kind)
    key = {"version": VERSION, "runs": [r["id"] for r in chosen], "target": target, "n_tokens": n_tokens,
           "ablation_tokens": ablation_tokens}
    path = directory / "analyses" / f"{ARTIFACT}.json"
    if path.is_file():
        try:
            cached = json.loads(path.read_text())
            old = cached.get("key", {})
            if old == key or (reuse and old.get("version") == VERSION and old.get("runs") == key["runs"]):
                return cached
        except (OSError, ValueError):
            pass
    tasks: dict[str, Any] = {}
    results = []
    for r in chosen:
        task_key = json.dumps(r["config"]["task"], sort_keys=True)
        if task_key not in tasks:
            tasks[task_key] = load_task(r["config"]["task"])
        if log:
            log(f"interpret: run {r['id']} ({r['params']:,} params)")
        run = rebuild(r, Path(paths[r["id"]]), tasks[task_key])
        results.append(analyze_run(run, target, n_tokens, ablation_tokens))
    doc = {"key": key, "target": target, "kind": kind, "runs": results}
    doc["sentences"] = sentences(doc)
    try:
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1, allow_nan=False))
        tmp.replace(path)
    except (OSError, ValueError):
        pass  # a read-only directory still gets its report, just not the cache
    return doc


def _size(r: dict[str, Any]) -> str:
    return f"{r['params']:,} params (d_model {r['d_model']})"


def sentences(doc: dict[str, Any]) -> list[str]:
    """What the sweep view says, in a few sentences read off its numbers."""
    runs = doc["runs"]
    small, large = runs[0], runs[-1]
    out = []
    sel_small = [p["selectivity"] for p in small["probe"]]
    sel_large = [p["selectivity"] for p in large["probe"]]
    best_small, best_large = int(np.argmax(sel_small)), int(np.argmax(sel_large))
    trend = "rises" if np.mean(sel_large) > np.mean(sel_small) + 0.01 else \
        "falls" if np.mean(sel_large) < np.mean(sel_small) - 0.01 else "stays about the same"
    out.append(f"Probe selectivity for {doc['target']} (accuracy − control accuracy, Hewitt & Liang 2019) "
               f"peaks at layer {best_large} ({sel_large[best_large]:+.3f}; accuracy "
               f"{large['probe'][best_large]['accuracy']:.3f}) in the largest model, {_size(large)}, and at "
               f"layer {best_small} ({sel_small[best_small]:+.3f}) in the smallest, {_size(small)}; averaged "
               f"over layers it {trend} with size ({np.mean(sel_small):+.3f} → {np.mean(sel_large):+.3f}).")
    if len(runs) > 1 and max(sel_large) < 0:
        out.append("Negative selectivity means the control task (a random label per token type) is easier "
                   "for the probe than the target: token identity is linearly readable and the target is not "
                   "a function of it alone.")
    ind = [max(layer["max_induction"] for layer in r["head_layers"]) for r in runs]
    prev = [max(layer["max_previous_token"] for layer in r["head_layers"]) for r in runs]
    uniform = float(np.mean(1.0 / np.arange(small["context"] // 2 + 1, small["context"] + 1)))
    out.append(f"The strongest induction head (attention to the token after the previous occurrence, on a "
               f"repeated random sequence; Olsson et al. 2022) scores {ind[0]:.2f} in the smallest model and "
               f"{ind[-1]:.2f} in the largest (a uniform head: {uniform:.2f}); the strongest previous-token "
               f"head {prev[0]:.2f} → {prev[-1]:.2f}.")
    used = ", ".join(f"{r['heads_used']}/{r['heads_total']}" for r in runs)
    out.append(f"Heads needed to stay within 1 % of the full model's test loss when the least important are "
               f"removed (Michel et al. 2019), smallest to largest: {used}.")
    return out
