"""The user's own data (``table``, ``arrays``, ``images``, ``hf``): loading, splitting, encoding, failing.

Truths used: hand computations on the written files (means, standard deviations, one-hot rows,
class indices, pixel values), the ``text`` task on the same text for ``hf`` tokens, the ``table``
task on the same rows for ``hf`` feature columns, and the loop against the fused engines.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from overparam.cli import main
from overparam.data import image_folder, is_language_task, load_task
from overparam.errors import DataError, SpecError
from overparam.spec import Spec


def needs(module: str, extra: str):
    """Skip, saying why, where an optional extra is not installed (``make test`` installs them all)."""
    return pytest.importorskip(module, reason=f"needs {module}: pip install 'overparam[{extra}]'")


def resolved_task(task: dict, model: dict | None = None) -> dict:
    """The task config as a sweep resolves it (defaults filled, checked against OPTIONS)."""
    return Spec({"task": task, "model": model or {"family": "mlp", "width": 4}}).runs()[0].config["task"]


def load(task: dict, model: dict | None = None, **kw):
    return load_task(resolved_task(task, model), **kw)


def write_png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def image_tree(root: Path, per_class: int = 6, size: tuple[int, int] = (6, 5), rgb: bool = False,
               test: int = 0, seed: int = 0) -> dict[str, np.ndarray]:
    """train/<c>/*.png (and test/<c>/*.png) with random pixels; returns {relative path: pixels}."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, count in (("train", per_class), ("test", test)):
        for c in ("cat", "dog", "emu"):
            for i in range(count):
                shape = (*size, 3) if rgb else size
                px = rng.integers(0, 256, shape, dtype=np.uint8)
                rel = f"{split}/{c}/{i}.png"
                write_png(root / rel, px)
                written[rel] = px
    return written


# ---------------------------------------------------------------- table


@pytest.fixture
def wine_like(tmp_path):
    """A train CSV and a test CSV: numbers, a text category, string classes."""
    rng = np.random.default_rng(1)
    n = 60
    train = pd.DataFrame({"a": rng.normal(5, 2, n), "b": rng.integers(0, 100, n),
                          "color": rng.choice(["red", "green", "blue"], n),
                          "kind": rng.choice(["dog", "cat", "bird"], n)})
    test = pd.DataFrame({"a": rng.normal(50, 9, 8), "b": rng.integers(500, 900, 8),
                         "color": ["red", "purple", "green", "blue", "purple", "red", "red", "green"],
                         "kind": ["cat", "dog", "bird", "cat", "dog", "bird", "cat", "dog"]})
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    return tmp_path, train, test


def test_table_standardizes_with_training_statistics_and_one_hots_from_train(wine_like):
    folder, train, test = wine_like
    t = load({"kind": "table", "path": str(folder / "train.csv"), "test_path": str(folder / "test.csv"),
              "target": "kind"})
    assert t.info["features"] == ["a", "b", "color=blue", "color=green", "color=red"]
    for j, col in enumerate(("a", "b")):
        mean, std = train[col].mean(), train[col].std(ddof=0)
        np.testing.assert_allclose(t.x_train[:, j], (train[col] - mean) / std, rtol=1e-12)
        np.testing.assert_allclose(t.x_test[:, j], (test[col] - mean) / std, rtol=1e-12)
    assert abs(t.x_test[:, 0].mean()) > 10  # the test set's own statistics were not used
    onehot = t.x_test[:, 2:]
    for row, color in enumerate(test["color"]):
        expected = np.zeros(3) if color == "purple" else np.eye(3)[["blue", "green", "red"].index(color)]
        np.testing.assert_array_equal(onehot[row], expected)
    assert t.info["classes"] == ["bird", "cat", "dog"]
    np.testing.assert_array_equal(t.y_test, [["bird", "cat", "dog"].index(k) for k in test["kind"]])
    np.testing.assert_array_equal(t.y_train, [["bird", "cat", "dog"].index(k) for k in train["kind"]])


def test_table_split_is_seeded_and_disjoint(wine_like):
    folder, train, _ = wine_like
    spec = {"kind": "table", "path": str(folder / "train.csv"), "target": "kind", "features": ["a"]}
    a, b, c = load(spec), load(spec), load({**spec, "seed": 1})
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert (len(a.x_train), len(a.x_test)) == (48, 12)  # 20 % of 60 held out
    assert not np.array_equal(a.x_test, c.x_test)
    mean, std = a.info["standardized"]["a"]
    raw_train, raw_test = a.x_train[:, 0] * std + mean, a.x_test[:, 0] * std + mean
    assert mean == pytest.approx(raw_train.mean()) and std == pytest.approx(raw_train.std())
    np.testing.assert_allclose(np.sort(np.concatenate([raw_train, raw_test])), np.sort(train["a"]), rtol=1e-12)
    sub = load({**spec, "train_size": 10, "test_size": 5})
    assert (len(sub.x_train), len(sub.x_test)) == (10, 5)


def test_table_regression_target_standardized_by_train(tmp_path):
    needs("pyarrow", "table")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=40), "price": rng.normal(1000, 300, 40)})
    frame.iloc[:30].to_parquet(tmp_path / "tr.parquet")
    frame.iloc[30:].to_parquet(tmp_path / "te.parquet")
    t = load({"kind": "table", "path": str(tmp_path / "tr.parquet"), "test_path": str(tmp_path / "te.parquet"),
              "target": "price"})
    assert t.kind == "regression" and t.y_train.shape == (30, 1)
    mean, std = frame["price"][:30].mean(), frame["price"][:30].std(ddof=0)
    assert t.info["target_mean"] == [pytest.approx(mean)] and t.info["target_std"] == [pytest.approx(std)]
    np.testing.assert_allclose(t.y_test[:, 0], (frame["price"][30:] - mean) / std, rtol=1e-12)
    with pytest.raises(SpecError, match="label_noise"):
        load({"kind": "table", "path": str(tmp_path / "tr.parquet"), "target": "price", "label_noise": 0.1})


def test_table_missing_values_policies(tmp_path):
    frame = pd.DataFrame({"x": [1.0, np.nan, 3.0, 5.0, np.inf, 7.0, 2.0, 4.0, 6.0, 8.0],
                          "c": ["u", "v", None, "u", "v", "u", "v", "u", "v", "u"],
                          "y": [0, 1, 0, 1, 0, 1, 0, 1, 0, 1]})
    frame.to_csv(tmp_path / "m.csv", index=False)
    frame.iloc[:4].to_csv(tmp_path / "m_test.csv", index=False)
    base = {"kind": "table", "path": str(tmp_path / "m.csv"), "test_path": str(tmp_path / "m_test.csv"),
            "target": "y"}
    with pytest.raises(DataError, match=r"m\.csv: column 'x' has 1 missing and 1 infinite values in 2 rows "
                                        r"\(first: row 2\)"):
        load(base)
    dropped = load({**base, "missing": "drop"})
    assert len(dropped.x_train) == 7 and dropped.info["dropped_rows"] == 3
    mean = load({**base, "missing": "mean"})
    known = np.array([1.0, 3.0, 5.0, 7.0, 2.0, 4.0, 6.0, 8.0])
    assert mean.x_train[1, 0] == 0.0 and mean.x_train[4, 0] == 0.0  # the training mean, standardized
    np.testing.assert_allclose(mean.x_train[0, 0], (1.0 - known.mean()) / known.std())
    np.testing.assert_allclose(mean.x_train[2, 1:], [5 / 9, 4 / 9])  # frequencies of u, v among the 9 known


def test_table_class_count_rule_and_auto_problem(tmp_path):
    pd.DataFrame({"x": range(9), "y": ["a"] * 4 + ["b"] * 4 + ["c"]}).to_csv(tmp_path / "rare.csv", index=False)
    with pytest.raises(DataError, match=r"rare\.csv: column 'y'.*class 'c' has 1 training example"):
        load({"kind": "table", "path": str(tmp_path / "rare.csv"), "target": "y"})
    pd.DataFrame({"x": range(9), "y": np.linspace(0, 1, 9)}).to_csv(tmp_path / "reg.csv", index=False)
    assert load({"kind": "table", "path": str(tmp_path / "reg.csv"), "target": "y"}).kind == "regression"


# ---------------------------------------------------------------- arrays


def test_arrays_images_reach_models_as_nchw_float32(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 5, 4, 3), dtype=np.uint8)  # (n, H, W, C)
    y = np.repeat(["x", "y", "z"], 10)
    xt, yt = rng.integers(0, 256, (6, 5, 4, 3), dtype=np.uint8), np.array(["z", "y", "x", "x", "y", "z"])
    np.savez(tmp_path / "a.npz", x=x, y=y, x_test=xt, y_test=yt)
    t = load({"kind": "arrays", "path": str(tmp_path / "a.npz"), "normalize": False})
    assert t.x_train.dtype == np.float32 and t.x_train.shape == (30, 3, 5, 4) and t.x_test.shape == (6, 3, 5, 4)
    np.testing.assert_allclose(t.x_train, x.transpose(0, 3, 1, 2) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(t.y_test, [2, 1, 0, 0, 1, 2])
    t = load({"kind": "arrays", "path": str(tmp_path / "a.npz")})
    pixels = x.transpose(0, 3, 1, 2) / 255.0
    mean, std = pixels.mean(axis=(0, 2, 3)), pixels.std(axis=(0, 2, 3))
    np.testing.assert_allclose(t.x_test, (xt.transpose(0, 3, 1, 2) / 255.0 - mean[:, None, None]) /
                               std[:, None, None], rtol=1e-5)


def test_arrays_npy_pair_features_split(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(3, 2, (50, 4)), np.arange(50) % 2
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    spec = {"kind": "arrays", "path": str(tmp_path / "x.npy"), "labels": str(tmp_path / "y.npy"), "label_noise": 0.2}
    a, b, c = load(spec), load(spec), load({**spec, "seed": 3})
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.x_test, c.x_test)
    np.testing.assert_allclose(a.x_train.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(a.x_train.std(axis=0), 1, atol=1e-12)
    assert (a.y_train != a.y_train_clean).sum() == 8  # round(0.2 · 40): today's label_noise meaning


# ---------------------------------------------------------------- images


def test_images_decode_exactly_and_split_from_test_folder(tmp_path):
    written = image_tree(tmp_path / "gray", per_class=4, test=2)
    t = load({"kind": "images", "path": str(tmp_path / "gray"), "normalize": False})
    assert t.info["classes"] == ["cat", "dog", "emu"] and t.x_train.shape == (12, 1, 6, 5)
    expected = np.stack([written[f"train/{c}/{i}.png"] for c in ("cat", "dog", "emu") for i in range(4)])
    np.testing.assert_allclose(t.x_train[:, 0], expected / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(t.y_test, [0, 0, 1, 1, 2, 2])
    written = image_tree(tmp_path / "rgb", per_class=5, rgb=True)
    t = load({"kind": "images", "path": str(tmp_path / "rgb"), "normalize": False, "seed": 2})
    assert t.x_train.shape == (12, 3, 6, 5) and t.x_test.shape == (3, 3, 6, 5)  # 20 % of 15 held out
    pool = {px.tobytes() for px in (v.transpose(2, 0, 1) for v in written.values())}
    got = np.round(np.concatenate([t.x_train, t.x_test]) * 255).astype(np.uint8)
    assert {g.tobytes() for g in got} == pool  # every image once, in one split or the other
    other = load({"kind": "images", "path": str(tmp_path / "rgb"), "normalize": False, "seed": 3})
    assert not np.array_equal(t.x_test, other.x_test)
    resized = load({"kind": "images", "path": str(tmp_path / "rgb"), "image_size": [4, 7]})
    assert resized.x_train.shape == (12, 3, 4, 7)


def test_images_cache_hit_and_invalidation(tmp_path, monkeypatch):
    root = tmp_path / "imgs"
    image_tree(root, per_class=3)
    calls = []
    real = image_folder.decode
    monkeypatch.setattr(image_folder, "decode", lambda *a, **k: calls.append(1) or real(*a, **k))
    task = {"kind": "images", "path": str(root), "normalize": False}
    cache = tmp_path / "sweep" / "cache"
    first = load(task, cache_dir=cache)
    image_folder._MEMORY.clear()  # a new process: only the disk cache remains
    second = load(task, cache_dir=cache)
    assert len(calls) == 1 and second.info["cache"] == "disk"
    np.testing.assert_array_equal(first.x_train, second.x_train)
    new = np.full((6, 5), 7, dtype=np.uint8)
    write_png(root / "train/dog/0.png", new)
    os.utime(root / "train/dog/0.png", ns=(1, 1))  # a different mtime even on a coarse clock
    image_folder._MEMORY.clear()
    third = load(task, cache_dir=cache)
    assert len(calls) == 2 and third.info["cache"] == "decoded"
    assert any(np.array_equal(np.round(x[0] * 255), new) for x in np.concatenate([third.x_train, third.x_test]))
    assert len(list(cache.glob("images-*.npz"))) == 1  # the stale cache file is gone
    image_folder._MEMORY.clear()
    load(task)  # no cache folder: decodes, writes nothing
    assert len(calls) == 3 and len(list(cache.iterdir())) == 1


# ---------------------------------------------------------------- hf


def test_hf_text_tokens_equal_the_text_task(tmp_path):
    needs("datasets", "hf")
    rows = [f"row {i}: the quick brown fox {i * 7}" for i in range(60)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": r, "n": i}) + "\n" for i, r in enumerate(rows)))
    (tmp_path / "d.txt").write_text("\n".join(rows))
    for tokenizer in ("char", "bpe"):
        hf = load({"kind": "hf", "path": str(tmp_path / "d.jsonl"), "text_column": "text", "tokenizer": tokenizer,
                   "vocab_size": 300}, {"family": "gpt"})
        text = load_task(resolved_task({"kind": "text", "path": str(tmp_path / "d.txt"), "tokenizer": tokenizer,
                                        "vocab_size": 300}, {"family": "gpt"}))
        np.testing.assert_array_equal(hf.tokens_train, text.tokens_train)
        np.testing.assert_array_equal(hf.tokens_test, text.tokens_test)
        assert hf.kind == "lm" and hf.vocab_size == text.vocab_size
    assert is_language_task(resolved_task({"kind": "hf", "path": "x", "text_column": "text"}, {"family": "gpt"}))
    with pytest.raises(SpecError, match="train.diagnostics: sharpness"):
        Spec({"task": {"kind": "hf", "path": "x", "text_column": "text"}, "model": {"family": "gpt"},
              "train": {"diagnostics": ["sharpness"]}})


def test_hf_feature_columns_equal_the_table_task(tmp_path, wine_like):
    needs("datasets", "hf")
    folder, train, _ = wine_like
    train.to_parquet(tmp_path / "t.parquet")
    common = {"target": "kind", "seed": 4, "label_noise": 0.1}
    table = load({"kind": "table", "path": str(folder / "train.csv"), **common})
    hf = load({"kind": "hf", "path": str(tmp_path / "t.parquet"), "label_column": "kind", "seed": 4,
               "label_noise": 0.1})
    for name in ("x_train", "x_test", "y_train", "y_test", "y_train_clean"):
        np.testing.assert_array_equal(getattr(hf, name), getattr(table, name))
    assert hf.info["classes"] == table.info["classes"]


def test_hf_images_and_class_labels(tmp_path):
    datasets = needs("datasets", "hf")
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (12, 4, 4), dtype=np.uint8)

    def png(a):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG")
        return {"bytes": buf.getvalue(), "path": None}

    features = datasets.Features({"img": datasets.Image(), "lab": datasets.ClassLabel(names=["no", "yes"])})
    ds = datasets.Dataset.from_dict({"img": [png(a) for a in pixels], "lab": [i % 2 for i in range(12)]},
                                    features=features)
    datasets.DatasetDict({"train": ds.select(range(8)), "test": ds.select(range(8, 12))}).save_to_disk(
        str(tmp_path / "saved"))
    t = load({"kind": "hf", "path": str(tmp_path / "saved"), "label_column": "lab", "image_column": "img",
              "normalize": False})
    assert t.info["classes"] == ["no", "yes"] and t.x_train.shape == (8, 1, 4, 4)
    np.testing.assert_allclose(t.x_test[:, 0], pixels[8:] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(t.y_test, [0, 1, 0, 1])


# ---------------------------------------------------------------- models on any image size


@pytest.mark.parametrize("family", ["cnn", "resnet18k", "mlp"])
@pytest.mark.parametrize("shape", [(8, 8), (9, 7, 3)], ids=["8x8-gray", "9x7-rgb"])
def test_models_train_on_any_image_shape_fused_equals_loop(tmp_path, family, shape):
    from overparam.store import open_store
    from overparam.sweep.runner import run_sweep

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "x.npz", x=rng.integers(0, 256, (40, *shape), dtype=np.uint8), y=np.arange(40) % 3)
    spec = {"task": {"kind": "arrays", "path": str(tmp_path / "x.npz")}, "model": {"family": family},
            "train": {"steps": 3, "batch_size": 8, "optimizer": "adam", "lr": 0.01, "dtype": "float64"},
            "vary": {"model.width": [1, 2] if family != "mlp" else [4, 8], "seed": [0, 1]}}
    losses = {}
    for fuse in ("off", "on"):
        run_sweep(spec, tmp_path / fuse, fuse=fuse, progress=False)
        with open_store(tmp_path / fuse) as store:
            runs = sorted(store.runs(), key=lambda r: r["id"])
        assert all(r["status"] == "done" for r in runs)
        losses[fuse] = np.array([r["metrics"]["train_loss"] for r in runs])
    np.testing.assert_allclose(losses["on"], losses["off"], rtol=1e-9)


def test_conv_regression_on_images_trains_with_the_loop(tmp_path, capsys):
    """The conv engine is classification-only: a cnn regression group must not be handed to it."""
    from overparam.store import open_store
    from overparam.sweep.grouping import plan_groups
    from overparam.sweep.runner import run_sweep

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "r.npz", x=rng.integers(0, 256, (30, 8, 8), dtype=np.uint8), y=rng.normal(size=30))
    spec = {"task": {"kind": "arrays", "path": str(tmp_path / "r.npz")}, "model": {"family": "cnn"},
            "train": {"steps": 2, "batch_size": 8}, "vary": {"model.width": [1, 2]}}
    assert not any(g.fused for g in plan_groups(Spec(spec).runs(), "on", __import__("torch").device("cpu")))
    capsys.readouterr()
    run_sweep(spec, tmp_path / "out", fuse="on", progress=False)
    assert "Traceback" not in capsys.readouterr().err
    with open_store(tmp_path / "out") as store:
        assert [r["status"] for r in store.runs()] == ["done", "done"]


# ---------------------------------------------------------------- the command line, end to end


def cli(argv, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def own_specs(tmp: Path) -> dict[str, dict]:
    """One tiny spec per kind, its data written under ``tmp``."""
    rng = np.random.default_rng(0)
    pd.DataFrame({"a": rng.normal(size=80), "b": rng.normal(size=80), "s": rng.choice(["p", "q"], 80),
                  "y": rng.choice(["lo", "hi"], 80)}).to_csv(tmp / "t.csv", index=False)
    np.savez(tmp / "a.npz", x=rng.normal(size=(60, 6)), y=np.arange(60) % 3)
    image_tree(tmp / "img", per_class=8, size=(8, 8))
    (tmp / "lm.jsonl").write_text("".join(json.dumps({"text": f"line {i} hello"}) + "\n" for i in range(120)))
    mlp = {"model": {"family": "mlp"}, "train": {"steps": 30, "batch_size": 16},
           "vary": {"model.width": [2, 16], "seed": [0, 1]}}
    return {
        "table": {"task": {"kind": "table", "path": str(tmp / "t.csv"), "target": "y", "label_noise": 0.1}, **mlp},
        "arrays": {"task": {"kind": "arrays", "path": str(tmp / "a.npz")}, **mlp},
        "images": {"task": {"kind": "images", "path": str(tmp / "img"), "label_noise": 0.1},
                   "model": {"family": "cnn"}, "train": {"steps": 10, "batch_size": 8},
                   "vary": {"model.width": [1, 2]}},
        "hf": {"task": {"kind": "hf", "path": str(tmp / "lm.jsonl"), "text_column": "text", "tokenizer": "char"},
               "model": {"family": "gpt", "n_layer": 1, "n_head": 2, "context": 16},
               "train": {"steps": 10, "batch_size": 4}, "vary": {"model.d_model": [8, 16]}},
    }


@pytest.mark.parametrize("kind", ["table", "arrays", "images", "hf"])
def test_cli_sweep_runs_analyze_report(tmp_path, capsys, kind):
    if kind == "hf":
        needs("datasets", "hf")
    spec = own_specs(tmp_path)[kind]
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    assert cli(["sweep", str(tmp_path / "s.yaml"), "--out", str(out), "--no-progress"], capsys)[0] == 0
    code, text, _ = cli(["runs", str(out), "--json"], capsys)
    runs = json.loads(text)["runs"]
    assert code == 0 and runs and all(r["status"] == "done" for r in runs)
    assert all(r["config"]["task"]["kind"] == kind for r in runs)
    lm = kind == "hf"
    assert all((r["metrics"]["test_error"] is None) == lm for r in runs)
    code, text, _ = cli(["analyze", str(out), "--json"], capsys)
    assert code == 0 and json.loads(text)["curves"]
    assert cli(["report", str(out)], capsys)[0] == 0
    page = (out / "report.html").read_text()
    assert ("Scaling law" in page) == lm and ("Double descent" in page) == (not lm)
    if kind == "images":
        assert len(list((out / "cache").glob("images-*.npz"))) == 1
    setup = {"table": "Setup: table (t.csv), 64 training and 16 test examples, 10 % label noise",  # 80 rows, 20 % out
             "arrays": "Setup: arrays (a.npz), 48 training and 12 test examples",
             "images": "Setup: images (img), 19 training and 5 test examples",  # 24 images
             "hf": "Setup: hf (lm.jsonl)"}[kind]
    assert setup in page
    assert ("training tokens seen" in page) == lm


def test_table_label_noise_sweep_fuses_like_the_loop(tmp_path):
    from overparam.store import open_store
    from overparam.sweep.grouping import plan_groups
    from overparam.sweep.runner import run_sweep

    spec = own_specs(tmp_path)["table"]
    spec["vary"] = {"model.width": [4, 8], "task.label_noise": [0.0, 0.2]}
    spec["train"]["dtype"] = "float64"
    groups = plan_groups(Spec(spec).runs(), "on", __import__("torch").device("cpu"))
    assert len(groups) == 1 and groups[0].fused
    metrics = {}
    for fuse in ("off", "on"):
        run_sweep(spec, tmp_path / fuse, fuse=fuse, progress=False)
        with open_store(tmp_path / fuse) as store:
            metrics[fuse] = {r["id"]: r["metrics"]["train_loss"] for r in store.runs()}
    assert metrics["on"].keys() == metrics["off"].keys()
    for rid, loss in metrics["off"].items():
        assert metrics["on"][rid] == pytest.approx(loss, rel=1e-9)


# ---------------------------------------------------------------- bad data: one line, exit 2, good dir untouched


def _png_header(width: int, height: int) -> bytes:
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
            + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND")))


def _sparse(path: Path, size: int = 1 << 42) -> None:
    with path.open("wb") as f:
        try:
            f.truncate(size)
        except OSError:
            pytest.skip("this file system has no sparse files")


def put(path: Path, data: str | bytes) -> None:
    """Write a file and return None, so ``put(...) or task`` is the task."""
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def _csv(tmp: Path, name: str, frame: pd.DataFrame) -> str:
    frame.to_csv(tmp / name, index=False)
    return str(tmp / name)


def _bad_cases():
    """(case id, setup(tmp) -> task dict, fragments the error line must contain)."""
    ok = pd.DataFrame({"a": np.arange(10.0), "y": [0, 1] * 5})

    def table(path: str, **kw) -> dict:
        return {"kind": "table", "path": path, "target": "y", **kw}

    def folder_with(tmp: Path, fn) -> dict:
        root = tmp / "imgs"
        image_tree(root, per_class=3)
        fn(root)
        return {"kind": "images", "path": str(root)}

    def npz(tmp: Path, **arrays) -> dict:
        np.savez(tmp / "bad.npz", **arrays)
        return {"kind": "arrays", "path": str(tmp / "bad.npz")}

    def npy_huge(tmp: Path) -> dict:
        with (tmp / "huge.npy").open("wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (10**12, 8)})
        np.save(tmp / "labels.npy", np.zeros(3))
        return {"kind": "arrays", "path": str(tmp / "huge.npy"), "labels": str(tmp / "labels.npy")}

    def pickled(tmp: Path) -> dict:
        np.savez(tmp / "bad.npz", x=np.array([{"a": 1}, None], dtype=object), y=np.zeros(2))
        return {"kind": "arrays", "path": str(tmp / "bad.npz")}

    return [
        ("table-target-missing", lambda t: table(_csv(t, "t.csv", ok.rename(columns={"y": "label"}))),
         ["t.csv", "no target column 'y'", "'a', 'label'"]),
        ("table-free-text", lambda t: table(_csv(t, "t.csv", ok.assign(note=[f"n{i}" for i in range(10)]))),
         ["t.csv", "column 'note'", "neither numeric nor categorical"]),
        ("table-stray-word", lambda t: table(_csv(t, "t.csv", ok.assign(a=[1, 2, 3, "x", 5, 6, 7, 8, 9, 10]))),
         ["t.csv", "column 'a'", "row 4", "'x'"]),
        ("table-nan", lambda t: table(_csv(t, "t.csv", ok.assign(a=[1, np.nan] + list(range(8))))),
         ["t.csv", "column 'a'", "missing", "row 2"]),
        ("table-inf", lambda t: table(_csv(t, "t.csv", ok.assign(a=[1, 2, np.inf] + list(range(7))))),
         ["t.csv", "column 'a'", "infinite", "row 3"]),
        ("table-rare-class", lambda t: table(_csv(t, "t.csv", ok.assign(y=[0, 1] * 4 + [0, 2]))),
         ["t.csv", "column 'y'", "class '2' has 1 training example"]),
        ("table-empty", lambda t: put(t / "e.csv", b"") or table(str(t / "e.csv")), ["e.csv", "empty file"]),
        ("table-header-only", lambda t: put(t / "h.csv", "a,y\n") or table(str(t / "h.csv")),
         ["h.csv", "no data rows"]),
        ("table-binary", lambda t: put(t / "b.csv", bytes(range(256)) * 8) or table(str(t / "b.csv")),
         ["b.csv", "binary file"]),
        ("table-ragged", lambda t: put(t / "r.csv", "a,y\n1,0\n2,1,7,8\n3,0\n") or table(str(t / "r.csv")),
         ["r.csv", "malformed CSV", "line 3"]),
        ("table-directory", lambda t: (t / "d.csv").mkdir() or table(str(t / "d.csv")), ["d.csv", "a folder"]),
        ("table-too-large", lambda t: _sparse(t / "big.csv") or table(str(t / "big.csv")),
         ["big.csv", "too large to load"]),
        ("table-test-unseen-class", lambda t: table(_csv(t, "t.csv", ok),
                                                    test_path=_csv(t, "u.csv", ok.assign(y=[0, 1, 5] + [1] * 7))),
         ["u.csv", "row 3", "class '5'"]),
        ("arrays-length-mismatch", lambda t: npz(t, x=np.zeros((5, 2)), y=np.zeros(4)),
         ["bad.npz", "array 'x'", "5 rows", "array 'y'", "4"]),
        ("arrays-pickled", pickled, ["bad.npz", "'x'", "Python objects", "allow_pickle=False"]),
        ("arrays-nan", lambda t: npz(t, x=np.array([[1.0], [np.nan], [2.0]]), y=np.zeros(3)),
         ["bad.npz", "array 'x'", "row 1"]),
        ("arrays-no-y", lambda t: npz(t, x=np.zeros((5, 2)), labels=np.zeros(5)), ["bad.npz", "no array 'y'"]),
        ("arrays-junk", lambda t: put(t / "j.npz", b"junk" * 9) or
         {"kind": "arrays", "path": str(t / "j.npz")}, ["j.npz", "not a zip"]),
        ("arrays-too-large", npy_huge, ["huge.npy", "too large to load"]),
        ("images-empty-folder", lambda t: (t / "none").mkdir() or {"kind": "images", "path": str(t / "none")},
         ["none", "no class folders"]),
        ("images-empty-class", lambda t: folder_with(t, lambda r: (r / "train" / "yak").mkdir()),
         ["train/yak", "empty class folder"]),
        ("images-unreadable", lambda t: folder_with(t, lambda r: (r / "train/cat/bad.png").write_bytes(b"not a png")),
         ["train/cat/bad.png", "unreadable image"]),
        ("images-truncated", lambda t: folder_with(t, lambda r: (r / "train/cat/0.png").write_bytes(
            (r / "train/cat/0.png").read_bytes()[:60])), ["train/cat/0.png", "unreadable image"]),
        ("images-mixed-sizes", lambda t: folder_with(t, lambda r: write_png(r / "train/dog/9.png",
                                                                            np.zeros((3, 3), np.uint8))),
         ["imgs", "different sizes", "train/dog/9.png is 3×3", "image_size"]),
        ("images-one-example-class", lambda t: folder_with(t, lambda r: write_png(r / "train/yak/0.png",
                                                                                  np.zeros((6, 5), np.uint8))),
         ["imgs", "class 'yak' has 1 training example"]),
        ("images-too-large", lambda t: folder_with(t, lambda r: (r / "train/cat/huge.png").write_bytes(
            _png_header(30000, 30000))), ["train/cat/huge.png", "too large"]),
        ("images-a-file", lambda t: put(t / "f.png", b"x") or {"kind": "images", "path": str(t / "f.png")},
         ["f.png", "a file, not a folder"]),
        ("hf-hub-name", lambda t: {"kind": "hf", "path": "someone/some-dataset", "text_column": "text"},
         ["someone/some-dataset", "only local data", "save_to_disk"]),
        ("hf-no-column", lambda t: put(t / "d.jsonl", '{"text": "hi"}\n') or
         {"kind": "hf", "path": str(t / "d.jsonl"), "text_column": "body"}, ["d.jsonl", "no column 'body'", "text"]),
        ("hf-malformed-json", lambda t: put(t / "d.jsonl", '{"text": "hi"}\n{"text": \n') or
         {"kind": "hf", "path": str(t / "d.jsonl"), "text_column": "text"}, ["d.jsonl", "cannot read as json"]),
    ]


BAD = _bad_cases()


@pytest.fixture(scope="module")
def good_sweep(tmp_path_factory):
    """A finished sweep directory of the user's own table: bad loads aimed at it must leave it as it is."""
    tmp = tmp_path_factory.mktemp("good")
    spec = own_specs(tmp)["table"]
    spec["vary"] = {"model.width": [2]}
    (tmp / "s.yaml").write_text(yaml.safe_dump(spec))
    assert main(["sweep", str(tmp / "s.yaml"), "--out", str(tmp / "out"), "--no-progress"]) == 0
    return tmp / "out"


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case, setup, fragments", BAD, ids=[c[0] for c in BAD])
def test_bad_data_is_one_line_exit_2_and_the_good_sweep_is_untouched(tmp_path, capsys, good_sweep, case, setup,
                                                                     fragments):
    if case.startswith("hf"):
        needs("datasets", "hf")
    image_folder._MEMORY.clear()
    task = setup(tmp_path)
    model = {"family": "gpt", "n_layer": 1, "n_head": 1, "d_model": 8, "context": 8} if "text_column" in task \
        else {"family": "mlp", "width": 2}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({"task": task, "model": model, "train": {"steps": 2}}))
    before = _snapshot(good_sweep)
    code, out, err = cli(["sweep", str(tmp_path / "spec.yaml"), "--out", str(good_sweep), "--no-progress"], capsys)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("overparam: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert _snapshot(good_sweep) == before
