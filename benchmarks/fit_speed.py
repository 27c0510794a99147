"""Scaling-law fits, timed: Approach 3 on the Chinchilla points, and every law at 10^3 to 10^5 points.

    python benchmarks/fit_speed.py [--csv ../shared/data/chinchilla_epoch_svg.csv] [--bootstrap 1000]
                                   [--baseline 100]
    python benchmarks/fit_speed.py --scale [--laws chinchilla kaplan ...] [--points 1000 10000 100000]
                                   [--bootstrap 1000] [--timeout 120] [--save after.json]
                                   [--src OTHER/src] [--before before.json]

Replication (the default): the full 4,500-start grid + 1,000 bootstrap resamples on the Chinchilla
points. Target: <= 30 s on 2 CPU cores. Prints wall and CPU time, the fitted constants with 95 %
percentile intervals next to Besiroglu et al. 2024's, and the search statistics.

Scale (``--scale``): ``fit_scaling_law`` (what ``overparam fit`` runs: the fit, its bootstrap and the
backtest) per law on synthetic points (log-uniform N in [1e7, 1e10] and D in [1e9, 1e12], 1 %
log-normal noise around a known law), without resamples and with ``--bootstrap``. Each case runs in a
child process killed after ``--timeout`` s (printed "> T"), so that the code of another checkout can be
timed the same way (``--src /work/main/src --save before.json`` for the numbers before a change);
``--before`` prints such a file beside the new times. Target: 10^5 points + 1,000 resamples <= 60 s.

How the time is kept down (details in ``overparam/analysis/scaling/chinchilla.py``):
1. every grid start runs L-BFGS, but all 4,500 advance together through one batched numpy L-BFGS
   (``lbfgs.py``), in float32 arithmetic (numpy's exp/log are SIMD there, ~4x cheaper than float64
   on AVX2 machines); the 8 best distinct end points are then refined in float64;
2. a start that has stalled at more than 1.5x the best objective is stopped (the plateaus where a
   term vanished); the best start is never stopped;
3. each bootstrap resample is a weight vector, so all resamples run as one batch, started from the
   full-data optimum and from the grid point that is best for that resample (all resamples x all
   4,500 grid points scored at once as one matrix product), not from the whole grid.
``--baseline K`` also times scipy's L-BFGS-B (analytic gradient, same objective, 300 iterations at
most) from K grid starts, one call each, and extrapolates to the full grid: the per-start approach
this replaces.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from overparam.analysis.scaling import ChinchillaFitter, load_epoch_chinchilla
from overparam.analysis.scaling.chinchilla import DELTA, _batched_objective, _logs, besiroglu_grid

DEFAULT_CSV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chinchilla_epoch_svg.csv"
PUBLISHED = {  # Besiroglu et al. 2024, Table 1: estimate and 95 % interval
    "E": (1.817, 1.769, 1.871), "A": (482.0, None, None), "B": (2085.0, None, None),
    "alpha": (0.348, 0.317, 0.373), "beta": (0.366, 0.331, 0.415),
}


def scipy_baseline(points, k: int) -> float:
    """Seconds for scipy L-BFGS-B from ``k`` evenly spaced grid starts, extrapolated to the full grid.

    Same objective (float64) and the same iteration cap as the batched search phase (300).
    """
    from scipy.optimize import minimize

    ln, ld, ll = _logs(points)
    fun = _batched_objective(ln, ld, ll, np.ones((1, len(ll))), np.zeros(1, int), DELTA)
    grid = besiroglu_grid()
    starts = grid[np.linspace(0, len(grid) - 1, k).astype(int)]
    from threadpoolctl import threadpool_limits  # installed with scikit-learn

    # one BLAS thread: with more, OpenBLAS's thread handoff on these tiny vectors dominates (measured 20x)
    with threadpool_limits(1):
        t = time.perf_counter()
        for x0 in starts:
            minimize(lambda x: fun(x[None], np.zeros(1, int))[0][0], x0, method="L-BFGS-B",
                     jac=lambda x: fun(x[None], np.zeros(1, int))[1][0], options={"maxiter": 300})
        return (time.perf_counter() - t) / k * len(grid)


SCALE_LAWS = ("chinchilla", "kaplan", "power", "bnsl", "chinchilla-envelope", "chinchilla-isoflop")

# The child: synthetic points of a known law, fitted once; prints {"wall": s, "cpu": s, "params": {...}}.
CHILD = """
import json, sys, time
import numpy as np, pandas as pd
from overparam.analysis.scaling import fit_scaling_law
law, n, boot = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
N = np.exp(rng.uniform(np.log(1e7), np.log(1e10), n))
D = np.exp(rng.uniform(np.log(1e9), np.log(1e12), n))
if law in ("power", "bnsl"):  # a one-variable law in N (bnsl: bending down by 0.3 past N = 1e8.5)
    loss = 1.8 + 480 * N ** -0.34 * (1 + N / 10 ** 8.5) ** (-0.3 if law == "bnsl" else 0.0)
else:
    loss = 1.8 + 480 * N ** -0.34 + 2000 * D ** -0.37
loss = loss * np.exp(0.01 * rng.standard_normal(n))
points = pd.DataFrame({"params": N, "tokens": D, "loss": loss})
wall, cpu = time.perf_counter(), time.process_time()
fit = fit_scaling_law(points, law=law, bootstrap=boot, seed=0)
print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
                  "params": fit.params}))
"""


def time_case(law: str, n: int, bootstrap: int, timeout: float, src: Path) -> dict:
    """Seconds (wall, CPU) of one fit in a child process; {"timeout": T} when it ran past ``timeout``."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(src)}
    try:
        out = subprocess.run([sys.executable, "-c", CHILD, law, str(n), str(bootstrap)], env=env,
                             capture_output=True, text=True, timeout=timeout, check=True)
    except subprocess.TimeoutExpired:
        return {"timeout": timeout}
    except subprocess.CalledProcessError as exc:
        return {"error": (exc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def show(case: dict | None) -> str:
    if not case:
        return ""
    if "timeout" in case:
        return f"> {case['timeout']:.0f}"
    if "error" in case:
        return "error"
    return f"{case['wall']:.1f}"


def scale(args: argparse.Namespace) -> None:
    """Time every (law, points, bootstrap) case; print a table (with the --before file's beside it)."""
    import json

    before = json.loads(args.before.read_text()) if args.before else {}
    results: dict[str, dict] = {}
    boots = (0, args.bootstrap)
    head = "".join(f"{f'{b} res. before':>18}{'after':>8}" if before else f"{f'{b} resamples':>16}"
                   for b in boots)
    print(f"wall seconds of fit_scaling_law on {args.src}, timeout {args.timeout:.0f} s")
    print(f"{'law':22}{'points':>9}{head}")
    for law in args.laws:
        timed_out: set[int] = set()
        for n in args.points:
            cells = []
            for b in boots:
                key = f"{law}/{n}/{b}"
                # a larger case of one that already ran past the timeout would too: not run
                case = {"timeout": args.timeout} if b in timed_out else time_case(law, n, b, args.timeout, args.src)
                if "timeout" in case:
                    timed_out.add(b)
                results[key] = case
                width = 8 if before else 16
                cells.append((f"{show(before.get(key)):>18}" if before else "") + f"{show(case):>{width}}")
            print(f"{law:22}{n:>9,}{''.join(cells)}", flush=True)
    if args.save:
        args.save.write_text(json.dumps(results, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--baseline", type=int, default=0, metavar="K", help="also time scipy from K starts")
    ap.add_argument("--scale", action="store_true", help="time every law at --points sizes instead")
    ap.add_argument("--laws", nargs="+", default=list(SCALE_LAWS), choices=SCALE_LAWS)
    ap.add_argument("--points", nargs="+", type=int, default=[1000, 10000, 100000])
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per case (--scale)")
    ap.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1] / "src",
                    help="the overparam source tree to time (--scale; default this checkout's)")
    ap.add_argument("--save", type=Path, help="write the --scale times to this JSON file")
    ap.add_argument("--before", type=Path, help="a --save file to print beside the new times")
    args = ap.parse_args()
    if args.scale:
        scale(args)
        return
    points = load_epoch_chinchilla(args.csv)
    wall, cpu = time.perf_counter(), time.process_time()
    fitter = ChinchillaFitter(bootstrap=args.bootstrap, seed=args.seed).fit(points)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"Approach 3 on {len(points)} points: {fitter.search_['starts']} L-BFGS starts, "
          f"{args.bootstrap} bootstrap resamples")
    print(f"time: {wall:.2f} s wall, {cpu:.2f} s CPU (target <= 30 s on 2 cores)")
    print(f"{'':6} {'fitted':>10} {'95 % interval':>22}   {'published':>10} {'interval':>16}")
    for name, (pub, lo, hi) in PUBLISHED.items():
        ci = fitter.ci_.get(name, [np.nan, np.nan])
        pub_ci = f"{lo:.3f}-{hi:.3f}" if lo is not None else ""
        fitted = f"{fitter.params_[name]:10.4g} [{ci[0]:9.4g}, {ci[1]:9.4g}]"
        print(f"{name:6} {fitted}   {pub:10.4g} {pub_ci:>16}")
    s = fitter.search_
    print(f"search: objective {s['objective']:.10g}, {s['starts_reaching_best']} of {s['starts']} starts "
          "reached it (within 1e-5 relative, float32 phase)")
    if args.baseline:
        est = scipy_baseline(points, args.baseline)
        print(f"baseline: scipy L-BFGS-B one start at a time: ~{est:.1f} s for the grid alone "
              f"(extrapolated from {args.baseline} starts)")


if __name__ == "__main__":
    main()
