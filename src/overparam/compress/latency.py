"""Measured cost on this machine: latency as a distribution, peak memory, bytes on disk, ONNX export.

Latency: one forward pass at batch 1 and at batch 64 under ``torch.inference_mode``, after
``warmup`` untimed calls (allocator, caches, oneDNN/ORT kernel selection), timed ``repeats`` times
one call at a time with ``time.perf_counter``. A single number hides the noise of a shared
machine, so the result is a distribution: median, p10, p90 and every sample, in milliseconds
(the airbench habit: report what varies). Speed-ups against the dense model are measured
interleaved with it, call by call (:func:`time_paired`), so a load spike hits both alike.

Peak memory: bytes at rest (the weights as stored) plus the largest total of tensors alive during
one batch-64 forward, read from the PyTorch profiler's allocation and free events in time order
(on CUDA, ``torch.cuda.max_memory_allocated``). ONNX Runtime allocates outside PyTorch; its
activation memory is not measured (reported as null), only its bytes on disk.

ONNX: ``torch.onnx.export`` with the TorchScript-based exporter (``dynamo=False``: it needs no
``onnxscript`` and still works in torch 2.13, with a deprecation warning silenced here), a dynamic
batch axis, opset 17; then run in ONNX Runtime's CPU provider and checked against PyTorch.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from overparam.errors import require

OPSET = 17


def distribution(samples_ms: list[float]) -> dict[str, Any]:
    """Median, p10, p90, mean and the samples themselves (ms)."""
    a = np.asarray(samples_ms, dtype=np.float64)
    return {"median": float(np.median(a)), "p10": float(np.percentile(a, 10)),
            "p90": float(np.percentile(a, 90)), "mean": float(a.mean()), "n": int(a.size),
            "samples": [round(float(v), 5) for v in a]}


def time_forward(forward: Callable[[torch.Tensor], Any], x: torch.Tensor, repeats: int = 30,
                 warmup: int = 5) -> dict[str, Any]:
    """Wall time of ``forward(x)`` in ms: ``warmup`` untimed calls, then ``repeats`` timed ones."""
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    samples = []
    with torch.inference_mode():
        for _ in range(warmup):
            forward(x)
        sync()
        for _ in range(repeats):
            t0 = time.perf_counter()
            forward(x)
            sync()
            samples.append((time.perf_counter() - t0) * 1e3)
    return distribution(samples)


@contextlib.contextmanager
def _quiet_fd2():
    """Silence file descriptor 2 (the profiler's native start/stop lines bypass Python's stderr)."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def activation_peak_bytes(forward: Callable[[torch.Tensor], Any], x: torch.Tensor) -> int | None:
    """Most bytes allocated at once during one ``forward(x)``, beyond what existed before it."""
    if x.is_cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        with torch.inference_mode():
            forward(x)
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated() - base)
    try:
        with _quiet_fd2(), warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            with torch.autograd.profiler.profile(profile_memory=True, use_kineto=False) as prof:
                forward(x)
    except Exception:  # the profiler is a diagnostic: its absence must not stop a measurement
        return None
    events = sorted(prof.function_events, key=lambda e: e.time_range.start)
    current = peak = 0
    for e in events:
        current += e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage
        peak = max(peak, current)
    return int(peak)


def time_paired(forward: Callable[[torch.Tensor], Any], reference: Callable[[torch.Tensor], Any],
                x: torch.Tensor, repeats: int = 30, warmup: int = 5) -> dict[str, Any]:
    """Time ``forward`` and ``reference`` interleaved, call by call, alternating which goes first.

    On a shared machine the load changes within seconds; two models timed minutes apart can differ
    by 2× for nothing. Interleaving exposes both to the same load, and the speed-up is the median
    of the per-pair ratios reference / forward rather than a ratio of two separately noisy medians.
    """
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    fs, rs = [], []
    with torch.inference_mode():
        for _ in range(warmup):
            forward(x)
            reference(x)
        sync()
        for i in range(repeats):
            pair = ((forward, fs), (reference, rs)) if i % 2 == 0 else ((reference, rs), (forward, fs))
            for fn, out in pair:
                t0 = time.perf_counter()
                fn(x)
                sync()
                out.append((time.perf_counter() - t0) * 1e3)
    ratios = [r / f for f, r in zip(fs, rs, strict=True)]
    return {"latency": distribution(fs), "reference": distribution(rs), "speedup": distribution(ratios)}


def measure(forward: Callable[[torch.Tensor], Any], example: Callable[[int], torch.Tensor],
            repeats: int = 30, warmup: int = 5, memory: bool = True,
            reference: Callable[[torch.Tensor], Any] | None = None) -> dict[str, Any]:
    """Latency at batch 1 and 64 (distributions), and the batch-64 activation peak.

    With ``reference`` (the dense model), each batch size is timed interleaved with it
    (:func:`time_paired`) and ``speedup_b1`` / ``speedup_b64`` are the per-pair ratio distributions.
    """
    out: dict[str, Any] = {}
    for b in (1, 64):
        x = example(b)
        if reference is None:
            out[f"latency_b{b}"] = time_forward(forward, x, repeats, warmup)
        else:
            paired = time_paired(forward, reference, x, repeats, warmup)
            out[f"latency_b{b}"], out[f"speedup_b{b}"] = paired["latency"], paired["speedup"]
    out["activation_peak_bytes"] = activation_peak_bytes(forward, example(64)) if memory else None
    return out


def save_safetensors(model: nn.Module, path: Path) -> int:
    """Write the model's state as safetensors; return its size in bytes on disk."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if torch.is_tensor(v)}
    save_file(state, str(path))
    return path.stat().st_size


def save_torch(model: nn.Module, path: Path) -> int:
    """``torch.save`` of the state dict, for models safetensors cannot hold (packed int8 params).

    Written only to measure bytes on disk; overparam never loads (unpickles) these files.
    """
    torch.save(model.state_dict(), str(path))
    return path.stat().st_size


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """Export to ONNX with a dynamic batch axis (legacy TorchScript exporter, opset 17)."""
    require("onnx", "onnx")
    with warnings.catch_warnings(), _quiet_fd2():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (example,), str(path), dynamo=False, opset_version=OPSET,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    return path


class OnnxModel:
    """An ONNX Runtime session called like a model: torch tensor in, float32 torch tensor out."""

    def __init__(self, path: Path, threads: int | None = None):
        ort = require("onnxruntime", "onnx")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        self.path = path
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input: x.detach().cpu().numpy()})[0]
        return torch.from_numpy(out).float()


def ort_quantize_dynamic(src: Path, dst: Path) -> Path:
    """ONNX Runtime dynamic int8 (int8 weights, activations quantized per batch at run time)."""
    require("onnxruntime", "onnx")
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # "consider pre-processing"
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    return dst


@torch.no_grad()
def max_abs_diff(a: Callable[[torch.Tensor], torch.Tensor], b: Callable[[torch.Tensor], torch.Tensor],
                 x: torch.Tensor) -> float:
    return float((a(x).float() - b(x).float()).abs().max())


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {"platform": platform.platform(), "processor": _cpu_name(),
                            "cpu_count": os.cpu_count(), "torch": torch.__version__,
                            "torch_threads": torch.get_num_threads(),
                            "quantized_engine": torch.backends.quantized.engine}
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = None
    try:
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
