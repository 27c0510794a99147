"""Which runs may share one fused program, and where each member sits in it.

Members are laid out bucket by bucket: a bucket holds members of one *padded* width, stacked
along a leading member axis, so every layer is one batched matmul per bucket. A member's padded
width depends only on its own width and the settings every member of its group shares, never on
which other runs are in the group: a run trains to the same bits whether its neighbours diverge,
are resumed later or are left out (the bit-identity test relies on this).

Padding rule: grow widths along a grid on which a member's padded parameter count is at most
``MAX_WASTE`` × its own; members at least ``EXACT_PARAMS`` large keep their exact width (their
matmuls are big enough that one more bucket costs less than the padded FLOPs would).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from overparam.models import family_module
from overparam.models.base import Shape

FAMILIES = ("mlp", "rff", "linear")  # gpt: later (its own engine over token streams)
MAX_WASTE = 1.25  # padded params / own params, at most (the "padding wastes <= 25 %")
EXACT_PARAMS = {"cpu": 1 << 16, "cuda": 1 << 20}  # own bucket above this many params (≈ 3 ms/step on CPU)
CUDA_ALIGN = 8  # bf16/fp32 tensor-core tiles want widths in multiples of 8

# Per-member keys of a resolved config. Everything else must be equal within a group.
MEMBER_TRAIN_KEYS = ("lr", "weight_decay", "dropout", "clip", "momentum", "schedule", "warmup_steps",
                     "checkpoint", "ridge", "solver", "rcond")
MEMBER_TASK_KEYS = ("label_noise", "noise_seed")  # change the labels, never the inputs
MEMBER_MODEL_KEYS = ("width",)


def fusable(config: dict[str, Any]) -> bool:
    """Gradient-trained runs of the families this engine knows (closed form never fuses)."""
    from overparam.train.recipe import CLOSED_FORM

    return config["model"]["family"] in FAMILIES and config["train"]["optimizer"] not in CLOSED_FORM


def fuse_key(config: dict[str, Any]) -> str:
    """Runs with equal keys can train as one program: same inputs, batch shapes, steps, evals.

    The run's ``seed`` is not part of it: members draw their own batch order and init; what
    must agree is the shape of every step (batch size, steps) and when evaluations happen.
    """
    task = {k: v for k, v in config["task"].items() if k not in MEMBER_TASK_KEYS}
    model = {k: v for k, v in config["model"].items() if k not in MEMBER_MODEL_KEYS}
    train = {k: v for k, v in config["train"].items() if k not in MEMBER_TRAIN_KEYS}
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


@lru_cache(maxsize=64)
def _grid(model_json: str, shape: Shape, limit: int) -> tuple[int, ...]:
    """Widths 1 = g0 < g1 < … where params(g_k) <= MAX_WASTE × params(g_{k-1} + 1)."""
    model = json.loads(model_json)
    params = _params_fn(model, shape)
    grid, top, cap = [1], 1, 2 * limit + 2  # cap: params may stop growing (linear beyond its input)
    while top < limit:
        budget = MAX_WASTE * params(top + 1)
        lo, hi = top + 1, min(2 * top + 2, cap)
        while params(hi) <= budget and hi < cap:
            hi = min(2 * hi, cap)
        while lo < hi:  # largest g with params(g) <= budget; params grows with width
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if params(mid) <= budget else (lo, mid - 1)
        top = lo
        grid.append(top)
    return tuple(grid)


def _params_fn(model: dict[str, Any], shape: Shape) -> Callable[[int], int]:
    family = family_module(model["family"])
    return lambda w: family.count_params({**model, "width": w}, shape)


def padded_width(config: dict[str, Any], shape: Shape, device_type: str) -> int:
    """The width a member is stored at: its own, or the next grid point (see module doc)."""
    w = own_width(config, shape)
    model = {k: v for k, v in config["model"].items() if k != "width"}
    params = _params_fn(model, shape)
    limit = shape.input_dim if config["model"]["family"] == "linear" else None
    if params(w) >= EXACT_PARAMS.get(device_type, EXACT_PARAMS["cuda"]):
        pad = w
    else:
        grid = _grid(json.dumps(model, sort_keys=True), shape, 1 << max(w - 1, 1).bit_length())
        pad = next(g for g in grid if g >= w)
    if device_type == "cuda" and pad >= CUDA_ALIGN:
        pad = -(-pad // CUDA_ALIGN) * CUDA_ALIGN
    return min(pad, limit) if limit else pad


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

    def waste(self, params: Callable[[int], int]) -> float:
        """Padded parameters / own parameters − 1, over the whole group."""
        own = sum(params(w) for w in self.widths)
        padded = sum(b.size * params(b.width) for b in self.buckets)
        return padded / own - 1.0


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
