"""Which runs may share one fused program, and where each member sits in it.

Members are laid out bucket by bucket: a bucket holds members of one *padded* width, stacked
along a leading member axis, so every layer is one batched matmul per bucket. A member's padded
width depends only on its own width and the settings every member of its group shares, never on
which other runs are in the group: a run trains to the same bits whether its neighbours diverge,
are resumed later or are left out (the bit-identity test relies on this).

Padding rule: round widths up to a grid on which a member's padded parameter count is at most
``MAX_WASTE`` × its own (``padded_width``); members at least ``EXACT_PARAMS`` large keep their
exact width (their matmuls are big enough that one more bucket costs less than padded FLOPs);
members up to ``MIN_PAD`` wide share one bucket of that width (a bmm of 16 rows costs what one
of 2 rows does: below that, per-bucket overhead is all there is).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from overparam.models import family_module
from overparam.models.base import Shape

CONV_FAMILIES = ("cnn", "resnet18k")  # grouped convs: train/fused_cnn.py, exact widths (no padding)
FAMILIES = ("mlp", "rff", "linear", *CONV_FAMILIES, "gpt")  # gpt: train/fused_gpt.py, bucketed by shape
MAX_WASTE = 1.25  # padded params / own params, at most (the "padding wastes <= 25 %")
EXACT_PARAMS = {"cpu": 1 << 16, "cuda": 1 << 20}  # own bucket above this many params (≈ 3 ms/step on CPU)
MIN_PAD = 16  # narrower members all pad to 16: their matmuls cost the same, their buckets do not
CUDA_ALIGN = 8  # bf16/fp32 tensor-core tiles want widths in multiples of 8

# Per-member keys of a resolved config. Everything else must be equal within a group.
MEMBER_TRAIN_KEYS = ("lr", "weight_decay", "dropout", "clip", "momentum", "schedule", "warmup_steps",
                     "checkpoint", "ridge", "solver", "rcond")
MEMBER_TASK_KEYS = ("label_noise", "noise_seed")  # change the labels, never the inputs
MEMBER_MODEL_KEYS = ("width",)
GPT_SHAPE_KEYS = ("n_layer", "d_model", "n_head", "tied")  # gpt members bucket by shape (train/fused_gpt.py)
VMAP_FAMILIES = ("hf-causal-lm",)  # built-in families trained fused by train/fused/functional.py, as user models are


def functional_engine(family: str) -> bool:
    """True when runs of ``family`` fuse through ``torch.func`` (train/fused/functional.py): the user's own
    factories and ``VMAP_FAMILIES``; members must share one module structure (no member model keys)."""
    from overparam.models import is_user_family

    return family in VMAP_FAMILIES or is_user_family(family)


def fusable(config: dict[str, Any]) -> bool:
    """Gradient-trained runs of the families this engine knows (closed form never fuses).

    ``gpt`` with dropout does not: attention draws its dropout masks inside the fused kernel; nor
    does an ``mlp`` on augmented images (``task.augment``), which only the loop and the conv engine apply.
    """
    from overparam.train.recipe import CLOSED_FORM

    family = config["model"]["family"]
    if family == "gpt" and config["train"]["dropout"] > 0:
        return False
    if config["task"].get("augment", "none") != "none" and family in FAMILIES and family not in CONV_FAMILIES:
        return False  # the mlp engine draws no per-batch augmentation (``task.augment``); the conv and vmap ones do
    known = family in FAMILIES or functional_engine(family)  # user factories, hf: train/fused/functional.py
    return known and config["train"]["optimizer"] not in CLOSED_FORM


def fuse_key(config: dict[str, Any]) -> str:
    """Runs with equal keys can train as one program: same inputs, batch shapes, steps, evals.

    The run's ``seed`` is not part of it: members draw their own batch order and init; what
    must agree is the shape of every step (batch size, steps) and when evaluations happen.
    """
    task = {k: v for k, v in config["task"].items() if k not in MEMBER_TASK_KEYS}
    user = functional_engine(config["model"]["family"])
    member_model = () if user else GPT_SHAPE_KEYS if config["model"]["family"] == "gpt" else MEMBER_MODEL_KEYS
    model = {k: v for k, v in config["model"].items() if k not in member_model}
    train = {k: v for k, v in config["train"].items() if k not in MEMBER_TRAIN_KEYS}
    if user:  # a module may be nn.Identity at dropout 0 and nn.Dropout above: another structure
        train["dropout > 0"] = config["train"]["dropout"] > 0
    if train["dtype"] is None:  # resolve the default so float32-by-default and explicit float32 agree
        train["dtype"] = "float32"
    if train["optimizer"] == "gd":
        train["batch_size"] = None  # full batch whatever it says
    return json.dumps({"task": task, "model": model, "train": train}, sort_keys=True)


def own_width(config: dict[str, Any], shape: Shape) -> int:
    """The member's width as its family builds it (``linear`` clips to the input dimension)."""
    width = config["model"].get("width")
    if config["model"]["family"] == "linear":
        return min(width or shape.input_dim, shape.input_dim)
    return int(width)


def _significant_bits(config: dict[str, Any]) -> int:
    """Grid resolution: q significant bits bound the width ratio by 1 + 2^(1−q), and the
    parameter ratio by its power p (params grow like width^p): q = 3 (≤ 1.25) when p = 1,
    q = 5 (1.0625² ≈ 1.13) when hidden-to-hidden layers make p = 2."""
    model = config["model"]
    return 5 if model["family"] == "mlp" and model.get("depth", 1) >= 2 else 3


def padded_width(config: dict[str, Any], shape: Shape, device_type: str) -> int:
    """The width a member is stored at: its own, or the next grid point (see module doc).

    The grid holds the numbers with at most q significant bits (…, 32, 40, 48, 56, 64, 80, …
    for q = 3): round widths stay exact, and padding wastes at most ``MAX_WASTE`` − 1.
    """
    w = own_width(config, shape)
    family = family_module(config["model"]["family"])
    params = family.count_params({**config["model"], "width": w}, shape)
    if params >= EXACT_PARAMS.get(device_type, EXACT_PARAMS["cuda"]):
        pad = w
    elif w <= MIN_PAD:
        pad = MIN_PAD
    else:
        drop = max(w.bit_length() - _significant_bits(config), 0)
        pad = -(-w >> drop) << drop  # round up to a multiple of 2^drop
    if device_type == "cuda" and pad >= CUDA_ALIGN:
        pad = -(-pad // CUDA_ALIGN) * CUDA_ALIGN
    if config["model"]["family"] == "linear":
        pad = min(pad, shape.input_dim)
    return pad


@dataclass(frozen=True)
class Bucket:
    """Members stored at one padded width: slots ``start:stop`` of the fused order."""

    width: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Layout:
    """The fused order: ``order[slot]`` is the member's index in the caller's list."""

    order: tuple[int, ...]
    widths: tuple[int, ...]  # own width per slot
    buckets: tuple[Bucket, ...]

    @property
    def size(self) -> int:
        return len(self.order)


def plan_layout(configs: list[dict[str, Any]], shape: Shape, device_type: str) -> Layout:
    """Sort members by padded width (stable), one bucket per distinct padded width."""
    pads = [padded_width(c, shape, device_type) for c in configs]
    order = sorted(range(len(configs)), key=lambda i: (pads[i], i))
    buckets, start = [], 0
    for slot in range(1, len(order) + 1):
        if slot == len(order) or pads[order[slot]] != pads[order[start]]:
            buckets.append(Bucket(pads[order[start]], start, slot))
            start = slot
    widths = tuple(own_width(configs[i], shape) for i in order)
    return Layout(tuple(order), widths, tuple(buckets))
