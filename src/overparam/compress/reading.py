"""Reading a frontier entry as one sentence, in the sweep's own units.

"A 2,048-wide MLP pruned to 50 % of its weights and fine-tuned 625 steps (test error 16.81 %, loss
0.942) counts as a dense 1,069-wide model (80.2k parameters): the dense curve, walked down from its
own size, first reaches 16.81 % between widths 1,091 (16.04 %) and 581 (18.35 %); it runs at the dense
model's speed (…) and takes 600.0 KiB on disk (100 % of the dense bytes)."

Every comparison a sentence makes is one its own numbers satisfy (tests parse them back): a
model "as good as" its parent has the parent's error or less, "better" strictly less, the
bracketing sizes' errors straddle the model's, "below the sweep" is worse than every smaller dense
model. Percentages get as many decimals as it takes to tell apart the values a sentence compares.
Speeds within 10 % of the dense model's read as "about as fast": that is the resolution of the
interleaved timing on a shared machine (masked models, identical in cost, land at 0.95–1.02×).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


def describe_model(config: dict[str, Any]) -> str:
    m = config["model"]
    if m["family"] == "mlp":
        return f"a {m['width']:,}-wide MLP" if m["depth"] == 1 else f"a {m['depth']}×{m['width']:,} MLP"
    if m["family"] == "gpt":
        return f"a {m['n_layer']}-layer GPT (d_model {m['d_model']}, {m['n_head']} heads)"
    settings = ", ".join(f"{k} {v}" for k, v in m.items() if k != "family" and isinstance(v, (int, float, str)))
    target, _, factory = m["family"].rpartition(":")  # a user's factory: "net.py:make_net"
    name = f"{target.replace(chr(92), '/').rsplit('/', 1)[-1]}:{factory}" if factory else m["family"]
    return f"a {name} model" + (f" ({settings})" if settings else "")


def _count(n: float) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e4 else f"{n:,.0f}"


def _bytes(n: float) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def _decimals(values: list[float], scale: float, least: int) -> int:
    """The fewest decimals (``least`` … 4) at which distinct ``values`` (× ``scale``) print distinctly."""
    distinct = sorted(set(values))
    for d in range(least, 4):
        if len({f"{scale * v:.{d}f}" for v in distinct}) == len(distinct):
            return d
    return 4


def formatter(metric: str, values: list[float]) -> Callable[[float], str]:
    """Format ``metric`` values so that every distinct one of ``values`` prints distinctly:
    "16.40 %" beside "16.19 %", not "16.4 %" beside "16.2 %"; losses with at least 3 decimals."""
    if metric == "test_error":
        d = _decimals(values, 100.0, 1)
        return lambda v: f"{100 * v:.{d}f} %"
    d = _decimals(values, 1.0, 3)
    return lambda v: f"{v:.{d}f}"


def _size_name(size: dict[str, Any] | None, family: str, params: float) -> str:
    """'1,069-wide' (mlp), 'd_model 48' (gpt), or '80.2k-parameter' for other families."""
    size = size or {}
    if family == "mlp" and "width" in size:
        return f"{size['width']:,.0f}-wide"
    if family == "gpt" and "d_model" in size:
        return f"d_model {size['d_model']:,.0f}"
    return f"{_count(params)}-parameter"


def _point_name(point: dict[str, Any], family: str) -> str:
    """A dense size of the sweep by its axis: 'width 581', 'd_model 64', '5,472 parameters'."""
    size = point.get("size") or {}
    if family == "mlp" and isinstance(size.get("width"), (int, float)):
        return f"width {size['width']:,.0f}"
    if family == "gpt" and isinstance(size.get("d_model"), (int, float)):
        return f"d_model {size['d_model']:,.0f}"
    return f"{point['params']:,.0f} parameters"


def equivalent_text(e: dict) -> str:
    """The dense-equivalent size of an entry for a table cell: '80,181', '153,610 (parent)',
    '153,610 (parent, better)', '< 310 (below the sweep)', or '-'."""
    status, n = e.get("dense_equivalent_status"), e.get("dense_equivalent_params")
    if status == "parent":
        return f"{n:,.0f} (parent{', better' if e.get('dense_equivalent_better') else ''})"
    if status == "matched" and n is not None:
        return f"{n:,.0f}"
    if status == "below_sweep":
        return f"< {e.get('dense_equivalent_bound') or 0:,} (below the sweep)"
    return "-"


def _noise(entry: dict[str, Any], dense: dict[str, Any], n_test: int | None) -> str:
    """Whether a test-error difference from the parent exceeds two of the test set's binomial
    standard errors √(p(1−p)/n), p the parent's error: the noise of a single evaluation."""
    if entry.get("dense_equivalent_metric") != "test_error" or not n_test:
        return ""
    p = dense["test_error"]
    se = math.sqrt(max(p * (1 - p), 0.0) / n_test)
    if se > 0 and abs(entry["test_error"] - p) < 2 * se:
        return (f", by less than two of the test set's standard errors of {100 * se:.1f} % on {n_test:,} "
                f"examples: within the noise;")
    return ","


def cited(entry: dict[str, Any], dense: dict[str, Any], curve: list[dict[str, Any]]) -> dict[str, Any]:
    """The dense points the reading of ``entry`` compares it with: ``parent`` (the dense entry as a
    curve point), and ``above``/``below`` (matched: the two sizes its value falls between) or
    ``worst`` (below the sweep: the worst smaller dense size)."""
    metric = entry.get("dense_equivalent_metric", "test_loss")
    parent = {"params": dense["params"], "size": dense.get("dense_equivalent_size"), metric: dense[metric]}
    out: dict[str, Any] = {"metric": metric, "parent": parent}
    smaller = [p for p in curve if p["params"] < dense["params"] and p.get(metric) is not None]
    if entry["dense_equivalent_status"] == "matched":
        lo, hi = entry["dense_equivalent_between"]
        at = {p["params"]: p for p in smaller}
        out["below"], out["above"] = at.get(lo), parent if hi == dense["params"] else at.get(hi)
    elif entry["dense_equivalent_status"] == "below_sweep" and smaller:
        out["worst"] = max(smaller, key=lambda p: p[metric])
    return out


def _equivalent_phrase(entry: dict[str, Any], family: str, dense: dict[str, Any], points: dict[str, Any],
                       fmt: Callable[[float], str], n_test: int | None) -> str:
    metric, parent = points["metric"], points["parent"]
    status, n = entry["dense_equivalent_status"], entry["dense_equivalent_params"]
    mine, theirs = fmt(entry[metric]), fmt(parent[metric])
    parent_name = _size_name(parent["size"], family, dense["params"])
    if status == "parent":
        if entry.get("dense_equivalent_better"):
            return (f"does better than the {parent_name} dense model it came from, {mine} against {theirs}"
                    f"{_noise(entry, dense, n_test)} it counts as that model's size ({_count(n)} parameters)")
        return (f"is as good as the {parent_name} dense model it came from ({mine} against {theirs}), so it "
                f"counts as that model's size ({_count(n)} parameters)")
    if status == "matched" and points.get("below") and points.get("above"):
        above, below = points["above"], points["below"]
        above_name = ("its own size" if above is parent else _point_name(above, family))
        named = _size_name(entry.get("dense_equivalent_size"), family, n)
        counted = "" if named.endswith("-parameter") else f" ({_count(n)} parameters)"  # not the count twice
        return (f"counts as a dense {named} model{counted}: walked down from its own size, the dense curve first "
                f"reaches {mine} or worse between {above_name} ({fmt(above[metric])}) and {_point_name(below, family)} "
                f"({fmt(below[metric])})")
    if status == "matched":
        return f"counts as a dense model of {_count(n)} parameters"
    if status == "below_sweep":
        if "worst" not in points:
            return f"is worse than the dense model it came from ({mine} against {theirs}), the sweep's smallest"
        worst = points["worst"]
        return (f"is worse than every smaller dense model of the sweep ({mine} against at most "
                f"{fmt(worst[metric])}, at {_point_name(worst, family)}): below the sweep")
    return "has no dense curve to be placed on"


def _speed(s: float, lo: float, hi: float) -> str:
    """A speed-up read only as far as the interleaved timing supports it.

    "x× faster" needs the median ratio above 1.1 *and* its p10 above 1 (most pairs agree);
    likewise for slower. Otherwise the difference is within the noise, and is said to be.
    """
    if 0.9 <= s <= 1.1:
        return f"about as fast ({s:.2f}×)"
    if s > 1 and lo > 1:
        return f"{s:.1f}× faster"
    if s < 1 and hi < 1:
        return f"{1 / s:.1f}× slower"
    return f"at {s:.2f}× the dense speed, within the noise (p10–p90 {lo:.2f}–{hi:.2f}×),"


def _speed_phrase(entry: dict[str, Any]) -> str:
    b1, b64 = entry["speedup_b1"], entry["speedup_b64"]
    if 0.9 <= b1 <= 1.1 and 0.9 <= b64 <= 1.1:
        return f"runs at the dense model's speed ({b1:.2f}× at batch 1, {b64:.2f}× at batch 64)"
    r1 = entry.get("speedup_b1_p10_p90") or [b1, b1]
    r64 = entry.get("speedup_b64_p10_p90") or [b64, b64]
    return f"runs {_speed(b1, *r1)} at batch 1 and {_speed(b64, *r64)} at batch 64"


def sentence(entry: dict[str, Any], config: dict[str, Any], dense: dict[str, Any] | None = None,
             n_test: int | None = None, curve: list[dict[str, Any]] | None = None) -> str:
    """One sentence reading an entry: what it is, its quality, its dense-equivalent size, speed, bytes.

    ``dense``: the parent's entry (default: the entry itself); ``n_test``: test examples, for the noise
    of an error difference; ``curve``: the dense curve the entry was placed on.
    """
    dense = dense or entry
    points = cited(entry, dense, curve or [])
    metric = points["metric"]
    values = [entry[metric]] + [p[metric] for k, p in points.items() if k != "metric" and p]
    fmt = formatter(metric, values)
    err = entry.get("test_error")
    quality = f"test error {fmt(err)}, loss {entry['test_loss']:.3f}" if err is not None and metric == "test_error" \
        else f"test loss {fmt(entry['test_loss'])}"
    text = (f"{describe_model(config)} {entry['label']} ({quality}) "
            f"{_equivalent_phrase(entry, config['model']['family'], dense, points, fmt, n_test)}. It "
            f"{_speed_phrase(entry)} and takes {_bytes(entry['bytes'])} on disk "
            f"({100 * entry['bytes_ratio']:.0f} % of the dense bytes)")
    return text[0].upper() + text[1:] + "."


def pct(x: float) -> str:
    v = 100 * x
    return f"{v:.0f} %" if abs(v - round(v)) < 1e-6 else f"{v:.1f} %"


def ft_phrase(steps: int) -> str:
    return f" and fine-tuned {steps:,} steps" if steps else " without fine-tuning"


def diverged(summary: dict[str, Any]) -> dict[str, Any]:
    return {"diverged_at": summary["diverged_at"]} if "diverged_at" in summary else {}
