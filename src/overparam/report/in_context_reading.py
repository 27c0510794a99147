"""Sentences that read the in-context, few-shot, position and specialization blocks of ``analyze --json``.

Every number quoted is a number of the block (formatted with ``fmt``, 3 significant digits),
and every stated shape (a gain, a gap, a winner, a match, a phase change) is one the block
flags as exceeding its noise (``analysis.groups``): the tests hold both true.
"""

from __future__ import annotations

from typing import Any

from overparam.analysis.claims import fmt_settings
from overparam.report.reading import fmt_int


def fmt(v: float | None) -> str:
    """A quoted number: 3 significant digits (the tests read numbers back in this format)."""
    return "n/a" if v is None else f"{v:.3g}"


def pm(value: float, noise: float) -> str:
    return f"{fmt(value)} ± {fmt(noise)}"


def size_label(row: dict[str, Any]) -> str:
    """'model.d_model = 32 (12,345 parameters)', with the row's other settings after it."""
    axis = row["axis"]
    head = f"{fmt_int(row['params'])} parameters" if axis == "params" else \
        f"{axis} = {row['size']} ({fmt_int(row['params'])} parameters)"
    fixed = fmt_settings(row["fixed"])
    return head + (f", {fixed}" if fixed else "")


def statistic_sentence(block: dict[str, Any]) -> str:
    return (f"Numbers are the {block['statistic']}; ± is their noise (the standard error over seeds, or with one "
            f"seed over the test windows or sequences); a difference is called one only beyond {block['z']:g} "
            f"times it.")


def span(positions: list[int]) -> str:
    """'position 3' or 'positions 3–5'."""
    return f"positions {positions[0]}–{positions[-1]}" if len(positions) > 1 else f"position {positions[0]}"


def _over(positions: list[int]) -> str:
    """'at position 2' or 'over positions 3–5': a mean over several positions, or one position's loss."""
    return f"{'over' if len(positions) > 1 else 'at'} {span(positions)}"


def _positions(row: dict[str, Any]) -> str:
    return f"loss at {span(row['late'])} minus loss at {span(row['early'])}"


def read_in_context(block: dict[str, Any]) -> list[str]:
    """Per size: ICL score against the references, gap to Bayes-optimal, phase change, induction heads."""
    out = [statistic_sentence(block)]
    for row in block["sizes"]:
        refs = row["references"]
        s = (f"{size_label(row)}: ICL score {pm(row['icl_score'], row['icl_score_noise'])} ({_positions(row)}, "
             f"Olsson et al. 2022); the Bayes-optimal predictor's is {fmt(refs['bayes']['icl_score'])}, the "
             f"in-context unigram's {fmt(refs['unigram']['icl_score'])}.")
        gap, noise = row["bayes_gap"], row["bayes_gap_noise"]
        if abs(gap) > block["z"] * noise:
            s += (f" At the last position its loss is {fmt(row['last_loss'])}, {fmt(gap)} nats "
                  f"{'above' if gap > 0 else 'below'} the Bayes-optimal {fmt(refs['bayes']['last_loss'])} "
                  f"(± {fmt(noise)}).")
        else:
            s += (f" At the last position its loss, {fmt(row['last_loss'])}, is within noise of the Bayes-optimal "
                  f"{fmt(refs['bayes']['last_loss'])} (gap {pm(gap, noise)}).")
        out.append(s)
        out.append(_phase_sentence(row))
        if row.get("induction"):
            out.append(_induction_sentence(row))
    return out


def _phase_sentence(row: dict[str, Any]) -> str:
    ph = row["phase_change"]
    if ph["evaluations"] < 3:
        return (f"{size_label(row)}: {ph['evaluations']} evaluation(s) over training, too few to place a phase "
                f"change (set train.eval_every).")
    if ph["step"] is None:
        return (f"{size_label(row)}: over training the ICL score goes from {fmt(ph['start'])} to a lowest "
                f"{fmt(ph['min'])}, no drop beyond noise: no phase change is read.")
    return (f"{size_label(row)}: over training the ICL score drops from {fmt(ph['start'])} to {fmt(ph['min'])}; "
            f"it has covered half of that drop by step {fmt_int(ph['step'])} (the phase change).")


def _induction_sentence(row: dict[str, Any]) -> str:
    ind = row["induction"]
    top = ind["top_heads"][0]
    s = (f"{size_label(row)}: the strongest induction head (layer {top['layer']}, head {top['head']}) has a "
         f"prefix-matching score of {fmt(top['score'])} on repeated random sequences (uniform attention: "
         f"{fmt(ind['uniform'])}).")
    form, change = ind["formation"], row["phase_change"]["step"]
    if form["step"] is None:
        return s + f" No head reached {fmt(form['level'])} (halfway from uniform to 1) at any evaluation."
    s += f" A head first reaches {fmt(form['level'])} (halfway from uniform to 1) at step {fmt_int(form['step'])}"
    if ind["order"] is None:
        return s + "."
    where = {"before": "before", "after": "after", "same evaluation": "at the same evaluation as"}[ind["order"]]
    return s + f", {where} the phase change (step {fmt_int(change)})."


def read_few_shot(block: dict[str, Any]) -> list[str]:
    """Per size: accuracy against the optimal learner at each k ≥ 1; nothing claimed at k = 0."""
    out = [statistic_sentence(block)]
    if 0 in block["shots"]:
        out.append(f"At k = 0 (zero-shot) every prompt draws a new map, so even the optimal learner is at chance, "
                   f"{fmt(block['chance'])}: nothing is claimed there for any size.")
    for row in block["sizes"]:
        parts = []
        for j, k in enumerate(row["shots"]):
            if k == 0:
                continue
            acc, opt, gap, noise = row["accuracy"][j], row["optimal"][j], row["gap"][j], row["noise"][j]
            if row["below_optimal"][j]:
                frac = row["fraction_of_optimal_gain"][j]
                tail = f"{fmt(gap)} below optimal" + (f", {fmt(frac)} of its gain over chance" if frac is not None
                                                       else "")
            else:
                tail = "within noise of optimal"
            parts.append(f"k = {k}: {pm(acc, noise)} vs {fmt(opt)} ({tail})")
        if parts:
            out.append(f"{size_label(row)}: query accuracy " + "; ".join(parts) + ".")
    return out


def read_position(block: dict[str, Any]) -> list[str]:
    """Per size: the loss early and late in the context and what distant context is worth."""
    out = [statistic_sentence(block)]
    for row in block["sizes"]:
        where = size_label(row) + ("" if "model.context" in row["fixed"] else f", context {row['context']}")
        s = (f"{where}: loss {fmt(row['first_loss'])} at position 0, {fmt(row['early_loss'])} {_over(row['early'])}, "
             f"{fmt(row['late_loss'])} {_over(row['late'])}")
        if row["gains"]:
            s += f": distant context is worth {pm(row['context_gain'], row['context_gain_noise'])} nats per token."
        elif row["loses"]:
            s += (f": late positions are predicted worse than early ones, by {fmt(row['context_gain_margin'])} ± "
                  f"{fmt(row['context_gain_noise'])} nats per token.")
        else:
            s += f": no gain from distant context beyond noise ({pm(row['context_gain'], row['context_gain_noise'])})."
        out.append(s)
    ext = block["extrapolation"]
    if not ext["supported"]:
        out.append(f"Evaluation past the training context is not supported: {ext['why']}.")
    return out


def read_specialization(block: dict[str, Any]) -> list[str]:
    """Per domain: specialist vs generic at each size, and the smallest specialist that matches the largest generic."""
    out = [statistic_sentence(block)]
    for dom in block["domains"]:
        name = dom["domain"]
        for p in dom["pairs"]:
            spec, gen = p["specialist"], p["generic"]
            s = (f"On {name}, {size_label({**p, 'axis': block['axis'], 'fixed': {}})} at {fmt_int(p['tokens'])} "
                 f"training tokens: trained on {name} alone {pm(spec['loss'], spec['noise'])}, on "
                 f"{' + '.join(gen['domains'])} ({fmt(gen['domain_share'])} {name}) {pm(gen['loss'], gen['noise'])}")
            if p["specialist_better"]:
                s += f": the specialist is better by {fmt(p['margin'])}."
            elif p["generic_better"]:
                s += f": the generic model is better by {fmt(p['margin'])}."
            else:
                s += ": no difference beyond noise."
            out.append(s)
        big, match = dom["largest_generic"], dom["smallest_matching_specialist"]
        lead = (f"The largest generic model ({fmt_int(big['params'])} parameters, {' + '.join(big['domains'])}) "
                f"reaches {pm(big['loss'], big['noise'])} on {name}")
        if match is None:
            out.append(lead + "; no specialist in the sweep matches it.")
            continue
        vs = match["versus_largest"]
        s = (lead + f"; the smallest specialist that matches it (not worse beyond noise) has "
             f"{fmt_int(match['params'])} parameters: {pm(match['loss'], match['noise'])}, a difference of "
             f"{pm(vs['difference'], vs['noise'])}")
        ratio = dom["param_ratio"]
        if match["size"] == big["size"] and block["axis"] != "params":
            s += f": the same {block['axis']} ({match['size']})"
        elif ratio > 1:
            s += f": {fmt(ratio)}× fewer parameters"
            if dom.get("flops_ratio"):
                s += f" and {fmt(dom['flops_ratio'])}× less training compute"
        elif ratio == 1:
            s += ": as many parameters"
        else:
            s += ": more parameters than the generic model"
        out.append(s + ".")
    return out


READERS = {"in_context": ("in-context learning", read_in_context), "few_shot": ("few-shot", read_few_shot),
           "position": ("loss by position", read_position), "specialization": ("specialized vs generic",
                                                                               read_specialization)}


def print_blocks(blocks: dict[str, Any]) -> None:
    """``overparam analyze DIR``'s text for each block: its heading, then its sentences."""
    for key, (heading, read) in READERS.items():
        if key in blocks:
            print(f"{heading}:")
            for sentence in read(blocks[key]):
                print(f"  {sentence}")
