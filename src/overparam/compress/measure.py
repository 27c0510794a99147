"""One compressed model → one frontier entry, every model measured the same way.

An entry holds what the issue asks of every point of the frontier: test loss and error on the
sweep's own test split, nonzero parameters, bytes of the file actually written, latency at batch
1 and 64 (medians, with the full distributions beside them), peak memory, the seconds it took to
build and measure, and where its test error (test loss for a language model; loss beside error
otherwise) places it on the dense curve (the dense-equivalent size, :func:`.frontier.dense_equivalent`).
Speed-up and bytes ratio are against the dense entry, which is always measured first, in the same
process, with the same settings.
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
        # the metric the user reads: test error for classification, test loss otherwise
        self.metric = "test_loss" if subject.is_lm or subject.n_classes is None else "test_error"
        self._since = time.perf_counter()  # the log shows each model's time, training included

    def add(self, method: str, setting: Any, label: str, forward: Callable[[torch.Tensor], torch.Tensor],
            nonzero: int, n_params: int, file: Path, nbytes: int, runtime: str = "torch",
            **extra: Any) -> dict[str, Any]:
        """Evaluate and time ``forward``; append and return its entry."""
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
        self._place(entry)
        if self.dense is None:
            self.dense = entry
        for b in ("b1", "b64"):  # median of interleaved per-call ratios (1 for the dense model itself)
            entry[f"speedup_{b}"] = cost[f"speedup_{b}"]["median"] if reference is not None else 1.0
            entry[f"speedup_{b}_p10_p90"] = [cost[f"speedup_{b}"]["p10"], cost[f"speedup_{b}"]["p90"]] \
                if reference is not None else [1.0, 1.0]
        entry["bytes_ratio"] = entry["bytes"] / self.dense["bytes"]
        entry["seconds"] = round(time.perf_counter() - self._since, 3)  # building (training) and measuring it
        entry["sentence"] = sentence(entry, self.subject.config, self.dense, self.subject.n_test, self.curve)
        self.entries.append(entry)
        err = entry["test_error"]
        self.log(f"  {method:<16} {str(setting):<12} {entry.get('variant') or '':<9} "
                 f"loss {entry['test_loss']:.4f}"
                 + (f"  error {100 * err:5.2f} %" if err is not None else "")
                 + f"  b1 {entry['latency_ms_b1']:.3f} ms  ({entry['seconds']:.1f} s)")
        self._since = time.perf_counter()
        return entry

    def restart_clock(self) -> None:
        """Start timing the next model now (after work that belongs to no entry, e.g. the ONNX export)."""
        self._since = time.perf_counter()

    def _place(self, entry: dict[str, Any]) -> None:
        """The entry's dense-equivalent size on the metric the user reads, and on test loss beside it.

        The parent is the dense entry (measured first, the same way); the dense entry is its own parent.
        """
        from overparam.compress.frontier import dense_equivalent

        dense = self.dense or entry
        parent = {"params": dense["params"], "test_error": dense["test_error"], "test_loss": dense["test_loss"],
                  "size": {k: self.subject.config["model"].get(k) for k in self.subject.family.SIZE_KEYS}}
        eq = dense_equivalent(self.curve, entry[self.metric], parent, self.metric)
        entry.update({"dense_equivalent_metric": self.metric, "dense_equivalent_params": eq["params"],
                      "dense_equivalent_size": eq["size"], "dense_equivalent_status": eq["status"],
                      "dense_equivalent_better": eq["better"], "dense_equivalent_bound": eq.get("bound"),
                      "dense_equivalent_between": eq.get("between")})
        if self.metric != "test_loss":  # the same reading on the test-loss curve, beside it
            by_loss = dense_equivalent(self.curve, entry["test_loss"], parent, "test_loss")
            entry["dense_equivalent_params_by_loss"] = by_loss["params"]
            entry["dense_equivalent_status_by_loss"] = by_loss["status"]

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
