"""One compressed model → one frontier entry, every model measured the same way.

An entry holds what the issue asks of every point of the frontier: test loss and error on the
sweep's own test split, nonzero parameters, bytes of the file actually written, latency at batch
1 and 64 (medians, with the full distributions beside them), peak memory, and where its test
loss falls on the dense curve (the dense-equivalent size). Speed-up and bytes ratio are against
the dense entry, which is always measured first, in the same process, with the same settings.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from overparam.compress import latency as lat
from overparam.compress.base import Subject, count_nonzero


class Bench:
    """Measures models into entries; holds the dense curve and the dense entry they are compared with."""

    def __init__(self, subject: Subject, curve: list[dict[str, Any]], files: Path, repeats: int, warmup: int,
                 log: Callable[[str], None]):
        self.subject, self.curve, self.files = subject, curve, files
        self.repeats, self.warmup, self.log = repeats, warmup, log
        self.entries: list[dict[str, Any]] = []
        self.dense: dict[str, Any] | None = None
        self._since = time.perf_counter()  # the log shows each model's time, training included

    def add(self, method: str, setting: Any, label: str, forward: Callable[[torch.Tensor], torch.Tensor],
            nonzero: int, n_params: int, file: Path, nbytes: int, runtime: str = "torch",
            **extra: Any) -> dict[str, Any]:
        """Evaluate and time ``forward``; append and return its entry."""
        from overparam.compress.frontier import dense_equivalent
        from overparam.compress.reading import sentence

        entry: dict[str, Any] = {"method": method, "setting": setting, "label": label, "runtime": runtime,
                                 **extra}
        entry.update(self.subject.evaluate(forward))
        entry.update({"nonzero_params": int(nonzero), "params": int(n_params), "bytes": int(nbytes),
                      "file": str(file)})
        reference = self.subject.model if self.dense is not None else None
        cost = lat.measure(forward, self.subject.example, self.repeats, self.warmup,
                           memory=runtime == "torch", reference=reference)
        entry.update({"latency_ms_b1": cost["latency_b1"]["median"],
                      "latency_ms_b64": cost["latency_b64"]["median"],
                      "latency_b1": cost["latency_b1"], "latency_b64": cost["latency_b64"]})
        peak = cost["activation_peak_bytes"]
        entry["activation_peak_bytes"] = peak
        entry["peak_memory_bytes"] = nbytes + peak if peak is not None else None
        eq = dense_equivalent(self.curve, entry["test_loss"])
        entry.update({"dense_equivalent_params": eq["params"], "dense_equivalent_size": eq["size"],
                      "dense_equivalent_status": eq["status"], "dense_equivalent_bound": eq.get("bound")})
        if entry["test_error"] is not None:  # the same reading on the test-error curve, for comparison
            entry["dense_equivalent_params_by_error"] = dense_equivalent(self.curve, entry["test_error"],
                                                                         "test_error")["params"]
        if self.dense is None:
            self.dense = entry
        for b in ("b1", "b64"):  # median of interleaved per-call ratios (1 for the dense model itself)
            entry[f"speedup_{b}"] = cost[f"speedup_{b}"]["median"] if reference is not None else 1.0
            entry[f"speedup_{b}_p10_p90"] = [cost[f"speedup_{b}"]["p10"], cost[f"speedup_{b}"]["p90"]] \
                if reference is not None else [1.0, 1.0]
        entry["bytes_ratio"] = entry["bytes"] / self.dense["bytes"]
        entry["sentence"] = sentence(entry, self.subject.config)
        self.entries.append(entry)
        err = entry["test_error"]
        self.log(f"  {method:<16} {str(setting):<12} {entry.get('variant') or '':<9} "
                 f"loss {entry['test_loss']:.4f}"
                 + (f"  error {100 * err:5.2f} %" if err is not None else "")
                 + f"  b1 {entry['latency_ms_b1']:.3f} ms  ({time.perf_counter() - self._since:.1f} s)")
        self._since = time.perf_counter()
        return entry

    def add_torch(self, method: str, setting: Any, label: str, model: nn.Module, slug: str,
                  nonzero: int | None = None, n_params: int | None = None, **extra: Any) -> dict[str, Any]:
        """Save a torch model (safetensors; ``torch.save`` for packed int8) and measure it."""
        model = model.eval()
        state = model.state_dict()
        if all(torch.is_tensor(v) and not v.is_quantized for v in state.values()):
            path = self.files / f"{slug}.safetensors"
            nbytes = lat.save_safetensors(model, path)
        else:  # dynamic quantization packs its int8 weights into objects safetensors cannot hold
            path = self.files / f"{slug}.pt"
            nbytes = lat.save_torch(model, path)
        if n_params is None:
            n_params = sum(p.numel() for p in model.parameters())
        return self.add(method, setting, label, model, count_nonzero(model) if nonzero is None else nonzero,
                        n_params, path, nbytes, **extra)
