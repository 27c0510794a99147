"""Theory beside measurement: the closed-form risk curve that matches a ``teacher`` sweep, overlaid.

The ``teacher`` task draws x ~ N(0, I_dim) and y = x·β + ε with ‖β‖² = r2 per output and noise-free
test targets, so a run's test MSE estimates its excess risk, the quantity the formulas of
``overparam.analysis.theory`` give. Which formula matches depends on the run (every input is read
from the stored run config):

- ``linear`` of width p on the first p coordinates, min-norm (closed form, or gradient training
  from its zero init, converged): the finite-n Gaussian-design risk, and when p < dim Belkin, Hsu &
  Xu's weak-features risk — the unseen part of β, of energy s = ‖β_{p+1:dim}‖², acts as extra noise:
      risk = s + finite_risk(n, p, r2 = ‖β_{1:p}‖², sigma2 = σ² + s)
  (``weak_features_risk`` with β's energy spread evenly, which is this formula's mean over the
  teacher's draws of β, since it is linear in ‖β_{1:p}‖²).
- ``linear`` with ridge λ (``train.optimizer: ridge``; or gd/sgd/adam with L2 weight decay wd,
  whose stationary point is ridge with λ = wd/2, the objective being (1/n)‖Φw − y‖² + (wd/2)‖w‖²):
  the asymptotic ridge risk at gamma = p/n with the same split (exact only as n, p → ∞).
- ``rff`` with ReLU features, min-norm: Mei & Montanari's random-features risk at psi1 = N/dim,
  psi2 = n/dim. Their features are relu(⟨θ, x⟩/√d) without an offset; ours are
  relu(x·w/ℓ + b), b ~ N(0, 1). ReLU is positively homogeneous, so the scale ℓ does not matter for
  min-norm, but the offset does: its variance relative to the input term, ρ = ℓ²/dim, is reported
  and flagged above 0.05 (measured: at dim = 100, n = 200, 6 data draws, the median gap was 2.7 %
  at ρ = 0.01 and 1.3 % at ρ = 0.09, so small offsets do not visibly move the curve).

Anything else (a ReLU teacher, Fourier features, AdamW's decoupled decay, an intercept) gets no
curve: there is no formula here for it, and a near miss would read as agreement.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from overparam.analysis.claims import fmt_settings
from overparam.report import plots
from overparam.report.sections import Section, SweepContext

RFF_OFFSET_LIMIT = 0.05  # ρ = ℓ²/dim above which Mei–Montanari is only a reference for rff + ReLU
AGREE = 0.10  # median relative gap under which measurement and theory "agree"


def _theory_kind(row: pd.Series) -> tuple[str | None, str]:
    """(curve name, why) for one run: finite | ridge | random-features, or None and the reason."""
    family, opt = row.get("model.family"), row.get("train.optimizer")
    if row.get("task.kind") != "teacher":
        return None, "not a teacher task"
    if row.get("task.teacher", "linear") != "linear":
        return None, "the teacher is a ReLU network: no closed form here"
    if family not in ("linear", "rff"):
        return None, f"{family} models have no closed-form curve here"
    if bool(row.get("model.bias", False)):
        return None, "the model learns an intercept, which the formulas do not include"
    if opt == "adamw" and float(row.get("train.weight_decay") or 0) > 0:
        return None, "AdamW's decoupled weight decay is not ridge at convergence"
    lam = _ridge_lambda(row)
    if family == "rff":
        if row.get("model.features") != "relu":
            return None, "Fourier features (a Gaussian kernel) have no curve here"
        if opt != "min_norm":
            return None, "the random-features curve is drawn for min-norm fits only"
        return "random-features", ""
    return ("ridge" if lam > 0 else "finite"), ""


def _ridge_lambda(row: pd.Series) -> float:
    opt = row.get("train.optimizer")
    if opt == "ridge":
        return float(row.get("train.ridge") or 0.0)
    if opt in ("gd", "sgd", "adam"):
        return float(row.get("train.weight_decay") or 0.0) / 2.0
    return 0.0


def _features(row: pd.Series) -> int:
    dim = int(row["task.dim"])
    width = row.get("model.width")
    if width is None or (isinstance(width, float) and math.isnan(width)):
        return dim
    return min(int(width), dim) if row["model.family"] == "linear" else int(width)


def _seen_energy(row: pd.Series, p: int, cache: dict[str, np.ndarray]) -> np.ndarray:
    """‖β_{1:p}‖² per output for this run's teacher. β is drawn before any example, so the task is
    loaded with one train and one test example (a test holds this equal to the full load)."""
    from overparam.data import load_task

    opts = {k.split(".", 1)[1]: _plain(v) for k, v in row.items() if str(k).startswith("task.")}
    key = repr(sorted((k, v) for k, v in opts.items() if k not in ("train_size", "test_size")))
    if key not in cache:
        cache[key] = np.asarray(load_task({**opts, "train_size": 1, "test_size": 1}).info["beta"])
    beta = cache[key]
    return (beta[:p] ** 2).sum(axis=0)


def run_theory(row: pd.Series, cache: dict[str, np.ndarray] | None = None) -> float | None:
    """The theory's excess risk for one run (summed over outputs, as the test MSE is), or None."""
    from overparam.analysis import theory

    kind, _ = _theory_kind(row)
    if kind is None:
        return None
    cache = {} if cache is None else cache
    n, p, dim = int(row["task.train_size"]), _features(row), int(row["task.dim"])
    r2, sigma2 = float(row["task.r2"]), float(row["task.sigma2"])
    if kind == "random-features":
        risk = theory.random_features_risk(p / dim, n / dim, "relu", r2=r2, sigma2=sigma2)
        return float(risk) * int(row.get("task.outputs", 1)) if math.isfinite(risk) else None
    total = 0.0
    for seen in _seen_energy(row, p, cache):
        unseen = max(r2 - float(seen), 0.0)
        if kind == "finite":
            part = theory.finite_risk(n, p, r2=float(seen), sigma2=sigma2 + unseen)
        else:
            part = theory.ridge_risk(p / n, _ridge_lambda(row), r2=float(seen), sigma2=sigma2 + unseen)
        total += unseen + float(part)
    return total if math.isfinite(total) else None


def _expected_curve(kind: str, row: pd.Series, grid: np.ndarray, axis: str = "p") -> np.ndarray:
    """The theory averaged over the teacher's β (energy spread evenly), for the plot: on a grid of
    p (``axis="p"``, n fixed) or of n (``axis="n"``, p fixed: sample-wise)."""
    from overparam.analysis import theory

    dim = int(row["task.dim"])
    ps = grid if axis == "p" else np.full_like(grid, float(_features(row)))
    ns = grid if axis == "n" else np.full_like(grid, float(row["task.train_size"]))
    r2, sigma2, k = float(row["task.r2"]), float(row["task.sigma2"]), int(row.get("task.outputs", 1))
    with np.errstate(all="ignore"):
        if kind == "random-features":
            vals = np.asarray(theory.random_features_risk(ps / dim, ns / dim, "relu", r2=r2, sigma2=sigma2))
        else:
            ps = np.minimum(ps, dim)
            if kind == "finite":
                vals = np.asarray(theory.weak_features_risk(ns, ps, dim, r2=r2, sigma2=sigma2))
            else:
                lam, seen = _ridge_lambda(row), r2 * ps / dim
                vals = np.array([(r2 - s) + theory.ridge_risk(p / n, lam, r2=s, sigma2=sigma2 + r2 - s)
                                 for p, n, s in zip(ps, ns, seen)])
    vals = np.where(np.isfinite(vals), vals, np.nan)
    return vals * k


def _plain(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    return v.item() if hasattr(v, "item") else v


def _varies(frame: pd.DataFrame, column: str) -> bool:
    return column in frame and frame[column].astype(str).nunique() > 1


def theory_comparison(runs: pd.DataFrame) -> dict[str, Any] | None:
    """Measured test MSE and the matching theory per (group, size); None for a sweep that is not a
    teacher sweep, and ``kinds == []`` (with the reason) when no formula applies to its runs.

    The size axis is p (model-wise: the width varies, or task.dim with the width null or ≥ dim)
    or, when neither varies but ``task.train_size`` does, n (sample-wise). Groups are the
    combinations of the other varying settings, replicate seeds (``seed``, ``task.seed``) aside.
    Per point: the seed mean and standard error of the measured test MSE, the theory averaged over
    the same runs, the relative gap (measured − theory)/theory and z = gap/SE. A point where the
    theory is infinite (|p − n| < 2 for min-norm) has no gap.
    """
    done = runs[runs["status"] == "done"] if "status" in runs else runs
    if done.empty or done.iloc[0].get("task.kind") != "teacher" or "test_loss" not in done:
        return None
    kinds = [_theory_kind(r) for _, r in done.iterrows()]
    if any(k is None for k, _ in kinds):
        reasons = sorted({why for k, why in kinds if k is None})
        return {"kinds": [], "reason": "; ".join(reasons), "groups": []}
    cache: dict[str, np.ndarray] = {}
    done = done.assign(_p=[_features(r) for _, r in done.iterrows()],
                       _theory=[run_theory(r, cache) for _, r in done.iterrows()])
    skip = {"seed", "task.seed", "task.test_size"}
    if _varies(done, "model.width") or (_varies(done, "task.dim") and done["_p"].nunique() > 1):
        axis, column = "p", "_p"
        skip |= {"model.width"} if _varies(done, "model.width") else {"model.width", "task.dim"}
    elif _varies(done, "task.train_size"):
        axis, column = "n", "task.train_size"
        skip.add("task.train_size")
    else:
        axis, column = "p", "_p"
    others = [c for c in done.columns if "." in c and c not in skip and _varies(done, c)]
    groups = []
    keyed = done.assign(_key=done[others].astype(str).agg("|".join, axis=1) if others else "")
    for _, frame in keyed.groupby("_key", sort=False):
        points = []
        for x, sub in frame.groupby(column, sort=True):
            vals = sub["test_loss"].astype(float).to_numpy()
            th = sub["_theory"]
            theo = float(th.astype(float).mean()) if th.notna().all() else None
            mean = float(vals.mean())
            se = float(vals.std(ddof=1) / math.sqrt(len(vals))) if len(vals) > 1 else None
            gap = (mean - theo) / theo if theo else None
            points.append({"x": int(x), "p": int(sub["_p"].iloc[0]), "n": int(sub["task.train_size"].iloc[0]),
                           "n_runs": int(len(vals)), "measured": mean, "se": se, "theory": theo, "gap": gap,
                           "z": (mean - theo) / se if (theo is not None and se) else None,
                           "train_loss": float(sub["train_loss"].astype(float).max())})
        first = frame.iloc[0]
        kind = _theory_kind(first)[0]
        groups.append({"kind": kind, "axis": axis, "fixed": {c: _plain(first[c]) for c in others},
                       "points": points, "n": int(first["task.train_size"]), "p": int(first["_p"]),
                       "dim": int(first["task.dim"]), "r2": float(first["task.r2"]),
                       "sigma2": float(first["task.sigma2"]), "optimizer": first["train.optimizer"],
                       "lambda": _ridge_lambda(first),
                       "offset_ratio": (float(first["model.bandwidth"]) ** 2 / int(first["task.dim"])
                                        if kind == "random-features" else None),
                       "_row": first})
    return {"kinds": sorted({g["kind"] for g in groups}), "axis": axis, "reason": "", "groups": groups}


def _summary(points: list[dict[str, Any]]) -> dict[str, Any]:
    gaps = [(abs(q["gap"]), q) for q in points if q["gap"] is not None]
    if not gaps:
        return {"n_points": 0}
    worst = max(gaps, key=lambda t: t[0])[1]
    zs = [abs(q["z"]) for q in points if q["z"] is not None]
    return {"n_points": len(gaps), "median_abs_gap": float(np.median([g for g, _ in gaps])),
            "worst_x": worst["x"], "worst_gap": worst["gap"], "worst_z": worst["z"],
            "within_3se": int(sum(z <= 3 for z in zs)), "n_with_se": len(zs)}


NAMES = {"finite": "finite-n Gaussian-design min-norm risk (Belkin–Hsu–Xu weak features where p < dim)",
         "ridge": "asymptotic ridge risk (Hastie et al. 2019) at gamma = p/n",
         "random-features": "Mei–Montanari random-features risk (ReLU, ridgeless)"}


def _sentences(group: dict[str, Any], summ: dict[str, Any]) -> list[str]:
    kind = group["kind"]
    fixed = fmt_settings(group["fixed"])
    head = f"{fixed}: " if fixed else ""
    size = f"p = {group['p']}" if group["axis"] == "n" else f"n = {group['n']}"
    setting = (f"{size}, dim = {group['dim']}, r2 = {group['r2']:g}, σ² = {group['sigma2']:g}"
               + (f", λ = {group['lambda']:g}" if kind == "ridge" else ""))
    out = [f"{head}Theory: {NAMES[kind]} with {setting}, read from the run configs."]
    if not summ.get("n_points"):
        out.append("No point has both a finite theoretical risk and finished runs to compare.")
        return out
    seeds = max(q["n_runs"] for q in group["points"])
    symbol = "n" if group["axis"] == "n" else ("N" if kind == "random-features" else "p")
    unit = "training-set sizes" if group["axis"] == "n" else "widths"
    s = (f"Measured test MSE (mean over {seeds} runs per point) is within a median "
         f"{100 * summ['median_abs_gap']:.1f} % of theory over {summ['n_points']} {unit}; the largest gap is "
         f"{100 * summ['worst_gap']:+.1f} % at {symbol} = "
         f"{summ['worst_x']}")
    if summ["worst_z"] is not None:
        s += f" ({abs(summ['worst_z']):.1f} standard errors)"
    s += "."
    if summ.get("n_with_se"):
        s += f" {summ['within_3se']} of {summ['n_with_se']} {unit} lie within 3 standard errors."
    out.append(s)
    agree = summ["median_abs_gap"] <= AGREE
    if kind == "random-features":
        rho = group["offset_ratio"]
        if rho is not None and rho > RFF_OFFSET_LIMIT:
            out.append(f"Caveat: the features carry a random offset of relative variance ρ = ℓ²/dim = {rho:.2g} "
                       f"(> {RFF_OFFSET_LIMIT:g}) that the Mei–Montanari model lacks: any agreement is measured "
                       f"here, not promised by the formula.")
        out.append("The random-features formula is asymptotic (n, N, dim → ∞ at fixed ratios).")
    if kind == "ridge":
        out.append("The ridge formula is asymptotic (n, p → ∞ at fixed p/n); at this n expect gaps of a few percent.")
    if group["optimizer"] not in ("min_norm", "ridge"):
        past = [q["train_loss"] for q in group["points"] if q["p"] >= q["n"] + 2]
        worst_train = max(past) if past else None
        msg = (f"These runs were trained by {group['optimizer']}, which reaches the closed-form solution only at "
               f"convergence")
        if worst_train is not None:
            msg += f" (largest train MSE past p = n: {worst_train:.2g})"
        out.append(msg + ".")
    out.append("Measurement and theory agree." if agree else
               "Measurement and theory do not agree to within "
               f"{100 * AGREE:.0f} %: read the gap above before trusting either.")
    return out


def _figure(doc: dict[str, Any], title: str) -> bytes:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    cmap = plt.get_cmap("tab10")
    for i, group in enumerate(doc["groups"]):
        pts = group["points"]
        color = cmap(i % 10) if len(doc["groups"]) > 1 else plots.COLORS["test"]
        label = ", ".join(f"{k.split('.')[-1]} = {v}" for k, v in group["fixed"].items())
        xs = np.array([q["x"] for q in pts], dtype=float)
        ys = np.array([q["measured"] for q in pts])
        err = np.array([q["se"] or 0.0 for q in pts])
        ax.errorbar(xs, ys, yerr=err, fmt="o", ms=4, color=color, capsize=2,
                    label=f"measured {label}".strip() + " (mean ± SE)")
        lo, hi = max(xs.min() * 0.9, 1.0), xs.max() * 1.05
        if group["kind"] != "random-features" and group["axis"] == "p":
            hi = min(hi, float(group["dim"]))
        grid = np.unique(np.concatenate([np.geomspace(lo, hi, 400), xs]))
        theo = _expected_curve(group["kind"], group["_row"], grid, group["axis"])
        ax.plot(grid, theo, "-", color=color if len(doc["groups"]) > 1 else plots.COLORS["theory"], lw=1.3,
                label=f"theory {label}".strip())
        if group["kind"] != "ridge":
            ax.axvline(group["n"] if group["axis"] == "p" else group["p"], color="#888", ls=":", lw=1)
    tops = [q["measured"] + (q["se"] or 0.0) for g in doc["groups"] for q in g["points"]]
    bottoms = [q["measured"] for g in doc["groups"] for q in g["points"]]
    ax.set_ylim(min(bottoms) / 2, max(tops) * 4)  # the pole at p = n would otherwise flatten the data
    ax.set_xscale("log")
    ax.set_yscale("log")
    if doc["axis"] == "n":
        ax.set_xlabel("training samples n")
    else:
        ax.set_xlabel("random features N" if doc["kinds"] == ["random-features"] else "features seen p")
    ax.set_ylabel("test MSE = excess risk")
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3, which="both", lw=0.5)
    ax.legend(fontsize=7, loc="best")
    return plots.to_png(fig)


def theory_section(ctx: SweepContext) -> Section | None:
    """Overlay the matching closed-form risk on the measured test MSE of a teacher sweep."""
    if ctx.runs.empty or ctx.first("task.kind") != "teacher":
        return None
    doc = theory_comparison(ctx.runs)
    if doc is None:
        return None
    section = Section(title="Theory beside measurement")
    if not doc["kinds"]:  # nothing to draw: one line
        section.sentences.append(f"no closed-form curve for this sweep: {doc['reason']}.")
        section.summary = {"kinds": [], "reason": doc["reason"]}
        section.brief = True
        return section
    summaries = []
    for group in doc["groups"]:
        summ = _summary(group["points"])
        summaries.append({"kind": group["kind"], "fixed": group["fixed"], **summ,
                          "points": [{k: v for k, v in q.items()} for q in group["points"]]})
        section.sentences.extend(_sentences(group, summ))
    section.figures.append(("theory_overlay.png", _figure(doc, ctx.name),
                            f"Measured test MSE (dots: mean over seeds and data draws, bars: standard error) "
                            f"and the {' / '.join(NAMES[k] for k in doc['kinds'])} (lines, averaged over the "
                            f"teacher's β). Dotted: p = n."))
    section.summary = {"kinds": doc["kinds"], "groups": summaries, "sentences": section.sentences}
    return section
