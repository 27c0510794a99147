"""Derive the example data files in this folder from scikit-learn's bundled data sets (no download).

Run from the repository root: ``python examples/data/make_data.py``. It rewrites:

- ``wine.csv``: ``sklearn.datasets.load_wine`` (178 wines, 13 chemical measurements), the class
  as a text column ``cultivar`` (``class_0``, ``class_1``, ``class_2``), for ``examples/table-wine.yaml``;
- ``digits.npz``: ``load_digits`` (1,797 8×8 images), pixels 0..16 scaled to uint8 0..255 as ``x``
  (n, 8, 8) and the digit as ``y``, for ``examples/arrays-digits.yaml``;
- ``digits-images/``: an ImageFolder tree of 8×8 grayscale PNGs, ``train/<digit>/`` (the first
  ``TRAIN_PER_CLASS`` images of each digit in load_digits' order) and ``test/<digit>/`` (the next
  ``TEST_PER_CLASS``), for ``examples/images-digits.yaml``;
- ``digits-hf.parquet``: the same images as a Hugging Face dataset (an ``Image`` column of PNG
  bytes, a ``ClassLabel`` column ``label``), written by ``datasets.Dataset.to_parquet``, for
  ``examples/hf-digits.yaml``;
- ``sklearn-descr.jsonl``: the descriptions (``DESCR``) of scikit-learn's six bundled data sets,
  one JSON line ``{"dataset": ..., "text": ...}`` per paragraph, for ``examples/hf-descr-lm.yaml``.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn import datasets as sk

HERE = Path(__file__).resolve().parent
TRAIN_PER_CLASS, TEST_PER_CLASS = 50, 20
DESCR_SETS = ("load_iris", "load_wine", "load_digits", "load_breast_cancer", "load_diabetes", "load_linnerud")


def digits_uint8() -> tuple[np.ndarray, np.ndarray]:
    d = sk.load_digits()
    return np.round(d.images * 255 / 16).astype(np.uint8), d.target.astype(np.int64)


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def write_wine() -> None:
    w = sk.load_wine(as_frame=True)
    frame = w.data.copy()
    frame["cultivar"] = [w.target_names[t] for t in w.target]
    frame.to_csv(HERE / "wine.csv", index=False)


def image_split(y: np.ndarray) -> list[tuple[int, str]]:
    """(image index, split) for the ImageFolder tree and the parquet: per digit, first train then test."""
    chosen = []
    for digit in range(10):
        rows = np.flatnonzero(y == digit)
        chosen += [(int(i), "train") for i in rows[:TRAIN_PER_CLASS]]
        chosen += [(int(i), "test") for i in rows[TRAIN_PER_CLASS:TRAIN_PER_CLASS + TEST_PER_CLASS]]
    return chosen


def write_digits() -> None:
    x, y = digits_uint8()
    np.savez_compressed(HERE / "digits.npz", x=x, y=y)
    tree = HERE / "digits-images"
    shutil.rmtree(tree, ignore_errors=True)
    for i, split in image_split(y):
        folder = tree / split / str(y[i])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:04d}.png").write_bytes(png(x[i]))


def write_hf() -> None:
    import datasets

    datasets.disable_progress_bars()
    x, y = digits_uint8()
    chosen = [i for i, _ in image_split(y)]
    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=[str(d) for d in range(10)])})
    table = datasets.Dataset.from_dict({"image": [{"bytes": png(x[i]), "path": None} for i in chosen],
                                        "label": [int(y[i]) for i in chosen]}, features=features)
    table.to_parquet(str(HERE / "digits-hf.parquet"))
    with (HERE / "sklearn-descr.jsonl").open("w", encoding="utf-8") as f:
        for name in DESCR_SETS:
            for paragraph in getattr(sk, name)().DESCR.split("\n\n"):
                if paragraph.strip():
                    f.write(json.dumps({"dataset": name[5:], "text": paragraph.strip("\n")}) + "\n")


if __name__ == "__main__":
    write_wine()
    write_digits()
    write_hf()
    total = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file())
    print(f"{HERE}: {sum(1 for p in HERE.rglob('*') if p.is_file())} files, {total:,} bytes")
