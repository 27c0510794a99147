"""Images and the width-k CNN: exact counts, data checks, augmentation, fused == sequential.

The real-data tests read ``../shared/data`` (MNIST test set, CIFAR-10 subset) and skip when it
is absent; everything else runs on tiny generated data.
"""

import gzip
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from exactness import assert_same_run

from overparam.data import load_task
from overparam.data.base import TaskData
from overparam.data.images import augmenter, crop_flip
from overparam.errors import DataError, SpecError
from overparam.models import Shape, family_module
from overparam.models.base import count_trainable
from overparam.spec import resolve_config
from overparam.train.fused_cnn import train_cnn_group
from overparam.train.run import train_run

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CIFAR = SHARED / "cifar10_subset.npz"
MNIST = SHARED / "mnist"
cnn = family_module("cnn")


pytestmark = pytest.mark.usefixtures("one_thread")


# --- the family ---------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [Shape((3, 32, 32), 10), Shape((1, 28, 28), 10), Shape((64,), 10)])
@pytest.mark.parametrize("k", [1, 2, 3, 8])
def test_exact_parameter_counts(shape, k):
    c = 3 if shape.input_shape[0] == 3 else 1
    expected = 378 * k * k + (9 * c + 45 + 8 * 10) * k + 10  # models/cnn.py docstring
    assert cnn.count_params({"width": k}, shape) == expected
    assert count_trainable(cnn.build({"width": k}, shape, seed=0)) == expected


def test_reference_numbers():
    cifar = Shape((3, 32, 32), 10)
    assert cnn.count_params({"width": 64}, cifar) == 1_558_026  # the paper's largest width
    # k = 1: convs 3→1 at 32², 1→2 at 32², 2→4 at 16², 4→8 at 8², head 8→10; 6 FLOPs per MAC
    macs = 32 * 32 * 3 * 1 * 9 + 32 * 32 * 1 * 2 * 9 + 16 * 16 * 2 * 4 * 9 + 8 * 8 * 4 * 8 * 9 + 8 * 10
    assert cnn.flops_per_example({"width": 1}, cifar) == 6 * macs


def test_build_is_deterministic_and_named_by_width():
    shape = Shape((3, 32, 32), 10)
    a, b = cnn.build({"width": 4}, shape, seed=3), cnn.build({"width": 4}, shape, seed=3)
    c = cnn.build({"width": 4}, shape, seed=4)
    assert a.width == 4
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.convs[0].weight, c.convs[0].weight)
    assert a(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_rejects_non_image_inputs():
    with pytest.raises(SpecError, match="cnn needs image inputs"):
        cnn.count_params({"width": 2}, Shape((10,), 10))


# --- augmentation -------------------------------------------------------------------------------

def naive_crop_flip(x: torch.Tensor, shifts: torch.Tensor, mirror: torch.Tensor, pad: int) -> torch.Tensor:
    padded = torch.nn.functional.pad(x, (pad,) * 4)
    h, w = x.shape[2:]
    out = torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(shifts.T.tolist())])
    return torch.where(mirror[:, None, None, None], out.flip(3), out)


def test_crop_flip_matches_a_naive_reference():
    x = torch.randn(6, 3, 8, 8)
    gen, ref = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    out = crop_flip(x, gen, pad=2, flip=True)
    shifts = torch.randint(0, 5, (2, 6), generator=ref)
    mirror = torch.randint(0, 2, (6, 1), generator=ref).bool()[:, 0]
    assert torch.equal(out, naive_crop_flip(x, shifts, mirror, 2))
    assert torch.equal(crop_flip(x, torch.Generator(), pad=0, flip=False), x)
    assert augmenter("none", 4) is None


def small_task(n: int = 64, side: int = 8, augment: str = "crop_flip") -> TaskData:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 3, side, side)).astype(np.float32)
    y = rng.integers(0, 10, n)
    task = TaskData("classification", x, y, x[: n // 2], y[: n // 2], 10, y.copy(), info={})
    task.augment_fn = augmenter(augment, 2)
    return task


def config(k: int, seed: int = 0, **train) -> dict:
    train = {"dtype": "float64", "steps": 4, "batch_size": 16, "eval_every": 2, **train}
    return resolve_config({"task": {"kind": "digits"}, "model": {"family": "cnn", "width": k}, "train": train,
                           "seed": seed})


def test_loop_applies_the_augmentation_hook():
    plain, augmented = small_task(augment="none"), small_task()
    a = train_run(config(1), plain, torch.device("cpu"))
    b = train_run(config(1), augmented, torch.device("cpu"))
    c = train_run(config(1), augmented, torch.device("cpu"))
    assert not torch.equal(a.state["convs.0.weight"], b.state["convs.0.weight"])
    assert all(torch.equal(b.state[k], c.state[k]) for k in b.state)  # deterministic draws


# --- fused == sequential ------------------------------------------------------------------------

def test_fused_matches_sequential_in_float64():
    """k ∈ {1, 2}; two seeds in one bucket (grouped first conv), one shared; own lr and dropout."""
    task = small_task()
    configs = [config(2), config(1), config(2, seed=1, lr=3e-3, dropout=0.2), config(1, weight_decay=1e-3)]
    cpu = torch.device("cpu")
    fused = train_cnn_group(configs, task, cpu)
    for cfg, got in zip(configs, fused):
        want = train_run(cfg, task, cpu)
        assert_same_run(got, want, group_size=4, steps=[0, 2, 4])
        assert got.metrics["unstable"] == want.metrics["unstable"]


# --- files and their errors -----------------------------------------------------------------------

def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def fake_mnist(folder: Path, n: int = 50) -> np.ndarray:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (n, 28, 28))
    folder.mkdir(exist_ok=True)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", images, 2051)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.arange(n) % 10, 2049)
    return images


def mnist(path, **kw) -> TaskData:
    return load_task(resolve_config({"task": {"kind": "mnist", "path": path and str(path), **kw},
                                     "model": {"family": "cnn"}})["task"])


def cifar(path, **kw) -> TaskData:
    return load_task(resolve_config({"task": {"kind": "cifar10", "path": path and str(path), **kw},
                                     "model": {"family": "cnn"}})["task"])


def test_mnist_from_idx_files(tmp_path):
    images = fake_mnist(tmp_path / "m")
    task = mnist(tmp_path / "m", test_size=10, label_noise=0.2)
    assert task.x_train.shape == (40, 1, 28, 28) and task.x_test.shape == (10, 1, 28, 28)
    assert task.x_train.dtype == np.float32
    assert abs(task.x_train.mean()) < 1e-5 and abs(task.x_train.std() - 1) < 1e-4  # training statistics
    assert (task.y_train != task.y_train_clean).sum() == 8
    mean, std = task.info["mean"][0], task.info["std"][0]
    pool = np.sort(np.concatenate([task.x_train, task.x_test]).reshape(50, -1) * std + mean, axis=0)
    assert np.allclose(pool, np.sort(images.reshape(50, -1) / 255.0, axis=0), atol=1e-5)  # a partition


def test_cifar_from_npz(tmp_path):
    rng = np.random.default_rng(2)
    arrays = {"x_train": rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8), "y_train": np.arange(30) % 10,
              "x_test": rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), "y_test": np.arange(20) % 10}
    np.savez(tmp_path / "c.npz", **arrays)
    task = cifar(tmp_path / "c.npz", normalize=False, augment="crop_flip")
    assert task.x_train.shape == (30, 3, 32, 32) and len(task.x_test) == 20
    assert np.allclose(task.x_train[4, 2, 7, 9], arrays["x_train"][4, 7, 9, 2] / 255.0)  # HWC -> CHW
    assert task.augment_fn is not None and task.info["augment"] == "crop_flip"
    sub = cifar(tmp_path / "c.npz", train_size=12, test_size=5, seed=3)
    assert len(sub.x_train) == 12 and len(sub.x_test) == 5


@pytest.mark.parametrize("kind, make, match", [
    ("cifar10", None, "task.path: cifar10 reads a file"),
    ("cifar10", "missing.npz", "no such file"),
    ("cifar10", "junk", "cannot read as .npz"),
    ("cifar10", "keys", "no array 'x_train'"),
    ("cifar10", "shape", r"x_train is uint8 \(4, 28, 28, 3\); expected uint8 \(n, 32, 32, 3\)"),
    ("mnist", None, "task.path: mnist reads files"),
    ("mnist", "empty", "has no t10k-images-idx3-ubyte"),
    ("mnist", "header", "bad header"),
    ("mnist", "truncated", "header promises"),
])
def test_bad_files_give_one_line_data_errors(tmp_path, kind, make, match):
    path = None if make is None else tmp_path / make
    if make == "junk":
        path.write_bytes(b"not a zip file")
    elif make in ("keys", "shape"):
        x = np.zeros((4, 28, 28, 3) if make == "shape" else (4, 32, 32, 3), np.uint8)
        np.savez(path, **({"images": x} if make == "keys" else
                          {"x_train": x, "y_train": np.zeros(4, int), "x_test": x, "y_test": np.zeros(4, int)}))
        path = tmp_path / f"{make}.npz"
    elif make in ("empty", "header", "truncated"):
        path.mkdir()
        if make != "empty":
            fake_mnist(path)
            raw = gzip.decompress((path / "t10k-images-idx3-ubyte.gz").read_bytes())
            raw = b"\0\0\0\0" + raw[4:] if make == "header" else raw[:-7]
            (path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw))
    with pytest.raises(DataError, match=match) as info:
        (cifar if kind == "cifar10" else mnist)(path)
    message = str(info.value)
    assert "\n" not in message
    if path is not None:
        assert str(path) in message


# --- the shared real data (skipped without ../shared/data) ---------------------------------------

@pytest.mark.skipif(not MNIST.is_dir(), reason="../shared/data/mnist not present")
def test_real_mnist_split():
    task = mnist(MNIST)
    assert task.x_train.shape == (8000, 1, 28, 28) and task.x_test.shape == (2000, 1, 28, 28)
    assert set(np.unique(task.y_test)) == set(range(10))


@pytest.mark.skipif(not CIFAR.is_file(), reason="../shared/data/cifar10_subset.npz not present")
def test_real_cifar_small_fused_sweep():
    """k ≤ 8, 2 epochs of 2,000 images, through the fused engine; every run trains and is finite."""
    spec = {"kind": "cifar10", "path": str(CIFAR), "train_size": 2000, "test_size": 200, "label_noise": 0.15,
            "augment": "crop_flip"}
    configs = [resolve_config({"task": spec, "model": {"family": "cnn", "width": k},
                               "train": {"steps": 8, "batch_size": 512}}) for k in (1, 2, 4, 8)]
    task = load_task(configs[0]["task"])
    assert np.bincount(task.y_train_clean, minlength=10).min() > 150  # a seeded subset of a balanced set
    results = train_cnn_group(configs, task, torch.device("cpu"))
    assert [r.status for r in results] == ["done"] * 4
    assert all(math.isfinite(r.metrics["train_loss"]) and 0 <= r.metrics["test_error"] < 1 for r in results)


def digits_cnn(k: int, noise: float, **train) -> dict:
    return resolve_config({"task": {"kind": "digits", "train_size": 64, "test_size": 32, "label_noise": noise},
                           "model": {"family": "cnn", "width": k},
                           "train": {"dtype": "float64", "steps": 3, "batch_size": 32, **train}})


def test_fused_members_with_their_own_label_noise():
    """digits' 64 features are one 8×8 channel; members differ in label noise, hence in y_train."""
    configs = [digits_cnn(1, 0.1), digits_cnn(1, 0.4)]
    task = load_task(configs[0]["task"])
    fused = train_cnn_group(configs, task, torch.device("cpu"))
    for cfg, got in zip(configs, fused):
        want = train_run(cfg, load_task(cfg["task"]), torch.device("cpu"))
        assert all(torch.allclose(got.state[k], v, rtol=0, atol=1e-8) for k, v in want.state.items())
        assert got.metrics["train_error"] == pytest.approx(want.metrics["train_error"], abs=1e-12)


def test_sweep_then_analyze(tmp_path):
    from overparam.analysis.double_descent import analyze_double_descent
    from overparam.sweep.runner import run_sweep

    spec = {"name": "cnn-digits", "task": {"kind": "digits", "train_size": 64, "test_size": 32, "label_noise": 0.1},
            "model": {"family": "cnn"}, "vary": {"model.width": [1, 2]},
            "train": {"steps": 4, "batch_size": 32, "eval_every": 2}}
    summary = run_sweep(spec, tmp_path / "s", progress=False, fuse="on")
    assert summary.trained == 2 and not summary.failed
    curve = analyze_double_descent(tmp_path / "s")["curves"][0]
    assert [p["params"] for p in curve["points"]] == [cnn.count_params({"width": k}, Shape((64,), 10)) for k in (1, 2)]


def test_analyze_a_cifar_sweep_with_the_whole_training_split(tmp_path, capsys):
    """The example spec leaves task.train_size null (all images): analyze and report read it without it."""
    from overparam.cli import main

    rng = np.random.default_rng(5)
    arrays = {"x_train": rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8), "y_train": np.arange(24) % 10,
              "x_test": rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8), "y_test": np.arange(12) % 10}
    np.savez(tmp_path / "c.npz", **arrays)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"task: {{kind: cifar10, path: {tmp_path / 'c.npz'}}}\nmodel: {{family: cnn}}\n"
                    "vary: {model.width: [1, 2]}\ntrain: {steps: 3, batch_size: 12, eval_every: 1}\n")
    assert main(["sweep", str(spec), "--out", str(tmp_path / "s")]) == 0
    assert main(["analyze", str(tmp_path / "s")]) == 0
    assert "curve over model.width" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "s")]) == 0 and (tmp_path / "s" / "report.html").is_file()


def test_reading_names_a_near_fit_and_the_eps_that_admits_it():
    """CIFAR k = 8 left 4 of 10,000 noisy labels unfitted after 150 epochs on CPU: with eps = 0 there is
    no threshold, and the reading says which size came closest and which --eps would count it."""
    import pandas as pd

    from overparam.analysis.double_descent import analyze_double_descent
    from overparam.report.reading import read_curve

    rows = [{"id": f"k{k}", "status": "done", "params": p, "model.width": k, "seed": 0, "train_error": e,
             "test_error": t, "train_loss": 1.0, "test_loss": 1.0, "n_test": 5000}
            for k, p, e, t in [(4, 6666, 0.3455, 0.5956), (6, 14530, 0.0784, 0.6064), (8, 25418, 0.0004, 0.5636)]]
    curve = analyze_double_descent(pd.DataFrame(rows), eps=0.0)["curves"][0]
    text = read_curve(curve, "cnn")[0]
    assert "the closest, k = 8 (25,418 parameters), left 0.04 % of its training labels unfitted" in text
    assert "(--eps 0.0004 would count it as the threshold)" in text
    assert analyze_double_descent(pd.DataFrame(rows))["curves"][0]["threshold_size"] == 8  # default eps 0.01
    far = pd.DataFrame([{**r, "train_error": r["train_error"] + 0.1} for r in rows])
    far_text = read_curve(analyze_double_descent(far)["curves"][0], "cnn")[0]
    assert "try larger sizes or more steps" in far_text and "would count it" not in far_text
