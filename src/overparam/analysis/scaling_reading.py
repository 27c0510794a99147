"""The plain-language reading of a scaling document (``analysis/scaling_report.py``): claims in which every
number comes from the document (``analysis.claims.Sentence``: each number recorded with its printed text, each
comparison the words make recorded too), for the report's scaling section and the demo's headline."""

from __future__ import annotations

from typing import Any

import numpy as np

from overparam.analysis.claims import Sentence, texts

# Hoffmann et al. 2022, Approach 3, models of 70M–16B parameters: the reference a tiny grid is set against
HOFFMANN = {"alpha": 0.34, "beta": 0.28, "params": [7e7, 1.6e10], "tokens_per_param": 20}
LEVEL = 0.95  # every interval of the document: percentile bootstrap or t, two-sided
UNPLACED_DECADES = 3.0  # a diminishing-returns interval wider than this many decades places nothing


def num(v: Any, digits: int = 3) -> str:
    """A number for a sentence: ``digits`` significant digits, k and M suffixes, 1.4e12 beyond 1e9."""
    if v is None or not np.isfinite(v):
        return "n/a"
    a = abs(v)
    if a >= 1e9 or (0 < a < 1e-3):
        mant, exp = f"{v:.{max(digits - 1, 0)}e}".split("e")
        return f"{mant}e{int(exp)}"
    for unit, scale in (("M", 1e6), ("k", 1e3), ("", 1.0)):
        if a >= scale or scale == 1.0:
            x = v / scale
            return (f"{x:.0f}" if abs(x) >= 10 ** (digits - 1) else f"{x:.{digits}g}") + unit
    return str(v)


def _n(say: Sentence, v: float, digits: int = 3) -> str:
    return say.shown(v, num(v, digits))


def _plural(count: int, noun: str) -> str:
    return noun if count == 1 else f"{noun}s"


def _count(say: Sentence, values: list[float], count: int, noun: str, unit: str) -> str:
    """'4 sizes (9.26k–418k parameters)', or 'one size (30.8k parameters)'."""
    if count == 1:
        return f"one {noun} ({_n(say, values[0])} {unit})"
    return f"{say.int(count)} {noun}s ({_n(say, values[0])}–{_n(say, values[-1])} {unit})"


def _floor(say: Sentence, e: float) -> str:
    """E for a formula: below 1e-6 nats it is 0 for every purpose (and a note says E is not identified)."""
    return say.shown(e, "0") if e < 1e-6 else _n(say, e)


def _ci(say: Sentence, ci: dict[str, Any] | None, key: str, digits: int = 2) -> str:
    pair = (ci or {}).get(key)
    if not pair or any(v is None or not np.isfinite(v) for v in pair):
        return ""
    lo, hi = (say.shown(v, "0") if 0 <= v < 1e-6 else _n(say, v, digits) for v in pair)  # below 1e-6: 0
    return f" [{lo}, {hi}]"


def _level(say: Sentence, doc: dict[str, Any]) -> str:
    return say.pct(doc.get("level", LEVEL))


def _what(say: Sentence, doc: dict[str, Any]) -> str:
    grid = doc["grid"]
    return (f"{say.int(doc['n_runs'])} {_plural(doc['n_runs'], 'run')}: "
            f"{_count(say, grid['params'], grid['n_sizes'], 'size', 'parameters')} × "
            f"{_count(say, grid['tokens'], grid['n_budgets'], 'token budget', 'tokens')}")


def read_scaling_claims(doc: dict[str, Any], short: bool = False) -> list[dict[str, Any]]:
    """The claims that read the document. ``short``: the headline (the law and its extrapolation check)."""
    if doc.get("settings") is not None:
        return _split_claims(doc, short)
    out = [_law_claim(doc)]
    if doc.get("law") == "chinchilla":
        out.append(_compute_optimal_claim(doc))
    out.extend(_backtest_claims(doc))
    if short:
        return out
    out.extend(Sentence().claim(note[0].upper() + note[1:] + ".") for note in doc["notes"])
    fit = doc.get("fit")
    if fit and not fit.get("exact"):  # an exact fit misses nothing, and says nothing by it
        say = Sentence()
        out.append(say.claim(f"The fit misses its own points by {say.pct(fit['in_sample_mean_abs_rel_error'], 2)} "
                             f"on average (at most {say.pct(fit['in_sample_max_abs_rel_error'], 2)})."))
    out.extend(_returns_claims(doc))
    out.extend(_isoflop_claims(doc))
    out.extend(_entropy_claims(doc))
    return out


def read_scaling(doc: dict[str, Any], short: bool = False) -> list[str]:
    """The sentences of :func:`read_scaling_claims`."""
    return texts(read_scaling_claims(doc, short))


def _split_claims(doc: dict[str, Any], short: bool) -> list[dict[str, Any]]:
    """A sweep that also varies its training data or another setting: one law per setting, each read alone."""
    split = doc["split"]
    why = ("each setting trains, and is tested, on data of its own" if split["what"] == "training data" else
           "each setting is a task of its own")
    out = [Sentence().claim(f"The runs differ in {', '.join(split['axes'])} as well as in size and tokens, and "
                            f"{why}: one law over all of them would read those differences as an effect of N or "
                            f"D, so each setting gets its own law.")]
    for setting in doc["settings"]:
        if "skipped" in setting:
            say = Sentence()
            runs = f"{say.int(setting['n_runs'])} finished {_plural(setting['n_runs'], 'run')}"
            out.append(say.claim(f"{setting['label']}: no scaling fit, {runs}; a law needs at least "
                                 f"{say.int(setting['min_runs'])}."))
            continue
        for claim in read_scaling_claims(setting, short):
            out.append({**claim, "text": f"{setting['label']}: {claim['text'][0].lower()}{claim['text'][1:]}"})
    return out


def _f(say: Sentence, v: float, spec: str) -> str:
    """``v`` formatted with ``spec`` (an exponent to 2 decimals, an entropy to 4 digits), recorded."""
    return say.shown(v, format(v, spec))


def _law_claim(doc: dict[str, Any]) -> dict[str, Any]:
    say = Sentence()
    fit = doc.get("fit")
    if doc.get("law") == "chinchilla":
        p, ci = fit["params"], fit["ci"]
        ref = doc.get("reference", HOFFMANN)
        return say.claim(
            f"Scaling fit (Chinchilla Approach 3) on {_what(say, doc)}: L(N, D) = {_floor(say, p['E'])} + "
            f"{_n(say, p['A'])}/N^{_f(say, p['alpha'], '.2f')} + {_n(say, p['B'])}/D^{_f(say, p['beta'], '.2f')} "
            f"nats/token; {_level(say, doc)} bootstrap intervals ({say.int(fit['bootstrap'])} resamples): "
            f"α{_ci(say, ci, 'alpha')}, β{_ci(say, ci, 'beta')}, E{_ci(say, ci, 'E')}"
            f"{' (E not identified: no loss floor in sight)' if p['E'] < 1e-6 else ''}. "
            f"Five constants from {say.int(doc['n_runs'])} tiny models trained for seconds on a CPU: the "
            f"intervals are the honest part, and the exponents describe this grid, not language models at large "
            f"(Hoffmann et al. 2022 found α ≈ {_f(say, ref['alpha'], 'g')}, β ≈ {_f(say, ref['beta'], 'g')} at "
            f"{say.shown(ref['params'][0], '70M')}–{say.shown(ref['params'][1], '16B')} parameters).")
    fb = doc.get("fallback") or {}
    if doc.get("law") == "power-params" and fit.get("exact") and fb.get("exact_points"):
        pts = fb["exact_points"]
        losses = ", ".join(_n(say, q["loss"]) for q in pts[:-1]) + f" and {_n(say, pts[-1]['loss'])}"
        sizes = ", ".join(_n(say, q["params"]) for q in pts[:-1]) + f" and {_n(say, pts[-1]['params'])}"
        return say.claim(
            f"No joint law L(N, D) from {_what(say, doc)}: {fb['reason']}. Nor a law in N alone: "
            f"{say.int(len(pts))} sizes at the largest budget ({_n(say, fb['tokens'])} tokens) fix the "
            f"{say.int(len(fit['params']))} constants of L(N) = E + A/N^α exactly, so such a curve passes through "
            f"every point and tests nothing; the test losses there are {losses} nats/token at {sizes} "
            f"parameters.")
    if doc.get("law") == "power-params":
        p, ci = fit["params"], fit["ci"]
        intervals = (f"; {_level(say, doc)} intervals ({say.int(fit['bootstrap'])} resamples): "
                     f"α{_ci(say, ci, 'alpha')}, E{_ci(say, ci, 'E')}" if not fit.get("exact") else
                     ", through every point: no interval")
        return say.claim(
            f"No joint law L(N, D) from {_what(say, doc)}: {fb['reason']}. Fitted instead L(N) = "
            f"{_floor(say, p['E'])} + {_n(say, p['A'])}/N^{_f(say, p['alpha'], '.2f')} at the largest budget "
            f"({_n(say, fb['tokens'])} tokens){intervals}.")
    tail = f"; {fb['note']}" if fb.get("note") else ""
    return say.claim(f"No scaling law from {_what(say, doc)}: {fb.get('reason', 'no fit')}{tail}.")


def _compute_optimal_claim(doc: dict[str, Any]) -> dict[str, Any]:
    say = Sentence()
    co = doc["compute_optimal"]
    ref = doc.get("reference", HOFFMANN)
    return say.claim(
        f"Compute-optimal at the sweep's largest compute (C = 6ND = {_n(say, co['flops'])} FLOPs): "
        f"N = {_n(say, co['params'])}{_ci(say, co.get('ci'), 'params')} parameters and D = {_n(say, co['tokens'])}"
        f"{_ci(say, co.get('ci'), 'tokens')} tokens, {_n(say, co['tokens_per_param'])}"
        f"{_ci(say, co.get('ci'), 'tokens_per_param')} tokens per parameter (Chinchilla: ≈ "
        f"{say.int(ref['tokens_per_param'])}).")


def _backtest_claims(doc: dict[str, Any]) -> list[dict[str, Any]]:
    bt = doc.get("backtest")
    if not bt:
        return []
    say = Sentence()
    if "skipped" in bt:
        if (doc.get("fit") or {}).get("exact"):
            return []  # a curve through every point: the note that it checks nothing says it all
        return [say.claim(f"No extrapolation check: {bt['skipped']}.")]
    high = bt["mean_rel_error"] > 0
    say.states(bt["mean_rel_error"], ">" if high else "<=", 0)
    s = (f"Extrapolation check: fitted without the largest model ({_n(say, bt['held_out_from'])} parameters, "
         f"{say.int(bt['n_train'])} runs left), the law predicts its {say.int(bt['n_test'])} "
         f"{_plural(bt['n_test'], 'run')} with mean |error| {say.pct(bt['mean_abs_rel_error'], 2)} "
         f"(max {say.pct(bt['max_abs_rel_error'], 2)}, {'too high' if high else 'too low'} on average)")
    naive = bt.get("naive_mean_abs_rel_error")
    if naive is not None:
        s += (f"; guessing that it does no better than the {_n(say, bt['naive_from_params'])}-parameter model "
              f"errs by {say.pct(naive, 2)}")
        if naive < bt["mean_abs_rel_error"]:
            say.states(naive, "<", bt["mean_abs_rel_error"])
            s += (", closer than the law: fitted on the smaller models, it "
                  f"{'over' if bt['mean_rel_error'] < 0 else 'under'}estimates what the largest one gains")
    return [say.claim(s + ".")]


def _returns_claims(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if (doc.get("fit") or {}).get("exact"):
        return []  # where a curve through every point levels off is a fact of the curve, not of the task
    dr = doc.get("diminishing_returns") or {}
    out = []
    for key, noun, other in (("params", "parameters", "data"), ("tokens", "tokens", "model size")):
        r = dr.get(key)
        if not r:
            continue
        say = Sentence()
        head = f"Point of diminishing returns ({other} unlimited)"
        gain = f"another doubling gains less than {_f(say, r['min_gain'], 'g')} nats/token"
        if r["value"] is None:
            out.append(say.claim(f"Diminishing returns in {noun}: not defined by this fit."))
            continue
        decades = r.get("ci_decades")
        if decades is not None and decades > UNPLACED_DECADES:
            say.states(decades, ">", UNPLACED_DECADES)
            lo, hi = r["ci"]
            out.append(say.claim(f"{head}: not placed by this grid; the point beyond which {gain} has a "
                                 f"{_level(say, doc)} interval from {_n(say, lo, 2)} to {_n(say, hi, 2)} {noun}, "
                                 f"{_f(say, decades, '.0f')} decades wide."))
            continue
        beyond = r["value"] > r["largest_in_sweep"]
        say.states(r["value"], ">" if beyond else "<=", r["largest_in_sweep"])
        where = (f"{say.shown(r['times_largest'], num(r['times_largest'], 2))}× the largest in the sweep: an "
                 f"extrapolation" if beyond else "inside the sweep's range")
        out.append(say.claim(f"{head}: beyond {_n(say, r['value'])}{_ci(say, r, 'ci')} {noun}, {gain} ({where})."))
    return out


def _isoflop_claims(doc: dict[str, Any]) -> list[dict[str, Any]]:
    iso = doc.get("isoflop") or {}
    out = []
    for g in iso.get("groups", []):
        if g["n_runs"] < 3:
            continue
        say = Sentence()
        spread = "at equal compute" if g["spread"] < 1.05 else f"within {_f(say, g['spread'], '.2g')}× in compute"
        s = (f"IsoFLOP profile at C ≈ {_n(say, g['flops'])} FLOPs ({say.int(g['n_runs'])} runs {spread}): the best "
             f"run has {_n(say, g['best_params'])} parameters")
        if "fitted_params" in g:
            s += f"; the fitted optimum is {_n(say, g['fitted_params'])}"
        out.append(say.claim(s + "."))
    a2 = iso.get("approach2")
    if a2 and "params" in a2:
        say = Sentence()
        out.append(say.claim(f"Approach 2 (a parabola in log N per IsoFLOP profile of ≥ {say.int(a2['min_sizes'])} "
                             f"sizes) gives N_opt ∝ C^{_f(say, a2['params']['a'], '.2f')} from "
                             f"{say.int(a2['n_budgets'])} budgets."))
    return out


def _entropy_claims(doc: dict[str, Any]) -> list[dict[str, Any]]:
    chk = doc.get("entropy_check")
    if not chk:
        return []
    say = Sentence()
    h, gap = chk["entropy_rate"], chk["best_gap"]
    above = gap > 0
    say.states(gap, ">" if above else "<=", 0)
    best = f"{_f(say, abs(gap), '.3g')} {'above' if above else 'below'}"
    if "E" not in chk:
        return [say.claim(f"The task's exact entropy rate is {_f(say, h, '.4g')} nats/token; the best run is "
                          f"{best} it.")]
    lo, hi = chk["E_ci"]
    if chk["inside"] is None or lo is None or hi is None:
        verdict = "without"
    elif chk["inside"]:
        say.states(h, ">=", lo)
        say.states(h, "<=", hi)
        verdict = "inside"
    else:
        say.states(h, "<" if h < lo else ">", lo if h < lo else hi)
        verdict = "outside"
    return [say.claim(f"Known floor: the chain's exact entropy rate is H = {_f(say, h, '.4g')} nats/token and the "
                      f"fitted E is {_f(say, chk['E'], '.4g')}{_ci(say, chk, 'E_ci', 3)} (E − H = "
                      f"{_f(say, chk['E_minus_H'], '+.3g')}; H is {verdict} the interval); the best run is {best} "
                      f"the floor.")]
