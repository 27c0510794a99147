"""The scaling-law reading of a language-model sweep: one JSON document, ``DIR/analyses/scaling.json``.

``analyze_scaling_sweep(DIR)`` is what ``overparam demo`` runs after its LM part and what the report
computes on the fly for any sweep whose runs count training ``tokens``. Every number in the report's
scaling section and in the demo's headline comes from this document. In order:

1. **Points**: finished runs, loss = ``test_loss`` (nats/token), N = total trainable parameters (the
   store's ``params``, embeddings included: models/gpt.py states the convention), D = training tokens,
   and compute C = 6·N·D (Kaplan et al. 2020), the convention of the compute-optimal allocation
   below. The stored FLOPs, which also count attention and the unembedding, are kept as
   ``flops_counted``.
2. **Fit**: Chinchilla Approach 3, L = E + A/N^α + B/D^β (Hoffmann et al. 2022; Besiroglu et al.
   2024's refit), with percentile bootstrap intervals. It needs at least 3 distinct N *and* 3 distinct D
   (with 2 values of D the pair (B, β) trades off against E) and at least 7 runs (5 constants, 2 left
   to check them). Otherwise the document falls back to L = E + A/N^α at the largest token budget
   and says why (``fallback``).
3. **Compute-optimal frontier**: N_opt(C), D_opt(C) and the loss there, over the sweep's range of C.
4. **Extrapolation backtest**: refit without the largest size and predict its runs. For scale, the
   error of the naive guess "the largest size does as well as the next smaller one" is reported too.
5. **Diminishing returns**: the N (D) beyond which another doubling gains less than ``min_gain``
   nats with the other resource unlimited: x* = (A (1 − 2^−α) / g)^(1/α), with intervals.
6. **IsoFLOP profiles**: runs grouped by compute (within ``ISO_TOL`` decades), and, where two or more
   budgets hold 3 sizes, Approach 2 (a parabola per budget) as a cross-check.
7. **Known floor**: on ``markov`` tasks the exact entropy rate is the true E; the fitted E is set
   against it.

A sweep that varies anything besides size and tokens (its training data, ``task.mix``; the context;
the learning rate) gets one such analysis per setting (``settings``): a law fitted across them would
pool losses of different tasks and read their differences as an effect of N or D.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from overparam.analysis.claims import fmt_settings, texts
from overparam.analysis.scaling_reading import HOFFMANN, LEVEL, num, read_scaling  # noqa: F401 (num: re-exported)
from overparam.analysis.scaling_reading import read_scaling_claims as read_claims
from overparam.errors import OverparamError

VERSION = 3
ARTIFACT = "scaling"  # DIR/analyses/scaling.json
ISO_TOL = 0.2  # decades of C within one IsoFLOP group: the demo grid's anti-diagonals span ≤ 0.18
MIN_JOINT_POINTS = 7  # the five constants of L(N, D) and two degrees of freedom to check them
APPROACH2_SIZES = 4  # sizes per IsoFLOP profile for Approach 2: a parabola's 3 constants and one point to check
NAMES = ("E", "A", "B", "alpha", "beta")
TOKEN_AXES = ("train.steps", "train.batch_size")  # what sets D, tokens seen, besides the context
REPLICATES = ("seed", "task.seed", "task.noise_seed")  # averaged over, never a setting of its own
DATA_AXES = ("task.mix", "task.path", "task.kind", "task.train_size")  # settings that change the training data


# -- the law, for one constant set or many -------------------------------------------------------------

def law_loss(p: dict[str, Any], n: Any, d: Any = None) -> np.ndarray:
    """L(N, D) = E + A/N^α + B/D^β; the power law in N (no ``B``) ignores D. Arrays broadcast."""
    n = np.asarray(n, float)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        out = p["E"] + p["A"] * n ** -p["alpha"]
        if "B" in p and d is not None:
            out = out + p["B"] * np.asarray(d, float) ** -p["beta"]
    return out


def optimum(p: dict[str, Any], flops: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N_opt, D_opt, L_opt) under 6·N·D = C (Hoffmann et al. 2022, eq. 4 and Appendix D.2)."""
    from overparam.analysis.scaling import optimal_allocation

    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        n, d = optimal_allocation(p, flops)
    return n, d, law_loss(p, n, d)


def samples(doc: dict[str, Any]) -> list[dict[str, float]]:
    """The bootstrap constant sets stored in ``doc["fit"]`` as dicts (empty without a bootstrap)."""
    fit = doc.get("fit") or {}
    names = fit.get("sample_names", [])
    return [dict(zip(names, row, strict=True)) for row in fit.get("samples", [])]


def band(values: list[np.ndarray] | np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise percentile interval over bootstrap curves (rows); non-finite values are left out."""
    arr = np.asarray(values, float)
    arr = np.where(np.isfinite(arr), arr, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-nan column gives nan, as it should
        lo, hi = np.nanpercentile(arr, [50 * (1 - level), 50 * (1 + level)], axis=0)
    return lo, hi


def doubling_threshold(scale: float, exponent: float, min_gain: float) -> float:
    """x* where c/x^γ − c/(2x)^γ = g: x* = (c (1 − 2^−γ) / g)^(1/γ)."""
    if not (scale > 0 and exponent > 0):
        return math.nan
    with np.errstate(over="ignore"):
        return float((scale * (1 - 2.0 ** -exponent) / min_gain) ** (1 / exponent))


# -- points -------------------------------------------------------------------------------------------

def sweep_points(directory: str | Path) -> pd.DataFrame:
    """One row per finished run with a test loss and a token count: run_id, params, tokens, flops
    (6ND), flops_counted, loss, train_loss, and entropy_rate where the task knows it."""
    from overparam.store import load_runs

    runs = load_runs(directory)
    need = {"status", "test_loss", "tokens", "params"}
    if runs.empty or not need <= set(runs.columns):
        return pd.DataFrame(columns=["run_id", "params", "tokens", "flops", "flops_counted", "loss"])
    runs = runs[(runs["status"] == "done") & runs["test_loss"].notna() & (runs["tokens"].fillna(0) > 0)]
    out = pd.DataFrame({"run_id": runs["id"].to_numpy(), "params": runs["params"].to_numpy(float),
                        "tokens": runs["tokens"].to_numpy(float), "loss": runs["test_loss"].to_numpy(float)})
    out["flops"] = 6.0 * out["params"] * out["tokens"]
    out["flops_counted"] = runs["flops"].to_numpy(float)
    if "train_loss" in runs:
        out["train_loss"] = runs["train_loss"].to_numpy(float)
    if "entropy_rate" in runs:
        out["entropy_rate"] = runs["entropy_rate"].to_numpy(float)
    out = out.sort_values(["params", "tokens"], kind="stable").reset_index(drop=True)
    out.attrs["directory"] = str(directory)
    return out


def _ratio_range(points: pd.DataFrame) -> list[float] | None:
    """[min, max] of stored training FLOPs / 6ND: how far the 6ND convention is from the count."""
    ratio = (points["flops_counted"] / points["flops"]).to_numpy(float)
    ratio = ratio[np.isfinite(ratio)]
    return [float(ratio.min()), float(ratio.max())] if ratio.size else None


def joint_fit_problem(points: pd.DataFrame) -> str | None:
    """Why L(N, D) cannot be identified from these points, or None when it can (the counts themselves are
    stated beside it, in the sentence that names the grid)."""
    n_sizes, n_tokens = points["params"].nunique(), points["tokens"].nunique()
    if n_sizes < 3 or n_tokens < 3:
        return "the joint law needs at least 3 distinct model sizes and 3 token budgets"
    if len(points) < MIN_JOINT_POINTS:
        return f"{len(points)} runs for 5 constants; the joint law needs at least {MIN_JOINT_POINTS}"
    return None


def setting_axes(directory: str | Path, runs: pd.DataFrame | None = None) -> list[str]:
    """The keys a sweep varies besides model size, tokens and seeds: each of their settings is a task of its own."""
    from overparam.store import load_runs, open_store

    runs = load_runs(directory) if runs is None else runs
    with open_store(directory) as store:
        sizes = store.meta("size_axes") or []
    done = runs[runs["status"] == "done"] if "status" in runs else runs
    return [c for c in done.columns if "." in c and c not in (*sizes, *TOKEN_AXES, *REPLICATES)
            and done[c].astype(str).nunique() > 1]


# -- the analysis -------------------------------------------------------------------------------------

def analyze_scaling_sweep(directory: str | Path, bootstrap: int = 1000, seed: int = 0, *,
                          min_gain: float = 0.01, write: bool = True) -> dict[str, Any]:
    """Fit, frontier, backtest, diminishing returns, IsoFLOP groups and sentences for one LM sweep.

    Writes ``DIR/analyses/scaling.json`` unless ``write`` is False. Raises OverparamError when the
    sweep has fewer than 3 finished runs with a token count (nothing to fit).
    """
    start = time.perf_counter()
    directory = Path(directory)
    points = sweep_points(directory)
    if len(points) < 3:
        raise OverparamError(f"{directory}: {len(points)} finished language-model run(s) with a token count; "
                             f"a scaling fit needs at least 3")
    axes = setting_axes(directory)
    if axes:
        doc = _header(points, directory, bootstrap, seed, min_gain)
        doc["split"] = {"axes": axes, "what": "training data" if set(axes) <= set(DATA_AXES) else "settings"}
        doc["settings"] = [_setting(sub, fixed, bootstrap, seed, min_gain) for fixed, sub in _by_setting(points, axes)]
        doc["law"], doc["fit"] = None, None
    else:
        doc = _analyze_points(points, directory, bootstrap, seed, min_gain)
    doc["claims"] = read_claims(_plain(doc))
    doc["sentences"] = texts(doc["claims"])
    doc["headline"] = read_scaling(_plain(doc), short=True)
    doc["seconds"] = round(time.perf_counter() - start, 2)
    doc = _plain(doc)
    if write:
        write_artifact(directory, doc)
    return doc


def _header(points: pd.DataFrame, directory: Path, bootstrap: int, seed: int, min_gain: float) -> dict[str, Any]:
    """What every scaling document states: its points, grid, conventions, and the settings of its reading."""
    return {
        "version": VERSION, "directory": str(directory), "loss": "test_loss (nats/token)",
        "conventions": {"params": "total trainable parameters, embeddings included",
                        "tokens": "training tokens seen", "flops": "C = 6 N D",
                        "flops_counted_over_6nd": _ratio_range(points)},
        "run_ids": sorted(points["run_id"]), "points": points.to_dict(orient="records"), "n_runs": len(points),
        "grid": {"params": sorted(points["params"].unique().tolist()),
                 "tokens": sorted(points["tokens"].unique().tolist()),
                 "flops": [float(points["flops"].min()), float(points["flops"].max())],
                 "n_sizes": int(points["params"].nunique()), "n_budgets": int(points["tokens"].nunique())},
        "bootstrap": int(bootstrap), "seed": int(seed), "min_gain": float(min_gain), "level": LEVEL,
        "reference": HOFFMANN, "notes": [],
    }


def _analyze_points(points: pd.DataFrame, directory: Path, bootstrap: int, seed: int,
                    min_gain: float) -> dict[str, Any]:
    """Fit, frontier, backtest, thresholds, IsoFLOP groups and the entropy check of one set of points."""
    doc = _header(points, directory, bootstrap, seed, min_gain)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # wild bootstrap resamples overflow exp()
        problem = joint_fit_problem(points)
        fitted = None if problem else _joint(points, bootstrap, seed, min_gain, doc)
        if fitted is None:
            _fallback(points, bootstrap, seed, min_gain, doc, problem or "the joint fit failed")
        _isoflop(points, doc)
        _entropy_check(points, doc)
    return doc


def _by_setting(points: pd.DataFrame, axes: list[str]) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """The points of each setting of ``axes``, in the order the sweep first ran them."""
    from overparam.store import load_runs

    runs = load_runs(points.attrs["directory"]).set_index("id")
    keys = [json.dumps([str(runs.at[r, a]) for a in axes]) for r in points["run_id"]]
    out = []
    for key in dict.fromkeys(keys):
        sub = points[[k == key for k in keys]].reset_index(drop=True)
        first = runs.loc[sub["run_id"].iloc[0]]
        out.append(({a: _setting_value(first[a]) for a in axes}, sub))
    return out


def _setting_value(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


def _setting(points: pd.DataFrame, fixed: dict[str, Any], bootstrap: int, seed: int,
             min_gain: float) -> dict[str, Any]:
    """One setting's analysis (three runs at least), labelled by its settings."""
    label = fmt_settings(fixed)
    if len(points) < 3:
        return {"fixed": fixed, "label": label, "n_runs": len(points), "run_ids": sorted(points["run_id"]),
                "min_runs": 3, "skipped": f"{len(points)} runs; a scaling fit needs at least 3"}
    doc = _analyze_points(points, Path(points.attrs["directory"]), bootstrap, seed, min_gain)
    return {"fixed": fixed, "label": label, **doc}


def write_artifact(directory: Path, doc: dict[str, Any]) -> Path:
    """Write ``doc`` to ``DIR/analyses/scaling.json`` (whole file replaced at once: no half-written JSON)."""
    out = directory / "analyses"
    out.mkdir(exist_ok=True)
    path = out / f"{ARTIFACT}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(path)
    return path


def load_fresh(directory: str | Path) -> dict[str, Any] | None:
    """``DIR/analyses/scaling.json`` when it describes the sweep's current finished runs, else None."""
    directory = Path(directory)
    path = directory / "analyses" / f"{ARTIFACT}.json"
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if (isinstance(doc, dict) and doc.get("version") == VERSION
            and doc.get("run_ids") == sorted(sweep_points(directory)["run_id"])):
        return doc
    return None


def load_or_analyze(directory: str | Path, bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """``DIR/analyses/scaling.json`` when it describes the sweep's current finished runs, else a fresh
    analysis (written there): a sweep resumed after the analysis never shows stale numbers."""
    directory = Path(directory)
    doc = load_fresh(directory)
    if doc is not None:
        return doc
    doc = analyze_scaling_sweep(directory, bootstrap=bootstrap, seed=seed, write=False)
    try:
        write_artifact(directory, doc)
    except OSError:  # a read-only sweep directory still gets its report section
        pass
    return doc


def _joint(points, bootstrap, seed, min_gain, doc) -> bool | None:
    """Approach 3 with intervals, frontier, backtest and thresholds into ``doc``; None if it failed."""
    from overparam.analysis.scaling import extrapolation_backtest, fit_scaling_law

    try:
        fit = fit_scaling_law(points[["params", "tokens", "flops", "loss"]], "chinchilla", bootstrap=bootstrap,
                              seed=seed, backtest=False, min_gain=min_gain)
    except OverparamError as exc:
        doc["notes"].append(f"the joint fit failed ({exc})")
        return None
    p = fit.params
    doc["law"] = "chinchilla"
    doc["fallback"] = None
    doc["fit"] = _fit_block(fit, points)
    doc["frontier"] = _frontier(p, samples(doc), doc["grid"]["flops"])
    doc["compute_optimal"] = doc["frontier"][-1]
    doc["diminishing_returns"] = {
        "params": _threshold(p, samples(doc), "A", "alpha", min_gain, points["params"].max()),
        "tokens": _threshold(p, samples(doc), "B", "beta", min_gain, points["tokens"].max())}
    sizes = np.unique(points["params"])
    train = points[points["params"] < sizes[-1]]
    problem = joint_fit_problem(train)  # the joint fit had 3 sizes or more: train keeps 2 at least
    if problem:
        doc["backtest"] = {"skipped": f"without the largest size, {len(sizes) - 1} sizes are left and {problem}"}
    else:
        doc["backtest"] = extrapolation_backtest(fit.fitter, points[["params", "tokens", "flops", "loss"]],
                                                 holdout=1 / len(sizes))
        _backtest_details(points, doc["backtest"])
    doc["notes"].extend(_fit_warnings(doc, points))
    return True


def _fallback(points, bootstrap, seed, min_gain, doc, reason) -> None:
    """L = E + A/N^α at the largest token budget (3 distinct sizes needed), or no law at all."""
    from overparam.analysis.scaling import extrapolation_backtest, fit_scaling_law

    d_max = points["tokens"].max()
    at = points[points["tokens"] == d_max]
    doc["fallback"] = {"reason": reason, "tokens": float(d_max)}
    doc["frontier"], doc["compute_optimal"] = None, None
    if at["params"].nunique() < 3:
        doc["law"], doc["fit"] = None, None
        sizes = at["params"].nunique()
        doc["fallback"]["note"] = (f"{'only one size' if sizes == 1 else f'only {sizes} sizes'} at the largest "
                                   f"budget, so no power law in N either")
        doc["backtest"], doc["diminishing_returns"] = None, None
        return
    frame = at[["params", "tokens", "flops", "loss"]].reset_index(drop=True)
    try:
        fit = fit_scaling_law(frame, "power", bootstrap=bootstrap, seed=seed, backtest=False,
                              min_gain=min_gain, x="params")
    except OverparamError as exc:
        doc["law"], doc["fit"], doc["backtest"], doc["diminishing_returns"] = None, None, None, None
        doc["fallback"]["note"] = f"the power law in N failed too ({exc})"
        return
    doc["law"] = "power-params"
    doc["fit"] = _fit_block(fit, frame, names=("E", "A", "alpha"))
    doc["diminishing_returns"] = {
        "params": _threshold(fit.params, samples(doc), "A", "alpha", min_gain, frame["params"].max())}
    if frame["params"].nunique() >= 4:
        doc["backtest"] = extrapolation_backtest(fit.fitter, frame, holdout=1 / frame["params"].nunique())
        _backtest_details(frame.assign(run_id=at["run_id"].to_numpy()), doc["backtest"])
    else:
        doc["backtest"] = {"skipped": "3 sizes: without the largest, 2 sizes cannot fix 3 constants"}
    if doc["fit"]["exact"]:  # as many constants as points: the reading quotes the points, not the constants
        means = frame.groupby("params")["loss"].mean()
        doc["fallback"]["exact_points"] = [{"params": float(n), "loss": float(v)} for n, v in means.items()]


def _fit_block(fit, data: pd.DataFrame, names: tuple[str, ...] = NAMES) -> dict[str, Any]:
    """Constants, intervals, bootstrap samples (finite rows only) and the in-sample error."""
    rows = [[s[k] for k in names] for s in getattr(fit.fitter, "bootstrap_params_", [])]
    finite = [r for r in rows if all(np.isfinite(r))]
    pred = fit.fitter.predict(data)
    rel = pred / data["loss"].to_numpy() - 1
    return {"params": {k: float(v) for k, v in fit.params.items()}, "ci": fit.ci, "n_points": fit.n_points,
            "bootstrap": fit.bootstrap, "bootstrap_finite": len(finite), "sample_names": list(names),
            "samples": [[float(f"{v:.6g}") for v in r] for r in finite],
            "in_sample_mean_abs_rel_error": float(np.mean(np.abs(rel))),
            "in_sample_max_abs_rel_error": float(np.max(np.abs(rel))), "search": fit.extras.get("search"),
            # as many points as constants: the curve passes through each, so errors and intervals say nothing
            "exact": fit.n_points <= len(names)}


def _frontier(p, boot, flops_range, count: int = 7) -> list[dict[str, Any]]:
    """N_opt, D_opt, D/N and L at ``count`` budgets spaced geometrically over the sweep's C range."""
    budgets = np.geomspace(flops_range[0], flops_range[1], count)
    rows = []
    for c in budgets:
        n, d, loss = (float(v) for v in optimum(p, c))
        row = {"flops": float(c), "params": n, "tokens": d, "tokens_per_param": d / n, "loss": loss}
        if boot:
            per = np.array([[*optimum(q, c)] for q in boot], float)  # (S, 3): N, D, L
            per = np.column_stack([per, per[:, 1] / per[:, 0]])
            lo, hi = band(per)
            keys = ("params", "tokens", "loss", "tokens_per_param")
            row["ci"] = {k: [float(lo[i]), float(hi[i])] for i, k in enumerate(keys)}
        rows.append(row)
    return rows


def _threshold(p, boot, scale, exponent, min_gain, largest) -> dict[str, Any]:
    value = doubling_threshold(p[scale], p[exponent], min_gain)
    out = {"value": value if math.isfinite(value) else None, "min_gain": min_gain, "largest_in_sweep": largest,
           "times_largest": value / largest if math.isfinite(value) and largest > 0 else None}
    if boot:
        lo, hi = band(np.array([[doubling_threshold(q[scale], q[exponent], min_gain)] for q in boot]))
        out["ci"] = [float(lo[0]), float(hi[0])]
        if lo[0] > 0 and np.isfinite(hi[0]):
            out["ci_decades"] = float(np.log10(hi[0] / lo[0]))  # how many decades the interval spans
    return out


def _backtest_details(points: pd.DataFrame, bt: dict[str, Any]) -> None:
    """Per held-out run: predicted and actual loss, and the naive guess (next smaller size, same D)."""
    if "skipped" in bt:
        return
    held = points[points["params"] >= bt["held_out_from"]]
    smaller = points[points["params"] < bt["held_out_from"]]
    below = smaller["params"].max()
    rows, naive = [], []
    for _, r in held.iterrows():
        pred = float(law_loss(bt["train_params"], r["params"], r["tokens"]))
        twin = smaller[(smaller["params"] == below) & (smaller["tokens"] == r["tokens"])]["loss"]
        guess = float(twin.mean()) if len(twin) else math.nan
        naive.append(guess / r["loss"] - 1)
        rows.append({"run_id": r.get("run_id"), "params": float(r["params"]), "tokens": float(r["tokens"]),
                     "loss": float(r["loss"]), "predicted": pred, "naive": guess})
    bt["predictions"] = rows
    naive = np.array(naive)
    bt["naive_mean_abs_rel_error"] = float(np.nanmean(np.abs(naive))) if np.isfinite(naive).any() else None
    bt["naive_from_params"] = float(below)


def _fit_warnings(doc, points) -> list[str]:
    """Plain warnings when a constant sits at a boundary or is barely determined."""
    p, ci, out = doc["fit"]["params"], doc["fit"]["ci"], []
    if p["E"] < 1e-3 * points["loss"].min():
        out.append(f"E is not identified: the fit puts it at {p['E']:.2g}, i.e. no floor is visible; the "
                   f"losses ({points['loss'].min():.3g}–{points['loss'].max():.3g}) are far from the "
                   f"irreducible loss at these sizes and budgets")
    for k, sym in (("alpha", "α"), ("beta", "β")):
        lo, hi = ci.get(k, [math.nan, math.nan])
        if np.isfinite(hi) and hi - lo > p[k]:
            out.append(f"the exponent {sym} is barely determined: its 95 % interval [{lo:.2g}, {hi:.2g}] is "
                       f"wider than the estimate {p[k]:.2g}")
    return out


def _isoflop(points: pd.DataFrame, doc: dict[str, Any]) -> None:
    """Runs grouped by compute (within ISO_TOL decades) holding ≥ 2 sizes; Approach 2 where it can."""
    from overparam.analysis.scaling import IsoFLOPFitter

    fitter = IsoFLOPFitter(budget_tol=ISO_TOL)
    groups = []
    for _, g in points.groupby(fitter.budgets(points["flops"].to_numpy())):
        if g["params"].nunique() < 2:
            continue
        c = float(np.exp(np.log(g["flops"]).mean()))
        best = g.loc[g["loss"].idxmin()]
        entry = {"flops": c, "spread": float(g["flops"].max() / g["flops"].min()),
                 "run_ids": g["run_id"].tolist(), "n_runs": len(g), "best_params": float(best["params"]),
                 "best_loss": float(best["loss"])}
        if doc.get("law") == "chinchilla":
            entry["fitted_params"] = float(optimum(doc["fit"]["params"], c)[0])
        groups.append(entry)
    doc["isoflop"] = {"tolerance_decades": ISO_TOL, "groups": groups}
    # Approach 2 only where each parabola (3 constants) has a point left to check it
    wide = [g for g in groups if points[points["run_id"].isin(g["run_ids"])]["params"].nunique() >= APPROACH2_SIZES]
    if len(wide) >= 2:
        ids = [i for g in wide for i in g["run_ids"]]
        try:
            fitter.fit(points[points["run_id"].isin(ids)][["params", "tokens", "flops", "loss"]])
            doc["isoflop"]["approach2"] = {"params": fitter.params_, "optima": fitter.optima_.to_dict("records"),
                                           "n_budgets": len(fitter.optima_), "min_sizes": APPROACH2_SIZES,
                                           "skipped_budgets": fitter.skipped_budgets_}
        except OverparamError as exc:
            doc["isoflop"]["approach2"] = {"skipped": str(exc)}


def _entropy_check(points: pd.DataFrame, doc: dict[str, Any]) -> None:
    """On tasks with an exact entropy rate H (markov), set the fitted E against it."""
    if "entropy_rate" not in points or not points["entropy_rate"].notna().any():
        doc["entropy_check"] = None
        return
    h = float(points["entropy_rate"].dropna().iloc[0])
    check: dict[str, Any] = {"entropy_rate": h, "best_loss": float(points["loss"].min()),
                             "best_gap": float(points["loss"].min() - h)}
    fit = doc.get("fit")
    if fit and "E" in fit["params"]:
        e = fit["params"]["E"]
        lo, hi = fit["ci"].get("E", [math.nan, math.nan])
        check |= {"E": e, "E_ci": [lo, hi], "E_minus_H": e - h,
                  "inside": bool(lo <= h <= hi) if np.isfinite(lo) else None}
    doc["entropy_check"] = check


def _plain(obj: Any) -> Any:
    """JSON-ready: numpy scalars to Python, NaN and inf to None."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
