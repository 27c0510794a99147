"""``overparam fit (DIR | --csv FILE)``: a scaling-law fit with bootstrap intervals and a backtest."""

from __future__ import annotations

import argparse

LAW_CHOICES = ("auto", "chinchilla", "chinchilla-envelope", "chinchilla-isoflop", "kaplan", "power", "bnsl")

DESCRIPTION = """\
Fit a scaling law to finished runs (a sweep DIR) or to a CSV with columns params,tokens,loss
(optional flops; tokens = flops/(6 params) when only flops is given). Epoch AI's CSV of the
Chinchilla points (columns Model Size, Training FLOP, loss) is read too.

laws:
  auto                 the default: chinchilla when the points vary both model size and tokens (3 or
                       more distinct values of each); the power law in the one that varies otherwise
                       (a width sweep: L(N), at the largest token budget); an error when neither does
  chinchilla           L = E + A/N^alpha + B/D^beta, Approach 3 as Besiroglu et al. 2024 refit it
                       (Huber on log residuals, L-BFGS from 4,500 starts)
  chinchilla-envelope  Approach 1: the loss-compute envelope -> N*(C), D*(C) power laws
  chinchilla-isoflop   Approach 2: a parabola in log N per compute budget -> N*(C), D*(C)
  kaplan               L = [(Nc/N)^(alpha_N/alpha_D) + Dc/D]^alpha_D (Kaplan et al. 2020)
  power                L = E + A/X^alpha in one variable, X chosen by --x
  bnsl                 broken power law in --x (Caballero et al. 2022), for non-monotone curves

A law is fitted only where the points identify it: the joint laws need 3 or more distinct model sizes
and token budgets (values within 12 % count as one budget), power and bnsl 3 or more values of --x.

A sweep that varies more than size and data (a text task.mix of specialists and generic models, a
label-noise or weight-decay axis) holds one task per setting: fit gives one law per setting, each
named, never one across them (--json: a "settings" list, see docs/scaling-laws.md); --setting
KEY=VALUE fits one.
"""


def add_source_args(p: argparse.ArgumentParser) -> None:
    """DIR or --csv FILE (shared with ``advise``)."""
    from overparam.flags import MAX_BOOTSTRAP, MAX_SEED, int_in

    p.add_argument("dir", nargs="?", help="sweep directory (finished runs, loss = test_loss)")
    p.add_argument("--csv", metavar="FILE", help="CSV with columns params,tokens,loss[,flops]")
    p.add_argument("--drop-highest", type=int, default=0, metavar="K",
                   help="drop the K highest-loss points first (Besiroglu et al. drop 5 Chinchilla points)")
    p.add_argument("--bootstrap", type=int_in(0, MAX_BOOTSTRAP), default=1000, metavar="N",
                   help=f"bootstrap resamples for the intervals (default 1000; 0: none; at most {MAX_BOOTSTRAP:,})")
    p.add_argument("--seed", type=int_in(0, MAX_SEED), default=0, help="bootstrap seed (default 0)")
    p.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE",
                   help="a sweep that varies more than size and data (task.mix, task.label_noise, ...) holds one "
                   "task per setting: use only the runs with KEY = VALUE, as the output names it (e.g. "
                   "task.mix='docs + stdlib'); repeat for several keys")


def load_settings(args: argparse.Namespace):
    """(setting axes, [(setting or None, points)]): the points of each setting of DIR that ``--setting``
    keeps, or ([], [(None, points)]) for --csv. A setting with too few usable points gets its error
    message in place of its points."""
    from overparam.analysis.scaling.points import drop_highest_losses, load_points, points_from_runs
    from overparam.analysis.scaling.settings import choose, sweep_settings
    from overparam.errors import OverparamError

    if (args.dir is None) == (args.csv is None):
        raise OverparamError("give a sweep DIR or --csv FILE (exactly one)")
    if args.bootstrap < 0:
        raise OverparamError(f"--bootstrap: expected an integer >= 0, got {args.bootstrap}")
    if args.csv is not None:
        if args.setting:
            raise OverparamError("--setting picks runs of a sweep DIR; a --csv file has no settings")
        return [], [(None, load_points(args.csv, drop_highest=args.drop_highest))]
    axes, settings = sweep_settings(args.dir)
    if args.setting:
        settings = choose(axes, settings, args.setting, args.dir)
    if len(settings) == 1:  # one curve: errors are the command's own, as before settings existed
        points = drop_highest_losses(points_from_runs(settings[0].runs, args.dir), args.drop_highest)
        return axes, [(settings[0] if settings[0].fixed else None, points)]
    out = []
    for setting in settings:
        try:
            out.append((setting, drop_highest_losses(points_from_runs(setting.runs, args.dir), args.drop_highest)))
        except OverparamError as exc:
            out.append((setting, str(exc)))
    return axes, out


def load_source(args: argparse.Namespace):
    """(setting or None, points) named by DIR or --csv, validated: one setting's, since ``advise``
    answers for one task; a sweep with several settings and no ``--setting`` is refused."""
    from overparam.analysis.scaling.settings import several_settings_error

    axes, settings = load_settings(args)
    if len(settings) > 1:
        raise several_settings_error(args.dir, axes, [s for s, _ in settings], args.command)
    return settings[0]


def register(sub) -> None:
    p = sub.add_parser("fit", help="fit a scaling law (Chinchilla, Kaplan, BNSL, power) with intervals",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="example: overparam fit --csv points.csv --law chinchilla --json")
    add_source_args(p)
    p.add_argument("--law", choices=LAW_CHOICES, default="auto",
                   help="the law (default auto: the one the points' axes identify)")
    p.add_argument("--x", choices=("params", "tokens", "flops"), default=None,
                   help="the variable of --law power or bnsl (default params)")
    p.add_argument("--breaks", type=int, default=None, help="breaks of --law bnsl (1-3, default 1)")
    p.add_argument("--budget-tol", type=float, default=None, metavar="DECADES",
                   help="--law chinchilla-isoflop: runs within this many decades of compute share a budget "
                   "(default 0.05)")
    p.add_argument("--holdout", type=float, default=0.2, metavar="FRAC",
                   help="backtest: refit without this fraction of the largest sizes, predict them "
                   "(default 0.2)")
    p.add_argument("--no-backtest", action="store_true", help="skip the extrapolation backtest")
    p.add_argument("--min-gain", type=float, default=0.01, metavar="G",
                   help="diminishing returns: the size beyond which doubling it gains < G loss "
                   "(default 0.01)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from overparam.analysis.scaling import fit_scaling_law
    from overparam.cli import print_json
    from overparam.errors import OverparamError

    if not 0 < args.holdout < 1:
        raise OverparamError(f"--holdout: expected a fraction in (0, 1), got {args.holdout}")
    axes, settings = load_settings(args)

    def fit(points) -> dict:
        return fit_scaling_law(points, law=args.law, bootstrap=args.bootstrap, seed=args.seed,
                               backtest=not args.no_backtest, holdout=args.holdout, min_gain=args.min_gain,
                               x=args.x, breaks=args.breaks, budget_tol=args.budget_tol).to_dict()

    if len(settings) == 1:
        setting, points = settings[0]
        doc = fit(points)
        if setting is not None and setting.fixed:  # one setting chosen (--setting) of several: say which
            doc["setting"] = setting.fixed
        if args.json:
            print_json(doc)
        else:
            if setting is not None and setting.fixed:
                print(f"setting {setting.label}")
            print_summary(doc)
        return 0
    doc = per_setting(args, axes, settings, fit)
    if args.json:
        print_json(doc)
    else:
        print_settings(doc)
    return 0


def per_setting(args: argparse.Namespace, axes: list[str], settings, fit) -> dict:
    """The document of a sweep with several settings: one fit per setting, none across them (see
    docs/scaling-laws.md); an error when no setting can be fitted at all."""
    from overparam.errors import OverparamError

    rows = []
    for setting, points in settings:
        head = {"setting": setting.fixed, "label": setting.label, "n_runs": len(setting.runs)}
        if isinstance(points, str):
            rows.append({**head, "skipped": points})
            continue
        try:
            rows.append({**head, **fit(points)})
        except OverparamError as exc:
            rows.append({**head, "n_points": len(points), "skipped": str(exc)})
    fitted = [r for r in rows if "skipped" not in r]
    if not fitted:
        why = "; ".join(f"{r['label']}: {r['skipped']}" for r in rows)
        raise OverparamError(f"{args.dir}: the runs differ in {', '.join(axes)} and no setting can be fitted ({why})")
    return {"split": {"axes": axes, "n_settings": len(rows), "n_fitted": len(fitted),
                      "note": "one law per setting: the settings are different tasks (or train on different data), "
                              "and a law across them would read their differences as an effect of N or D"},
            "n_points": sum(r["n_points"] for r in fitted), "bootstrap": args.bootstrap, "settings": rows}


def print_settings(doc: dict) -> None:
    """One block per setting, each named, and never a pooled fit."""
    split = doc["split"]
    print(f"{split['n_settings']} settings of {', '.join(split['axes'])}: {split['note']}.")
    for row in doc["settings"]:
        print()
        print(f"setting {row['label']} ({row['n_runs']} runs)")
        if "skipped" in row:
            print(f"  not fitted: {row['skipped']}")
        else:
            print_summary(row)


def _g(v) -> str:
    return "-" if v is None else f"{v:.4g}"


def print_summary(doc: dict) -> None:
    """A few human lines: constants with intervals, allocation, backtest, diminishing returns."""
    boot = f", {doc['bootstrap']} bootstrap resamples (95 % intervals)" if doc["bootstrap"] else ""
    law = f"{doc['law']} in {doc['x']}" if doc.get("x") else doc["law"]
    print(f"{law} fit on {doc['n_points']} points{boot}")
    if doc.get("note"):
        print(f"  note: {doc['note']}")
    for name, value in doc["params"].items():
        ci = doc["ci"].get(name)
        print(f"  {name:<9} {_g(value):>10}" + (f"   [{_g(ci[0])}, {_g(ci[1])}]" if ci else ""))
    co = doc.get("compute_optimal")
    if co:
        print(f"compute-optimal at C = {co['flops']:.3g} FLOPs: N = {co['params']:.3g} params, "
              f"D = {co['tokens']:.3g} tokens, {co['tokens_per_param']:.3g} tokens/param")
    bt = doc.get("backtest")
    if bt and "skipped" not in bt:
        print(f"backtest: fit on {bt['x']} < {bt['held_out_from']:.3g} ({bt['n_train']} points), predict the "
              f"{bt['n_test']} larger: mean |error| {100 * bt['mean_abs_rel_error']:.2f} %, "
              f"max {100 * bt['max_abs_rel_error']:.2f} %")
    elif bt:
        print(f"backtest skipped: {bt['skipped']}")
    for warning in doc.get("warnings") or []:
        print(f"warning: {warning}")
    dr = doc.get("diminishing_returns")
    if dr:
        where = f"{dr['x']} = {dr['value']:.3g}" if dr.get("value") else dr.get("note", "")
        print(f"diminishing returns (another doubling gains < {dr['min_gain']:g}, other resource unlimited): "
              f"{where}")
