"""Double descent read from shapes, not sentences: run tables with a known verdict, in load_runs' shape.

Each table is what ``load_runs`` returns for a sweep (one row per run); the verdict, threshold and
peak are known by construction, and the noise each comparison stands against is computed here by
hand (√(p(1−p)/n_test), or the plug-in standard error a bootstrap of means converges to). The two
CIFAR-10 tables are the runs of issue 16: the H200 run (11 widths) and the CPU rerun (widths 1–8).
"""

import math

import numpy as np
import pandas as pd
import pytest
from readings_check import check_claims

from overparam.analysis.answer import compressed_answer, dense_answer
from overparam.analysis.double_descent import analyze_double_descent
from overparam.analysis.noise import binomial_se, bootstrap_difference, compare
from overparam.report.reading import answer_claim, read_curve, read_curve_claims

CIFAR_K = [1, 2, 4, 6, 8, 10, 12, 16, 24, 32, 64]
CIFAR_PARAMS = [540, 1826, 6666, 14530, 25418, 39330, 56266, 99210, 221386, 391946, 1558026]
CIFAR_TEST = [0.652, 0.583, 0.596, 0.598, 0.566, 0.526, 0.517, 0.454, 0.400, 0.384, 0.323]  # H200, 150 epochs
CIFAR_TRAIN = [0.667, 0.537, 0.346, 0.078, 0.0001] + [0.0] * 6  # k < 8 from the CPU rerun (docs/images.md)
CPU_TEST = [0.648, 0.585, 0.596, 0.606, 0.564]  # the CPU rerun, widths 1..8 (docs/images.md)
CPU_TRAIN = [0.667, 0.537, 0.346, 0.078, 0.0004]


def table(widths, train, test, *, n_test=None, family="mlp", params=None, loss=False, optimizer="adam",
          unstable=None) -> pd.DataFrame:
    """A runs table: ``train``/``test`` hold one value per width, or one list per width (one value per seed)."""
    rows = []
    for i, w in enumerate(widths):
        tests = test[i] if isinstance(test[i], (list, tuple)) else [test[i]]
        trains = train[i] if isinstance(train[i], (list, tuple)) else [train[i]] * len(tests)
        for seed, (tr, te) in enumerate(zip(trains, tests)):
            row = {"id": f"w{w}s{seed}", "status": "done", "params": params[i] if params else 10 * w,
                   "model.width": w, "model.family": family, "train.optimizer": optimizer, "seed": seed,
                   "task.kind": "teacher" if loss else "digits", "unstable": False}
            if loss:
                row.update(train_loss=tr, test_loss=te, train_error=None, test_error=None)
            else:
                row.update(train_error=tr, test_error=te, train_loss=1.0, test_loss=1.0)
            if n_test:
                row["n_test"] = n_test
            rows.append(row)
    frame = pd.DataFrame(rows)
    for run_id, test_value in (unstable or {}).items():
        w, seed = run_id
        extra = frame[(frame["model.width"] == w) & (frame["seed"] == 0)].iloc[0].to_dict()
        extra.update(id=f"w{w}s{seed}", seed=seed, unstable=True,
                     **({"test_loss": test_value} if loss else {"test_error": test_value}))
        frame = pd.concat([frame, pd.DataFrame([extra])], ignore_index=True)
    return frame


def curve_of(frame, **kw):
    return analyze_double_descent(frame, **kw)["curves"][0]


def assert_readings_hold(curve, family="mlp"):
    claims = read_curve_claims(curve, family)
    assert check_claims(claims, curve) == []
    return " ".join(c["text"] for c in claims)


# --- the CIFAR-10 runs of issue 16 -------------------------------------------------------------------------

def test_cifar_h200_run_threshold_peak_and_verdict():
    curve = curve_of(table(CIFAR_K, CIFAR_TRAIN, CIFAR_TEST, n_test=5000, family="cnn", params=CIFAR_PARAMS))
    assert curve["eps"] == 0.01 and curve["threshold_size"] == 8  # 4 of 10,000 labels unfitted count as fitted
    assert curve["peak_size"] == 6 and curve["peak_test_error"] == 0.598
    assert curve["peak_position"] == "before threshold"
    assert curve["best_under_size"] == 2 and curve["best_over_size"] == 64
    bump = curve["bump"]
    se = math.sqrt(0.5905 * 0.4095 / 5000)  # p = (0.598 + 0.583) / 2, 5,000 test images
    assert bump["difference"] == pytest.approx(0.015) and bump["se"] == pytest.approx(se)
    assert bump["z"] == round(0.015 / se, 1) == 2.2 and bump["evidence"] == "weak"
    assert curve["descent_to_size"] == 64 and curve["descent"]["evidence"] == "clear"
    assert curve["shape"] == "double descent" and curve["evidence"] == "weak" and curve["second_descent"]
    text = assert_readings_hold(curve, "cnn")
    assert "k = 8" in text and "at most 0.01" in text
    assert "0.598 at k = 6" in text and "about 2.2 standard errors of the 5,000-example test set" in text
    assert "weak evidence of a peak" in text and "a clear second descent" in text
    assert "does not fall below" not in text and "beats the best under-parameterized one" in text


def test_cifar_cpu_rerun_of_widths_1_to_8():
    frame = table(CIFAR_K[:5], CPU_TRAIN, CPU_TEST, n_test=5000, family="cnn", params=CIFAR_PARAMS[:5])
    curve = curve_of(frame)
    assert curve["threshold_size"] == 8 and curve["peak_size"] == 6 and curve["peak_test_error"] == 0.606
    z = round(0.021 / math.sqrt(0.5955 * 0.4045 / 5000), 1)
    assert curve["bump"]["z"] == pytest.approx(z) == 3.0 and curve["bump"]["evidence"] == "weak"  # 3.0 is not > 3
    assert curve["descent_to_size"] == 8 and curve["descent"]["evidence"] == "clear"
    assert "about 3.0 standard errors of the 5,000-example test set: weak evidence of a peak" in \
        assert_readings_hold(curve, "cnn")
    strict = curve_of(frame, eps=0.0)  # every label fitted: k = 8 left 4 of 10,000
    assert strict["threshold_size"] is None and strict["shape"] == "no threshold"
    assert strict["closest_size"] == 8 and strict["closest_train"] == 0.0004
    text = assert_readings_hold(strict, "cnn")
    assert "left 0.04 % of its training labels unfitted" in text and "--eps 0.0004 would count it" in text


# --- synthetic shapes ---------------------------------------------------------------------------------------

WIDTHS = list(range(1, 11))
TRAIN = [0.6, 0.45, 0.3, 0.15, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
OFFSETS = (-0.004, 0.0, 0.004)  # three seeds around each mean


def seeds(values, offsets=OFFSETS):
    return [[v + o for o in offsets] for v in values]


def test_classic_double_descent_with_seeds():
    test = [0.40, 0.30, 0.35, 0.45, 0.50, 0.35, 0.28, 0.24, 0.215, 0.21]
    curve = curve_of(table(WIDTHS, TRAIN, seeds(test), n_test=2000))
    assert curve["threshold_size"] == 5 and curve["peak_size"] == 5 and curve["peak_position"] == "at threshold"
    assert curve["best_under_size"] == 2 and curve["descent_to_size"] == 10
    bump = curve["bump"]
    assert bump["noise"] == "seeds and test set" and bump["interval"][0] < 0.2 < bump["interval"][1]
    assert curve["shape"] == "double descent" and curve["evidence"] == "clear" and curve["second_descent"]
    text = assert_readings_hold(curve)
    assert "resampling 3 seeds and the 2,000-example test set, its 95 % interval is" in text
    assert "0 of 2,000 resamples cross zero" in text and "a clear peak" in text


def test_monotone_decrease_has_no_peak():
    test = [0.5, 0.4, 0.33, 0.28, 0.25, 0.22, 0.2, 0.19, 0.185, 0.18]
    curve = curve_of(table(WIDTHS, TRAIN, test, n_test=2000))
    assert curve["threshold_size"] == 5 and curve["peak_size"] is None and curve["bump"] is None
    assert curve["shape"] == "no peak" and not curve["second_descent"]
    assert curve["over_vs_under"]["evidence"] == "clear"
    text = assert_readings_hold(curve)
    assert text.count("No peak") == 1 and "beats the best under-parameterized one" in text


def test_plateau_then_descent_is_no_peak():
    test = [0.300, 0.301, 0.300, 0.301, 0.300, 0.26, 0.22, 0.2, 0.19, 0.19]
    curve = curve_of(table(WIDTHS, TRAIN, test, n_test=1000))
    assert curve["threshold_size"] == 5 and curve["peak_size"] == 2  # 0.001 over the plateau's first point
    assert curve["bump"]["evidence"] == "within noise" and curve["shape"] == "no peak"
    assert not curve["second_descent"]
    text = assert_readings_hold(curve)
    assert "within noise, so no peak beyond the noise" in text


def test_one_seed_bump_within_noise():
    test = [0.5, 0.38, 0.39, 0.385, 0.37, 0.30, 0.28, 0.27, 0.26, 0.25]
    curve = curve_of(table(WIDTHS, TRAIN, test, n_test=500))
    se = math.sqrt(0.385 * 0.615 / 500)
    assert curve["peak_size"] == 3 and curve["bump"]["z"] == round(0.01 / se, 1) == 0.5
    assert curve["shape"] == "no peak" and not curve["second_descent"]
    assert_readings_hold(curve)


def test_peak_before_the_threshold():
    train = [0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.0, 0.0]
    test = [0.5, 0.3, 0.4, 0.45, 0.42, 0.38, 0.30, 0.25]
    curve = curve_of(table(WIDTHS[:8], train, test, n_test=10000))
    assert curve["threshold_size"] == 7 and curve["peak_size"] == 4 and curve["peak_position"] == "before threshold"
    assert curve["bump"]["evidence"] == "clear" and curve["descent_to_size"] == 8
    assert curve["shape"] == "double descent"
    assert "before the threshold" in assert_readings_hold(curve)


def test_threshold_never_reached():
    train = [0.6, 0.5, 0.4, 0.3, 0.2]
    curve = curve_of(table(WIDTHS[:5], train, [0.5, 0.4, 0.45, 0.35, 0.3], n_test=2000))
    assert curve["threshold_size"] is None and curve["peak_size"] is None and curve["shape"] == "no threshold"
    assert curve["closest_size"] == 5 and curve["closest_train"] == 0.2 and not curve["second_descent"]
    text = assert_readings_hold(curve)
    assert "No size reached train error ≤ 0.01" in text and "--eps" in text and "would count it" not in text


def test_threshold_at_the_smallest_size():
    curve = curve_of(table(WIDTHS[:4], [0.0] * 4, [0.3, 0.2, 0.25, 0.2], n_test=2000))
    assert curve["threshold_size"] == 1 and curve["shape"] == "no under-parameterized side"
    assert "no under-parameterized side" in assert_readings_hold(curve)


def test_a_late_unstable_member_is_left_out():
    test = [0.40, 0.30, 0.35, 0.45, 0.50, 0.35, 0.28, 0.24, 0.215, 0.21]
    clean = table(WIDTHS, TRAIN, seeds(test), n_test=2000)
    broken = table(WIDTHS, TRAIN, seeds(test), n_test=2000, unstable={(8, 3): 0.9})  # a 4th seed at width 8 blew up
    a, b = curve_of(clean), curve_of(broken)
    assert b["unstable_runs"] == ["w8s3"]
    for key in ("threshold_size", "peak_size", "best_over_size", "shape", "bump", "descent", "answer"):
        assert a[key] == b[key], key
    kept = curve_of(broken, include_unstable=True)
    assert kept["points"][7]["test_error"] > a["points"][7]["test_error"]
    assert "went unstable late in training" in assert_readings_hold(b)


def test_loss_curve_with_one_seed_has_unknown_noise():
    test = [1.0, 0.8, 1.5, 3.0, 1.2, 0.9, 0.7]
    curve = curve_of(table(WIDTHS[:7], [0.5, 0.3, 0.1, 0.0, 0.0, 0.0, 0.0], test, loss=True, optimizer="min_norm",
                           family="linear"))
    assert curve["threshold_on"] == "train_loss" and curve["threshold_size"] == 4 and curve["peak_size"] == 4
    assert curve["bump"]["evidence"] == "unknown" and curve["shape"] == "noise unknown"
    assert not curve["second_descent"]
    text = assert_readings_hold(curve, "linear")
    assert "the noise is unknown" in text and "rerun with more seeds" in text


def test_loss_curve_with_seeds_uses_their_spread():
    test = [1.0, 0.8, 1.5, 3.0, 1.2, 0.9, 0.7]
    frame = table(WIDTHS[:7], [0.5, 0.3, 0.1, 0.0, 0.0, 0.0, 0.0], seeds(test, (-0.05, 0.0, 0.05)), loss=True,
                  optimizer="min_norm", family="linear")
    curve = curve_of(frame)
    assert curve["bump"]["noise"] == "seeds" and curve["bump"]["evidence"] == "clear"
    assert curve["shape"] == "double descent"
    assert_readings_hold(curve, "linear")


# --- the noise and the answer, against hand computations ----------------------------------------------------

def test_binomial_standard_error_by_hand():
    assert binomial_se(0.5, 100) == pytest.approx(0.05)
    cmp = compare(0.598, 0.583, [0.598], [0.583], n_test=5000, rate=True)
    assert cmp["noise"] == "test set" and cmp["interval"] is None
    assert compare(0.6, 0.5, [0.6], [0.5], n_test=None, rate=True)["evidence"] == "unknown"


def test_bootstrap_is_deterministic_and_converges_to_the_plug_in_standard_error():
    rng = np.random.default_rng(3)
    a, b = rng.normal(1.0, 0.2, 6).tolist(), rng.normal(0.8, 0.1, 6).tolist()
    first, again = bootstrap_difference(a, b), bootstrap_difference(a, b)
    assert first == again
    plug_in = math.sqrt(np.var(a) / 6 + np.var(b) / 6)  # the bootstrap SE of a difference of means
    assert first[0] == pytest.approx(plug_in, rel=0.06)
    assert first[1][0] < np.mean(a) - np.mean(b) < first[1][1]
    same = compare(0.3, 0.2, [0.3] * 3, [0.2] * 3)
    assert same["se"] == 0 and same["resamples_opposite"] == 0 and same["evidence"] == "clear"
    two = compare(0.3, 0.2, [0.3] * 2, [0.2] * 2)
    assert two["evidence"] == "weak" and two["capped"]  # two seeds alone cannot show more


def test_a_heavy_tailed_peak_over_seeds_is_read_off_the_resamples():
    """Min-norm test loss at p = n over 3 data draws: 68, 500, 1,043 against ~1.3. The standard deviation is
    huge (z ≈ 1.4), but no resample of the seeds comes near zero: a clear peak, not weak evidence."""
    cmp = compare(537.0, 1.26, [68.0, 500.0, 1043.0], [1.2, 1.3, 1.28])
    assert cmp["z"] < 3 and cmp["resamples_opposite"] == 0 and cmp["evidence"] == "clear"
    assert cmp["interval"][0] > 60


def test_answer_is_the_smallest_size_within_the_tolerance():
    test = [[0.40, 0.41, 0.39], [0.195, 0.30, 0.31], [0.19, 0.20, 0.225], [0.205, 0.205, 0.205], [0.20, 0.20, 0.20]]
    curve = curve_of(table(WIDTHS[:5], [0.0] * 5, test, n_test=2000))
    means = [float(np.mean(v)) for v in test]
    target = min(means) + 0.01
    want = next(w for w, m in zip(WIDTHS, means) if m <= target)
    answer = curve["answer"]
    assert answer["size"] == want == 3 and answer["target"] == pytest.approx(target) and not answer["beyond_largest"]
    per_seed = [next(w for w, row in zip(WIDTHS, test) if row[s] <= min(r[s] for r in test) + 0.01) for s in range(3)]
    assert (answer["seeds"]["size_min"], answer["seeds"]["size_max"]) == (min(per_seed), max(per_seed)) == (2, 4)
    text = answer_claim(answer, "mlp")["text"]
    assert text.startswith("This task needs about 3 hidden units (30 parameters; 2 to 4 hidden units over 3 seeds) "
                           "to come within 0.01 of the best test error")
    assert check_claims([answer_claim(answer, "mlp")], answer) == []
    looser = curve_of(table(WIDTHS[:5], [0.0] * 5, test, n_test=2000), tolerance=0.1)["answer"]
    assert looser["size"] == 2


def test_answer_beyond_the_largest_size_and_relative_for_losses():
    falling = curve_of(table(WIDTHS[:4], [0.0] * 4, [1.0, 0.5, 0.3, 0.2], loss=True))["answer"]
    assert falling["tolerance_kind"] == "relative" and falling["target"] == pytest.approx(0.2 * 1.01)
    assert falling["beyond_largest"] and falling["size"] == 4
    assert "lies beyond the largest size tried" in answer_claim(falling, "mlp")["text"]
    flat = curve_of(table(WIDTHS[:4], [0.0] * 4, [1.0, 0.301, 0.3, 0.299], loss=True))["answer"]
    assert flat["size"] == 2 and "within 1 % of the best test loss" in answer_claim(flat, "mlp")["text"]


def test_smallest_compressed_model_within_the_tolerance():
    curve = curve_of(table(WIDTHS[:3], [0.0] * 3, [0.3, 0.12, 0.10], n_test=2000))
    answer = dense_answer(curve, 0.01)
    models = [{"method": "dense", "bytes": 1000, "test_error": 0.10, "nonzero_params": 30},
              {"method": "prune", "setting": 0.5, "bytes": 1000, "test_error": 0.101, "nonzero_params": 15},
              {"method": "quantize", "setting": "int8", "bytes": 300, "test_error": 0.109, "nonzero_params": 30,
               "latency_ms_b1": 0.02, "label": "quantized to int8"},
              {"method": "quantize", "setting": "int4", "bytes": 160, "test_error": 0.2, "nonzero_params": 30},
              {"method": "distill", "setting": 1, "bytes": 250, "test_error": 0.112, "nonzero_params": 10}]
    doc = {"run": {"id": "w3s0", "params": 30, "config": {"model": {"width": 3}}}, "models": models}
    got = compressed_answer(answer, doc)
    assert got["model"]["setting"] == "int8" and got["model"]["bytes"] == 300 and got["n_tried"] == 4
    answer["compressed"] = got
    claim = answer_claim(answer, "mlp")
    assert "compressed, the model quantized to int8 stays within it" in claim["text"] and "300 bytes" in claim["text"]
    assert check_claims([claim], answer) == []
    none = compressed_answer(answer, {**doc, "models": models[:1] + models[3:4]})
    assert none["model"] is None
    other = {**doc, "run": {**doc["run"], "config": {"task": {"label_noise": 0.3}}}}
    assert compressed_answer({**answer, "fixed": {"task.label_noise": 0.1}}, other) is None  # another curve's run


def test_sample_wise_sweep_has_no_parameter_answer():
    frame = table(WIDTHS[:3], [0.0] * 3, [0.3, 0.2, 0.1], n_test=2000).rename(columns={"model.width":
                                                                                       "task.train_size"})
    curve = curve_of(frame)
    assert curve["axis"] == "task.train_size" and curve["answer"]["size"] is None
    assert "training set size" in answer_claim(curve["answer"])["text"]


def test_read_curve_returns_the_claims_texts():
    curve = curve_of(table(CIFAR_K, CIFAR_TRAIN, CIFAR_TEST, n_test=5000, family="cnn", params=CIFAR_PARAMS))
    assert read_curve(curve, "cnn") == [c["text"] for c in read_curve_claims(curve, "cnn")]


# --- a feature model whose threshold lies past N = n: the stored rank says why ------------------------------

RF_WIDTHS = [100, 200, 400, 582, 846]
RF_TEST = [[0.20, 0.22], [0.35, 0.33], [0.80, 0.82], [0.45, 0.47], [0.35, 0.36]]


def rf_table(train_loss: list[float], ranks: list[list[int]] | None) -> pd.DataFrame:
    """Random features, min-norm least squares, n = 400 training samples, two seeds (the arrays-digits shape)."""
    frame = table(RF_WIDTHS, [[v, v] for v in train_loss], RF_TEST, n_test=359, family="rff", optimizer="min_norm")
    frame["train_loss"] = [v for v in train_loss for _ in range(2)]
    frame["n_train"] = 400
    if ranks is not None:
        frame["rank"] = [r for pair in ranks for r in pair]
    return frame


def test_rank_below_n_explains_a_threshold_past_n():
    """At N = 400 = n two seeds have rank 395 and 397: the fit leaves train MSE 0.004 and interpolates from 582."""
    frame = rf_table([0.3, 0.1, 0.004, 1e-28, 1e-28], [[100, 100], [200, 199], [395, 397], [400, 400], [400, 400]])
    curve = curve_of(frame)
    assert curve["threshold_size"] == 582 and curve["peak_size"] == 400 and curve["peak_position"] == "before threshold"
    assert curve["rank_below_n"] == {"n_train": 400, "threshold_size": 582, "rank_max": 397,
                                     "sizes": [{"size": 400, "params": 4000, "rank_min": 395, "rank_max": 397}]}
    text = assert_readings_hold(curve, family="rff")
    assert ("At 400 features the training feature matrix has rank 395 to 397 over seeds, below n = 400" in text
            and "the models interpolate only from 582 features" in text)


def test_no_rank_sentence_when_the_rank_reaches_n_or_is_not_stored():
    full = [[100, 100], [200, 200], [400, 400], [400, 400], [400, 400]]
    at_n = curve_of(rf_table([0.3, 0.1, 1e-28, 1e-28, 1e-28], full))  # interpolates at N = n: nothing to explain
    assert at_n["threshold_size"] == 400 and at_n["rank_below_n"] is None
    past = curve_of(rf_table([0.3, 0.1, 0.004, 1e-28, 1e-28], full))  # past n, but full rank: the rank is not why
    assert past["threshold_size"] == 582 and past["rank_below_n"] is None
    unknown = curve_of(rf_table([0.3, 0.1, 0.004, 1e-28, 1e-28], None))  # no rank stored (not a closed-form run)
    assert unknown["rank_below_n"] is None
    small = curve_of(rf_table([0.3, 0.1, 0.004, 1e-28, 1e-28], [[100, 100], [190, 190], [400, 400], [400, 400],
                                                                 [400, 400]]))  # rank < N, but only where N < n
    assert small["rank_below_n"] is None
    for curve in (at_n, past, unknown, small):
        assert "feature matrix" not in assert_readings_hold(curve, family="rff")
