"""The plain-language reading of a scaling document (``analysis/scaling_report.py``): sentences in which
every number comes from the document, for the report's scaling section and the demo's headline."""

from __future__ import annotations

from typing import Any

import numpy as np

HOFFMANN = {"alpha": 0.34, "beta": 0.28}  # Hoffmann et al. 2022, Approach 3, 70M-16B parameters


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


def _count(values: list[float], noun: str, unit: str) -> str:
    """'4 sizes (9.26k–418k parameters)', or '1 size (30.8k parameters)'."""
    if len(values) == 1:
        return f"1 {noun} ({num(values[0])} {unit})"
    return f"{len(values)} {noun}s ({num(values[0])}–{num(values[-1])} {unit})"


def _floor(e: float) -> str:
    """E for a formula: below 1e-6 nats it is 0 for every purpose (and a note says E is not identified)."""
    return "0" if e < 1e-6 else num(e)


def _ci(ci: dict[str, Any] | None, key: str, digits: int = 2) -> str:
    pair = (ci or {}).get(key)
    if not pair or any(v is None or not np.isfinite(v) for v in pair):
        return ""
    lo = "0" if 0 <= pair[0] < 1e-6 else num(pair[0], digits)
    return f" [{lo}, {num(pair[1], digits)}]"


def read_scaling(doc: dict[str, Any], short: bool = False) -> list[str]:
    """Plain sentences that read the document: every number comes from it. ``short``: the headline."""
    grid, fit = doc["grid"], doc.get("fit")
    n_runs = len(doc["points"])
    what = (f"{n_runs} runs: {_count(grid['params'], 'size', 'parameters')} × "
            f"{_count(grid['tokens'], 'token budget', 'tokens')}")
    out: list[str] = []
    if doc.get("law") == "chinchilla":
        p, ci = fit["params"], fit["ci"]
        out.append(
            f"Scaling fit (Chinchilla Approach 3) on {what}: L(N, D) = {_floor(p['E'])} + {num(p['A'])}/N^"
            f"{p['alpha']:.2f} + {num(p['B'])}/D^{p['beta']:.2f} nats/token; 95 % bootstrap intervals "
            f"({fit['bootstrap']} resamples): α{_ci(ci, 'alpha')}, β{_ci(ci, 'beta')}, E{_ci(ci, 'E')}"
            f"{' (E not identified: no loss floor in sight)' if p['E'] < 1e-6 else ''}. "
            f"Five constants from {n_runs} tiny models trained for seconds on a CPU: the intervals are the "
            f"honest part, and the exponents describe this grid, not language models at large "
            f"(Hoffmann et al. 2022 found α ≈ {HOFFMANN['alpha']}, β ≈ {HOFFMANN['beta']} at 70M–16B "
            f"parameters).")
        co = doc["compute_optimal"]
        out.append(
            f"Compute-optimal at the sweep's largest compute (C = 6ND = {num(co['flops'])} FLOPs): "
            f"N = {num(co['params'])}{_ci(co.get('ci'), 'params')} parameters and D = {num(co['tokens'])}"
            f"{_ci(co.get('ci'), 'tokens')} tokens, {num(co['tokens_per_param'])}"
            f"{_ci(co.get('ci'), 'tokens_per_param')} tokens per parameter (Chinchilla: ≈ 20).")
    elif doc.get("law") == "power-params":
        p, ci = fit["params"], fit["ci"]
        fb = doc["fallback"]
        out.append(
            f"No joint law L(N, D) from {what}: {fb['reason']}. Fitted instead L(N) = {_floor(p['E'])} + "
            f"{num(p['A'])}/N^{p['alpha']:.2f} at the largest budget ({num(fb['tokens'])} tokens); 95 % "
            f"intervals ({fit['bootstrap']} resamples): α{_ci(ci, 'alpha')}, E{_ci(ci, 'E')}.")
    else:
        fb = doc.get("fallback") or {}
        out.append(f"No scaling law from {what}: {fb.get('reason', 'no fit')}; "
                   f"{fb.get('note', '')}.".replace("; .", "."))
    out.extend(_backtest_sentence(doc))
    if short:
        return out
    for note in doc["notes"]:
        out.append(note[0].upper() + note[1:] + ".")
    if fit:
        out.append(f"The fit misses its own points by {100 * fit['in_sample_mean_abs_rel_error']:.2g} % on "
                   f"average (at most {100 * fit['in_sample_max_abs_rel_error']:.2g} %).")
    out.extend(_returns_sentences(doc))
    out.extend(_isoflop_sentences(doc))
    out.extend(_entropy_sentences(doc))
    return out


def _backtest_sentence(doc: dict[str, Any]) -> list[str]:
    bt = doc.get("backtest")
    if not bt:
        return []
    if "skipped" in bt:
        return [f"No extrapolation check: {bt['skipped']}."]
    s = (f"Extrapolation check: fitted without the largest model ({num(bt['held_out_from'])} parameters, "
         f"{bt['n_train']} runs left), the law predicts its {bt['n_test']} run(s) with mean |error| "
         f"{100 * bt['mean_abs_rel_error']:.2g} % (max {100 * bt['max_abs_rel_error']:.2g} %, "
         f"{'too high' if bt['mean_rel_error'] > 0 else 'too low'} on average)")
    naive = bt.get("naive_mean_abs_rel_error")
    if naive is not None:
        s += (f"; guessing that it does no better than the {num(bt['naive_from_params'])}-parameter model "
              f"errs by {100 * naive:.2g} %")
        if naive < bt["mean_abs_rel_error"]:
            s += (", closer than the law: fitted on the smaller models, it "
                  f"{'over' if bt['mean_rel_error'] < 0 else 'under'}estimates what the largest one gains")
    return [s + "."]


def _returns_sentences(doc: dict[str, Any]) -> list[str]:
    dr = doc.get("diminishing_returns") or {}
    out = []
    for key, noun, other in (("params", "parameters", "data"), ("tokens", "tokens", "model size")):
        r = dr.get(key)
        if not r:
            continue
        if r["value"] is None:
            out.append(f"Diminishing returns in {noun}: not defined by this fit.")
            continue
        far = r["value"] / r["largest_in_sweep"]
        where = (f"{num(far, 2)}× the largest in the sweep: an extrapolation" if far > 1 else
                 "inside the sweep's range")
        out.append(f"Point of diminishing returns ({other} unlimited): beyond {num(r['value'])}"
                   f"{_ci(r, 'ci')} {noun}, another doubling gains less than {r['min_gain']:g} nats/token "
                   f"({where}).")
    return out


def _isoflop_sentences(doc: dict[str, Any]) -> list[str]:
    iso = doc.get("isoflop") or {}
    out = []
    for g in iso.get("groups", []):
        if len(g["run_ids"]) < 3:
            continue
        spread = "at equal compute" if g["spread"] < 1.05 else f"within {g['spread']:.2g}× in compute"
        s = (f"IsoFLOP profile at C ≈ {num(g['flops'])} FLOPs ({len(g['run_ids'])} runs {spread}): the best "
             f"run has {num(g['best_params'])} parameters")
        if "fitted_params" in g:
            s += f"; the fitted optimum is {num(g['fitted_params'])}"
        out.append(s + ".")
    a2 = iso.get("approach2")
    if a2 and "params" in a2:
        out.append(f"Approach 2 (a parabola in log N per IsoFLOP profile of ≥ 4 sizes) gives N_opt ∝ "
                   f"C^{a2['params']['a']:.2f} from {len(a2['optima'])} budgets.")
    return out


def _entropy_sentences(doc: dict[str, Any]) -> list[str]:
    chk = doc.get("entropy_check")
    if not chk:
        return []
    if "E" not in chk:
        return [f"The task's exact entropy rate is {chk['entropy_rate']:.4g} nats/token; the best run is "
                f"{chk['best_gap']:.3g} above it."]
    verdict = {True: "inside", False: "outside", None: "without"}[chk["inside"]]
    return [f"Known floor: the chain's exact entropy rate is H = {chk['entropy_rate']:.4g} nats/token and the "
            f"fitted E is {chk['E']:.4g}{_ci(chk, 'E_ci', 3)} (E − H = {chk['E_minus_H']:+.3g}; H is {verdict} "
            f"the interval); the best run is {chk['best_gap']:.3g} above the floor."]
