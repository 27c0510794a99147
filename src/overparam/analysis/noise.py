"""Is a difference between two points of a curve bigger than the noise? One answer, used by every reading.

A difference d = a − b between the test metric of two sizes is weighed against two sources of noise:

- **test set** (an error rate, n_test known): the binomial standard error √(p(1−p)/n_test) at p =
  the two points' average. Both sizes are scored on the same test images, so their errors are
  positively correlated; one point's standard error is the difference's when that correlation is ½,
  a middle ground between independent (√2 × larger) and identical (0) scorings, and what a reader
  checks by hand ("0.015 on 5,000 images is about 2 standard errors").
- **seeds** (both sizes have ≥ 2 replicates): a bootstrap over seeds (Efron & Tibshirani 1993,
  §13). Each of ``BOOTSTRAP`` replicates resamples every size's per-seed values with replacement,
  independently, and takes the page's statistic (mean or median); when the test-set noise applies
  too, each replicate also adds a draw of it (normal, with the binomial standard error above), so
  the two independent sources combine. The generator is seeded: the same runs give the same numbers.

With one seed the test-set standard error alone gives z = d / se, rounded to one decimal (the number
a reading quotes): ``clear`` when |z| > 3, ``weak`` (weak evidence) when |z| > 1, ``within noise``
otherwise. With seeds the same thresholds are read off the replicates themselves, not a normal
approximation, because a test loss near the interpolation threshold is heavy-tailed over seeds (one
seed's min-norm risk can be 100× another's, which inflates a standard deviation but not the odds):
``clear`` when fewer than 0.135 % of replicates have the opposite sign of d (the one-sided tail
beyond 3 standard errors of a normal), ``weak`` when fewer than 15.9 % do (beyond 1), ``within
noise`` otherwise. The 95 % percentile interval is reported beside it. Two seeds give only three
distinct resampled values per size, so from seeds alone they can show no more than weak evidence;
a test-set z above 3 still makes it clear. Two points of one training curve (the epoch-wise reading:
the same runs at two steps) are **paired**: a replicate resamples the runs once and takes both points
from the same resampled runs, so a seed that is high at both steps moves both (``paired=True``).
With neither source (one seed and a loss, or an unknown
test-set size) the noise is ``unknown`` and nothing is classified.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

BOOTSTRAP = 2000  # resamples: the tail fractions below resolve 1/2000 = 0.05 %
LEVEL = 0.95
CLEAR, WEAK = 3.0, 1.0  # thresholds in standard errors (one seed: on z)
CLEAR_TAIL, WEAK_TAIL = 0.00135, 0.1587  # the same thresholds as one-sided normal tails (seeds: on the replicates)
MIN_SEEDS_CLEAR = 3


def binomial_se(p: float, n: int) -> float:
    """√(p(1−p)/n): the standard error of an error rate p measured on n independent examples."""
    return math.sqrt(max(p * (1.0 - p), 0.0) / n)


def evidence(z: float | None) -> str:
    """The class of |z| (one seed, test-set noise)."""
    if z is None:
        return "unknown"
    z = abs(z)
    return "clear" if z > CLEAR else "weak" if z > WEAK else "within noise"


def tail_evidence(opposite: int, n: int) -> str:
    """The class of a difference whose replicates have the opposite sign ``opposite`` times out of ``n``."""
    frac = opposite / n
    return "clear" if frac < CLEAR_TAIL else "weak" if frac < WEAK_TAIL else "within noise"


def _stat(values: np.ndarray, stat: str) -> np.ndarray:
    return np.median(values, axis=-1) if stat == "median" else values.mean(axis=-1)


def bootstrap_replicates(a: list[float], b: list[float], stat: str = "mean", se_extra: float = 0.0,
                         n_boot: int = BOOTSTRAP, seed: int = 0, paired: bool = False) -> np.ndarray:
    """Replicates of stat(a) − stat(b), resampling seeds (plus N(0, se_extra²) test-set noise);
    ``paired``: a[i] and b[i] come from the same run, resampled together."""
    rng = np.random.default_rng(seed)
    va, vb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if paired:
        idx = rng.integers(0, len(va), (n_boot, len(va)))
        diff = _stat(va[idx], stat) - _stat(vb[idx], stat)
    else:
        diff = _stat(va[rng.integers(0, len(va), (n_boot, len(va)))], stat) - \
            _stat(vb[rng.integers(0, len(vb), (n_boot, len(vb)))], stat)
    if se_extra > 0:
        diff = diff + rng.normal(0.0, se_extra, n_boot)
    return diff


def bootstrap_difference(a: list[float], b: list[float], stat: str = "mean", n_boot: int = BOOTSTRAP,
                         seed: int = 0) -> tuple[float, list[float]]:
    """(standard error, [lo, hi] 95 % percentile interval) of stat(a) − stat(b), resampling seeds."""
    diff = bootstrap_replicates(a, b, stat, 0.0, n_boot, seed)
    if np.ptp(diff) == 0:  # every resample agrees: no spread (not the rounding noise of a std of equal numbers)
        return 0.0, [float(diff[0]), float(diff[0])]
    tail = (1.0 - LEVEL) / 2
    lo, hi = np.quantile(diff, [tail, 1.0 - tail])
    return float(diff.std(ddof=1)), [float(lo), float(hi)]


def compare(a: float, b: float, seeds_a: list[float], seeds_b: list[float], stat: str = "mean",
            n_test: int | None = None, rate: bool = False, paired: bool = False) -> dict[str, Any]:
    """The difference a − b and how it stands against the noise (see the module docstring).

    ``a``, ``b``: the curve's values (the page's statistic over seeds); ``seeds_a``/``seeds_b``: the
    per-seed values behind them; ``rate``: the metric is an error rate (binomial noise applies);
    ``paired``: seeds_a[i] and seeds_b[i] are the same run (two steps of one training curve).
    """
    paired = paired and len(seeds_a) == len(seeds_b)
    diff = float(a - b)
    out: dict[str, Any] = {"difference": diff, "noise": "unknown", "evidence": "unknown", "z": None, "se": None,
                           "n_seeds": [len(seeds_a), len(seeds_b)], "n_test": None, "se_test_set": None,
                           "z_test_set": None, "level": None, "interval": None, "n_resamples": None,
                           "resamples_opposite": None, "capped": False, **({"paired": True} if paired else {})}
    se_test = binomial_se((a + b) / 2, int(n_test)) if rate and n_test else None
    if se_test is not None:
        out.update(n_test=int(n_test), se_test_set=se_test, noise="test set")
        if se_test > 0:
            out["z_test_set"] = round(diff / se_test, 1)
    if len(seeds_a) >= 2 and len(seeds_b) >= 2:
        reps = bootstrap_replicates(seeds_a, seeds_b, stat, se_test or 0.0, paired=paired)
        tail = (1.0 - LEVEL) / 2
        lo, hi = np.quantile(reps, [tail, 1.0 - tail])
        opposite = int((reps <= 0).sum() if diff > 0 else (reps >= 0).sum() if diff < 0 else len(reps))
        se = float(reps.std(ddof=1)) if np.ptp(reps) > 0 else 0.0
        out.update(noise="seeds and test set" if se_test is not None else "seeds", se=se, level=LEVEL,
                   interval=[float(lo), float(hi)], n_resamples=len(reps), resamples_opposite=opposite,
                   z=round(diff / se, 1) if se > 0 else None)
        out["evidence"] = tail_evidence(opposite, len(reps))
        if out["evidence"] == "clear" and min(len(seeds_a), len(seeds_b)) < MIN_SEEDS_CLEAR \
                and evidence(out["z_test_set"]) != "clear":
            out["evidence"] = "weak"  # two seeds cannot show more on their own (see the module docstring)
            out["capped"] = True
    elif se_test is not None:
        out.update(se=se_test, z=out["z_test_set"])
        out["evidence"] = evidence(out["z"]) if se_test > 0 else ("clear" if diff != 0 else "within noise")
    return out


def beyond_noise(cmp: dict[str, Any] | None) -> bool:
    """A positive difference that is at least weak evidence."""
    return bool(cmp) and cmp["difference"] > 0 and cmp["evidence"] in ("clear", "weak")
