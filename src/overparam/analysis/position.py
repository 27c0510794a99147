"""Long context: test loss by position within the context, per size, for ``text`` and ``markov`` sweeps.

Position t of a window predicts token t + 1 from the t + 1 tokens before it, so the curve says
how much each extra token of context is worth to a model (Kaplan et al. 2020 read the loss per
token position and find larger models keep improving further into the context). Per size (mean over seeds), on
the run's fixed test windows (``train.lm_measures``):

- ``loss_by_position`` and its standard error per position;
- the **gain from distant context**, the mean loss over an early tenth of the positions minus the
  mean loss over the last tenth (``lm_measures.icl_positions``; the negative of Olsson et al.'s ICL
  score), with its noise. A gain, or a loss (late positions predicted *worse* than early ones, as
  an undertrained model whose attention spreads over more tokens can), is stated only when it
  exceeds ``groups.Z`` times that noise.

``model.context`` can be an axis: each context is its own row. A model is evaluated only within
the context it was trained at: ``gpt`` learns one position embedding per position up to
``model.context`` and has none beyond it, so evaluation past the training context is not
supported (``extrapolation``) rather than silently extrapolated; a rotary or other relative
position scheme would make it meaningful.
"""

from __future__ import annotations

from typing import Any

from overparam.analysis.groups import STATISTIC, Z, exceeds, mean_lists, plain_row, seed_stat, size_groups

KINDS = ("text", "markov")
EXTRAPOLATION = {
    "supported": False,
    "why": "gpt has learned absolute position embeddings, one per position up to model.context and none beyond "
           "it, so a model is evaluated only within the context it was trained at (no extrapolation); a rotary "
           "position option would make evaluation past the training context meaningful",
}


def _row(row: dict[str, Any], axis: str) -> dict[str, Any]:
    ms = [r["metrics"] for r in row["runs"]]
    loss = mean_lists([m["loss_by_position"] for m in ms])
    gain, noise = seed_stat([m["context_gain"] for m in ms], [m.get("context_gain_se") for m in ms])
    return {**plain_row(row, axis), "context": len(loss), "early": ms[0]["position_early"],
            "late": ms[0]["position_late"], "loss_by_position": loss,
            "loss_by_position_se": mean_lists([m["loss_by_position_se"] for m in ms]) if len(ms) == 1 else None,
            "first_loss": loss[0],
            "early_loss": sum(loss[t] for t in ms[0]["position_early"]) / len(ms[0]["position_early"]),
            "late_loss": sum(loss[t] for t in ms[0]["position_late"]) / len(ms[0]["position_late"]),
            "context_gain": gain, "context_gain_noise": noise, "context_gain_margin": abs(gain),
            "gains": exceeds(gain, noise) and gain > 0, "loses": exceeds(gain, noise) and gain < 0,
            "entropy_rate": ms[0].get("entropy_rate")}


def position_block(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The ``"position"`` block of a ``text`` or ``markov`` sweep of language models, or None."""
    done = [r for r in runs if r["status"] == "done" and r["config"]["task"]["kind"] in KINDS
            and "loss_by_position" in r["metrics"] and "context_gain" in r["metrics"]]
    if not done:
        return None
    axis, rows = size_groups(done)
    return {"statistic": STATISTIC, "z": Z, "kind": done[0]["config"]["task"]["kind"],
            "sizes": [_row(row, axis) for row in rows], "extrapolation": dict(EXTRAPOLATION),
            "definitions": {"context_gain": "mean loss over the early positions minus the mean loss over the late "
                                            "ones (each a tenth of the context); positive when distant context helps"}}
