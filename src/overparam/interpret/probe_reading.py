"""A probe document (``overparam probe --json``) read in sentences: the gain over what the current token
alone gives, and what a negative selectivity means. Every number quoted is in the document; every
comparison stated holds for the numbers quoted (``tests/test_interpret.py`` parses them back).
"""

from __future__ import annotations

from typing import Any

BASELINE_WORDS = {"bigram": "the bigram statistics of the training text (the label most often seen after the "
                            "current token)",
                  "identity": "the token's identity alone (the same probe on a one-hot of the current token)"}


def signed(v: float) -> str:
    """+0.013, -0.046; a value that rounds to zero reads 0.000, not -0.000."""
    return "0.000" if abs(v) < 0.0005 else f"{v:+.3f}"


def _layers(values: list[int]) -> str:
    names = [str(v) for v in values]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def gain_sentence(doc: dict[str, Any]) -> str:
    """Which layer reads the target best beyond the baseline, and whether that gain exceeds the noise
    (its 95 % t-interval over the folds excludes 0)."""
    layers, base = doc["layers"], doc["baseline"]
    target, folds = doc["target"], doc["folds"]
    best = max(layers, key=lambda r: (r["gain"], -r["layer"]))
    lo, hi = best["gain_ci"]
    where = f"layer {best['layer']}" + (", the embedding," if best["layer"] == 0 else "")
    interval = f"{100 * doc.get('level', 0.95):g} % t-interval over {folds} folds {signed(lo)} to {signed(hi)}"
    against = f"{best['accuracy']:.3f} against {best['baseline_accuracy']:.3f} from {BASELINE_WORDS[base['kind']]}"
    if lo > 0:
        where = where.removesuffix(",")
        return (f"{where.capitalize()} reads {target} best beyond what the current token gives: accuracy {against}, a "
                f"gain of {signed(best['gain'])} ({interval}).")
    return (f"No layer reads {target} reliably better than {BASELINE_WORDS[base['kind']]}: the largest gain, "
            f"{signed(best['gain'])} at {where.removesuffix(',')} with accuracy {best['accuracy']:.3f} against "
            f"{best['baseline_accuracy']:.3f}, has a {interval} that includes 0.")


def selectivity_sentence(doc: dict[str, Any]) -> str | None:
    """A negative selectivity explained, not ranked; None when every layer's is positive."""
    layers = doc["layers"]
    negative = [r for r in layers if r["selectivity"] < 0]
    if not negative:
        best = max(layers, key=lambda r: r["selectivity"])
        return (f"Selectivity (accuracy − control accuracy, Hewitt & Liang 2019) is positive at every layer, "
                f"largest at layer {best['layer']} ({signed(best['selectivity'])}).")
    ids = [r["layer"] for r in negative]
    sel = ", ".join(signed(r["selectivity"]) for r in negative)
    ctrl = ", ".join(f"{r['control_accuracy']:.3f}" for r in negative)
    acc = ", ".join(f"{r['accuracy']:.3f}" for r in negative)
    identity = doc["baseline"]["identity_accuracy"]
    plural = len(negative) > 1
    return (f"Selectivity (accuracy − control accuracy, Hewitt & Liang 2019) is negative at layer"
            f"{'s' if plural else ''} {_layers(ids)} ({sel}): the control task gives each token type a fixed "
            f"random label, a function of the current token, which the probe reads there with accuracy {ctrl}, "
            f"while {doc['target']} is read with {acc}, and from the token's identity alone with {identity:.3f}. "
            f"A negative selectivity measures how much less {doc['target']} is determined by the current token "
            f"than the control is, not a lack of information in the layer; the gain over the baseline is the "
            f"comparison to read.")


def read_probe(doc: dict[str, Any]) -> list[str]:
    """The sentences of a probe document."""
    out = [gain_sentence(doc)]
    sel = selectivity_sentence(doc)
    if sel:
        out.append(sel)
    return out
