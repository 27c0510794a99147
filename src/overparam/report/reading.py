"""Plain sentences that read the double-descent analysis: every number comes from its JSON.

Each reader returns claims (``overparam.analysis.claims``): the sentence, the numbers it quotes and the
comparisons it states, so a test holds each true of the analysis it came from. Shapes are said only
as far as the noise allows (``overparam.analysis.noise``): "clear", "weak evidence", "within noise",
or "the noise is unknown" with one seed and nothing else to measure it by.
"""

from __future__ import annotations

from typing import Any

from overparam.analysis.claims import Sentence, fmt_int, fmt_num, fmt_settings, texts
from overparam.analysis.noise import CLEAR, CLEAR_TAIL, WEAK, WEAK_TAIL

__all__ = ["UNITS", "fmt_int", "fmt_num", "read_curve", "read_curve_claims", "answer_claim", "size_text",
           "noise_phrase", "evidence_states"]

UNITS = {"rff": "features", "linear": "features", "mlp": "hidden units", "cnn": "k", "resnet18k": "k",
         "gpt": "d_model"}
NEAR_FIT = 0.05  # a closest size that leaves at most this train error unfitted gets the --eps that admits it


def _size_value(s: Sentence, size: Any) -> str:
    return s.int(size) if isinstance(size, (int, float)) and not isinstance(size, bool) else str(size)


def size_text(s: Sentence, curve: dict[str, Any], size: Any, params: Any, family: str | None,
              with_params: bool = True) -> str:
    """"74 hidden units (5,560 parameters)", "k = 6 (14,530 parameters)", "n = 500 training samples"."""
    axis = curve["axis"]
    if axis == "task.train_size" and size is not None:
        return f"n = {_size_value(s, size)} training samples"
    if axis == "params" or size is None:
        return f"{s.int(params)} parameters"
    unit = UNITS.get(family or "", "")
    if axis.endswith(".width") and unit in ("k", "d_model"):
        head = f"{unit} = {_size_value(s, size)}"
    elif axis.endswith(".width") and unit:
        head = f"{_size_value(s, size)} {unit}"
    else:
        head = f"{axis.split('.')[-1]} = {_size_value(s, size)}"
    return f"{head} ({s.int(params)} parameters)" if with_params else head


def size_range_text(s: Sentence, curve: dict[str, Any], lo: tuple[Any, Any], hi: tuple[Any, Any],
                    family: str | None) -> str:
    """"2 to 4 hidden units", "k = 2 to 4", "1,826 to 6,666 parameters" (lo, hi: (size, params))."""
    axis, unit = curve["axis"], UNITS.get(family or "", "")
    if axis == "params" or lo[0] is None or not all(isinstance(v[0], (int, float)) for v in (lo, hi)):
        return f"{s.int(lo[1])} to {s.int(hi[1])} parameters"
    if axis == "task.train_size":
        return f"n = {s.int(lo[0])} to {s.int(hi[0])} training samples"
    if axis.endswith(".width") and unit and unit not in ("k", "d_model"):
        return f"{s.int(lo[0])} to {s.int(hi[0])} {unit}"
    name = unit if axis.endswith(".width") and unit else axis.split(".")[-1]
    return f"{name} = {s.int(lo[0])} to {s.int(hi[0])}"


def _at(s: Sentence, curve: dict[str, Any], prefix: str, family: str | None, with_params: bool = True) -> str:
    return size_text(s, curve, curve[f"{prefix}_size"], curve[f"{prefix}_params"], family, with_params)


def _value(curve: dict[str, Any], prefix: str) -> float | None:
    return curve.get(f"{prefix}_{curve['metric']}")


def noise_phrase(s: Sentence, cmp: dict[str, Any], flip: bool = False) -> str:
    """How big a difference is against its noise, in words with its numbers (``analysis.noise``). ``flip``:
    the interval of the opposite difference, when the words state it the other way round ("0.139 worse")."""
    if cmp["noise"] == "unknown":
        return "with one seed and no test-set size the noise is unknown"
    test_set = f"the {s.int(cmp['n_test'])}-example test set" if cmp.get("n_test") else None
    if cmp.get("interval") is None:  # one seed: the test set's binomial standard error
        if cmp["z"] is None:
            return f"exact on {test_set}"
        return f"about {s.fixed(abs(cmp['z']))} standard errors of {test_set}"
    na, nb = cmp["n_seeds"]
    seeds = f"{s.int(na)} seeds" if na == nb else f"{s.int(min(na, nb))} or more seeds"
    lo, hi = (-cmp["interval"][1], -cmp["interval"][0]) if flip else cmp["interval"]
    text = (f"resampling {seeds}" + (f" and {test_set}" if test_set else "") + f", its {s.pct(cmp['level'], 2)} "
            f"interval is {s.num(lo)} to {s.num(hi)} and {s.int(cmp['resamples_opposite'])} of "
            f"{s.int(cmp['n_resamples'])} resamples cross zero")
    if cmp.get("capped"):
        text += f" ({s.int(min(na, nb))} seeds alone show no more than weak evidence)"
    return text


def evidence_states(s: Sentence, cmp: dict[str, Any]) -> str:
    """The class of a difference, with the bounds it implies recorded (``analysis.noise``'s thresholds)."""
    ev = cmp["evidence"]
    if cmp.get("interval") is not None:
        n, opposite = cmp["n_resamples"], cmp["resamples_opposite"]
        if ev == "clear":
            s.states(opposite, "<", CLEAR_TAIL * n)
        elif ev == "weak" and not cmp.get("capped"):
            s.states(opposite, "<", WEAK_TAIL * n)
            s.states(opposite, ">=", CLEAR_TAIL * n)
        elif ev == "within noise":
            s.states(opposite, ">=", WEAK_TAIL * n)
    elif cmp["z"] is not None:
        z = abs(cmp["z"])
        if ev == "clear":
            s.states(z, ">", CLEAR)
        elif ev == "weak":
            s.states(z, ">", WEAK)
            s.states(z, "<=", CLEAR)
        elif ev == "within noise":
            s.states(z, "<=", WEAK)
    return ev


def threshold_claim(curve: dict[str, Any], family: str | None) -> dict[str, Any]:
    s = Sentence()
    on_loss = curve.get("threshold_on") == "train_loss"
    if on_loss:
        text = (f"The models first interpolate their training targets (train MSE ≤ {s.num(curve['eps'])}) at "
                f"{_at(s, curve, 'threshold', family)}: the interpolation threshold")
    else:
        text = (f"The interpolation threshold, the smallest size whose train error is at most "
                f"{s.num(curve['eps'])} (--eps), is {_at(s, curve, 'threshold', family)}")
        train = curve.get("threshold_train")
        if train is not None:
            text += (", where every training label is fitted" if train == 0 else
                     f", with train error {s.num(train)} there")
    if curve.get("threshold_size_over_n_train") is not None and curve.get("n_train"):
        text += (f"; N/n = {s.num(curve['threshold_size_over_n_train'])} with n = {s.int(curve['n_train'])} "
                 f"training samples")
    return s.claim(text + ".")


def rank_claim(curve: dict[str, Any], family: str | None) -> dict[str, Any] | None:
    """Why the threshold lies past N = n, from the stored ranks (``double_descent.rank_below_n``)."""
    info = curve.get("rank_below_n")
    if not info:
        return None
    s = Sentence()
    sizes, n = info["sizes"], info["n_train"]
    for row in sizes:
        s.states(row["size"], ">=", n)
        s.states(row["size"], "<", info["threshold_size"])
        s.states(row["rank_max"], "<", n)
    unit = UNITS.get(family or "", "features")
    where = (f"{s.int(sizes[0]['size'])} {unit}" if len(sizes) == 1 else
             f"{s.int(sizes[0]['size'])} to {s.int(sizes[-1]['size'])} {unit}")
    lo, hi = min(r["rank_min"] for r in sizes), info["rank_max"]
    if len(sizes) == 1 and lo == hi:
        rank = f"rank {s.int(hi)}"
    elif len(sizes) == 1:
        rank = f"rank {s.int(lo)} to {s.int(hi)} over seeds"
    else:
        rank = f"rank at most {s.int(hi)}"
    return s.claim(f"At {where} the training feature matrix has {rank}, below n = {s.int(n)}: though there are at "
                   f"least as many features as training samples, some are zero or linearly dependent on the training "
                   f"inputs, so the least-squares fit cannot interpolate, and the models interpolate only from "
                   f"{_at(s, curve, 'threshold', family, with_params=False)}.")


def no_threshold_claim(curve: dict[str, Any], family: str | None) -> dict[str, Any]:
    s = Sentence()
    on = (curve.get("threshold_on") or "train_error").replace("_", " ")
    text = f"No size reached {on} ≤ {s.num(curve['eps'])}"
    text += " (--eps)" if on == "train error" else ""
    left = curve.get("closest_train")
    if left is not None and curve.get("closest_size") is not None:
        closest = _at(s, curve, "closest", family)
        if on == "train error":
            s.states(left, ">", curve["eps"])
            text += f"; the closest, {closest}, left {s.pct(left)} of its training labels unfitted"
            if left <= NEAR_FIT:
                text += f" (--eps {s.num(left)} would count it as the threshold)"
        else:
            text += f"; the lowest was {s.num(left)} at {closest}"
    best = _value(curve, "best_under")
    if best is not None:
        text += (f". The best {curve['metric'].replace('_', ' ')} is {s.num(best)} at "
                 f"{_at(s, curve, 'best_under', family)}")
    return s.claim(text + "; without an interpolation threshold there is no second descent to read: try larger "
                          "sizes or more steps.")


def _position(s: Sentence, curve: dict[str, Any]) -> str:
    pos = curve.get("peak_position")
    if pos == "before threshold":
        s.states(curve["peak_params"], "<", curve["threshold_params"])
        return "before the threshold"
    if pos == "at threshold":
        s.states(curve["peak_params"], "==", curve["threshold_params"])
        return "at the threshold"
    s.states(curve["peak_params"], ">", curve["threshold_params"])
    return "just past the threshold"


def peak_claim(curve: dict[str, Any], family: str | None) -> dict[str, Any]:
    """The bump: how far the peak rises above the best under-parameterized model, against the noise."""
    s = Sentence()
    metric = curve["metric"].replace("_", " ")
    peak, under, bump = _value(curve, "peak"), _value(curve, "best_under"), curve["bump"]
    peak_t, under_t = s.pair(peak, under)
    s.states(peak, ">", under)
    text = (f"{metric.capitalize()} peaks at {peak_t} at {_at(s, curve, 'peak', family)}, {_position(s, curve)}, "
            f"{s.num(bump['difference'])} above the best under-parameterized model ({under_t} at "
            f"{_at(s, curve, 'best_under', family, with_params=False)}), {noise_phrase(s, bump)}")
    ev = evidence_states(s, bump)
    words = {"clear": "a clear peak", "weak": "weak evidence of a peak",
             "within noise": "within noise, so no peak beyond the noise",
             "unknown": "rerun with more seeds (vary: seed) to tell a peak from noise"}
    return s.claim(f"{text}: {words[ev]}.")


def no_peak_claim(curve: dict[str, Any], family: str | None) -> dict[str, Any]:
    """No size from the best under-parameterized one to the first past the threshold rises above it: each
    of their values is recorded against it (the window the analysis reads a peak in)."""
    s = Sentence()
    metric = curve["metric"].replace("_", " ")
    under = _value(curve, "best_under")
    sizes = [p["size"] for p in curve["points"]]
    if curve.get("best_under_size") in sizes and curve.get("threshold_size") in sizes:
        u, t = sizes.index(curve["best_under_size"]), sizes.index(curve["threshold_size"])
        for point in curve["points"][u:min(t + 1, len(sizes) - 1) + 1]:
            if point.get(curve["metric"]) is not None:
                s.states(point[curve["metric"]], "<=", under)
    return s.claim(f"No peak: {metric} does not rise above the best under-parameterized model, "
                   f"{s.num(under)} at {_at(s, curve, 'best_under', family)}, on the way to the first size past "
                   f"the threshold.")


def descent_claim(curve: dict[str, Any], family: str | None) -> dict[str, Any]:
    """After the peak: how far the test metric comes back down past the threshold."""
    s = Sentence()
    metric = curve["metric"].replace("_", " ")
    if curve["descent"] is None:
        return s.claim(f"The sweep ends at the peak: try larger sizes to see whether the {metric} comes back down.")
    peak, low, cmp = _value(curve, "peak"), _value(curve, "descent_to"), curve["descent"]
    where = _at(s, curve, "descent_to", family)
    if low >= peak:
        s.states(low, ">=", peak)
        peak_t, low_t = s.pair(peak, low)
        return s.claim(f"Past the threshold the {metric} does not come back below the peak ({peak_t}): its lowest "
                       f"value after it is {low_t} at {where}, so there is no second descent.")
    s.states(low, "<", peak)
    ratio = curve.get("peak_over_descent_to")
    fall = f" ({s.times(ratio)} lower)" if ratio and ratio >= 2 else ""
    text = (f"Past the threshold the {metric} falls to {s.num(low)} at {where}, {s.num(cmp['difference'])} below "
            f"the peak{fall}, {noise_phrase(s, cmp)}")
    ev = evidence_states(s, cmp)
    words = {"clear": "a clear second descent", "weak": "weak evidence of a second descent",
             "within noise": "within noise, so no second descent beyond the noise",
             "unknown": "whether that exceeds the noise is unknown"}
    return s.claim(f"{text}: {words[ev]}.")


def over_under_claim(curve: dict[str, Any], family: str | None) -> dict[str, Any]:
    """The two regimes' best models side by side: does going past the threshold pay?"""
    s = Sentence()
    over, under, cmp = _value(curve, "best_over"), _value(curve, "best_under"), curve["over_vs_under"]
    over_t, under_t = s.pair(over, under)
    head = (f"The best over-parameterized model, {over_t} at {_at(s, curve, 'best_over', family)}, "
            f"{{verb}} the best under-parameterized one, {under_t} at {_at(s, curve, 'best_under', family)}")
    ev = evidence_states(s, cmp)
    if over == under:
        s.states(over, "==", under)
        return s.claim(head.format(verb="equals") + ".")
    if ev == "within noise":
        return s.claim(head.format(verb="is within noise of") + f": {s.num(abs(cmp['difference']))} apart, "
                       f"{noise_phrase(s, cmp)}.")
    better = s.states(over, "<", under) if over < under else not s.states(over, ">", under)
    verb = ("beats" if better else "does not beat")
    by = f", by {s.num(abs(cmp['difference']))}" if better else f": it is {s.num(abs(cmp['difference']))} worse"
    tail = {"clear": " (clear)", "weak": " (weak evidence)", "unknown": ""}[ev]
    return s.claim(head.format(verb=verb) + f"{by}, {noise_phrase(s, cmp, flip=cmp['difference'] < 0)}{tail}.")


def read_curve_claims(curve: dict[str, Any], family: str | None = None) -> list[dict[str, Any]]:
    """The threshold, then the shape and its verdict, then the two regimes compared (see the module docstring)."""
    if not curve["points"]:
        return [Sentence().claim("No finished runs on this curve yet.")]
    if curve["threshold_params"] is None:
        out = [no_threshold_claim(curve, family)]
    elif curve["best_under_size"] is None:
        s = Sentence()
        best = _value(curve, "best_over")
        out = [threshold_claim(curve, family),
               s.claim(f"That is the smallest size tried: there is no under-parameterized side to read a peak from; "
                       f"the best {curve['metric'].replace('_', ' ')} is {s.num(best)} at "
                       f"{_at(s, curve, 'best_over', family)}.")]
    else:
        out = [threshold_claim(curve, family)]
        rank = rank_claim(curve, family)
        if rank:
            out.append(rank)
        if curve["peak_size"] is None:
            out.append(no_peak_claim(curve, family))
        else:
            out.append(peak_claim(curve, family))
            out.append(descent_claim(curve, family))
        if curve.get("over_vs_under"):
            out.append(over_under_claim(curve, family))
    s = Sentence()
    if curve["unstable_runs"]:
        out.append(s.claim(f"{s.int(len(curve['unstable_runs']))} run(s) went unstable late in training and are "
                           f"left out of the curve: {', '.join(curve['unstable_runs'][:4])}."))
    s = Sentence()
    if curve["diverged_runs"]:
        out.append(s.claim(f"{s.int(len(curve['diverged_runs']))} run(s) diverged (non-finite loss) and are not "
                           f"plotted."))
    return out


def read_curve(curve: dict[str, Any], family: str | None = None, n_train: int | None = None) -> list[str]:
    """The sentences of ``read_curve_claims`` (``n_train`` is read from the curve; kept for callers)."""
    return texts(read_curve_claims(curve, family))


def _fixed_prefix(answer: dict[str, Any]) -> str:
    if answer.get("n_curves", 1) > 1 and answer.get("fixed"):
        return "With " + fmt_settings(answer["fixed"]) + ", this"
    return "This"


def _compressed_phrase(s: Sentence, answer: dict[str, Any]) -> str:
    comp = answer.get("compressed")
    if not comp:
        return ""
    model = comp.get("model")
    if model is None:
        return f"; none of the {s.int(comp['n_tried'])} models overparam compress made stays within it"
    what = model.get("label") or f"{model.get('method')} {model.get('setting')}"
    parts = [s.bytes(model["bytes"])]
    nonzero = model.get("nonzero_params", model.get("params"))
    if nonzero is not None:
        parts.append(f"{s.int(nonzero)} nonzero parameters")
    if model.get("latency_ms_b1") is not None:
        parts.append(f"{s.num(model['latency_ms_b1'])} ms at batch 1")
    value = model.get(answer["metric"])
    return (f"; compressed, the model {what} stays within it ({answer['metric'].replace('_', ' ')} "
            f"{s.num(value)}): {', '.join(parts)}")


def answer_claim(answer: dict[str, Any] | None, family: str | None = None) -> dict[str, Any] | None:
    """The product's one-line answer: the smallest size within the tolerance of the best test metric."""
    if not answer:
        return None
    s = Sentence()
    curve = {"axis": answer["axis"]}
    metric = answer["metric"].replace("_", " ")
    if answer.get("size") is None and answer.get("params") is None:
        return s.claim(f"No answer to how many parameters this task needs: {answer.get('reason') or 'no data'}.")
    tol = (f"within {s.num(answer['tolerance'])} of the best {metric}" if answer["tolerance_kind"] == "absolute"
           else f"within {s.pct(answer['tolerance'])} of the best {metric}")
    if answer["beyond_largest"]:
        text = (f"{_fixed_prefix(answer)} task needs more than the sweep tried: only its largest size, "
                f"{size_text(s, curve, answer['size'], answer['params'], family)}, comes {tol}, "
                f"{s.num(answer['best'])}; the curve has not flattened out, so the answer lies beyond the largest "
                f"size tried")
        return s.claim(text + _compressed_phrase(s, answer) + ".")
    s.states(answer["value"], "<=", answer["target"])
    size = size_text(s, curve, answer["size"], answer["params"], family, with_params=False)
    seeds = answer.get("seeds")
    if seeds:
        if seeds["params_min"] == seeds["params_max"]:
            spread = f"the same on each of {s.int(seeds['n'])} seeds"
        else:
            spread = size_range_text(s, curve, (seeds["size_min"], seeds["params_min"]),
                                     (seeds["size_max"], seeds["params_max"]), family) + \
                f" over {s.int(seeds['n'])} seeds"
    else:
        spread = "one seed, so no interval over seeds"
    params = s.int(answer["params"]) if answer["axis"] != "params" else None
    inside = f"{params} parameters; {spread}" if params else spread
    best = size_text(s, curve, answer["best_size"], answer["best_params"], family, with_params=False)
    text = (f"{_fixed_prefix(answer)} task needs about {size} ({inside}) to come {tol} the sweep reached, "
            f"{s.num(answer['best'])} at {best}")
    return s.claim(text + _compressed_phrase(s, answer) + ".")
