"""Quantization: fewer bits per weight; what it costs in loss and what it buys in bytes and time.

Schemes (names as ``--quantize`` takes them):

- ``int8``, ``int4``: weight-only, symmetric round-to-nearest with one scale per output channel
  (row). ``int8-g32``, ``int4-g128``, …: the same with one scale per group of that many input
  columns (group-wise, as GPTQ/AWQ store weights; Frantar et al. 2023, Lin et al. 2024, without
  their error-correcting rounding). For a block with largest magnitude a, the scale is
  s = a / q_max with q_max = 2^(bits−1) − 1 (127 or 7), q = clamp(round(w / s), −q_max, q_max),
  and the dequantized weight ŝq is within s / 2 of w: the bound :func:`quantize_tensor` promises.
  Scales are kept in float32; int4 values are packed two per byte. Every ``nn.Linear`` is
  replaced; biases, LayerNorms and embeddings (the tied ``gpt`` unembedding) stay float32.
  On CPU there is no fused low-bit kernel here, so the forward dequantizes each weight before
  its matmul: smaller on disk and in memory at rest, *slower* per call. That is measured and
  reported as it is, not hidden by caching the float weights.
- ``fp16``, ``bf16``: every parameter cast; inputs are cast in and outputs back to float32.
- ``dynamic-int8``: PyTorch's dynamic quantization (int8 weights per tensor, activations
  quantized on the fly per batch, int8 GEMM via FBGEMM/oneDNN). ``torch.ao.quantization`` is
  deprecated in torch ≥ 2.9 but still works; its warnings are silenced here.
- ``ort-int8``: ONNX Runtime's dynamic int8 (``onnxruntime.quantization.quantize_dynamic``) on
  the exported ONNX graph; see :mod:`overparam.compress.latency`.
"""

from __future__ import annotations

import copy
import math
import re
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

CAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
DEFAULT_SCHEMES = ("int8", "int8-g32", "int4", "int4-g32", "fp16", "bf16", "dynamic-int8", "ort-int8")


@dataclass(frozen=True)
class Scheme:
    name: str
    kind: str  # "weight-only" | "cast" | "dynamic-torch" | "dynamic-ort"
    bits: int | None = None
    group_size: int | None = None  # None: one scale per output channel


def parse_scheme(name: str) -> Scheme:
    """A scheme from its name: int8, int4, int8-g32, int4-g128, fp16, bf16, dynamic-int8, ort-int8."""
    name = name.strip().lower()
    if name in CAST_DTYPES:
        return Scheme(name, "cast")
    if name == "dynamic-int8":
        return Scheme(name, "dynamic-torch", 8)
    if name == "ort-int8":
        return Scheme(name, "dynamic-ort", 8)
    m = re.fullmatch(r"int(8|4)(?:-g(\d+))?", name)
    if not m or (m.group(2) is not None and int(m.group(2)) < 1):
        raise ValueError(f"unknown quantization scheme {name!r} (known: int8, int4, int8-g<N>, int4-g<N>, "
                         f"fp16, bf16, dynamic-int8, ort-int8)")
    return Scheme(name, "weight-only", int(m.group(1)), int(m.group(2)) if m.group(2) else None)


def quantize_tensor(w: torch.Tensor, bits: int, group_size: int | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric round-to-nearest of a (out, in) matrix: int8 codes (out, in) and scales (out, groups).

    Guarantee: ``|w − dequantize(q, s)| ≤ s / 2`` elementwise, with s the scale of the element's
    row (per channel) or row-group. An all-zero block gets scale 1 and codes 0 (exact).
    """
    qmax = 2 ** (bits - 1) - 1
    out, inn = w.shape
    g = group_size or inn
    n_groups = math.ceil(inn / g)
    blocks = F.pad(w.detach().float(), (0, n_groups * g - inn)).view(out, n_groups, g)
    amax = blocks.abs().amax(dim=2)  # (out, groups)
    scale = torch.where(amax > 0, amax / qmax, torch.ones_like(amax))
    q = torch.clamp(torch.round(blocks / scale[..., None]), -qmax, qmax).to(torch.int8)
    return q.view(out, n_groups * g)[:, :inn].contiguous(), scale


def dequantize(q: torch.Tensor, scale: torch.Tensor, group_size: int | None = None) -> torch.Tensor:
    """Float32 weights from codes (out, in) and scales (out, groups)."""
    out, inn = q.shape
    g = group_size or inn
    per_col = scale.repeat_interleave(g, dim=1)[:, :inn]  # (out, in)
    return q.float() * per_col


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """Codes in [−8, 7] → uint8, two per byte (element 2i in the low nibble, 2i+1 in the high)."""
    flat = (q.flatten().to(torch.int16) + 8).to(torch.uint8)
    if flat.numel() % 2:
        flat = torch.cat([flat, torch.full((1,), 8, dtype=torch.uint8)])
    return flat[0::2] | (flat[1::2] << 4)


def unpack_int4(packed: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`pack_int4`."""
    both = torch.stack([packed & 0x0F, packed >> 4], dim=1).flatten()[: shape[0] * shape[1]]
    return (both.to(torch.int16) - 8).to(torch.int8).view(shape)


class QuantLinear(nn.Module):
    """A Linear whose weight is stored as low-bit codes and scales and dequantized at each call."""

    def __init__(self, layer: nn.Linear, bits: int, group_size: int | None):
        super().__init__()
        self.in_features, self.out_features = layer.in_features, layer.out_features
        self.bits, self.group_size = bits, group_size
        q, scale = quantize_tensor(layer.weight, bits, group_size)
        self.register_buffer("qweight", pack_int4(q) if bits == 4 else q)
        self.register_buffer("scale", scale)
        bias = layer.bias.detach().float().clone() if layer.bias is not None else None
        self.register_buffer("bias", bias)

    def codes(self) -> torch.Tensor:
        if self.bits == 4:
            return unpack_int4(self.qweight, (self.out_features, self.in_features))
        return self.qweight

    def weight(self) -> torch.Tensor:
        return dequantize(self.codes(), self.scale, self.group_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight(), self.bias)


class CastModel(nn.Module):
    """A model held in fp16/bf16: float inputs are cast in, outputs cast back to float32."""

    def __init__(self, inner: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.inner, self.dtype = inner.to(dtype), dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.to(self.dtype) if x.is_floating_point() else x).float()


def quantize_weights(model: nn.Module, bits: int, group_size: int | None = None) -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` replaced by a :class:`QuantLinear`."""
    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear):
            parent, _, leaf = name.rpartition(".")
            owner = model.get_submodule(parent) if parent else model
            setattr(owner, leaf, QuantLinear(module, bits, group_size))
    return model.eval()


def dynamic_int8(model: nn.Module) -> nn.Module:
    """PyTorch dynamic int8 quantization of every ``nn.Linear`` (deprecated API, still working)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear},
                                                      dtype=torch.qint8)


def quantize_model(model: nn.Module, scheme: Scheme) -> nn.Module:
    """The torch model for a scheme (``ort-int8`` is built from the ONNX graph instead)."""
    if scheme.kind == "weight-only":
        return quantize_weights(model, scheme.bits, scheme.group_size)
    if scheme.kind == "cast":
        return CastModel(copy.deepcopy(model), CAST_DTYPES[scheme.name]).eval()
    if scheme.kind == "dynamic-torch":
        return dynamic_int8(model)
    raise ValueError(f"{scheme.name} is not a torch-side scheme")
