"""Exact parameter counts and FLOPs conventions; deterministic builds."""

import pytest
import torch

from overparam.models import Shape, family_module
from overparam.models.base import count_trainable
from overparam.options import resolve_section

DIGITS = Shape((64,), 10)


def cfg(family, **kw):
    return resolve_section("model", family_module(family).OPTIONS, {"family": family, **kw})


@pytest.mark.parametrize("family, kw, expected", [
    ("mlp", {"width": 100, "depth": 1}, 64 * 100 + 100 + 100 * 10 + 10),  # 7510
    ("mlp", {"width": 32, "depth": 3}, 64 * 32 + 32 + 2 * (32 * 32 + 32) + 32 * 10 + 10),  # 4522
    ("rff", {"width": 500}, 5000),
    ("rff", {"width": 500, "bias": True}, 5010),
    ("linear", {"width": 20}, 200),
    ("linear", {}, 640),
])
def test_exact_parameter_counts(family, kw, expected):
    module = family_module(family)
    c = cfg(family, **kw)
    assert module.count_params(c, DIGITS) == expected
    assert count_trainable(module.build(c, DIGITS, seed=0)) == expected


def test_reference_numbers():
    assert family_module("mlp").count_params(cfg("mlp", width=100), DIGITS) == 7510
    # 6 FLOPs per weight multiply-add for a dense net (forward 2 + backward 4)
    assert family_module("mlp").flops_per_example(cfg("mlp", width=100), DIGITS) == 6 * (6400 + 1000)
    # fixed random features cost 2 per multiply-add (forward only), the readout 6
    assert family_module("rff").flops_per_example(cfg("rff", width=500), DIGITS) == 2 * 64 * 500 + 6 * 5000


@pytest.mark.parametrize("family", ["mlp", "rff"])
def test_build_is_deterministic_in_seed(family):
    module = family_module(family)
    a = module.build(cfg(family, width=16), DIGITS, seed=3).state_dict()
    b = module.build(cfg(family, width=16), DIGITS, seed=3).state_dict()
    c = module.build(cfg(family, width=16), DIGITS, seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
