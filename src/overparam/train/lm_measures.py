"""What a language-model run measures beyond its mean loss, on fixed test windows.

Every number here comes from the per-token test losses ℓ[w, t] (window w, position t: the
prediction of token t + 1 from the t + 1 tokens before it) on ``train.lm.eval_offsets``'s
windows, with up to ``MEASURE_TOKENS`` predicted tokens (4× the windows of ``test_loss``: a
single position's loss is a mean over windows only, so it needs more of them); on a test split
that ``test_loss``'s windows already cover, the mean over (w, t) is the run's ``test_loss``.
Standard errors are over windows (for tasks of independent sequences, over sequences), which
keeps the correlation between the positions of one window inside each term.

- **loss by position** (every LM run): mean_w ℓ[w, t] and its standard error, per position;
  how much a model gains from distant context (Kaplan et al. 2020; Olsson et al. 2022).
- **ICL score** (Olsson et al. 2022, "In-context Learning and Induction Heads"): the loss late in
  the context minus the loss early in it. Olsson et al. use tokens 500 and 50 of 512; here both
  are bands of a tenth of the T positions (``icl_positions``): "early" starts at ``round(T / 10)``,
  "late" is the last tenth; a band, not one token, because a window's single-token losses vary by
  nats (one token's loss on text has a standard deviation near 2 nats). Negative: the model
  predicts better with more context. Its standard error is that of the per-window difference.
- **gap to Bayes-optimal** (``icl-markov``): ℓ minus the posterior-mean predictor's loss at the
  last position, paired on the same sequences.
- **prefix-matching score** (Olsson et al. 2022) per layer and head: on sequences made of one
  random permutation r of P distinct tokens repeated, r r r …, the attention a[t, s] a query t
  pays to the keys s whose *previous* token is the query's own token (s − 1 = an earlier copy
  of t's token), summed over those keys and averaged over the queries after the first copy.
  An induction head scores near 1; a head that attends uniformly scores Σ_s 1[match]/(t + 1),
  about (t/P)/(t + 1) ≈ 1/P.
- **few-shot query accuracy** (``fewshot``) at each number of shots k: the label the model ranks
  first among the label tokens at the query (position 2k), against the true label.
- **per-domain test loss** (``text`` with ``mix``): the mean loss on each domain's own test split.

``curve_probe`` adds the ``icl-markov`` numbers to every evaluation of a run, on ``test_loss``'s
windows (so the phase change can be read over training); ``record_lm_measures`` adds the rest to
a finished run's metrics, on every training path (loop or fused), from the run's own weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from overparam.data.base import TaskData
from overparam.errors import OverparamError

MEASURE_TOKENS = 4 * 32_768  # predicted tokens of the final measurements (4 × train.lm.EVAL_TOKENS)
INDUCTION_SEQUENCES = 8  # repeated random sequences per prefix-matching measurement
INDUCTION_SEED = 0


def icl_positions(context: int) -> tuple[list[int], list[int]]:
    """(early positions, late positions) of the ICL score and of the gain from distant context: a
    tenth of the T positions (at least one) from ``round(T/10)`` (at least 1), and the last tenth."""
    band = max(1, context // 10)
    start = min(max(1, round(context / 10)), context - band)
    return list(range(start, start + band)), list(range(context - band, context))


@torch.no_grad()
def token_losses(model: nn.Module, tokens: torch.Tensor, offsets: torch.Tensor, context: int, vocab: int,
                 choices: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-token losses (W, T) in float64 on the windows at ``offsets``; with ``choices`` (token ids),
    also the index of the highest logit among them at every position (W, T)."""
    from overparam.train.lm import EVAL_BATCH_LOGITS, EVAL_BATCH_TOKENS, windows

    was_training = model.training
    model.eval()
    per = max(1, min(EVAL_BATCH_TOKENS, EVAL_BATCH_LOGITS // vocab) // context)
    losses, picks = [], []
    for start in range(0, len(offsets), per):
        x, y = windows(tokens, offsets[start:start + per], context)
        logits = model(x)  # (B, T, V)
        losses.append(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
                      .view(y.shape).double().cpu().numpy())
        if choices is not None:
            picks.append(logits[..., choices.to(logits.device)].argmax(dim=-1).cpu().numpy())
    model.train(was_training)
    return np.concatenate(losses), (np.concatenate(picks) if choices is not None else None)


def _se(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Standard error of the mean along ``axis`` (0 with a single value)."""
    n = values.shape[axis]
    return values.std(axis=axis, ddof=1) / math.sqrt(n) if n > 1 else np.zeros_like(values.mean(axis=axis))


def position_numbers(losses: np.ndarray) -> dict[str, Any]:
    """Loss by position (mean over windows) and its standard error, as lists of floats."""
    return {"loss_by_position": losses.mean(axis=0).tolist(), "loss_by_position_se": _se(losses).tolist()}


def icl_numbers(losses: np.ndarray, bayes: np.ndarray | None = None) -> dict[str, Any]:
    """ICL score (late − early) with its standard error and, given the Bayes predictor's losses on the
    same windows, the gap to it at the last position."""
    early, late = icl_positions(losses.shape[1])
    diff = losses[:, late].mean(axis=1) - losses[:, early].mean(axis=1)  # (W,)
    out: dict[str, Any] = {"icl_score": float(diff.mean()), "icl_score_se": float(_se(diff))}
    if bayes is not None:
        gap = losses[:, -1] - bayes[:, -1]
        out.update(bayes_gap=float(gap.mean()), bayes_gap_se=float(_se(gap)))
    return out


def induction_sequences(vocab: int, context: int, n: int = INDUCTION_SEQUENCES,
                        seed: int = INDUCTION_SEED) -> np.ndarray:
    """(n, copies·P) sequences r r r …: r a random permutation of P = min(context // 2, vocab) distinct
    tokens, repeated as often as fits in ``context`` (at least twice)."""
    period = max(1, min(context // 2, vocab))
    rng = np.random.default_rng(seed)
    r = np.stack([rng.permutation(vocab)[:period] for _ in range(n)])
    return np.tile(r, (1, context // period)).astype(np.int64)


def prefix_matching(attn: np.ndarray, ids: np.ndarray, period: int) -> np.ndarray:
    """Prefix-matching score (L, H) of attention weights (B, L, H, T, T) on sequences ``ids`` (B, T):
    per query t ≥ ``period``, the attention summed over keys s ≥ 1 with ids[s − 1] = ids[t], s ≤ t;
    averaged over those queries and the batch (see the module docstring)."""
    T = ids.shape[1]
    match = np.zeros((ids.shape[0], T, T))
    match[:, :, 1:] = ids[:, :, None] == ids[:, None, :-1]  # (B, t, s): token before key s equals query t's
    match *= np.tril(np.ones((T, T)))  # causal: keys up to the query
    score = (attn * match[:, None, None]).sum(-1)  # (B, L, H, T)
    return score[..., period:].mean(axis=(0, 3))


def uniform_prefix_matching(ids: np.ndarray, period: int) -> float:
    """The prefix-matching score of a head attending uniformly over its causal window on ``ids``:
    the chance level an induction score is read against (≈ 1/P)."""
    T = ids.shape[1]
    uniform = np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]
    return float(prefix_matching(np.broadcast_to(uniform, (len(ids), 1, 1, T, T)), ids, period)[0, 0])


@torch.no_grad()
def induction_by_head(model: nn.Module, vocab: int, context: int, n: int = INDUCTION_SEQUENCES) -> np.ndarray | None:
    """Prefix-matching score per layer and head (L, H) of a model with ``attention_maps`` (``gpt``),
    or None for a module without them."""
    if not hasattr(model, "attention_maps"):
        return None
    ids = induction_sequences(vocab, context, n)
    device = next(model.parameters()).device
    maps = model.attention_maps(torch.as_tensor(ids, device=device))
    attn = torch.stack(maps, dim=1).double().cpu().numpy()  # (B, L, H, T, T)
    return prefix_matching(attn, ids, max(1, min(context // 2, vocab)))


def _reference_rows(task: TaskData, offsets: torch.Tensor, context: int) -> dict[str, np.ndarray]:
    """The references' per-token losses on the sequences at ``offsets``, first ``context`` positions."""
    from overparam.train.lm import sequence_stride

    rows = (offsets.cpu().numpy() // sequence_stride(task)).astype(np.int64)
    return {name: np.asarray(v)[rows, :context] for name, v in task.info["reference"].items()}


def curve_probe(task: TaskData, context: int, tokens_test: torch.Tensor,
                eval_test: torch.Tensor) -> Callable[[nn.Module], dict[str, float]]:
    """What each evaluation adds for this task: ``icl_score``, ``icl_score_se``, ``bayes_gap``,
    ``bayes_gap_se`` and ``induction_score`` (the largest prefix-matching score of any head) for
    ``icl-markov``; nothing for other tasks."""
    if task.info.get("name") != "icl-markov":
        return lambda model: {}
    bayes = _reference_rows(task, eval_test, context)["bayes"]

    def probe(model: nn.Module) -> dict[str, float]:
        losses, _ = token_losses(model, tokens_test, eval_test, context, task.vocab_size)
        out = icl_numbers(losses, bayes)
        heads = induction_by_head(model, task.vocab_size, context)
        if heads is not None:
            out["induction_score"] = float(heads.max())
        return out

    return probe


def fewshot_numbers(picks: np.ndarray, targets: np.ndarray, task: TaskData, rows: np.ndarray,
                    context: int) -> dict[str, Any]:
    """Query accuracy per number of shots k (position 2k), its binomial standard error, and the
    optimal learner's expected accuracy on the same prompts (``data.fewshot``)."""
    shots = [k for k in task.info["shots"] if 2 * k < context]
    first_label = task.info["first_label"]
    acc, se, optimal = [], [], []
    for k in shots:
        right = picks[:, 2 * k] == targets[:, 2 * k] - first_label
        p = float(right.mean())
        acc.append(p)
        se.append(math.sqrt(p * (1 - p) / len(right)))
        optimal.append(float(task.info["optimal"][rows, task.info["shots"].index(k)].mean()))
    return {"shots": shots, "shot_accuracy": acc, "shot_accuracy_se": se, "shot_optimal": optimal}


def domain_numbers(model: nn.Module, tokens_test: torch.Tensor, task: TaskData, context: int) -> dict[str, Any]:
    """Mean test loss and its standard error (over windows) on each domain's own test split."""
    from overparam.train.lm import eval_offsets

    loss, se = {}, {}
    for domain in task.info["domains"]:
        if domain["n_test"] < context + 1:
            loss[domain["name"]], se[domain["name"]] = None, None
            continue
        offsets = eval_offsets(domain["n_test"], context, MEASURE_TOKENS) + domain["test_start"]
        losses, _ = token_losses(model, tokens_test, offsets, context, task.vocab_size)
        per_window = losses.mean(axis=1)
        loss[domain["name"]], se[domain["name"]] = float(per_window.mean()), float(_se(per_window))
    return {"domain_test_loss": loss, "domain_test_loss_se": se}


def lm_measures(model: nn.Module, task: TaskData, context: int, device: torch.device) -> dict[str, Any]:
    """The metrics this module adds to a finished language-model run (see the module docstring)."""
    from overparam.train.lm import eval_offsets, sequence_stride, windows

    tokens = torch.as_tensor(task.tokens_test, dtype=torch.int64, device=device)
    stride = sequence_stride(task)
    offsets = eval_offsets(len(tokens), context, MEASURE_TOKENS, stride=stride)
    info = task.info
    choices = None
    if info.get("name") == "fewshot":
        choices = torch.arange(info["first_label"], info["first_label"] + info["labels"])
    losses, picks = token_losses(model, tokens, offsets, context, task.vocab_size, choices)
    early, late = icl_positions(context)
    out: dict[str, Any] = {**position_numbers(losses), "position_early": early, "position_late": late}
    gain = losses[:, early].mean(axis=1) - losses[:, late].mean(axis=1)
    out.update(context_gain=float(gain.mean()), context_gain_se=float(_se(gain)))
    if info.get("name") == "icl-markov":
        refs = _reference_rows(task, offsets, context)
        out.update(icl_numbers(losses, refs["bayes"]))
        out["reference_loss_by_position"] = {k: v.mean(axis=0).tolist() for k, v in refs.items()}
        out["reference_icl_score"] = {k: icl_numbers(v)["icl_score"] for k, v in refs.items()}
    if info.get("name") == "fewshot":
        _, targets = windows(tokens, offsets, context)
        rows = (offsets.numpy() // stride).astype(np.int64)
        out.update(fewshot_numbers(picks, targets.cpu().numpy(), task, rows, context))
    if info.get("domains"):
        out.update(domain_numbers(model, tokens, task, context))
    elif info.get("name") == "text":  # one domain: its test split is the whole test stream
        from overparam.data.text import EMBEDDED
        from overparam.data.text_mix import domain_name

        name = domain_name(None if info.get("source") == EMBEDDED else info.get("source"))
        per_window = losses.mean(axis=1)
        out.update(domain_test_loss={name: float(per_window.mean())},
                   domain_test_loss_se={name: float(_se(per_window))})
    heads = induction_by_head(model, task.vocab_size, context)
    if heads is not None:
        out["induction_by_head"] = heads.tolist()
        period = max(1, min(context // 2, task.vocab_size))
        out["induction_uniform"] = uniform_prefix_matching(induction_sequences(task.vocab_size, context), period)
        if info.get("name") == "icl-markov":
            out["induction_score"] = float(heads.max())
    return out


def record_lm_measures(config: dict[str, Any], task: TaskData, result: Any, device: torch.device) -> None:
    """Add :func:`lm_measures` to a finished language-model run's metrics (``sweep.work`` calls it for
    every run, loop or fused). The model is rebuilt from ``result.state``; a failure is recorded as
    ``measures_error`` and never costs the trained run."""
    if task.kind != "lm" or result.status != "done" or result.state is None:
        return
    from overparam.models import family_module
    from overparam.train.run import run_dtype, shape_of

    try:
        model = family_module(config["model"]["family"]).build(config["model"], shape_of(task), config["seed"])
        model.load_state_dict(result.state)
        model = model.to(device=device, dtype=run_dtype(config["train"]))
        result.metrics.update(lm_measures(model, task, int(config["model"]["context"]), device))
    except (OverparamError, RuntimeError, ValueError, KeyError, TypeError, ArithmeticError, MemoryError) as exc:
        result.metrics["measures_error"] = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
