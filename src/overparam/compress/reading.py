"""Reading a frontier entry as one sentence, in the sweep's own units.

"A 2×128 MLP rebuilt 32×32 wide with the 75 % least important neurons removed and fine-tuned 250
steps (test error 4.1 %) matches a dense 15-wide one (1,363 parameters) and runs about as fast
(1.08×) at batch 1 and 1.6× faster at batch 64; it takes 14.0 KiB on disk (14 % of the dense bytes)."
Speeds within 10 % of the dense model's read as "about as fast": that is the resolution of the
interleaved timing on a shared machine (masked models, identical in cost, land at 0.95–1.02×).
"""

from __future__ import annotations

from typing import Any


def describe_model(config: dict[str, Any]) -> str:
    m = config["model"]
    if m["family"] == "mlp":
        return f"a {m['width']}-wide MLP" if m["depth"] == 1 else f"a {m['depth']}×{m['width']} MLP"
    if m["family"] == "gpt":
        return f"a {m['n_layer']}-layer GPT (d_model {m['d_model']}, {m['n_head']} heads)"
    settings = ", ".join(f"{k} {v}" for k, v in m.items() if k != "family" and isinstance(v, (int, float, str)))
    target, _, factory = m["family"].rpartition(":")  # a user's factory: "make_net from net.py"
    name = f"{factory} from {target.replace(chr(92), '/').rsplit('/', 1)[-1]}" if factory else m["family"]
    return f"a {name} model" + (f" ({settings})" if settings else "")


def _count(n: float) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k" if n >= 1e4 else f"{n:,.0f}"


def _bytes(n: float) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def _equivalent_phrase(entry: dict[str, Any], family: str) -> str:
    status, n = entry["dense_equivalent_status"], entry["dense_equivalent_params"]
    if status == "matched":
        size = entry.get("dense_equivalent_size") or {}
        if family == "mlp" and "width" in size:
            return f"matches a dense {size['width']:.0f}-wide one ({_count(n)} parameters)"
        return f"matches a dense model of {_count(n)} parameters"
    if status == "at_most_smallest":
        bound = _count(entry["dense_equivalent_bound"])
        return f"is no better than the smallest dense model of the sweep ({bound} parameters)"
    if status == "beyond_largest":
        return "beats every dense model of the sweep"
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


def sentence(entry: dict[str, Any], config: dict[str, Any]) -> str:
    """One sentence reading an entry: what it is, its quality, its dense-equivalent size, speed, bytes.

    E.g. "A 2×128 MLP rebuilt 32×32 wide with the 75 % least important neurons removed and
    fine-tuned 250 steps (test error 4.0 %) matches a dense 15-wide one (1,371 parameters) and runs
    about as fast (1.08×) at batch 1 and 1.7× faster at batch 64; it takes 14.0 KiB on disk (14 %
    of the dense bytes)."
    """
    err = entry.get("test_error")
    quality = f"test error {100 * err:.1f} %" if err is not None else f"test loss {entry['test_loss']:.3f}"
    text = (f"{describe_model(config)} {entry['label']} ({quality}) "
            f"{_equivalent_phrase(entry, config['model']['family'])} and {_speed_phrase(entry)}; it takes "
            f"{_bytes(entry['bytes'])} on disk ({100 * entry['bytes_ratio']:.0f} % of the dense bytes)")
    return text[0].upper() + text[1:] + "."


def pct(x: float) -> str:
    v = 100 * x
    return f"{v:.0f} %" if abs(v - round(v)) < 1e-6 else f"{v:.1f} %"


def ft_phrase(steps: int) -> str:
    return f" and fine-tuned {steps} steps" if steps else " without fine-tuning"


def diverged(summary: dict[str, Any]) -> dict[str, Any]:
    return {"diverged_at": summary["diverged_at"]} if "diverged_at" in summary else {}
