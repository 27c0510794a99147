"""``overparam attention DIR --run ID --heads induction``: a run's heads ranked by prefix-matching score.

The score (``train.lm_measures.prefix_matching``; Olsson et al. 2022) is measured on sequences
r r r … of a random permutation r of P = min(context // 2, vocabulary) distinct tokens: the
attention a query pays to the keys that follow an earlier copy of its own token. Heads are
listed from the highest score down, next to the level of a head that attends uniformly (its
chance level, about 1/P) and the halfway level u + (1 − u)/2 from which the in-context report
counts a head as an induction head.
"""

from __future__ import annotations

from typing import Any

from overparam.errors import OverparamError


def induction_heads(directory: str, run_id: str, top: int = 5, sequences: int = 32) -> dict[str, Any]:
    """The ``--json`` document: the run, the levels, and the ``top`` heads by prefix-matching score."""
    from overparam.interpret.base import load_run
    from overparam.train.lm_measures import induction_by_head, induction_sequences, uniform_prefix_matching

    if top < 1:
        raise OverparamError(f"--top: expected a number of heads >= 1, got {top}")
    run = load_run(directory, run_id)
    vocab, context = run.task.vocab_size, run.context
    scores = induction_by_head(run.model, vocab, context, n=sequences)
    period = max(1, min(context // 2, vocab))
    uniform = uniform_prefix_matching(induction_sequences(vocab, context, n=sequences), period)
    heads = sorted(({"layer": i, "head": h, "score": float(s)} for i, row in enumerate(scores)
                    for h, s in enumerate(row)), key=lambda d: -d["score"])
    level = uniform + (1 - uniform) / 2
    return {"run": run.id, "params": run.params, "description": run.describe(), "period": period,
            "copies": context // period, "sequences": sequences, "uniform": uniform, "induction_level": level,
            "n_heads": len(heads), "n_induction_heads": sum(h["score"] >= level for h in heads), "heads": heads[:top]}


def table(doc: dict[str, Any]) -> str:
    """The document as text: one line per head, then the two levels."""
    lines = [doc["description"], f"prefix-matching score on {doc['sequences']} sequences of {doc['copies']} copies of "
             f"{doc['period']} distinct random tokens (top {len(doc['heads'])} of {doc['n_heads']} heads):",
             "  layer  head  score"]
    lines += [f"  {h['layer']:>5}  {h['head']:>4}  {h['score']:.3f}" + ("  induction head" if h["score"] >=
                                                                           doc["induction_level"] else "")
              for h in doc["heads"]]
    lines.append(f"uniform attention scores {doc['uniform']:.3f}; {doc['n_induction_heads']} head(s) reach "
                 f"{doc['induction_level']:.3f}, halfway from it to 1")
    return "\n".join(lines)
