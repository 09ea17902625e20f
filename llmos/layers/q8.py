"""A native int8 linear for decode-sized fp32 inputs on x86 CPUs with AVX2 (``q8_kernel.c``).

torch's own weight-only int8 kernel (``aten._weight_int8pack_mm``) is ~10x slower on fp32 than on
bf16 activations, and an AVX2-only CPU (many AMD EPYC and desktop parts) has no fast bf16 either,
so fp32 decode there ran on fp32 weights: ~540 MB read per SmolLM2 token. This kernel reads the
int8 weights (a quarter of that) and multiplies them with activations quantized on the fly per
block of 32 (llama.cpp's Q8_0 scheme for activations), in int32 with AVX2.

The C source is compiled once with the system C compiler (``cc -O3 -mavx2 -mfma``) into
``$LLMOS_KERNEL_DIR`` (default ``~/.cache/llmos/kernels``), named by the source's digest, through a
temporary file renamed into place, and loaded with ctypes (which lets go of the GIL during the
call). Without a compiler, on another CPU, or with ``LLMOS_NATIVE_KERNELS=0``, ``available()`` is
False and callers keep torch's kernels.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path

import torch
from torch import Tensor

from llmos.layers import native

SOURCE = Path(__file__).with_name("q8_kernel.c")
FLAGS = ("-O3", "-mavx2", "-mfma", "-fPIC", "-shared")
BLOCK = 32  # activation values per quantization block: k must be a multiple


def _flags() -> tuple[str, ...] | None:
    return FLAGS if {"avx2", "fma"} <= native.cpu_flags() else None


def _declare(library: ctypes.CDLL) -> None:
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    library.q8_linear.argtypes = [ptr, i64, i64, ptr, ptr, i64, i64, i64, ptr, ptr, ptr]
    library.q8_linear.restype = None


LIBRARY = native.Library("q8", SOURCE, _flags, _declare)


def available() -> bool:
    """Whether the native kernel runs here (built on first use)."""
    return LIBRARY.get() is not None


def supports(x: Tensor, k: int) -> bool:
    """Whether ``q8_linear`` takes this input: CPU, and a width it can block."""
    return x.device.type == "cpu" and k % BLOCK == 0 and available()


_scratch = threading.local()  # per thread: the int8 copy of x and its block scales, reused
calls = 0  # how many products the kernel ran (tests read it; a profiler range costs ~9 us a call)


def _buffers(m: int, k: int) -> tuple[Tensor, Tensor]:
    key = (m, k)
    found = getattr(_scratch, "buffers", None)
    if found is None or found[0] != key:
        found = (key, torch.empty(m, k, dtype=torch.int8), torch.empty(m, k // BLOCK, dtype=torch.float32))
        _scratch.buffers = found
    return found[1], found[2]


def q8_linear(x: Tensor, qweight: Tensor, scales: Tensor) -> Tensor:
    """``x @ (qweight * scales[:, None]).T`` in float32 for ``x`` ``[m, k]`` (any float dtype, cast
    to fp32), ``qweight`` ``[n, k]`` contiguous int8 in [-127, 127] and ``scales`` ``[n]``
    contiguous float32 (``Int8Weight`` holds both so). Called ~120 times a decode step, so it
    checks nothing more: a few microseconds of Python a call."""
    global calls
    library = LIBRARY.library or LIBRARY.get()
    assert library is not None, "q8_linear without the native kernel: check available() first"
    if x.dtype != torch.float32 or not x.is_contiguous():
        x = x.to(torch.float32).contiguous()
    m, k = x.shape
    n = qweight.shape[0]
    out = torch.empty(m, n, dtype=torch.float32)
    xq, x_scales = _buffers(m, k)
    library.q8_linear(
        x.data_ptr(), m, k, qweight.data_ptr(), scales.data_ptr(), 0, n, n,
        out.data_ptr(), xq.data_ptr(), x_scales.data_ptr(),
    )  # fmt: skip
    calls += 1
    return out


def reference(x: Tensor, qweight: Tensor, scales: Tensor) -> Tensor:
    """What ``q8_linear`` computes, in torch: x quantized per block of 32, exact int products,
    the block and row scales applied after (for tests)."""
    x = x.to(torch.float32)
    m, k = x.shape
    blocks = x.view(m, k // BLOCK, BLOCK)
    d = blocks.abs().amax(dim=-1, keepdim=True) / 127.0  # float32, as in C
    inverse = torch.where(d > 0, 1.0 / torch.where(d > 0, d, 1.0), 0.0)
    q = torch.round(blocks * inverse)
    w = qweight.to(torch.float64).view(-1, k // BLOCK, BLOCK)
    per_block = torch.einsum("mbi,nbi->mnb", q.to(torch.float64), w)  # exact integers
    return (per_block * d.view(m, 1, -1).to(torch.float64)).sum(-1).float() * scales.float()
