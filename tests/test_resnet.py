"""The ``resnet18k`` family: exact counts and FLOPs, training in the loop, fused == sequential.

Everything runs on tiny generated data (8×8 images) or the bundled digits; nothing reads
``../shared/data``.
"""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from exactness import assert_same_run
from torch import nn

from overparam.cli import main
from overparam.data.base import TaskData
from overparam.data.images import augmenter
from overparam.errors import SpecError
from overparam.models import Shape, family_module
from overparam.models.base import count_trainable
from overparam.spec import resolve_config
from overparam.train.fused_cnn import train_cnn_group
from overparam.train.run import train_run

resnet = family_module("resnet18k")
CIFAR, MNIST, DIGITS = Shape((3, 32, 32), 10), Shape((1, 28, 28), 10), Shape((64,), 10)
DOCS = Path(__file__).resolve().parents[1] / "docs" / "images.md"


pytestmark = pytest.mark.usefixtures("one_thread")


# --- counts and FLOPs ---------------------------------------------------------------------------

@pytest.mark.parametrize("preact", [False, True])
@pytest.mark.parametrize("shape", [CIFAR, MNIST, DIGITS], ids=["cifar", "mnist", "digits"])
@pytest.mark.parametrize("k", [1, 2, 3, 8])
def test_exact_parameter_counts(shape, k, preact):
    c = 3 if shape is CIFAR else 1
    expected = 2724 * k * k + (9 * c + (122 if preact else 150) + 8 * 10) * k + 10  # models/resnet.py docstring
    cfg = {"width": k, "preact": preact}
    assert resnet.count_params(cfg, shape) == expected
    assert count_trainable(resnet.build(cfg, shape, seed=0)) == expected


def test_k64_is_the_standard_cifar_resnet18():
    assert resnet.count_params({"width": 64, "preact": False}, CIFAR) == 11_173_962
    # pre-activation: the 11,171,146 of the common CIFAR PreActResNet18, plus the final BN over 512 channels
    assert resnet.count_params({"width": 64, "preact": True}, CIFAR) == 11_171_146 + 2 * 512
    # forward multiply-adds on a 32×32 image (the familiar 0.56 G): stem; stage 1's four 64→64 convs at 32²;
    # each later stage (a 3×3 conv, three more, a 1×1 shortcut) costs the same, 2²·½ × stage 1's per conv
    stage = 16 * 16 * (64 * 128 * 9 + 3 * 128 * 128 * 9 + 64 * 128)
    macs = 32 * 32 * 3 * 64 * 9 + 4 * 32 * 32 * 64 * 64 * 9 + 3 * stage + 512 * 10
    assert macs == 555_422_720
    assert resnet.flops_per_example({"width": 64, "preact": False}, CIFAR) == 6 * macs


def hooked_macs(model: nn.Module, shape: Shape) -> int:
    """Multiply-adds of one forward, counted from the layers' actual outputs (independent of the formula)."""
    total = []

    def conv(mod, _, out):
        total.append(out[0].numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1])

    def linear(mod, _, out):
        total.append(out[0].numel() * mod.in_features)

    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            mod.register_forward_hook(conv)
        elif isinstance(mod, nn.Linear):
            mod.register_forward_hook(linear)
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *shape.input_shape))
    return sum(total)


@pytest.mark.parametrize("preact", [False, True])
@pytest.mark.parametrize("shape", [CIFAR, MNIST, DIGITS, Shape((3, 9, 7), 5)], ids=["cifar", "mnist", "digits", "odd"])
@pytest.mark.parametrize("k", [1, 3])
def test_flops_are_six_per_counted_multiply_add(shape, k, preact):
    cfg = {"width": k, "preact": preact}
    assert resnet.flops_per_example(cfg, shape) == 6 * hooked_macs(resnet.build(cfg, shape, seed=0), shape)


def test_counts_table_in_the_docs():
    """docs/images.md's table is what count_params computes."""
    rows = {}
    for line in DOCS.read_text().splitlines():
        match = re.match(r"\| resnet18k (params, CIFAR-10|params, MNIST|params, CIFAR-10, preact) \|(.*)\|$", line)
        if match:
            rows[match.group(1)] = [int(v.strip().replace(",", "")) for v in match.group(2).split("|")]
    shapes = {"params, CIFAR-10": (CIFAR, False), "params, MNIST": (MNIST, False),
              "params, CIFAR-10, preact": (CIFAR, True)}
    assert set(rows) == set(shapes)
    for name, (shape, preact) in shapes.items():
        assert rows[name] == [resnet.count_params({"width": k, "preact": preact}, shape)
                              for k in (1, 2, 4, 8, 16, 32, 64)], name


# --- the module ---------------------------------------------------------------------------------

def test_forward_shapes_keys_and_determinism():
    a, b = resnet.build({"width": 2, "preact": False}, CIFAR, seed=3), resnet.build({"width": 2, "preact": False},
                                                                                   CIFAR, seed=3)
    c = resnet.build({"width": 2, "preact": False}, CIFAR, seed=4)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert a.width == 2 and a(torch.zeros(5, 3, 32, 32)).shape == (5, 10)
    assert not torch.equal(a.stem.weight, c.stem.weight)
    keys = set(a.state_dict())
    assert {"stem.weight", "stem_norm.running_mean", "blocks.2.shortcut.weight", "blocks.6.shortcut_norm.weight",
            "blocks.7.conv2.weight", "head.bias"} <= keys
    assert not any(k.startswith(("blocks.0.shortcut", "blocks.3.shortcut")) for k in keys)  # identity shortcuts
    assert a.blocks[6].conv1.weight.shape == (16, 8, 3, 3) and a.blocks[6].shortcut.weight.shape == (16, 8, 1, 1)
    pre = resnet.build({"width": 2, "preact": True}, MNIST, seed=0)
    assert pre(torch.zeros(2, 784)).shape == (2, 10)  # flat 784 features read as one 28×28 channel
    assert "norm.weight" in pre.state_dict() and "stem_norm.weight" not in pre.state_dict()
    assert pre.blocks[2].norm1.num_features == 2 and not hasattr(pre.blocks[2].shortcut_norm, "weight")


def test_cpu_convs_see_nchw_inputs(tmp_path):
    """oneDNN's CPU 1×1 stride-2 conv backward corrupts memory on channels-last inputs with few
    channels (oneDNN #6035): CIFAR arrives C-contiguous, and the model makes any input so."""
    from overparam.data import load_task

    rng = np.random.default_rng(2)
    arrays = {"x_train": rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), "y_train": np.arange(8),
              "x_test": rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8), "y_test": np.arange(4)}
    np.savez(tmp_path / "c.npz", **arrays)
    task = load_task(resolve_config({"task": {"kind": "cifar10", "path": str(tmp_path / "c.npz")},
                                     "model": {"family": "resnet18k"}})["task"])
    assert task.x_train.flags["C_CONTIGUOUS"] and task.x_test.flags["C_CONTIGUOUS"]
    model = resnet.build({"width": 2, "preact": False}, CIFAR, seed=0)
    seen = []
    model.blocks[2].shortcut.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].is_contiguous()))
    model(torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)).sum().backward()
    assert seen == [True]


# --- training -----------------------------------------------------------------------------------

def small_task(n: int = 64, side: int = 8, augment: str = "crop_flip", seed: int = 0) -> TaskData:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3, side, side)).astype(np.float32)
    y = rng.integers(0, 10, n)
    task = TaskData("classification", x, y, x[: n // 2], y[: n // 2], 10, y.copy(), info={})
    task.augment_fn = augmenter(augment, 2)
    return task


def config(k: int, seed: int = 0, preact: bool = False, **train) -> dict:
    train = {"dtype": "float64", "steps": 4, "batch_size": 16, "eval_every": 2, **train}
    return resolve_config({"task": {"kind": "digits"}, "model": {"family": "resnet18k", "width": k, "preact": preact},
                           "train": train, "seed": seed})


@pytest.mark.parametrize("preact", [False, True])
def test_loop_fits_a_tiny_image_task(preact):
    """A few Adam steps on 32 images drive the train loss well down; eval mode uses running statistics."""
    task = small_task(n=32, augment="none")
    result = train_run(config(2, preact=preact, dtype="float32", steps=30, batch_size=32, eval_every=30, lr=1e-2),
                       task, torch.device("cpu"))
    assert result.status == "done"
    (_, first), (_, last) = result.curve[0], result.curve[-1]
    assert last["train_loss"] < 0.5 * first["train_loss"]
    assert last["train_error"] < first["train_error"]
    assert result.state["blocks.0.norm1.num_batches_tracked"] == 30


@pytest.mark.parametrize("preact", [False, True])
def test_fused_matches_sequential_in_float64(preact):
    """k ∈ {1, 2}; two seeds in one bucket (grouped stem), one shared; own lr, dropout, weight decay."""
    task = small_task()
    configs = [config(2, preact=preact), config(1, preact=preact),
               config(2, seed=1, preact=preact, lr=3e-3, dropout=0.2), config(1, preact=preact, weight_decay=1e-3)]
    cpu = torch.device("cpu")
    fused = train_cnn_group(configs, task, cpu)
    for cfg, got in zip(configs, fused):
        want = train_run(cfg, task, cpu)
        assert_same_run(got, want, group_size=4, steps=[0, 2, 4])


def test_fused_pieces_start_aligned_and_padding_gets_no_gradient():
    """Each parameter piece of the flat leaf starts on ALIGN_BYTES (cuDNN's channels-last kernels
    faulted on an H100 otherwise); the zeros between pieces get exactly zero gradient."""
    from overparam.train.fused_cnn import ALIGN_BYTES, FusedCNN
    from overparam.train.grouped_convs import body_for

    cfgs = [config(1), config(2), config(2, seed=1)]
    shape = Shape((3, 8, 8), 10)
    members = [resnet.build(c["model"], shape, c["seed"]).double() for c in cfgs]
    net = FusedCNN(members, [0, 0, 1], (3, 8, 8), torch.float64, torch.device("cpu"), body_for(cfgs[0]["model"]))
    base = net.flat.data_ptr()
    assert all((v.data_ptr() - base) % ALIGN_BYTES == 0 for bucket in net.views() for v in bucket.values())
    assert all(torch.equal(net.views()[1][k][1], v.double()) for k, v in members[2].named_parameters())
    net(torch.randn(2, 4, 3, 8, 8, dtype=torch.float64), True).square().sum().backward()
    used = torch.zeros_like(net.flat, dtype=torch.bool)
    for bucket in net.views():
        for v in bucket.values():
            start = (v.data_ptr() - base) // 8
            used[start:start + v.numel()] = True
    assert 0 < int((~used).sum()) < 0.1 * len(used)
    assert torch.all(net.flat.grad[~used] == 0) and torch.all(net.flat.detach()[~used] == 0)
    assert net.flat.grad[used].abs().sum() > 0


def test_sweep_fuses_by_default_and_stores_exact_sizes(tmp_path):
    from overparam.spec import Spec
    from overparam.store import open_store
    from overparam.sweep.grouping import plan_groups
    from overparam.sweep.runner import run_sweep

    spec = {"name": "resnet-digits", "task": {"kind": "digits", "train_size": 64, "test_size": 32, "label_noise": 0.1},
            "model": {"family": "resnet18k"}, "vary": {"model.width": [1, 2]},
            "train": {"steps": 2, "batch_size": 32, "eval_every": 2}}
    groups = plan_groups(Spec(spec).runs(), "auto", torch.device("cpu"))
    assert [(len(g.runs), g.fused) for g in groups] == [(2, True)]
    summary = run_sweep(spec, tmp_path / "s", progress=False)
    assert summary.trained == 2 and not summary.failed
    runs = sorted(open_store(tmp_path / "s").runs(), key=lambda r: r["config"]["model"]["width"])
    assert [r["params"] for r in runs] == [resnet.count_params({"width": k, "preact": False}, DIGITS) for k in (1, 2)]
    assert all(r["metrics"]["fused"] for r in runs)


# --- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("model, fragment", [
    ({"width": 0}, "model.width: must be > 0"),
    ({"width": 4096}, "model.width: must be <= 1024"),
    ({"preact": "yes"}, "model.preact: expected true/false"),
    ({"depth": 18}, "model.depth: unknown key"),
])
def test_bad_model_keys_name_the_key(model, fragment):
    with pytest.raises(SpecError, match=re.escape(fragment)):
        resolve_config({"task": {"kind": "digits"}, "model": {"family": "resnet18k", **model}})


def test_non_image_task_is_one_line_exit_2(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text("task: {kind: teacher, dim: 10, train_size: 20}\nmodel: {family: resnet18k, width: 1}\n")
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("overparam: error: model.family: resnet18k needs image inputs")
