"""Compression: pruning, structured shrinking, quantization, distillation, ONNX, the frontier.

Each check compares against an independent truth: exact counts, the masked model for the
rebuilt one, the rounding bound for quantization, a hand computation for the distillation loss,
a closed-form curve for the interpolation, PyTorch for ONNX Runtime, and the sweep's own
checkpoint for the replayed training trajectory. The trained-model checks use a 512-wide digits
MLP (38 k parameters for 1,000 training images): genuinely overparameterized.
"""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch
from readings import nested
from readings_check import style_problems

from overparam.cli import main
from overparam.compress.distill import distillation_loss
from overparam.compress.frontier import dense_equivalent
from overparam.compress.prune import magnitude_masks, prunable, sparsity_of
from overparam.compress.quantize import (
    QuantLinear,
    dequantize,
    pack_int4,
    parse_scheme,
    quantize_tensor,
    unpack_int4,
)
from overparam.compress.structured import mask_units, shrink, unit_groups
from overparam.models import Shape, family_module

HAVE_ORT = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
needs_ort = pytest.mark.skipif(not HAVE_ORT, reason="onnx/onnxruntime not installed (extra [onnx])")

MLP_SHAPE = Shape((64,), 10)
GPT_CFG = {"family": "gpt", "n_layer": 2, "d_model": 32, "n_head": 4, "context": 16, "tied": True}
GPT_SHAPE = Shape((), 50, vocab_size=50)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _mlp(width=24, depth=2, seed=0):
    cfg = {"family": "mlp", "width": width, "depth": depth}
    return family_module("mlp").build(cfg, MLP_SHAPE, seed).eval()


def _gpt(seed=0):
    model = family_module("gpt").build(GPT_CFG, GPT_SHAPE, seed).eval()
    with torch.no_grad():  # GPT-2 init zeroes biases; random ones make the equalities below non-trivial
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.05)
    return model


# -- pruning -----------------------------------------------------------------------------------

@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.9, 0.999])
def test_magnitude_pruning_removes_exactly_the_asked_fraction(sparsity):
    model = _mlp()
    with torch.no_grad():
        model.hidden[0].weight[:5] = 0.25  # ties must not change the count
    masks = magnitude_masks(model, sparsity)
    n = sum(w.numel() for w in prunable(model).values())
    removed = sum(int((~m).sum()) for m in masks.values())
    assert removed == round(sparsity * n)
    kept = torch.cat([w.detach().abs().flatten()[m.flatten()] for w, m in zip(prunable(model).values(),
                                                                              masks.values(), strict=True)])
    cut = torch.cat([w.detach().abs().flatten()[~m.flatten()] for w, m in zip(prunable(model).values(),
                                                                              masks.values(), strict=True)])
    if len(kept) and len(cut):
        assert cut.max() <= kept.min()  # global: no removed weight is larger than a kept one


def test_iterative_masks_are_nested_and_exact():
    model = _mlp()
    first = magnitude_masks(model, 0.5)
    with torch.no_grad():  # retraining changes magnitudes; removed weights must stay removed
        for w in prunable(model).values():
            w.mul_(torch.rand_like(w) * 2)
    second = magnitude_masks(model, 0.8, keep=first)
    assert sparsity_of(second) == pytest.approx(0.8, abs=1e-3)
    for name in first:
        assert not (second[name] & ~first[name]).any()


# -- structured pruning ------------------------------------------------------------------------

def _random_keep(model, family, fraction, seed=0):
    gen = torch.Generator().manual_seed(seed)
    keep = {}
    for g in unit_groups(model, family):
        n = max(1, round((1 - fraction) * g.n_units))
        keep[g.name] = torch.sort(torch.randperm(g.n_units, generator=gen)[:n]).values
    return keep


def test_structured_mlp_rebuilt_model_equals_masked_model():
    model = _mlp(width=24, depth=2)
    keep = _random_keep(model, "mlp", 0.6)
    small, masked = shrink(model, "mlp", keep), mask_units(model, "mlp", keep)
    x = torch.randn(33, 64)
    assert torch.allclose(small(x), masked(x), atol=1e-6)
    assert [layer.out_features for layer in small.hidden] == [10, 10]
    assert sum(p.numel() for p in small.parameters()) == 64 * 10 + 10 + 10 * 10 + 10 + 10 * 10 + 10


def test_structured_gpt_heads_and_neurons_rebuilt_equals_masked():
    model = _gpt()
    keep = _random_keep(model, "gpt", 0.5, seed=1)
    small, masked = shrink(model, "gpt", keep), mask_units(model, "gpt", keep)
    x = torch.randint(0, 50, (3, 16))
    assert torch.allclose(small(x), masked(x), atol=1e-5)
    assert small.blocks[0].attn.n_head == 2 and small.blocks[0].mlp.fc.out_features == 64
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())


# -- quantization -------------------------------------------------------------------------------

@pytest.mark.parametrize("bits,group", [(8, None), (8, 16), (4, None), (4, 16), (4, 7)])
def test_quantize_dequantize_error_is_within_half_a_step(bits, group):
    w = torch.randn(13, 40) * torch.logspace(-2, 1, 13)[:, None]  # rows of very different scale
    w[3] = 0.0  # an all-zero row is exact
    q, scale = quantize_tensor(w, bits, group)
    qmax = 2 ** (bits - 1) - 1
    assert q.dtype == torch.int8 and int(q.abs().max()) <= qmax
    g = group or 40
    assert scale.shape == (13, math.ceil(40 / g))
    step = scale.repeat_interleave(g, dim=1)[:, :40]
    err = (w - dequantize(q, scale, group)).abs()
    assert (err <= step / 2 * (1 + 1e-6)).all()
    assert torch.equal(dequantize(q, scale, group)[3], torch.zeros(40))
    # the scale is the block's max magnitude over q_max: per channel, error ≤ max|row| / (2·q_max)
    if group is None:
        assert (err.max(dim=1).values <= w.abs().max(dim=1).values / (2 * qmax) * (1 + 1e-6)).all()


def test_int4_packing_round_trips_and_quantlinear_uses_the_dequantized_weight():
    q = torch.randint(-7, 8, (5, 9), dtype=torch.int8)
    packed = pack_int4(q)
    assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(45 / 2)
    assert torch.equal(unpack_int4(packed, (5, 9)), q)
    layer = torch.nn.Linear(9, 5)
    ql = QuantLinear(layer, 4, None)
    x = torch.randn(4, 9)
    q4, s4 = quantize_tensor(layer.weight, 4)
    assert torch.allclose(ql(x), torch.nn.functional.linear(x, dequantize(q4, s4), layer.bias), atol=1e-6)


def test_scheme_names():
    assert parse_scheme("int4-g32").group_size == 32 and parse_scheme("int8").group_size is None
    assert parse_scheme("bf16").kind == "cast" and parse_scheme("ort-int8").kind == "dynamic-ort"
    for bad in ("int3", "int8-g0", "fp8", ""):
        with pytest.raises(ValueError):
            parse_scheme(bad)


# -- distillation ------------------------------------------------------------------------------

def test_distillation_loss_matches_a_hand_computation():
    zs = [[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]]
    zt = [[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]]
    y = [0, 2]
    T, alpha = 2.0, 0.7

    def softmax(z):
        e = [math.exp(v) for v in z]
        return [v / sum(e) for v in e]

    kl = ce = 0.0
    for s, t, label in zip(zs, zt, y, strict=True):
        ps, pt = softmax([v / T for v in s]), softmax([v / T for v in t])
        kl += sum(b * math.log(b / a) for a, b in zip(ps, pt, strict=True))
        ce += -math.log(softmax(s)[label])
    want = alpha * T * T * kl / 2 + (1 - alpha) * ce / 2
    got = distillation_loss(torch.tensor(zs), torch.tensor(zt), torch.tensor(y), T, alpha)
    assert float(got) == pytest.approx(want, rel=1e-6)


# -- dense-equivalent size ---------------------------------------------------------------------

def _curve(params, errors):
    return [{"params": p, "size": {"width": p / 10}, "test_error": v} for p, v in zip(params, errors, strict=True)]


# A double-descent curve below a parent of 10,000 parameters with test error 0.20: a dip at 300.
CURVE = _curve([100, 300, 1000, 3000], [0.50, 0.25, 0.40, 0.30])
PARENT = {"params": 10_000, "size": {"width": 1000.0}, "test_error": 0.20}


def test_dense_equivalent_of_a_model_as_good_as_its_parent_is_the_parent():
    for value, better in ((0.20, False), (0.20 + 1e-9, False), (0.19, True), (0.0, True)):
        eq = dense_equivalent(CURVE, value, PARENT)
        assert (eq["status"], eq["params"], eq["better"]) == ("parent", 10_000, better), value
        assert eq["size"] == {"width": 1000.0}
    # the parent's own measured value (0.20) decides, not the seed mean the curve holds at its size (0.22)
    eq = dense_equivalent(CURVE + _curve([10_000], [0.22]), 0.21, PARENT)
    assert eq["status"] == "matched" and eq["between"] == [3000, 10_000]
    assert eq["params"] == pytest.approx(3000 * (10_000 / 3000) ** 0.9)  # (0.30 - 0.21) / (0.30 - 0.20)


@pytest.mark.parametrize("value, lo, hi, t", [
    (0.25, 3000, 10_000, 0.5),    # 3000 (0.30) is the first size down at least as bad: (0.30-0.25)/(0.30-0.20)
    (0.30, 3000, 10_000, 0.0),    # exactly the error of 3000: that size
    (0.35, 1000, 3000, 0.5),      # 3000 (0.30) is better; 1000 (0.40) the first as bad: (0.40-0.35)/(0.40-0.30)
    (0.45, 100, 300, 0.2),        # past the dip at 300 (0.25): (0.50-0.45)/(0.50-0.25)
])
def test_dense_equivalent_walks_down_from_the_parent_and_interpolates_in_log_size(value, lo, hi, t):
    eq = dense_equivalent(CURVE, value, PARENT)
    want = math.exp(math.log(lo) + t * (math.log(hi) - math.log(lo)))  # hand computation
    assert eq["status"] == "matched" and eq["between"] == [lo, hi] and not eq["better"]
    assert eq["params"] == pytest.approx(want, rel=1e-12)
    assert eq["size"]["width"] == pytest.approx(want / 10, rel=1e-12)


def test_dense_equivalent_below_the_sweep_and_without_a_curve():
    eq = dense_equivalent(CURVE, 0.6, PARENT)
    assert eq == {"params": None, "size": None, "status": "below_sweep", "better": False, "bound": 100}
    assert dense_equivalent([], 0.3, PARENT)["status"] == "below_sweep"  # nothing smaller than the parent
    assert dense_equivalent(CURVE, None, PARENT)["status"] == "no_curve"
    curve = [{"params": p, "size": {"width": p / 10}, "test_loss": v} for p, v in ((10, 1.0), (100, 0.5))]
    eq = dense_equivalent(curve, 0.75, {"params": 1000, "size": {}, "test_loss": 0.4}, key="test_loss")
    assert eq["params"] == pytest.approx(10 ** 1.5)  # (1.0-0.75)/(1.0-0.5) of the way from 10 to 100


# -- every comparison a compression sentence states holds for the numbers it cites -----------------

NUM = r"([0-9][0-9,]*\.?[0-9]*)"


def _pct(text: str) -> float:
    return float(text.replace(",", "")) / 100


def check_sentence(entry: dict, dense: dict, curve: list[dict], n_test: int | None = None) -> list[str]:
    """Parse a compression sentence back and check each claim against the entry and the curve;
    return the kinds of claims checked (so a test can require that each kind was seen)."""
    import re

    text, seen = entry["sentence"], []
    assert not nested(text), text
    metric = entry["dense_equivalent_metric"]
    unit = " %" if metric == "test_error" else ""
    value = (lambda s: _pct(s)) if metric == "test_error" else (lambda s: float(s))
    tol = 5e-4 + 1e-12  # half the last printed digit: at least 1 decimal of a percent, 3 of a loss
    me, parent = entry[metric], dense[metric]
    if (m := re.search(r"is as good as the .*? it came from \(" + NUM + unit + " against " + NUM + unit, text)):
        a, b = value(m[1]), value(m[2])
        assert me <= parent and a <= b and abs(a - me) <= tol and abs(b - parent) <= tol
        seen.append("as good")
    if (m := re.search(r"does better than .*? it came from, " + NUM + unit + " against " + NUM + unit, text)):
        a, b = value(m[1]), value(m[2])
        assert me < parent and a < b and abs(a - me) <= tol and abs(b - parent) <= tol, text
        seen.append("better")
        if (n := re.search(r"standard errors of " + NUM + r" % on " + NUM + " examples: within the noise", text)):
            se, count = _pct(n[1]), int(n[2].replace(",", ""))
            assert count == n_test and se == pytest.approx(math.sqrt(parent * (1 - parent) / count), abs=6e-4)
            assert parent - me < 2 * math.sqrt(parent * (1 - parent) / count)
            seen.append("noise")
    if (m := re.search(r"first reaches " + NUM + unit + r" or worse between (its own size|\w+ " + NUM + r") \("
                       + NUM + unit + r"\) and \w+ " + NUM + r" \(" + NUM + unit, text)):
        at, above, below = value(m[1]), value(m[4]), value(m[6])
        assert above < at <= below and abs(at - me) <= tol, text  # the bracket straddles the model
        lo, hi = entry["dense_equivalent_between"]
        points = {p["params"]: p for p in curve}
        assert points[lo][metric] >= me > (parent if hi == dense["params"] else points[hi][metric])
        assert lo <= entry["dense_equivalent_params"] <= hi
        # every size walked past on the way down is better than the compressed model
        assert all(p[metric] < me for p in curve if lo < p["params"] < dense["params"])
        seen.append("between")
    if (m := re.search(r"is worse than every smaller dense model of the sweep \(" + NUM + unit
                       + " against at most " + NUM + unit, text)):
        assert value(m[1]) > value(m[2])
        assert all(p[metric] < me for p in curve if p["params"] < dense["params"])
        seen.append("below")
    b1, b64 = entry["speedup_b1"], entry["speedup_b64"]
    if "at the dense model's speed" in text:
        assert 0.9 <= b1 <= 1.1 and 0.9 <= b64 <= 1.1
        seen.append("same speed")
    for m in re.finditer(NUM + r"× (faster|slower) at batch (1|64)\b", text):
        s, (p10, p90) = (b1, entry["speedup_b1_p10_p90"]) if m[3] == "1" else \
            (b64, entry["speedup_b64_p10_p90"])
        assert (s > 1.1 and p10 > 1) if m[2] == "faster" else (s < 0.9 and p90 < 1), text
        seen.append(m[2])
    m = re.search(r"takes " + NUM + r" KiB on disk \(" + NUM + " % of the dense bytes", text)
    assert m and float(m[1]) == pytest.approx(entry["bytes"] / 1024, abs=0.05)
    assert int(m[2]) == round(100 * entry["bytes"] / dense["bytes"])
    return seen


def _constructed(value, speed=(1.0, 1.0), nbytes=1000):
    from overparam.compress.reading import sentence

    eq = dense_equivalent(CURVE, value, PARENT)
    e = {"method": "prune", "label": "pruned to 10 % of its weights", "test_error": value, "test_loss": 1.0,
         "bytes": nbytes, "bytes_ratio": nbytes / 4000, "dense_equivalent_metric": "test_error",
         "dense_equivalent_params": eq["params"], "dense_equivalent_size": eq["size"],
         "dense_equivalent_status": eq["status"], "dense_equivalent_better": eq["better"],
         "dense_equivalent_bound": eq.get("bound"), "dense_equivalent_between": eq.get("between"),
         "speedup_b1": speed[0], "speedup_b64": speed[1], "speedup_b1_p10_p90": [speed[0] * 0.95, speed[0] * 1.05],
         "speedup_b64_p10_p90": [speed[1] * 0.95, speed[1] * 1.05]}
    dense = {**PARENT, "test_loss": 0.9, "dense_equivalent_size": PARENT["size"], "bytes": 4000}
    config = {"model": {"family": "mlp", "width": 1000, "depth": 1}}
    e["sentence"] = sentence(e, config, dense, 5000, CURVE)
    return e, dense


def test_constructed_sentences_state_only_true_comparisons():
    cases = {0.2: {"as good"}, 0.1: {"better"}, 0.199: {"better", "noise"}, 0.25: {"between"},
             0.35: {"between"}, 0.45: {"between"}, 0.6: {"below"}}
    for value, kinds in cases.items():
        e, dense = _constructed(value, speed=(2.0, 0.5))
        seen = set(check_sentence(e, dense, CURVE, 5000))
        assert style_problems(e["sentence"]) == [], e["sentence"]  # "a 1,000-wide MLP", never "1000-wide"
        assert kinds <= seen and {"faster", "slower"} <= seen, (e["sentence"], seen)
    # values a sentence compares print with the decimals that tell them apart: never "16.2 % against 16.2 %"
    from overparam.compress.reading import formatter

    fmt = formatter("test_error", [0.1624, 0.1619])
    assert (fmt(0.1624), fmt(0.1619)) == ("16.24 %", "16.19 %")
    assert formatter("test_error", [0.164, 0.1619])(0.164) == "16.4 %"


# -- ONNX --------------------------------------------------------------------------------------

@needs_ort
def test_onnx_runtime_output_equals_pytorch(tmp_path):
    from overparam.compress.latency import OnnxModel, export_onnx

    for model, x in ((_mlp(), torch.randn(64, 64)), (_gpt(), torch.randint(0, 50, (4, 16)))):
        path = export_onnx(model, x[:1], tmp_path / "m.onnx")
        ort = OnnxModel(path)
        with torch.no_grad():
            assert (ort(x) - model(x)).abs().max() <= 1e-5  # the dynamic batch axis works too


# -- on a trained sweep ------------------------------------------------------------------------

SPEC = {"name": "digits", "task": {"kind": "digits", "train_size": 1000},
        "model": {"family": "mlp", "depth": 1},
        "train": {"optimizer": "adam", "lr": 2e-3, "steps": 600, "batch_size": 128},
        "vary": {"model.width": [8, 32, 512]}}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    from overparam.store import load_runs
    from overparam.sweep.runner import run_sweep

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("compress") / "digits"
    run_sweep(SPEC, out, progress=False)
    runs = load_runs(out)
    return out, {int(w): i for w, i in zip(runs["model.width"], runs["id"], strict=True)}


@pytest.fixture(scope="module")
def frontier(sweep):
    from overparam.compress import compress_run

    torch.set_num_threads(1)
    out, ids = sweep
    schemes = ["int8", "int4-g32", "fp16", "dynamic-int8"] + (["ort-int8"] if HAVE_ORT else [])
    return compress_run(out, ids[512], prune=[0.9], finetune_steps=300, prune_structured=[0.75],
                        quantize=schemes, distill_widths=[32], repeats=3, warmup=1)


def _entry(doc, method, setting=None, variant=None):
    for e in doc["models"]:
        if e["method"] == method and (setting is None or e["setting"] == setting) and \
                (variant is None or e.get("variant") == variant):
            return e
    raise AssertionError(f"no {method} {setting} {variant} entry")


def test_frontier_document_has_the_contract_fields(frontier, sweep):
    doc = frontier
    assert doc["models"][0]["method"] == "dense"
    required = ("method", "setting", "test_error", "test_loss", "nonzero_params", "bytes", "latency_ms_b1",
                "latency_ms_b64", "dense_equivalent_params")
    for e in doc["models"]:
        assert all(k in e for k in required), e["method"]
        assert e["latency_b1"]["p10"] <= e["latency_ms_b1"] <= e["latency_b1"]["p90"]
        assert e["sentence"].endswith(".")
    methods = {e["method"] for e in doc["models"]}
    assert methods == {"dense", "prune", "prune-structured", "quantize", "distill"}
    dense = doc["models"][0]
    assert dense["test_loss"] == pytest.approx(doc["run"]["metrics"]["test_loss"], rel=1e-5)  # same weights
    assert dense["nonzero_params"] == 64 * 512 + 512 + 512 * 10 + 10
    assert len(doc["dense_curve"]) == 3
    stored = json.loads((sweep[0] / "analyses" / "compress.json").read_text())
    assert stored["models"][0]["test_loss"] == dense["test_loss"]
    if HAVE_ORT:
        assert dense["onnxruntime"]["max_abs_diff"] <= 1e-5


def test_the_dense_model_maps_to_itself_and_every_sentence_holds(frontier):
    dense, curve = frontier["models"][0], frontier["dense_curve"]
    assert frontier["metric"] == "test_error" and frontier["n_test"] > 0
    assert dense["dense_equivalent_status"] == "parent" and dense["dense_equivalent_params"] == dense["params"]
    assert not dense["dense_equivalent_better"]
    kinds = set()
    for e in frontier["models"][1:]:
        kinds.update(check_sentence(e, dense, curve, frontier["n_test"]))
        # the rule, restated: at least as good as the parent -> the parent's size; worse -> smaller
        if e["test_error"] <= dense["test_error"]:
            assert e["dense_equivalent_params"] == dense["params"]
        elif e["dense_equivalent_status"] == "matched":
            assert e["dense_equivalent_params"] < dense["params"]
        assert "dense_equivalent_params_by_loss" in e
    assert kinds & {"as good", "better"} and kinds & {"between", "below"}, kinds


def test_pruning_to_ten_percent_with_fine_tuning_keeps_test_error(frontier):
    dense = frontier["models"][0]
    tuned = _entry(frontier, "prune", 0.9, "ft")
    weights = 64 * 512 + 512 * 10
    assert tuned["nonzero_params"] <= round(0.1 * weights) + 512 + 10  # biases stay dense
    assert tuned["test_error"] <= dense["test_error"] + 0.01
    assert _entry(frontier, "prune", 0.9, "one-shot")["test_error"] > tuned["test_error"]


def test_int8_weight_only_keeps_accuracy_at_under_thirty_percent_of_the_bytes(frontier):
    dense = frontier["models"][0]
    int8 = _entry(frontier, "quantize", "int8")
    assert abs(int8["test_error"] - dense["test_error"]) <= 0.005
    assert int8["bytes"] <= 0.30 * dense["bytes"]
    assert _entry(frontier, "quantize", "fp16")["bytes"] <= 0.51 * dense["bytes"]


def test_structured_pruning_shrinks_the_trained_model(frontier, sweep):
    from overparam.compress.base import load_subject
    from overparam.compress.structured import choose_units

    tuned = _entry(frontier, "prune-structured", 0.75, "ft")
    assert tuned["widths"] == {"hidden.0": 128}
    assert tuned["nonzero_params"] <= 64 * 128 + 128 + 128 * 10 + 10
    subject = load_subject(sweep[0], sweep[1][512])
    keep = choose_units(subject.model, subject, 0.75, "norm")
    x = subject.tensors["x_test"]
    with torch.no_grad():
        small, masked = shrink(subject.model, "mlp", keep), mask_units(subject.model, "mlp", keep)
        assert torch.allclose(small(x), masked(x), atol=1e-5)


def test_distillation_control_is_the_sweeps_own_run_of_that_width(frontier):
    """The from-scratch student has the run's seed, recipe and batches at width 32: it *is* the
    sweep's 32-wide run, retrained, so its test loss must be that run's stored one."""
    kd, scratch = _entry(frontier, "distill", 32, "distilled"), _entry(frontier, "distill", 32, "scratch")
    assert kd["nonzero_params"] == scratch["nonzero_params"] == 64 * 32 + 32 + 32 * 10 + 10
    stored = next(p for p in frontier["dense_curve"] if p["size"]["width"] == 32)
    assert scratch["test_loss"] == pytest.approx(stored["test_loss"], rel=1e-5)
    assert scratch["test_error"] == pytest.approx(stored["test_error"], abs=1e-9)
    parent = frontier["models"][0]
    if scratch["test_error"] > parent["test_error"]:  # worse than the parent: it lands on its own size
        assert scratch["dense_equivalent_params"] == pytest.approx(stored["params"], rel=1e-9)
    else:
        assert scratch["dense_equivalent_params"] == parent["params"]
    assert kd["test_error"] < 0.1


def test_compression_section_draws_the_frontier(frontier, sweep):
    from overparam.report.compression_section import compression_section
    from overparam.report.sections import SweepContext

    section = compression_section(SweepContext(sweep[0]))
    assert section is not None and section.figures[0][1][:4] == b"\x89PNG"
    assert any("counts as" in s for s in section.sentences)


def test_replayed_training_reproduces_the_stored_checkpoint(sweep):
    """The rewind point of a lottery ticket lies on the run's own trajectory: replaying all T steps
    with compress's loop gives the sweep's checkpoint."""
    from overparam.compress.base import load_subject
    from overparam.compress.lottery import find_tickets, rewind_weights

    subject = load_subject(sweep[0], sweep[1][8])
    replay = rewind_weights(subject, subject.train["steps"])
    for k, v in subject.model.state_dict().items():
        assert torch.allclose(replay[k], v, atol=1e-5), k
    found = find_tickets(subject, [0.6], rate=0.6, rewind_step=10)
    ticket, masks = found["tickets"][0.6]
    assert sparsity_of(masks) == pytest.approx(0.6, abs=1e-3)
    for name, w in prunable(ticket).items():
        assert not w[~masks[name]].any()
    assert found["levels"][0]["sparsity"] == pytest.approx(0.6, abs=1e-3)


def test_lottery_levels_remove_a_fixed_share_of_survivors_and_stop_at_each_target():
    from overparam.compress.lottery import level_sparsities

    levels = level_sparsities([0.5, 0.9], rate=0.3)
    assert levels[:2] == pytest.approx([0.3, 0.5]) and levels[2] == pytest.approx(1 - 0.5 * 0.7)
    assert levels[-1] == 0.9 and 0.9 in levels and levels == sorted(levels)


def test_compress_runs_exactly_the_methods_asked_for_on_one_thread(sweep, capsys):
    from overparam.compress.frontier import DEFAULT_METHODS, compress_run

    out, ids = sweep
    torch.set_num_threads(2)
    doc = compress_run(out, ids[32], finetune_steps=5, onnx=False, repeats=1, warmup=0)
    assert torch.get_num_threads() == 2 and doc["machine"]["torch_threads"] == 1  # restored afterwards
    assert doc["methods"] == {k: list(v) for k, v in DEFAULT_METHODS.items()}
    got = {(e["method"], e["setting"]) for e in doc["models"][1:]}
    want = {("prune", s) for s in DEFAULT_METHODS["prune"]} | \
        {("prune-structured", f) for f in DEFAULT_METHODS["prune_structured"]} | \
        {("quantize", q) for q in DEFAULT_METHODS["quantize"]}
    assert got == want
    base = ["compress", str(out), "--run", ids[32], "--no-onnx", "--repeats", "1", "--warmup", "0", "--json"]
    for flags, methods in ((["--quantize", "int8"], ["dense", "quantize"]),
                           (["--structured", "0.5", "--finetune-steps", "0"], ["dense", "prune-structured"])):
        assert main(base + flags) == 0
        assert [e["method"] for e in json.loads(capsys.readouterr().out)["models"]] == methods


def test_cli_json_and_bad_input(sweep, capsys):
    out, ids = sweep
    args = ["compress", str(out), "--run", ids[32][:6], "--prune", "0.5", "--prune-structured", "none",
            "--quantize", "int8", "--no-onnx", "--repeats", "2", "--warmup", "0", "--finetune-steps", "0"]
    assert main(args + ["--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [e["method"] for e in doc["models"]] == ["dense", "prune", "quantize"]
    run = ["--run", ids[32]]
    for extra, needle in ((["--run", "nope"], "no run"), (run + ["--prune", "1.5"], "between 0 and 1"),
                          (run + ["--prune", "abc"], "fractions"), (run + ["--quantize", "int3"], "int3"),
                          (run + ["--distill-width", "x"], "integers")):
        assert main(["compress", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("overparam: error:") and needle in err and err.count("\n") == 1


def test_cli_refuses_runs_it_cannot_compress(tmp_path, capsys):
    from overparam.sweep.runner import run_sweep

    no_ckpt = dict(SPEC, vary={}, model={"family": "mlp", "width": 4},
                   train={"steps": 5, "checkpoint": False})
    run_sweep(no_ckpt, tmp_path / "a", progress=False)
    rff = {"name": "rff", "task": {"kind": "digits", "train_size": 200},
           "model": {"family": "rff", "width": 8},
           "train": {"optimizer": "min_norm"}}
    run_sweep(rff, tmp_path / "b", progress=False)
    from overparam.store import load_runs

    for d, needle in (("a", "no checkpoint"), ("b", "'rff'")):
        run_id = load_runs(tmp_path / d)["id"][0]
        assert main(["compress", str(tmp_path / d), "--run", run_id]) == 2
        assert needle in capsys.readouterr().err
