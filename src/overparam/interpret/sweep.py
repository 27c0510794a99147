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

VERSION = 3  # 2: probe gains over a token-identity / bigram baseline; ablation token counts; 3: what sentences quote
ARTIFACT = "interpret"
LANGUAGE_FAMILIES = ("gpt", "hf-causal-lm")  # families whose runs the sweep view inspects


PROBED_KINDS = ("text", "hf", "markov")  # tasks with a built-in probe target; icl-markov and fewshot have none


def default_target(kind: str) -> str | None:
    """The probe target a sweep view uses: the next character's class for text, the chain state for markov;
    None for tasks whose tokens name no character or state (icl-markov, fewshot: their in-context sections
    read the heads)."""
    if kind not in PROBED_KINDS:
        return None
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
            "probe_majority": probe["majority"], "probe_baseline": probe["baseline"], "probe_folds": probe["folds"],
            "probe_level": probe["level"], "mean_gain": float(np.mean([p["gain"] for p in probe["layers"]])),
            "loss": ablation["loss"], "ablation_tokens": ablation["tokens"],
            "ablation_measured_on": ablation["measured_on"],
            "importance": [h["importance"] for h in ablation["heads"]], "pruning": ablation["curve"],
            "heads_used": ablation["heads_used"], "heads_total": ablation["heads_total"]}


def interpret_sweep(directory: str | Path, target: str | None = None, n_tokens: int = 2048,
                    ablation_tokens: int = 4096, max_sizes: int = 6, reuse: bool = False,
                    log: Any = None) -> dict[str, Any] | None:
    """The sweep view (see the module docstring), or None when the sweep has no finished gpt run with
    a checkpoint. Cached in ``DIR/analyses/interpret.json``; ``reuse``: take a cached view of the same
    runs whatever settings (target, tokens) made it (what the report does). Runs whose model file or
    task input changed since the sweep (``overparam.provenance``) are left out with one warning each."""
    import warnings

    from overparam.data import load_sweep_task
    from overparam.errors import StoreError
    from overparam.interpret.base import rebuild
    from overparam.provenance import check_rebuild, recorded_inputs
    from overparam.store import open_store
    from overparam.sweep.checkpoints import NonFiniteWeights, SkippedRunWarning

    directory = Path(directory)
    with open_store(directory) as store:
        chosen = [r for r in select_runs(store.runs(), max_sizes) if store.checkpoint_path(r["id"]).is_file()]
        paths = {r["id"]: store.checkpoint_path(r["id"]) for r in chosen}
    if not chosen:
        return None
    kind = chosen[0]["config"]["task"]["kind"]
    target = target or default_target(kind)
    if target is None:
        return None
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
    recorded = recorded_inputs(directory)
    changed: dict[str, str] = {}  # task key -> why its runs are left out (warned once)
    for r in chosen:
        task_key = json.dumps(r["config"]["task"], sort_keys=True)
        if task_key not in tasks and task_key not in changed:
            try:  # before loading: a changed corpus would load, with another vocabulary
                check_rebuild(directory, r["config"], recorded)
            except StoreError as exc:
                changed[task_key] = str(exc)
                warnings.warn(SkippedRunWarning(f"interpretability: {exc}"), stacklevel=2)
            else:
                tasks[task_key] = load_sweep_task(directory, r["config"]["task"])
        if task_key in changed:
            continue
        if log:
            log(f"interpret: run {r['id']} ({r['params']:,} params)")
        try:
            run = rebuild(r, Path(paths[r["id"]]), tasks[task_key])
        except NonFiniteWeights as exc:  # a broken run must not cost the other sizes their reading
            warnings.warn(SkippedRunWarning(f"interpretability: {exc}; left out"), stacklevel=2)
            continue
        results.append(analyze_run(run, target, n_tokens, ablation_tokens))
    if not results:
        return None
    context = results[0]["context"]
    doc = {"key": key, "target": target, "kind": kind, "runs": results,
           # a head attending uniformly over the second copy of a repeated sequence: what an induction score
           # is read against (the mean of 1/(t + 1) over its positions)
           "uniform_induction": float(np.mean(1.0 / np.arange(context // 2 + 1, context + 1)))}
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


def probe_doc(doc: dict[str, Any], r: dict[str, Any]) -> dict[str, Any]:
    """The probe document of one run of the sweep view, as ``overparam probe --json`` has it."""
    return {"target": doc["target"], "layers": r["probe"], "baseline": r["probe_baseline"], "folds": r["probe_folds"],
            "level": r.get("probe_level", 0.95)}


def sentences(doc: dict[str, Any]) -> list[str]:
    """What the sweep view says, in a few sentences read off its numbers."""
    from overparam.interpret.probe_reading import gain_sentence, selectivity_sentence, signed

    runs = doc["runs"]
    small, large = runs[0], runs[-1]
    out = []
    for label, r in (("Largest model", large), ("Smallest model", small))[: 1 if len(runs) == 1 else 2]:
        text = gain_sentence(probe_doc(doc, r))
        out.append(f"{label}, {_size(r)}: {text[0].lower()}{text[1:]}")
    if len(runs) > 1:
        out.append(f"Averaged over layers, the gain over the baseline is {signed(small['mean_gain'])} in the "
                   f"smallest model and {signed(large['mean_gain'])} in the largest.")
    sel = selectivity_sentence(probe_doc(doc, large))
    if sel:
        out.append(f"In the largest model: {sel[0].lower()}{sel[1:]}")
    ind = [max(layer["max_induction"] for layer in r["head_layers"]) for r in runs]
    prev = [max(layer["max_previous_token"] for layer in r["head_layers"]) for r in runs]
    uniform = doc["uniform_induction"]
    out.append(f"The strongest induction head (attention to the token after the previous occurrence, on a "
               f"repeated random sequence; Olsson et al. 2022) scores {ind[0]:.2f} in the smallest model and "
               f"{ind[-1]:.2f} in the largest (a uniform head: {uniform:.2f}); the strongest previous-token "
               f"head {prev[0]:.2f} → {prev[-1]:.2f}.")
    used = ", ".join(f"{r['heads_used']}/{r['heads_total']}" for r in runs)
    where = ("the windows of each run's stored test loss" if large.get("ablation_measured_on") == "test_loss"
             else f"{large.get('ablation_tokens', 0):,} tokens spread over the test split, a subset of the windows "
                  f"its stored test loss is measured on")
    out.append(f"Heads needed to stay within 1 % of the full model's test loss when the least important are "
               f"removed (Michel et al. 2019), smallest to largest: {used} (losses measured on {where}).")
    return out
