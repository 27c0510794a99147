"""Specialized vs generic: on domain A, a model trained on A alone against one trained on a mixture.

A ``text`` sweep whose runs train on different domain sets (``task.mix``, ``data.text_mix``; a
run without ``mix`` is one domain, ``docs`` for the embedded corpus or its file's name) holds,
for a domain A, *specialists* (trained on A alone) and *generic* models (on a mixture that holds
A). Every run reports its loss on each domain's own test split (``domain_test_loss``), so both
are read on the same A test tokens. Per size (mean over seeds, ``groups``):

- the specialist's and the generic model's loss on A, paired at the same size and the same
  training tokens (hence the same training compute, 6·N per token for both), and their
  difference with its noise √(noise_s² + noise_g²); a winner is named only when the difference
  exceeds ``groups.Z`` times that noise;
- the **largest generic model** (most parameters) and the **smallest specialist that matches
  it** on A: the first specialist, by parameters, whose loss on A is not worse than the largest
  generic model's by more than ``Z`` times their combined noise; and the ratio of their
  parameters (and of their training compute).

The generic model saw A only in its share of the mixture (``domain_share``): the comparison is at
equal total tokens, which is what a fixed training budget buys.
"""

from __future__ import annotations

import json
import math
from typing import Any

from overparam.analysis.groups import STATISTIC, Z, exceeds, seed_stat, size_groups

SETTING_KEYS = ("task.mix", "task.path")  # what makes a specialist or a generic model; not a pairing key


def run_domains(run: dict[str, Any]) -> list[str]:
    """Names of the domains a run trained on (weight > 0), in spec order."""
    from overparam.data.text_mix import domain_name

    task = run["config"]["task"]
    if task.get("mix"):
        return [e["name"] for e in task["mix"] if e["weight"] > 0]
    return [domain_name(task.get("path"))]


def domain_loss(run: dict[str, Any], domain: str) -> tuple[float | None, float | None]:
    """(loss, standard error) of a run on ``domain``'s test split, or (None, None)."""
    m = run["metrics"]
    losses = m.get("domain_test_loss") or {}
    if losses.get(domain) is None:
        return None, None
    return losses[domain], (m.get("domain_test_loss_se") or {}).get(domain)


def _share(run: dict[str, Any], domain: str) -> float:
    mix = run["config"]["task"].get("mix") or []
    total = sum(e["weight"] for e in mix)
    return next((e["weight"] / total for e in mix if e["name"] == domain), 1.0) if mix else 1.0


def _arm(row: dict[str, Any], domain: str) -> dict[str, Any] | None:
    values, ses = [], []
    for run in row["runs"]:
        loss, se = domain_loss(run, domain)
        if loss is None:
            return None
        values.append(loss)
        ses.append(se)
    loss, noise = seed_stat(values, ses)
    first = row["runs"][0]
    return {"size": row["size"], "params": row["params"], "tokens": first["metrics"].get("tokens"),
            "flops": first["flops"], "loss": loss, "noise": noise, "n_runs": len(values),
            "run_ids": [r["id"] for r in row["runs"]], "domains": run_domains(first),
            "domain_share": _share(first, domain)}


def _pair_key(row: dict[str, Any]) -> str:
    others = {k: v for k, v in row["fixed"].items() if k not in SETTING_KEYS}
    return json.dumps([others, row["size"], row["runs"][0]["metrics"].get("tokens")], sort_keys=True, default=str)


def _compare(spec: dict[str, Any], gen: dict[str, Any]) -> dict[str, Any]:
    diff = spec["loss"] - gen["loss"]
    noise = math.hypot(spec["noise"], gen["noise"])
    return {"difference": diff, "margin": abs(diff), "noise": noise,
            "specialist_better": diff < 0 and exceeds(diff, noise),
            "generic_better": diff > 0 and exceeds(diff, noise)}


def _domain_reading(rows: list[dict[str, Any]], domain: str) -> dict[str, Any] | None:
    specialists = [a for r in rows if run_domains(r["runs"][0]) == [domain] and (a := _arm(r, domain))]
    generic_rows = [r for r in rows if len(run_domains(r["runs"][0])) > 1 and domain in run_domains(r["runs"][0])]
    generics = [a for r in generic_rows if (a := _arm(r, domain))]
    if not specialists or not generics:
        return None
    spec_rows = {_pair_key(r): _arm(r, domain) for r in rows if run_domains(r["runs"][0]) == [domain]}
    pairs = []
    for row in generic_rows:
        spec = spec_rows.get(_pair_key(row))
        gen = _arm(row, domain)
        if spec is not None and gen is not None:
            pairs.append({"size": gen["size"], "params": gen["params"], "tokens": gen["tokens"],
                          "same_compute": spec["flops"] == gen["flops"], "specialist": spec, "generic": gen,
                          **_compare(spec, gen)})
    largest = max(generics, key=lambda a: (a["params"], -a["loss"]))
    matching = None
    for spec in sorted(specialists, key=lambda a: a["params"]):
        verdict = _compare(spec, largest)
        if not verdict["generic_better"]:
            matching = {**spec, "versus_largest": verdict}
            break
    out = {"domain": domain, "pairs": sorted(pairs, key=lambda p: p["params"]), "largest_generic": largest,
           "smallest_matching_specialist": matching, "param_ratio": None, "flops_ratio": None}
    if matching is not None:
        out["param_ratio"] = largest["params"] / matching["params"]
        if matching["flops"] and largest["flops"]:
            out["flops_ratio"] = largest["flops"] / matching["flops"]
    return out


def specialization_block(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The ``"specialization"`` block of a ``text`` sweep with specialists and generic models, or None."""
    done = [r for r in runs if r["status"] == "done" and r["config"]["task"]["kind"] == "text"
            and r["metrics"].get("domain_test_loss")]
    if not done or len({tuple(run_domains(r)) for r in done}) < 2:
        return None
    axis, rows = size_groups(done)
    singles = sorted({run_domains(r)[0] for r in done if len(run_domains(r)) == 1})
    readings = [d for d in (_domain_reading(rows, name) for name in singles) if d is not None]
    if not readings:
        return None
    return {"statistic": STATISTIC, "z": Z, "axis": axis, "domains": readings,
            "definitions": {
                "pairs": "specialist (trained on the domain alone) vs generic (trained on a mixture holding it) at "
                         "the same size and training tokens, both read on the domain's own test split",
                "smallest_matching_specialist": "the fewest-parameter specialist whose loss on the domain is not "
                                                "worse than the largest generic model's by more than z times "
                                                "their combined noise"}}
