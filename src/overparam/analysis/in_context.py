"""In-context learning read off an ``icl-markov`` sweep, and few-shot accuracy off a ``fewshot`` sweep.

``in_context_block`` (``analyze --json``'s ``"in_context"``), per size (mean over seeds):

- the test loss by position next to the exact references on the same sequences (Bayes-optimal
  posterior-mean bigram, in-context unigram, uniform; ``data.icl_markov``);
- the ICL score of Olsson et al. (2022), loss late minus loss early (positions stated), and
  the gap to the Bayes-optimal loss at the last position, each with its noise;
- the **phase change** over training: from the stored ``icl_score`` curve (seed mean), the first
  evaluated step at which the score has covered half of its total drop, min − start; stated
  only when that drop exceeds ``groups.Z`` times the final score's noise;
- **induction heads**: the largest prefix-matching score of any head over training (curve
  ``induction_score``) and per head at the end; heads *form* at the first evaluated step where
  the largest score is at least halfway from the uniform-attention level u to a perfect 1,
  u + (1 − u)/2. The order of formation and phase change is stated at the resolution of the
  evaluations (``train.eval_every``).

``few_shot_block`` (``"few_shot"``), per size: query accuracy at each number of shots k with its
noise, the optimal learner's accuracy on the same prompts and its closed form
1 − (1 − 1/S)^k (1 − 1/C), the gap, and the fraction of the optimal learner's gain over chance
the model gets, (acc − 1/C)/(acc* − 1/C), for k ≥ 1. At k = 0 the optimal learner is at chance
by construction, so nothing is claimed there.

``blocks(DIR)`` gathers every block the sweep has (this one's, ``analysis.position``'s and
``analysis.specialization``'s): a sweep without them gets none of their keys.
"""

from __future__ import annotations

from typing import Any

from overparam.analysis.groups import (
    STATISTIC,
    Z,
    curve_of,
    exceeds,
    load_store,
    mean_lists,
    plain_row,
    seed_stat,
    size_groups,
)


def halfway_step(curve: list[list[float]], level: float, falling: bool) -> int | None:
    """The first step whose value is at or past ``level`` (below it when ``falling``), or None."""
    for step, value in curve:
        if (value <= level) if falling else (value >= level):
            return int(step)
    return None


def phase_change(curve: list[list[float]], noise: float) -> dict[str, Any]:
    """The step where the ICL score drops: halfway from its start to its minimum (see module doc)."""
    out: dict[str, Any] = {"step": None, "start": None, "min": None, "drop": None, "level": None,
                           "evaluations": len(curve), "exceeds_noise": False}
    if len(curve) < 3:
        return out
    start, low = curve[0][1], min(v for _, v in curve)
    drop = start - low
    out.update(start=start, min=low, drop=drop, level=start - drop / 2, exceeds_noise=exceeds(drop, noise)
               and drop > 0)
    if out["exceeds_noise"]:
        out["step"] = halfway_step(curve, out["level"], falling=True)
    return out


def induction_formation(curve: list[list[float]], uniform: float) -> dict[str, Any]:
    """First step where the best head's prefix-matching score reaches u + (1 − u)/2 (see module doc)."""
    level = uniform + (1 - uniform) / 2
    return {"level": level, "step": halfway_step(curve, level, falling=False),
            "max": max((v for _, v in curve), default=None), "start": curve[0][1] if curve else None}


def top_heads(by_head: list[list[float]], n: int = 3) -> list[dict[str, Any]]:
    """The ``n`` heads with the highest prefix-matching score: layer, head, score."""
    flat = [{"layer": i, "head": h, "score": s} for i, row in enumerate(by_head) for h, s in enumerate(row)]
    return sorted(flat, key=lambda d: -d["score"])[:n]


def order_of(formation: int | None, change: int | None) -> str | None:
    """How induction-head formation sits relative to the phase change: before, same evaluation, after."""
    if formation is None or change is None:
        return None
    return "before" if formation < change else "same evaluation" if formation == change else "after"


def _icl_row(row: dict[str, Any], axis: str, curves: list) -> dict[str, Any]:
    runs = row["runs"]
    ms = [r["metrics"] for r in runs]
    ids = {r["id"] for r in runs}
    icl, icl_noise = seed_stat([m["icl_score"] for m in ms], [m.get("icl_score_se") for m in ms])
    gap, gap_noise = seed_stat([m["bayes_gap"] for m in ms], [m.get("bayes_gap_se") for m in ms])
    loss = mean_lists([m["loss_by_position"] for m in ms])
    refs = ms[0]["reference_loss_by_position"]
    icl_curve = curve_of(curves, ids, "icl_score")
    out = {**plain_row(row, axis), "context": len(loss), "early": ms[0]["position_early"],
           "late": ms[0]["position_late"], "loss_by_position": loss, "last_loss": loss[-1],
           "icl_score": icl, "icl_score_noise": icl_noise, "bayes_gap": gap, "bayes_gap_noise": gap_noise,
           "references": {name: {"loss_by_position": v, "last_loss": v[-1],
                                 "icl_score": ms[0]["reference_icl_score"][name]} for name, v in refs.items()},
           "icl_curve": icl_curve, "phase_change": phase_change(icl_curve, icl_noise)}
    if "induction_by_head" in ms[0]:
        by_head = mean_lists([m["induction_by_head"] for m in ms])
        uniform = ms[0]["induction_uniform"]
        ind_curve = curve_of(curves, ids, "induction_score")
        formation = induction_formation(ind_curve, uniform)
        out["induction"] = {"uniform": uniform, "max": max(max(r) for r in by_head), "top_heads": top_heads(by_head),
                            "by_head": by_head, "curve": ind_curve, "formation": formation,
                            "order": order_of(formation["step"], out["phase_change"]["step"])}
    return out


def in_context_block(runs: list[dict[str, Any]], curves: list) -> dict[str, Any] | None:
    """The ``"in_context"`` block of an ``icl-markov`` sweep, or None (see the module docstring)."""
    done = [r for r in runs if r["status"] == "done" and r["config"]["task"]["kind"] == "icl-markov"
            and "icl_score" in r["metrics"] and "reference_loss_by_position" in r["metrics"]]
    if not done:
        return None
    axis, rows = size_groups(done)
    task = done[0]["config"]["task"]
    return {"statistic": STATISTIC, "z": Z, "task": {k: task[k] for k in ("states", "alpha", "context")},
            "sizes": [_icl_row(row, axis, curves) for row in rows],
            "definitions": {
                "icl_score": "mean loss over the late positions minus the mean loss over the early ones (Olsson et "
                             "al. 2022); negative when later tokens are predicted better",
                "bayes_gap": "model loss minus the Bayes-optimal posterior-mean predictor's, at the last position",
                "phase_change": "first evaluated step where the ICL score has covered half of its drop from start "
                                "to minimum, when the drop exceeds z times the score's noise",
                "induction_formation": "first evaluated step where the largest prefix-matching score of any head "
                                       "reaches halfway from uniform attention to 1"}}


def _few_shot_row(row: dict[str, Any], axis: str) -> dict[str, Any]:
    ms = [r["metrics"] for r in row["runs"]]
    shots = ms[0]["shots"]
    acc, noise = [], []
    for j in range(len(shots)):
        mean, se = seed_stat([m["shot_accuracy"][j] for m in ms], [m["shot_accuracy_se"][j] for m in ms])
        acc.append(mean)
        noise.append(se)
    optimal = ms[0]["shot_optimal"]
    chance = 1.0 / row["runs"][0]["config"]["task"]["labels"]
    gap = [o - a for o, a in zip(optimal, acc, strict=True)]
    fraction = [None if k == 0 or o - chance <= 0 else (a - chance) / (o - chance)
                for k, a, o in zip(shots, acc, optimal, strict=True)]
    return {**plain_row(row, axis), "shots": shots, "accuracy": acc, "noise": noise, "optimal": optimal,
            "gap": gap, "fraction_of_optimal_gain": fraction,
            "above_chance": [k > 0 and exceeds(a - chance, n) and a > chance
                             for k, a, n in zip(shots, acc, noise, strict=True)],
            "below_optimal": [exceeds(g, n) and g > 0 for g, n in zip(gap, noise, strict=True)]}


def few_shot_block(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The ``"few_shot"`` block of a ``fewshot`` sweep, or None (see the module docstring)."""
    from overparam.data.fewshot import optimal_accuracy

    done = [r for r in runs if r["status"] == "done" and r["config"]["task"]["kind"] == "fewshot"
            and "shot_accuracy" in r["metrics"]]
    if not done:
        return None
    axis, rows = size_groups(done)
    task = done[0]["config"]["task"]
    sizes = [_few_shot_row(row, axis) for row in rows]
    shots = sizes[0]["shots"]
    return {"statistic": STATISTIC, "z": Z, "symbols": task["symbols"], "labels": task["labels"],
            "chance": 1.0 / task["labels"], "shots": shots,
            "optimal_expected": [optimal_accuracy(k, task["symbols"], task["labels"]) for k in shots],
            "zero_shot": "chance by construction: a new map per prompt, so nothing is claimed at k = 0",
            "sizes": sizes}


def blocks(directory: Any) -> dict[str, Any]:
    """Every in-context, few-shot, position and specialization block this sweep has (keys only where they apply)."""
    from overparam.analysis.position import position_block
    from overparam.analysis.specialization import specialization_block

    runs, curves = load_store(directory)
    out = {"in_context": in_context_block(runs, curves), "few_shot": few_shot_block(runs),
           "position": position_block(runs), "specialization": specialization_block(runs)}
    return {k: v for k, v in out.items() if v is not None}
