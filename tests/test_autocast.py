"""``train.autocast``: validated with the spec, run ids unchanged, the same arithmetic in every trainer.

bf16 autocast is honoured on CPU too (torch's CPU autocast), so the loop, the LM trainer and the
fused engines agree with each other under it; the truth here is the sequential run with the same
setting, within what bf16 rounding allows, and the fp32 run, which it must differ from.
"""

from __future__ import annotations

import math

import pytest
import torch

from overparam.data import load_task
from overparam.errors import SpecError
from overparam.spec import Spec, resolve_config
from overparam.train import precision
from overparam.train.fused import train_group
from overparam.train.fused_cnn import train_cnn_group
from overparam.train.fused_gpt import train_gpt_group
from overparam.train.run import train_run

CPU = torch.device("cpu")
MARKOV = {"kind": "markov", "vocab_size": 12, "order": 1, "branching": 3, "train_size": 2000, "test_size": 400}
DIGITS = {"kind": "digits", "train_size": 200, "test_size": 100}


pytestmark = pytest.mark.usefixtures("one_thread")


def test_option_validates_and_leaves_run_ids_alone():
    base = {"task": {"kind": "digits"}, "model": {"family": "mlp", "width": 8}, "train": {"lr": 0.01}}
    lm = {"task": {"kind": "markov", "vocab_size": 8},
          "model": {"family": "gpt", "d_model": 16, "n_head": 2, "context": 16},
          "train": {"optimizer": "adamw", "steps": 10}}
    # ids computed before the key existed: a default never renames a finished run
    assert [r.id for r in Spec(base).runs()] == ["fb8f98fdfb70"]
    assert [r.id for r in Spec(lm).runs()] == ["800a39282d5e"]
    assert Spec({**base, "train": {"lr": 0.01, "autocast": "off"}}).runs()[0].id == "fb8f98fdfb70"
    assert Spec({**base, "train": {"lr": 0.01, "autocast": "bf16"}}).runs()[0].id != "fb8f98fdfb70"
    bad = [({"autocast": "fp16"}, "train.autocast: must be one of off, bf16"),
           ({"autocast": "bf16", "dtype": "float64"}, "train.autocast: bf16 needs float32"),
           ({"autocast": True}, "train.autocast: expected string")]
    for train, message in bad:
        with pytest.raises(SpecError, match=message):
            resolve_config({**base, "train": train})
    with pytest.raises(SpecError, match="closed-form min_norm"):
        resolve_config({"task": {"kind": "teacher"}, "model": {"family": "rff", "width": 8},
                        "train": {"optimizer": "min_norm", "autocast": "bf16"}})
    with pytest.raises(ValueError, match="autocast: expected one of off, bf16"):
        precision.autocast_dtype("fp16")
    assert precision.run_autocast({"autocast": "bf16"}) is torch.bfloat16
    assert precision.run_autocast({"autocast": "bf16"}, override="off") is None


def _final_losses(results):
    assert all(r.status == "done" for r in results), [r.error for r in results]
    return [r.metrics["test_loss"] for r in results]


@pytest.mark.parametrize("family", ["gpt", "mlp", "cnn"])
def test_bf16_on_cpu_fused_matches_sequential_and_differs_from_fp32(family):
    if family == "gpt":
        spec = {"task": MARKOV, "model": {"family": "gpt", "n_layer": 1, "n_head": 2, "context": 8},
                "vary": {"model.d_model": [8, 16], "seed": [0, 1]},
                "train": {"optimizer": "adamw", "lr": 1e-2, "steps": 30, "batch_size": 8}}
        engine = train_gpt_group
    elif family == "mlp":
        spec = {"task": DIGITS, "model": {"family": "mlp", "depth": 2}, "vary": {"model.width": [8, 30, 64]},
                "train": {"optimizer": "adam", "lr": 3e-3, "steps": 30, "batch_size": 32}}
        engine = train_group
    else:
        spec = {"task": {**DIGITS, "train_size": 64}, "model": {"family": "cnn"}, "vary": {"model.width": [1, 2]},
                "train": {"optimizer": "adam", "lr": 3e-3, "steps": 6, "batch_size": 16}}
        engine = train_cnn_group
    losses = {}
    for amp in ("off", "bf16"):
        runs = Spec({**spec, "train": {**spec["train"], "autocast": amp}}).runs()
        task = load_task(runs[0].config["task"])
        losses[amp] = (_final_losses([train_run(r.config, task, CPU) for r in runs]),
                       _final_losses(engine([r.config for r in runs], task, CPU)))
    (fp32_seq, fp32_fused), (bf16_seq, bf16_fused) = losses["off"], losses["bf16"]
    assert all(math.isfinite(v) for v in bf16_seq + bf16_fused)
    assert max(abs(a - b) for a, b in zip(fp32_seq, fp32_fused, strict=True)) < 1e-3  # cnn: grouped convs
    # bf16 keeps 8 mantissa bits: fused and sequential round differently, within a few 1e-3
    assert max(abs(a - b) for a, b in zip(bf16_seq, bf16_fused, strict=True)) < 1e-2
    # and the setting is applied, not ignored: every bf16 run moved off its fp32 twin
    assert min(abs(a - b) for a, b in zip(fp32_seq, bf16_seq, strict=True)) > 1e-7
    assert min(abs(a - b) for a, b in zip(fp32_fused, bf16_fused, strict=True)) > 1e-7
