"""The epoch-wise reading weighs its bump against the noise as the model-wise reading does (issue 16).

Synthetic test curves over training with a known verdict: a clear bump over seeds, a one-seed bump within
the binomial noise of a 36-example test set (the own-task-wine case), a one-seed bump that is clear on a
large test set, and a loss bump that only a paired resampling of the seeds can see. The numbers are
checked against hand computations, and every sentence of the reading against the JSON it quotes.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from readings_check import check_claims

from overparam.analysis.epochwise import epochwise_peaks
from overparam.analysis.noise import compare
from overparam.report.epochwise_section import _claims

STEPS = [1, 2, 4, 8, 16, 32]


def sweep(curves_by_run: dict[tuple[int, int], list[float]], n_test: int | None, metric: str = "test_error"):
    """(runs, curves) of a width sweep: ``curves_by_run[(width, seed)]`` is the run's curve over STEPS."""
    runs, rows = [], []
    for (width, seed), values in curves_by_run.items():
        rid = f"w{width}s{seed}"
        runs.append({"id": rid, "status": "done", "model.width": width, "seed": seed, "params": 10 * width,
                     "n_test": n_test})
        rows += [(rid, step, metric, v) for step, v in zip(STEPS, values, strict=True)]
    return pd.DataFrame(runs), pd.DataFrame(rows, columns=["run_id", "step", "name", "value"])


def read(runs, curves) -> tuple[dict, list[dict]]:
    doc = epochwise_peaks((runs, curves))
    claims = _claims(doc, doc["axis"])
    assert check_claims(claims, doc) == []
    return doc, claims


BUMP = [0.40, 0.20, 0.10, 0.30, 0.12, 0.10]  # falls to 0.10, rises to 0.30, falls back to 0.10
FLAT = [0.40, 0.30, 0.20, 0.15, 0.12, 0.10]


def test_a_clear_epoch_wise_bump_over_seeds():
    offsets = [-0.01, 0.0, 0.005, 0.01]  # small seed-to-seed spread around a large bump
    runs, curves = sweep({**{(8, s): [v + o for v in BUMP] for s, o in enumerate(offsets)},
                          **{(64, s): [v + o for v in FLAT] for s, o in enumerate(offsets)}}, n_test=2000)
    doc, claims = read(runs, curves)
    by = {r["size"]: r for r in doc["sizes"]}
    row = by[8]
    assert row["peak_found"] and row["peak_step"] == 8 and row["min_before_step"] == 4 and row["min_after_step"] == 32
    assert row["bump"]["difference"] == pytest.approx(0.20) and row["descent"]["difference"] == pytest.approx(0.20)
    assert row["bump"]["noise"] == "seeds and test set" and row["bump"]["paired"]
    # the test-set part alone: √(p(1−p)/n) at p = (0.30 + 0.10)/2 (+ the mean offset), 2,000 examples
    p = (0.30 + 0.10) / 2 + np.mean(offsets)
    assert row["bump"]["se_test_set"] == pytest.approx(math.sqrt(p * (1 - p) / 2000))
    assert row["bump"]["resamples_opposite"] == 0 and row["bump"]["evidence"] == "clear"
    assert row["shape"] == "epoch-wise double descent" and row["evidence"] == "clear" and row["second_descent"]
    assert not by[64]["peak_found"] and by[64]["shape"] == "no peak" and by[64]["bump"] is None
    assert doc["n_with_peak"] == doc["n_with_second_descent"] == 1
    text = " ".join(c["text"] for c in claims)
    assert "1 of 2 sizes show an epoch-wise bump" in text and "in 1 of them both the rise and the fall exceed" in text
    assert "a clear rise" in text and "a clear second descent" in text


def test_a_one_seed_bump_within_the_noise_of_a_small_test_set():
    curve = [0.40, 0.30, 0.20, 0.23, 0.21, 0.19]  # rises 0.03 over 36 examples: about one example
    runs, curves = sweep({(8, 0): curve, (64, 0): FLAT}, n_test=36)
    doc, claims = read(runs, curves)
    row = next(r for r in doc["sizes"] if r["size"] == 8)
    assert row["peak_found"] and row["peak_value"] == pytest.approx(0.23)
    se = math.sqrt(0.215 * (1 - 0.215) / 36)  # p = (0.23 + 0.20)/2
    assert row["bump"]["se"] == pytest.approx(se) and row["bump"]["z"] == round(0.03 / se, 1) == 0.4
    assert row["bump"]["evidence"] == "within noise" and row["shape"] == "within noise"
    assert not row["second_descent"] and doc["n_with_second_descent"] == 0
    text = " ".join(c["text"] for c in claims)
    assert "in none of them do both the rise and the fall exceed the noise" in text
    assert "about 0.4 standard errors of the 36-example test set: within noise, so no rise beyond the noise" in text


def test_the_same_one_seed_bump_is_clear_on_a_large_test_set():
    runs, curves = sweep({(8, 0): BUMP, (64, 0): FLAT}, n_test=10_000)
    doc, _ = read(runs, curves)
    row = next(r for r in doc["sizes"] if r["size"] == 8)
    se = math.sqrt(0.2 * 0.8 / 10_000)  # 0.004: the bump of 0.2 is 50 standard errors
    assert row["bump"]["z"] == pytest.approx(round(0.2 / se, 1))
    assert row["shape"] == "epoch-wise double descent" and row["evidence"] == "clear"


def test_a_loss_curve_with_one_seed_has_unknown_noise():
    runs, curves = sweep({(8, 0): BUMP, (64, 0): FLAT}, n_test=None, metric="test_loss")
    doc, claims = read(runs, curves)
    row = next(r for r in doc["sizes"] if r["size"] == 8)
    assert row["peak_found"] and row["shape"] == "noise unknown" and not row["second_descent"]
    assert "to tell a rise from noise" in " ".join(c["text"] for c in claims)


def test_two_steps_of_the_same_runs_are_resampled_together():
    """Seeds far apart (offsets 0 to 0.6) with the same bump of 0.05: paired, every resample shows it;
    resampled independently, as two sizes would be, it drowns in the seed spread."""
    offsets = [0.0, 0.2, 0.4, 0.6]
    peak = [0.35 + o for o in offsets]
    low = [0.30 + o for o in offsets]
    paired = compare(np.mean(peak), np.mean(low), peak, low, paired=True)
    apart = compare(np.mean(peak), np.mean(low), peak, low)
    assert paired["difference"] == apart["difference"] == pytest.approx(0.05)
    assert paired["resamples_opposite"] == 0 and paired["evidence"] == "clear" and paired["se"] < 1e-12
    assert apart["evidence"] == "within noise" and apart["resamples_opposite"] > 0.1587 * apart["n_resamples"]
    curve = {(8, s): [v + o for v in [0.9, 0.6, 0.30, 0.35, 0.31, 0.29]] for s, o in enumerate(offsets)}
    runs, curves = sweep({**curve, **{(64, s): [v + o for v in FLAT] for s, o in enumerate(offsets)}},
                         n_test=None, metric="test_loss")
    doc, _ = read(runs, curves)
    row = next(r for r in doc["sizes"] if r["size"] == 8)
    assert row["bump"]["noise"] == "seeds" and row["bump"]["evidence"] == "clear"
    assert row["descent"]["difference"] == pytest.approx(0.06) and row["shape"] == "epoch-wise double descent"


OVERFIT = [0.40, 0.20, 0.10, 0.15, 0.18, 0.25]  # best 0.10 at step 4, then climbs to 0.25 by the end


def test_early_stopping_is_said_only_where_the_late_rise_exceeds_the_noise():
    # four seeds on 2,000 examples: a 0.15 climb is far beyond the noise
    offsets = [-0.01, 0.0, 0.005, 0.01]
    runs, curves = sweep({**{(1024, s): [v + o for v in OVERFIT] for s, o in enumerate(offsets)},
                          **{(64, s): [v + o for v in FLAT] for s, o in enumerate(offsets)}}, n_test=2000)
    doc, claims = read(runs, curves)
    row = next(r for r in doc["sizes"] if r["size"] == 1024)
    late = row["late"]
    assert late["final_step"] == 32 and late["paired"] and late["difference"] == pytest.approx(0.15)
    assert late["evidence"] == "clear" and late["resamples_opposite"] == 0
    assert doc["n_end_above_best"] == 1 and doc["n_end_above_best_within_noise"] == 0
    text = next(c["text"] for c in claims if "early stopping" in c["text"])
    assert text.startswith("1 of 2 sizes end training above their best test error by more than 5 % and by more "
                           "than the noise; most at model.width = 1,024, best 0.101 at step 4 and final 0.251, "
                           "0.15 higher, resampling 4 seeds and the 2,000-example test set")
    assert "cross zero, a clear rise: early stopping would help there" in text and "the most it could gain" in text

    # one seed on 36 examples: final 0.1389 against best 0.1111 (one example) is within the binomial noise
    one = [0.40, 0.30, 4 / 36, 4 / 36, 4 / 36, 5 / 36]
    runs, curves = sweep({(1024, 0): one, (64, 0): FLAT}, n_test=36)
    doc, claims = read(runs, curves)
    row = next(r for r in doc["sizes"] if r["size"] == 1024)
    se = math.sqrt((4.5 / 36) * (1 - 4.5 / 36) / 36)
    assert row["late"]["se"] == pytest.approx(se) and row["late"]["evidence"] == "within noise"
    assert doc["n_end_above_best"] == 0 and doc["n_end_above_best_within_noise"] == 1
    texts = [c["text"] for c in claims]
    assert not any("early stopping would help" in t for t in texts)
    assert "1 size ends above its best test error by more than 5 %, but within the noise." in texts
