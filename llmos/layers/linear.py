"""Linear layers: one that can run on oneDNN-packed or int8 weights, and one that fuses projections.

``Linear.pack()`` swaps the weight for a copy laid out for oneDNN (CPU, bf16). For decode-sized
inputs this is 1.5-3x faster than ``F.linear`` on a plain bf16 weight and gives identical
results; the plain weight is dropped, so memory stays the same.

``Linear.quantize_int8()`` (opt-in, ``EngineConfig.quantization = "int8"``) keeps the weight as
int8 with one symmetric scale per output channel. Decode-sized fp32 inputs on an AVX2 CPU run the
native kernel of ``layers.q8`` (activations quantized per block of 32: 2-4x faster than fp32
``F.linear`` at one row); other decode-sized inputs run torch's weight-only kernel
``aten._weight_int8pack_mm`` (bf16 activations: its fp32 path is ~10x slower); larger inputs
dequantize the weight and use ``F.linear``, which wins there (docs/benchmarks.md).

bf16 matmuls on CPU run through oneDNN, which builds (and keeps, up to 1024 per cache) a
primitive for every new input shape — ~0.4 MB each for these layers. A server sees a new row
count nearly every step (prefill chunks + decodes), so an unbounded set of shapes grew its memory
by hundreds of MB in a soak. ``linear`` therefore pads the rows of a bf16 CPU input up to one of
eight sizes per power of two (exact below 16, at most 12.5% extra rows above), which bounds the
shapes to ~65 per layer up to 1024 rows; decode-sized inputs are never padded.

``MergedLinear`` stacks several HF projections of the same input along the output dimension
(q|k|v, gate|up); ``shard`` exposes each one's slice so a loader can copy an HF tensor in place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmos.layers import q8

logger = logging.getLogger(__name__)


def _cpu_has_onednn_bf16() -> bool:
    """oneDNN's bf16 linear needs AVX-512 (BW, VL and DQ) or AVX-NE-CONVERT; an AVX2-only CPU
    (many AMD EPYC and desktop parts) refuses to pack ("bf16 path needs the cpu support ...")."""
    if torch.cpu._is_avx512_supported():
        return True
    try:
        with open("/proc/cpuinfo") as f:
            return "avx_ne_convert" in f.read()
    except OSError:
        return False


def can_pack(dtype: torch.dtype, device: torch.device) -> bool:
    """oneDNN weight packing applies to bf16 on CPUs whose torch build has mkldnn and whose
    instruction set oneDNN's bf16 path runs on."""
    return (
        device.type == "cpu"
        and dtype == torch.bfloat16
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
        and _cpu_has_onednn_bf16()
    )


def bucket_rows(rows: int) -> int:
    """``rows`` rounded up to a multiple of ``2 ** (bit_length - 4)``: exact below 16, then eight
    sizes per power of two."""
    if rows < 16:
        return rows
    step = 1 << (rows.bit_length() - 4)
    return -(-rows // step) * step


def _bucketed(matmul: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``matmul(x)`` with ``x``'s rows padded to ``bucket_rows`` where oneDNN runs it (bf16, CPU)."""
    if x.dtype != torch.bfloat16 or x.device.type != "cpu":
        return matmul(x)
    rows = x.reshape(-1, x.shape[-1])
    n = rows.shape[0]
    padded = bucket_rows(n)
    if padded == n:
        return matmul(x)
    out = matmul(F.pad(rows, (0, 0, 0, padded - n)))[:n]
    return out.view(*x.shape[:-1], out.shape[-1])


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear`` with bounded oneDNN shapes (see the module docstring)."""
    return _bucketed(lambda rows: F.linear(rows, weight, bias), x)


def pack_weight(weight: Tensor) -> Tensor:
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), 1)


def packed_linear(x: Tensor, packed: Tensor, bias: Tensor | None = None) -> Tensor:
    return _bucketed(lambda rows: torch.ops.mkldnn._linear_pointwise(rows, packed, bias, "none", [], ""), x)


# Up to this many rows the int8 kernel beats dequantize + F.linear (AMD EPYC AVX-512, docs/benchmarks.md:
# ~10x at 1 row, ~2.5x at 8, ~0.6x at 64); decode steps of a few sequences fall under it.
INT8_KERNEL_MAX_ROWS = 16
# Up to this many fp32 rows the native q8 kernel beats fp32 F.linear (AVX2 AMD EPYC, 1 thread: 2.0x at
# 1 row, 2.1x at 4, 1.5x at 8, a tie at 16; docs/benchmarks.md).
Q8_KERNEL_MAX_ROWS = 8


@dataclass(slots=True)
class Int8Weight:
    """A weight as int8 ``[out, in]`` times a per-output-channel ``scales`` ``[out]`` (bf16)."""

    qweight: Tensor
    scales: Tensor
    scales_f32: Tensor  # the same scales in float32 (the native kernel's)

    @classmethod
    def quantize(cls, weight: Tensor) -> Int8Weight:
        """Symmetric round-to-nearest: ``scale = max|w_row| / 127``."""
        w = weight.detach().to(torch.float32, copy=True)  # a copy even when fp32: quantized in place
        # round the scales to bf16 first (the kernel's dtype) so the int8 values fit the scales used
        scales = (w.abs().amax(dim=1) / 127).clamp(min=1e-8).to(torch.bfloat16)
        # in place on the float32 copy: each extra temporary of a 49k x 576 weight costs ~10 ms
        qweight = w.div_(scales.float()[:, None]).round_().clamp_(-127, 127).to(torch.int8).contiguous()
        return cls(qweight, scales, scales.float().contiguous())

    def dequantize(self, dtype: torch.dtype) -> Tensor:
        return self.qweight.to(dtype) * self.scales.to(dtype)[:, None]


def int8_linear(x: Tensor, weight: Int8Weight, bias: Tensor | None = None) -> Tensor:
    """``F.linear(x, weight.dequantize())`` in ``x``'s dtype, by the faster kernel for its rows."""
    rows = x.reshape(-1, x.shape[-1])
    if x.dtype == torch.float32 and rows.shape[0] <= Q8_KERNEL_MAX_ROWS and q8.supports(rows, rows.shape[1]):
        out = q8.q8_linear(rows, weight.qweight, weight.scales_f32).view(*x.shape[:-1], -1)
        return out if bias is None else out + bias
    if rows.shape[0] > INT8_KERNEL_MAX_ROWS:
        return linear(x, weight.dequantize(x.dtype), bias)
    out = torch.ops.aten._weight_int8pack_mm(
        rows.to(torch.bfloat16).contiguous(), weight.qweight, weight.scales
    )
    out = out.to(x.dtype).view(*x.shape[:-1], -1)
    return out if bias is None else out + bias


class Linear(nn.Linear):
    """``nn.Linear`` that can switch (after loading) to a oneDNN-packed weight with ``pack()`` or
    to an int8 one with ``quantize_int8()``."""

    packed: Tensor | None = None
    int8: Int8Weight | None = None

    def pack(self) -> None:
        self.packed = pack_weight(self.weight)
        self.weight = nn.Parameter(torch.empty(0, dtype=self.weight.dtype), requires_grad=False)

    def quantize_int8(self) -> None:
        assert self.packed is None, "quantize the plain weight, not a packed one"
        self.int8 = Int8Weight.quantize(self.weight)
        self.weight = nn.Parameter(torch.empty(0, dtype=self.weight.dtype), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.int8 is not None:
            return int8_linear(x, self.int8, self.bias)
        if self.packed is None:
            return linear(x, self.weight, self.bias)
        return packed_linear(x, self.packed, self.bias)


class MergedLinear(Linear):
    """``Linear(in_features, sum(output_sizes))`` whose output splits back into ``output_sizes``."""

    def __init__(self, in_features: int, output_sizes: list[int], bias: bool = False):
        super().__init__(in_features, sum(output_sizes), bias=bias)
        self.output_sizes = output_sizes

    def shard(self, param_name: str, index: int) -> Tensor:
        """The view of ``weight`` or ``bias`` that holds projection ``index``."""
        offset = sum(self.output_sizes[:index])
        return getattr(self, param_name).data.narrow(0, offset, self.output_sizes[index])


def quantize_linears(model: nn.Module) -> int:
    """Switch every ``Linear`` of a loaded model to int8 weights; returns how many."""
    layers = [m for m in model.modules() if isinstance(m, Linear)]
    for layer in layers:
        layer.quantize_int8()
    return len(layers)


def pack_linears(model: nn.Module) -> int:
    """Pack every ``Linear`` of a loaded model; returns how many were packed."""
    layers = [m for m in model.modules() if isinstance(m, Linear)]
    for layer in layers:
        layer.pack()
    return len(layers)
