"""Train one language model: random windows of a token stream, next-token cross-entropy.

Batches are ``batch_size`` windows of ``context + 1`` tokens at offsets drawn uniformly from
the run's ``batches`` stream (:func:`window_offsets`, a pure function of the stream length,
context, batch size, steps and seed, so a fused engine can draw the very same windows). A step
therefore sees ``batch_size × context`` training tokens; ``metrics["tokens"]`` counts them.

Losses are in nats per token, averaged over every position of every window (a position t
predicts token t + 1 from the t + 1 tokens before it). They are measured on a fixed set of
windows per split (:func:`eval_offsets`): the split tiled by consecutive non-overlapping
windows from its start, or, when that would exceed ``EVAL_TOKENS`` predicted tokens,
``EVAL_TOKENS // context`` windows evenly spaced over the whole split. The same windows are
used at every evaluation of every run with that context, so curves and runs compare exactly.

A task made of independent sequences (``icl-markov``, ``fewshot``) sets ``info["sequence_length"]``:
its training and evaluation windows then start only at sequence starts (:func:`sequence_stride`).
Each evaluation also records the task's own numbers (``train.lm_measures.curve_probe``: the ICL
score and induction score of ``icl-markov``; nothing for other tasks).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from itertools import islice
from typing import Any

import torch
import torch.nn.functional as F

from overparam.data.base import TaskData
from overparam.errors import DataError, SpecError
from overparam.models.base import generator
from overparam.train.batches import eval_steps
from overparam.train.health import clip_and_check, diverged, flag
from overparam.train.lm_measures import curve_probe
from overparam.train.optim import build_optimizer, lr_at
from overparam.train.precision import autocast_region, run_autocast
from overparam.train.result import TrainResult
from overparam.train.snapshot import Snapshots, model_state

EVAL_TOKENS = 32_768  # predicted tokens per split per evaluation (the same windows for every run)
EVAL_BATCH_TOKENS = 16_384  # tokens per forward pass during evaluation (bounds memory)
EVAL_BATCH_LOGITS = 2**25  # and at most this many logits per pass: 128 MB in float32 for any vocab


def default_lr(d_model: int) -> float:
    """Adam(W) peak lr for a width: 0.256 / d_model (2e-3 at d_model = 128), capped at 1e-2.

    ``train_lm`` uses ``train.lr`` as given: one value for every width of a sweep (a spec's axes
    are a product, so lr cannot follow d_model inside one sweep). This is the rule for choosing
    it: Adam's update is ~lr per coordinate, so a hidden matmul's output moves ∝ d_model·lr, and
    lr ∝ 1/d_model keeps that fixed as the width grows (μP for hidden weights, Yang et al. 2022).
    Measured on the embedded corpus (char level, 2 layers, context 64, 300 steps of 16 windows,
    AdamW, 30 warmup steps, cosine), test loss at lr 1e-3 / 3e-3 / 1e-2: d_model 32: 2.61 / 2.33 /
    2.25; 64: 2.34 / 2.19 / 2.34; 128: 2.18 / 2.08 / 2.50: the best lr falls with width, roughly
    as the rule says. A sweep over d_model 32–128 takes one lr near its middle width's (3e-3 is
    within 4 % of every width's best of those three).
    """
    return min(1e-2, 2e-3 * 128 / d_model)


def sequence_stride(task: TaskData) -> int:
    """Tokens per independent sequence of a task made of sequences (``info["sequence_length"]``:
    ``icl-markov``, ``fewshot``), whose windows start only at sequence starts; 1 for a stream."""
    return int(task.info.get("sequence_length") or 1)


def window_offsets(n_tokens: int, context: int, batch_size: int, steps: int,
                   seed: int, stride: int = 1) -> Iterator[torch.Tensor]:
    """``steps`` int64 tensors of ``batch_size`` window starts, uniform in [0, n_tokens − context − 1].

    Drawn from ``generator(seed, "batches")``; window ``o`` is ``tokens[o : o + context + 1]``.
    ``stride`` > 1 (a task of sequences of that many tokens): starts uniform over the sequence starts.
    """
    if n_tokens < context + 1:
        raise ValueError(f"{n_tokens} tokens cannot hold a window of {context + 1}")
    gen = generator(seed, "batches")
    for _ in range(steps):
        if stride > 1:
            yield torch.randint(0, n_tokens // stride, (batch_size,), generator=gen) * stride
        else:
            yield torch.randint(0, n_tokens - context, (batch_size,), generator=gen)


def eval_offsets(n_tokens: int, context: int, max_tokens: int = EVAL_TOKENS, stride: int = 1) -> torch.Tensor:
    """The fixed evaluation windows of a split (see the module docstring); with ``stride`` > 1, the
    starts of the split's sequences (all, or ``max_tokens // context`` of them evenly spaced)."""
    if stride > 1:
        n_seq = n_tokens // stride
        keep = max(1, min(n_seq, max_tokens // context))
        if keep == n_seq:
            return torch.arange(n_seq, dtype=torch.int64) * stride
        return torch.linspace(0, n_seq - 1, keep, dtype=torch.float64).round().to(torch.int64) * stride
    fit = (n_tokens - 1) // context  # non-overlapping windows of context + 1 tokens, sharing ends
    keep = max(1, min(fit, max_tokens // context))
    if keep == fit:
        return torch.arange(fit, dtype=torch.int64) * context
    return torch.linspace(0, n_tokens - context - 1, keep, dtype=torch.float64).round().to(torch.int64)


def windows(tokens: torch.Tensor, offsets: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets, each (B, context), of the windows starting at ``offsets``."""
    idx = offsets.to(tokens.device)[:, None] + torch.arange(context + 1, device=tokens.device)  # (B, T+1)
    w = tokens[idx]  # (B, T+1)
    return w[:, :-1], w[:, 1:]


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy in nats over all (B, T) positions."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


@torch.no_grad()
def curve_point(module: torch.nn.Module, task: Any, train: tuple[torch.Tensor, torch.Tensor],
                test: tuple[torch.Tensor, torch.Tensor], context: int, tokens_seen: int,
                probe: Any) -> dict[str, Any]:
    """One evaluation of a language model, as every trainer stores it: train and test loss over the
    fixed windows of ``train``/``test`` (tokens, offsets), tokens seen, and the task's own numbers."""
    return {"train_loss": mean_loss(module, *train, context, task.vocab_size),
            "test_loss": mean_loss(module, *test, context, task.vocab_size),
            "train_error": None, "test_error": None, "tokens": tokens_seen, **probe(module)}


def mean_loss(model: torch.nn.Module, tokens: torch.Tensor, offsets: torch.Tensor, context: int,
              vocab_size: int = 256) -> float:
    """Mean loss over the windows at ``offsets``, in chunks that bound tokens and logits per pass."""
    was_training = model.training
    model.eval()
    per = max(1, min(EVAL_BATCH_TOKENS, EVAL_BATCH_LOGITS // vocab_size) // context)
    total = 0.0
    for start in range(0, len(offsets), per):
        x, y = windows(tokens, offsets[start:start + per], context)
        total += float(lm_loss(model(x), y)) * y.numel()
    model.train(was_training)
    return total / (len(offsets) * context)


def _check_lengths(task: TaskData, context: int) -> None:
    source = task.info.get("source") or task.info.get("name") or "the corpus"
    for split, tokens in (("training", task.tokens_train), ("validation", task.tokens_test)):
        if len(tokens) < context + 1:
            raise DataError(f"{source}: too short for model.context = {context}: the {split} split has "
                            f"{len(tokens)} tokens, a window needs {context + 1}")


def check_run(config: dict[str, Any], task: TaskData) -> int:
    """The run's context, once its recipe and the task's splits are known to suit a language model
    (every trainer of language models calls this first, so they refuse the same runs alike)."""
    context = config["model"].get("context")
    if context is None:
        raise SpecError(f"model.family: {config['model']['family']!r} is not a language model (language tasks "
                        f"need family gpt or hf-causal-lm, or a model factory that takes a 'context' keyword)")
    if config["train"]["optimizer"] == "gd":
        raise SpecError("train.optimizer: gd (full batch) does not apply to a language model; use sgd, "
                        "adam or adamw with train.batch_size windows")
    _check_lengths(task, context)
    return context


def train_lm(model: torch.nn.Module, task: TaskData, config: dict[str, Any], device: torch.device,
             dtype: torch.dtype, snapshots: Snapshots | None = None) -> TrainResult:
    """Next-token training with the recipe's optimizer, warmup + schedule, clipping, NaN detection.

    A non-finite loss or gradient norm stops the run as ``diverged`` (metrics: the last finite
    evaluation plus ``diverged_at``), as in ``train.loop``. Metrics: ``train_loss`` and
    ``test_loss`` (nats/token, on the fixed windows), ``train_error`` = ``test_error`` = None
    (a language model has no error rate), ``tokens`` (training tokens seen), ``entropy_rate``
    when the task knows its irreducible loss (``markov``), ``param_norm``, ``unstable``.
    """
    train, seed, context = config["train"], config["seed"], check_run(config, task)
    tokens_train = torch.as_tensor(task.tokens_train, dtype=torch.int64, device=device)
    tokens_test = torch.as_tensor(task.tokens_test, dtype=torch.int64, device=device)
    stride = sequence_stride(task)
    eval_train = eval_offsets(len(tokens_train), context, stride=stride)
    eval_test = eval_offsets(len(tokens_test), context, stride=stride)
    probe = curve_probe(task, context, tokens_test, eval_test)  # a task's own numbers at each evaluation
    model = model.to(device=device, dtype=dtype)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = build_optimizer(params, train)
    steps, batch = train["steps"], train["batch_size"]
    checkpoints = set(eval_steps(steps, train["eval_every"], train["eval_log_points"]))

    def evaluate(step: int) -> dict[str, Any]:
        return {"train_loss": mean_loss(model, tokens_train, eval_train, context, task.vocab_size),
                "test_loss": mean_loss(model, tokens_test, eval_test, context, task.vocab_size),
                "train_error": None, "test_error": None, "tokens": step * batch * context, **probe(model)}

    curve: list[tuple[int, dict[str, Any]]] = []
    if 0 in checkpoints:
        curve.append((0, evaluate(0)))
    torch.manual_seed(seed)  # dropout masks: the only draw from the global stream
    model.train()
    amp = run_autocast(train)  # train.autocast: the forward under bf16 autocast, or nothing
    snap = snapshots or Snapshots.off()
    state = model_state(model, opt, device)
    start, curve = snap.resume(state, curve)  # the last snapshot's step and curve (0 and [] without one)
    step = start
    batches = islice(window_offsets(len(tokens_train), context, batch, steps, seed, stride), start, None)
    for step, offsets in enumerate(batches, start=start + 1):
        for group in opt.param_groups:
            group["lr"] = lr_at(step - 1, train)
        x, y = windows(tokens_train, offsets, context)
        with autocast_region(device, amp):
            logits = model(x)
        loss = lm_loss(logits.to(dtype), y)  # the loss in train.dtype
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if not clip_and_check(loss, params, train["clip"]):
            return diverged(curve, step, f"non-finite loss at step {step}")
        opt.step()
        if step in checkpoints:
            curve.append((step, evaluate(step)))
        snap.step(step, state, curve)
    metrics = dict(curve[-1][1])
    if not all(math.isfinite(v) for v in (metrics["train_loss"], metrics["test_loss"])):
        metrics["diverged_at"] = step
        return TrainResult("diverged", metrics, curve, None, "non-finite loss at the final evaluation")
    if task.info.get("entropy_rate") is not None:
        metrics["entropy_rate"] = float(task.info["entropy_rate"])
    metrics["param_norm"] = float(torch.sqrt(sum((p.detach().double() ** 2).sum() for p in params)))
    flag(metrics, curve)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return TrainResult("done", metrics, curve, state)
