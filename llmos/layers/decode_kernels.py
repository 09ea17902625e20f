"""Native CPU kernels for the decode step (``decode_kernels.c``), built once per machine.

- ``decode_attention``: each decode row attends its context read in place from the paged KV cache
  through its block table. The torch path gathers every context into a new tensor first
  (``index_select`` of whole blocks) and runs SDPA over the copy: at 64 sequences x ~500 tokens
  that is three passes over ~25 MB of K/V a layer (read, write, read), and attention was half of a
  batched decode step. This kernel reads the cache once.
- ``store``: new K/V into the cache (``index_copy_`` costs ~40 us a call at decode sizes).
- ``rms_norm`` and ``rotary``: Llama's RMSNorm and rotate-half RoPE in one call each instead of
  eight and five torch ops, rounding as those ops do (the same bits in bf16).

They need x86 with AVX2+FMA (AVX-512 used where present) and a C compiler. The library is linked
against the libgomp torch has loaded, so the attention's threads are torch's own OpenMP pool; the
small kernels run on the calling thread (a one-thread OpenMP region resized torch's pool and made
the next torch op ~10 ms slower). ``LLMOS_NATIVE_KERNELS=0`` turns them off (with the int8 one);
elsewhere ``supports()``/``fuses()`` are False and the torch paths run.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from torch import Tensor

from llmos.layers import native

SOURCE = Path(__file__).with_name("decode_kernels.c")
MAX_GROUP = 16  # query heads per KV head (as in the C source)
MAX_DIM = 256
calls = 0  # how many layer calls the kernel ran (tests read it)

COMMON_FLAGS = ("-O3", "-fopenmp", "-fPIC", "-shared")
AVX512_FLAGS = ("-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mfma", *COMMON_FLAGS)
AVX2_FLAGS = ("-mavx2", "-mfma", *COMMON_FLAGS)  # 8-lane vectors (the C source picks by __AVX512F__)


def _flags() -> tuple[str, ...] | None:
    cpu = native.cpu_flags()
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= cpu:
        return AVX512_FLAGS
    if {"avx2", "fma"} <= cpu:
        return AVX2_FLAGS
    return None


def _declare(library: ctypes.CDLL) -> None:
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    fn = library.paged_decode_attention
    fn.argtypes = [
        ptr, ptr, ptr, i64,  # q, k_cache, v_cache, num_slots
        ptr, i64, ptr,  # block_tables, max_blocks, context_lens
        i64, i64, i64, i64, i64, i64,  # n, H, KV, D, block_size, window
        ctypes.c_float, i64, ptr, i64,  # scale, dtype, out, num_threads
    ]  # fmt: skip
    fn.restype = None
    store = library.paged_store
    store.argtypes = [ptr, ptr, ptr, ptr, i64, ptr, i64, i64, i64, i64]
    store.restype = None
    library.rms_norm.argtypes = [ptr, i64, ptr, ptr, i64, i64, ctypes.c_float, i64]
    library.rms_norm.restype = None
    library.rotary.argtypes = [ptr, i64, ptr, ptr, ptr, i64, i64, i64, i64]
    library.rotary.restype = None


LIBRARY = native.Library("decode", SOURCE, _flags, _declare)


def available() -> bool:
    """Whether the native kernel runs here (built on first use)."""
    return LIBRARY.get() is not None


def supports(cache: Tensor, num_heads: int, num_kv_heads: int, head_dim: int) -> bool:
    """Whether decode over this layer's cache can run on the kernel."""
    return (
        cache.device.type == "cpu"
        and cache.dtype in (torch.float32, torch.bfloat16)
        and head_dim % 16 == 0
        and head_dim <= MAX_DIM
        and num_heads % num_kv_heads == 0
        and num_heads // num_kv_heads <= MAX_GROUP
        and available()
    )


def decode_attention(
    q: Tensor,
    k_cache: Tensor,
    v_cache: Tensor,
    block_tables: Tensor,
    context_lens: Tensor,
    block_size: int,
    scale: float,
    window: int = 0,
) -> Tensor:
    """``[n, H, D]`` queries (one token per row, in the cache's dtype) against each row's first
    ``context_lens[i]`` cached tokens (the last ``window`` only, when positive), found through
    ``block_tables`` ``[n, max_blocks]`` int64 in the ``[KV, num_slots, D]`` caches → ``[n, H, D]``."""
    global calls
    library = LIBRARY.library or LIBRARY.get()
    assert library is not None, "decode_attention without the native kernel: check supports() first"
    q = q.to(k_cache.dtype).contiguous()
    block_tables = block_tables.contiguous()
    context_lens = context_lens.to(torch.int64).contiguous()
    n, heads, dim = q.shape
    kv, num_slots = k_cache.shape[0], k_cache.shape[1]
    out = torch.empty_like(q)
    library.paged_decode_attention(
        q.data_ptr(), k_cache.data_ptr(), v_cache.data_ptr(), num_slots,
        block_tables.data_ptr(), block_tables.shape[1], context_lens.data_ptr(),
        n, heads, kv, dim, block_size, window, scale,
        1 if k_cache.dtype == torch.bfloat16 else 0, out.data_ptr(), torch.get_num_threads(),
    )  # fmt: skip
    calls += 1
    return out


def store(k: Tensor, v: Tensor, k_cache: Tensor, v_cache: Tensor, slots: Tensor) -> None:
    """Write ``[T, KV, D]`` keys and values into the ``[KV, num_slots, D]`` caches at ``slots``
    (int64, each in range): ``index_copy_`` along the slot dimension without its ~40 us of
    overhead a call at decode sizes."""
    library = LIBRARY.library or LIBRARY.get()
    assert library is not None, "store without the native kernel: check supports() first"
    k = k.to(k_cache.dtype).contiguous()
    v = v.to(v_cache.dtype).contiguous()
    slots = slots.contiguous()
    t, kv, dim = k.shape
    library.paged_store(
        k.data_ptr(), v.data_ptr(), k_cache.data_ptr(), v_cache.data_ptr(), k_cache.shape[1],
        slots.data_ptr(), t, kv, dim, k_cache.element_size(),
    )  # fmt: skip


MAX_NORM_WIDTH = 8192  # a row buffer on the C stack


def fuses(x: Tensor) -> bool:
    """Whether ``rms_norm``/``rotary`` take ``x``: CPU, fp32 or bf16, no autograd, the kernel here."""
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.bfloat16)
        and not torch.is_grad_enabled()
        and (LIBRARY.library is not None or LIBRARY.get() is not None)
    )


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """Llama's RMSNorm of ``[T, n]`` rows (each row contiguous) in one call: what
    ``weight * (x.float() * rsqrt(mean(x²) + eps)).to(x.dtype)`` computes, eight torch ops."""
    library = LIBRARY.library or LIBRARY.get()
    assert library is not None, "rms_norm without the native kernel: check fuses() first"
    shape = x.shape
    x = x.reshape(-1, shape[-1])
    if x.stride(-1) != 1:
        x = x.contiguous()
    weight = weight.to(x.dtype).contiguous()
    out = torch.empty(x.shape, dtype=x.dtype)
    rows, n = x.shape
    library.rms_norm(
        x.data_ptr(), x.stride(0), weight.data_ptr(), out.data_ptr(), rows, n, eps,
        1 if x.dtype == torch.bfloat16 else 0,
    )  # fmt: skip
    return out.view(shape)


def rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate-half RoPE of ``[T, H, D]`` (heads contiguous within a token; tokens may be strided,
    as a view split from the fused q/k/v output is) by per-token ``[T, D]`` cos/sin in x's dtype:
    ``apply_rotary`` in one call, with torch's rounding after each of its products and the sum."""
    library = LIBRARY.library or LIBRARY.get()
    assert library is not None, "rotary without the native kernel: check fuses() first"
    tokens, heads, dim = x.shape
    if x.stride(2) != 1 or x.stride(1) != dim:
        x = x.contiguous()
    cos, sin = cos.to(x.dtype).contiguous(), sin.to(x.dtype).contiguous()
    out = torch.empty(x.shape, dtype=x.dtype)
    library.rotary(
        x.data_ptr(), x.stride(0), cos.data_ptr(), sin.data_ptr(), out.data_ptr(), tokens, heads, dim,
        1 if x.dtype == torch.bfloat16 else 0,
    )  # fmt: skip
    return out
