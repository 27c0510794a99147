"""``fewshot``: prompts of example pairs under a map drawn afresh for each prompt, then a query.

Each sequence draws its own map from ``symbols`` symbols to ``labels`` labels (every symbol's
label uniform and independent), then alternates symbols and their labels:
``s₀ ℓ₀ s₁ ℓ₁ s₂ ℓ₂ …``, each symbol uniform over all symbols (with replacement). The prefix that
ends at symbol s_k is a k-shot prompt: k example pairs, then the query s_k, whose answer is ℓ_k.
Token ids: symbols 0 … S − 1, labels S … S + C − 1.

Training reads whole sequences with the next-token loss at every position, so each training
sequence holds a k-shot prompt for every k from 0 to its last pair: training mixes all k, the
way a prompt with a random k would, and the symbols' own positions (unpredictable, ln S each)
teach nothing but cost the same for every model. Evaluation (``train.lm_measures``) reads the
model's answer at the query of pair k for each k in ``shots``: the label it ranks first among
the C label tokens, against ℓ_k.

The optimal learner copies the label when the query's symbol appeared among the k example pairs
and otherwise can only guess, right with probability 1/C. Its expected accuracy after k shots is

    acc*(k) = 1 − (1 − 1/S)^k · (1 − 1/C)

(each earlier symbol misses the query's with probability 1 − 1/S, independently). At k = 0 it is
chance, 1/C: zero-shot is impossible by construction here, so no size is credited with anything
there. ``info["optimal"]`` holds, per test sequence and shot count, the optimal learner's expected
accuracy on that very prompt (1 or 1/C), so references and models are compared on the same prompts.

Sequences have ``context + 1`` tokens and are laid end to end; ``info["sequence_length"]`` makes
every training and evaluation window start at a sequence start (as ``icl-markov``'s).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from overparam.data.base import TaskData
from overparam.errors import SpecError
from overparam.options import Option

TAG = 0xF5  # this task's key in the seed sequence
BLOCK = 1024  # sequences per independently seeded block: a smaller train_size is a prefix of a larger one


def _between(lo: int, hi: int):
    return lambda v: None if lo <= v <= hi else f"must be in {lo}..{hi}"


def _shots(v: Any) -> str | None:
    if not v:
        return "must list at least one number of shots"
    for k in v:
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            return f"each entry must be an integer >= 0, got {k!r}"
    return None if len(set(v)) == len(v) else "repeats a number of shots"


OPTIONS: dict[str, Option] = {
    "kind": Option(str, None, "which task"),
    "symbols": Option(int, 16, "S: distinct query symbols", check=_between(2, 4096)),
    "labels": Option(int, 4, "C: distinct labels (chance is 1/C)", check=_between(2, 4096)),
    "context": Option(int, 33, "tokens a model reads per sequence (pairs of symbol and label); each sequence "
                      "holds context + 1", check=_between(2, 65536)),
    "shots": Option(list, [0, 1, 2, 4, 8], "numbers of example pairs k at which query accuracy is measured",
                    check=_shots, normalize=sorted),
    "train_size": Option(int, 8192, "training sequences", check=_between(1, 10_000_000)),
    "test_size": Option(int, 1024, "test sequences", check=_between(1, 1_000_000)),
    "seed": Option(int, 0, "draws every map and sequence", check=lambda v: None if v >= 0 else "must be >= 0"),
}


def optimal_accuracy(k: int, symbols: int, labels: int) -> float:
    """acc*(k) = 1 − (1 − 1/S)^k · (1 − 1/C): copy when the query's symbol was shown, else guess."""
    return 1.0 - (1.0 - 1.0 / symbols) ** k * (1.0 - 1.0 / labels)


def sample_prompts(n: int, symbols: int, labels: int, length: int, seed: int,
                   split: int) -> tuple[np.ndarray, np.ndarray]:
    """(tokens (n, length), query symbols (n, ⌈length/2⌉)) of ``n`` sequences s₀ ℓ₀ s₁ ℓ₁ …"""
    pairs = -(-length // 2)
    syms = np.empty((n, pairs), dtype=np.int64)
    labs = np.empty((n, pairs), dtype=np.int64)
    for block in range(-(-n // BLOCK)):
        rng = np.random.default_rng(np.random.SeedSequence([seed, TAG, split, block]))
        maps = rng.integers(0, labels, size=(BLOCK, symbols))  # each sequence's own symbol -> label map
        s = rng.integers(0, symbols, size=(BLOCK, pairs))
        lo, hi = block * BLOCK, min(n, (block + 1) * BLOCK)
        syms[lo:hi] = s[:hi - lo]
        labs[lo:hi] = np.take_along_axis(maps, s, axis=1)[:hi - lo]
    tokens = np.empty((n, 2 * pairs), dtype=np.int64)
    tokens[:, 0::2], tokens[:, 1::2] = syms, symbols + labs
    return tokens[:, :length], syms


def optimal_on(syms: np.ndarray, shots: list[int], labels: int) -> np.ndarray:
    """(n, len(shots)) the optimal learner's expected accuracy on each prompt: 1 when the query s_k
    appeared among s₀ … s_{k−1}, else 1/C."""
    out = np.empty((len(syms), len(shots)))
    for j, k in enumerate(shots):
        seen = (syms[:, :k] == syms[:, k:k + 1]).any(axis=1) if k else np.zeros(len(syms), dtype=bool)
        out[:, j] = np.where(seen, 1.0, 1.0 / labels)
    return out


def max_shots(context: int) -> int:
    """The most example pairs a window of ``context`` tokens can show before a query it answers:
    the query of pair k sits at position 2k and its label, the target, at 2k + 1 ≤ context."""
    return (context - 1) // 2


def validate_run(cfg: dict[str, Any]) -> None:
    """Every k in ``shots`` must fit in the sequence and in the model's context."""
    from overparam.data.sequences import check_run

    task, context = cfg["task"], cfg["model"].get("context")
    top = max(task["shots"])
    if 2 * top + 1 > task["context"]:
        raise SpecError(f"task.shots: k = {top} needs 2k + 2 = {2 * top + 2} tokens (k example pairs, the query "
                        f"and its label), more than task.context + 1 = {task['context'] + 1}; at most "
                        f"{max_shots(task['context'])} shots fit")
    check_run(cfg)
    if context is not None and 2 * top + 1 > context:
        raise SpecError(f"task.shots: k = {top} needs a model context of at least 2k + 1 = {2 * top + 1} tokens, "
                        f"model.context is {context}")


def load(opts: dict[str, Any]) -> TaskData:
    """Draw train and test sequences, and the optimal learner's accuracy on every test prompt."""
    s, c, length = opts["symbols"], opts["labels"], opts["context"] + 1
    shots = list(opts["shots"])
    if 2 * max(shots) + 1 > opts["context"]:
        raise SpecError(f"task.shots: k = {max(shots)} does not fit in task.context = {opts['context']} "
                        f"(at most {max_shots(opts['context'])} shots)")
    if opts["train_size"] * length > 200_000_000 or opts["test_size"] * length > 50_000_000:
        raise SpecError(f"task.train_size: {opts['train_size']} sequences of {length} tokens is too many tokens "
                        f"(at most 200,000,000 for training, 50,000,000 for test)")
    train, _ = sample_prompts(opts["train_size"], s, c, length, opts["seed"], 1)
    test, syms = sample_prompts(opts["test_size"], s, c, length, opts["seed"], 2)
    info = {"name": "fewshot", "sequence_length": length, "symbols": s, "labels": c, "first_label": s,
            "shots": shots, "optimal": optimal_on(syms, shots, c),
            "optimal_expected": [optimal_accuracy(k, s, c) for k in shots],
            "n_train": opts["train_size"], "n_test": opts["test_size"]}
    return TaskData(kind="lm", tokens_train=train.reshape(-1), tokens_test=test.reshape(-1), vocab_size=s + c,
                    info=info)
