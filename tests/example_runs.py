"""The shipped example specs, shrunk to run in seconds on a CPU, with the follow-up analyses their report reads.

``SHRINK``: per example, the changes that keep its shape (its task, model family, axes and sections) and make
it fast. Each top-level section of the change (task, model, train, vary) is merged into the example's own, one
key at a time, so an axis or option left out keeps the example's value. ``FOLLOW_UPS``: the commands whose saved
analysis a section of the report reads (``compress``, ``landscape``), run on the sweep before its report.
Examples that read ``../shared/data`` (MNIST, CIFAR-10) are in ``NEEDS_DATA``; a test skips them without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from overparam.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SHARED_DATA = ROOT.parent / "shared" / "data"

SHRINK: dict[str, dict[str, Any]] = {
    "rff-belkin": {"vary": {"model.width": {"geometric": [25, 2000], "count": 9, "include": [500]},
                            "seed": [0, 1]}},
    "digits-double-descent": {"vary": {"model.width": [4, 16, 64, 256], "seed": [0, 1]},
                              "train": {"steps": 300, "eval_log_points": 5}},
    "teacher-double-descent": {"vary": {"model.width": [20, 60, 95, 100, 105, 150, 200], "task.seed": [0, 1, 2]}},
    "edge-of-stability": {"train": {"steps": 120, "eval_every": 40},
                          "vary": {"train.lr": [0.04, 0.16], "model.width": [16, 64]}},
    "own-task-wine": {"vary": {"model.width": [2, 8, 32, 128], "seed": [0, 1]},
                      "train": {"steps": 300, "eval_log_points": 4}},
    "table-wine": {"vary": {"model.width": [2, 8, 32, 128], "seed": [0, 1]},
                   "train": {"steps": 300, "eval_log_points": 4, "diagnostics": ["norms"]}},
    "own-model-digits": {"task": {"train_size": 200}, "vary": {"model.width": [2, 16, 128], "seed": [0, 1]},
                         "train": {"steps": 200, "eval_log_points": 4}},
    "arrays-digits": {"vary": {"model.width": {"geometric": [40, 4000], "count": 7, "include": [400]},
                               "seed": [0, 1]}},
    "images-digits": {"vary": {"model.width": [1, 2, 4]}, "train": {"steps": 120, "eval_log_points": 4}},
    "hf-digits": {"vary": {"model.width": [2, 16, 128], "seed": [0, 1]},
                  "train": {"steps": 200, "eval_log_points": 4}},
    # language models: evaluated once, at the end (an evaluation reads 32k training tokens), and checkpoints
    # only where the interpretability section reads them (~10 s per size): on hf-descr-lm
    "hf-descr-lm": {"task": {"test_size": 4096}, "vary": {"model.d_model": [8, 16, 32]},
                    "train": {"steps": 60, "warmup_steps": 5, "eval_log_points": 0, "eval_every": 0}},
    "hf-causal-lm-scaling": {"task": {"test_size": 4096}, "model": {"context": 32},
                             "vary": {"model.config.n_embd": [16, 32], "model.config.n_layer": [1, 2]},
                             "train": {"steps": 60, "warmup_steps": 5, "eval_every": 0, "checkpoint": False}},
    "lm-scaling": {"task": {"test_size": 4096}, "model": {"context": 32},
                   "vary": {"model.d_model": [16, 32, 64], "train.steps": [20, 40, 80]},
                   "train": {"warmup_steps": 5, "eval_log_points": 0, "eval_every": 0, "checkpoint": False}},
    "markov-scaling": {"task": {"train_size": 50000, "test_size": 4096},
                       "vary": {"model.d_model": [16, 32, 64], "train.steps": [20, 40, 80]},
                       "train": {"warmup_steps": 5, "eval_log_points": 0, "eval_every": 0, "checkpoint": False}},
    "icl-markov": {"task": {"train_size": 4000, "test_size": 256}, "vary": {"model.d_model": [8, 16, 32]},
                   "train": {"steps": 100, "warmup_steps": 10, "eval_every": 50, "eval_log_points": 4,
                             "checkpoint": False}},
    "fewshot": {"task": {"train_size": 4000, "test_size": 256}, "vary": {"model.d_model": [8, 16, 32]},
                "train": {"steps": 100, "warmup_steps": 10, "checkpoint": False}},
    "long-context": {"task": {"test_size": 8192}, "vary": {"model.d_model": [16, 32], "model.context": [16, 64]},
                     "train": {"steps": 60, "warmup_steps": 5, "eval_every": 0, "checkpoint": False}},
    "specialization": {"task": {"train_size": 40000, "test_size": 4096}, "vary": {"model.d_model": [16, 32, 64]},
                       "train": {"steps": 60, "warmup_steps": 5, "eval_every": 0, "checkpoint": False}},
    "mnist-cnn": {"task": {"train_size": 300, "test_size": 300}, "vary": {"model.width": [1, 2, 4]},
                  "train": {"steps": 60, "eval_log_points": 4}},
    "cifar10-cnn-double-descent": {"task": {"train_size": 500, "test_size": 500}, "vary": {"model.width": [1, 2, 4]},
                                   "train": {"steps": 40, "batch_size": 128, "eval_every": 20, "eval_log_points": 3}},
    "cifar10-resnet18k-double-descent": {"task": {"train_size": 256, "test_size": 256}, "vary": {"model.width": [1, 2]},
                                         "train": {"steps": 20, "batch_size": 64, "eval_every": 10,
                                                   "eval_log_points": 3}},
}
NEEDS_DATA = {"mnist-cnn", "cifar10-cnn-double-descent", "cifar10-resnet18k-double-descent"}
SCALING = "scaling"  # a follow-up: the scaling analysis with 100 resamples (the report's own takes 1,000)
FOLLOW_UPS: dict[str, list[list[str] | str]] = {  # "{dir}" and "{widest}" (the widest seed-0 run) filled in
    "table-wine": [["compress", "{dir}", "--run", "{widest}", "--prune", "0.5", "--structured", "0.5",
                    "--quantize", "int8", "--no-onnx", "--repeats", "3", "--finetune-steps", "50"]],
    "images-digits": [["landscape", "{dir}"]],
    **{name: [SCALING] for name in ("hf-descr-lm", "hf-causal-lm-scaling", "lm-scaling", "markov-scaling",
                                    "icl-markov", "fewshot", "long-context", "specialization")},
}


def _absolute(path: str) -> str:
    """An example's relative path (``examples/data/…``, ``../shared/data/…``) from the checkout's root."""
    return str((ROOT / path).resolve()) if not Path(path).is_absolute() and not path.startswith("embedded:") else path


def shrunk(name: str) -> dict[str, Any]:
    spec = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    for key, value in SHRINK[name].items():
        spec[key] = {**(spec.get(key) or {}), **value}
    for section in ("task", "model"):
        for key in ("path", "family"):
            value = spec[section].get(key)
            if isinstance(value, str) and ("/" in value) and not value.startswith("embedded:"):
                head, sep, attr = value.partition(".py:")
                spec[section][key] = _absolute(head + ".py") + sep.removeprefix(".py") + attr if sep else \
                    _absolute(value)
    return spec


def widest_run(directory: Path) -> str:
    from overparam.store import load_runs

    runs = load_runs(directory, status="done")
    return str(runs[runs["seed"] == runs["seed"].min()].sort_values("params").iloc[-1]["id"])


def run_example(name: str, out: Path) -> Path:
    """Sweep the shrunk example into ``out/s``, run its follow-ups, write its report; returns ``out/s``."""
    spec = out / "spec.yaml"
    spec.write_text(yaml.safe_dump(shrunk(name)))
    sweep = out / "s"
    assert main(["sweep", str(spec), "--out", str(sweep), "--no-progress"]) == 0
    for argv in FOLLOW_UPS.get(name, []):
        if argv == SCALING:  # what the demo's hook does after its LM part: DIR/analyses/scaling.json
            from overparam.analysis.scaling_report import analyze_scaling_sweep

            analyze_scaling_sweep(sweep, bootstrap=100)
            continue
        filled = [a.format(dir=sweep, widest=widest_run(sweep) if "{widest}" in a else "") for a in argv]
        assert main(filled) == 0, filled
    assert main(["report", str(sweep)]) == 0
    return sweep
