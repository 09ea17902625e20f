"""One layer's decode attention over the paged KV cache: the torch path (gather each context with
``index_select``, then SDPA) against the native kernel (``llmos.layers.decode_kernels``, reading the cache in
place), for both builds of the kernel (AVX-512 where the CPU has it, and AVX2), in one run.

SmolLM2's attention shape (9 query heads, 3 KV heads, head dim 64), blocks of 16 tokens handed out
in random order, contexts uniform in [ctx/2, ctx). Prints JSON: microseconds a call per case and
system, the largest difference from the torch path, and the machine (CPU model and flags).

    .venv/bin/python benchmarks/paged_attention.py --threads 2 --out benchmarks/results/paged-attention.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from llmos.bench.throughput import _cpu_flags, _cpu_model
from llmos.layers import decode_kernels, native
from llmos.layers.attention import DecodeGroup

CASES = [
    ("bfloat16", 64, 500),
    ("bfloat16", 64, 1000),
    ("bfloat16", 8, 300),
    ("bfloat16", 1, 300),
    ("float32", 64, 500),
]
HEADS, KV_HEADS, DIM, BLOCK = 9, 3, 64, 16


def _time(fn: Callable[[], torch.Tensor], repeats: int) -> float:
    for _ in range(3):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e6


def run_case(
    dtype_name: str, rows: int, ctx: int, builds: dict[str, native.Library], repeats: int
) -> dict[str, Any]:
    dtype = getattr(torch, dtype_name)
    g = torch.Generator().manual_seed(0)
    num_blocks = rows * (ctx // BLOCK + 2) + 8
    k = torch.randn(KV_HEADS, num_blocks * BLOCK, DIM, generator=g).to(dtype)
    v = torch.randn(KV_HEADS, num_blocks * BLOCK, DIM, generator=g).to(dtype)
    lens = torch.randint(ctx // 2, ctx, (rows,), generator=g)
    width = int(-(-int(lens.max()) // BLOCK))
    tables = torch.randperm(num_blocks, generator=g)[: rows * width].view(rows, width).clone()
    q = torch.randn(rows, HEADS, DIM, generator=g).to(dtype)
    scale = DIM**-0.5

    def gather_sdpa() -> torch.Tensor:
        group = DecodeGroup(0, tables, lens, BLOCK)
        index = group.gather_index(KV_HEADS, num_blocks)
        shape = (KV_HEADS, rows, -1, DIM)
        kd = k.view(-1, BLOCK, DIM).index_select(0, index).view(shape).transpose(0, 1)
        vd = v.view(-1, BLOCK, DIM).index_select(0, index).view(shape).transpose(0, 1)
        qd = q.view(rows, KV_HEADS, HEADS // KV_HEADS, DIM)
        out = F.scaled_dot_product_attention(qd, kd, vd, attn_mask=group.mask(0), scale=scale)
        return out.reshape(rows, HEADS, DIM)

    want = gather_sdpa()
    result: dict[str, Any] = {"dtype": dtype_name, "rows": rows, "ctx": ctx, "us": {}, "max_abs_diff": {}}
    result["us"]["gather+sdpa"] = round(_time(gather_sdpa, repeats), 1)
    engine_build = decode_kernels.LIBRARY
    for name, library in builds.items():
        decode_kernels.LIBRARY = library  # the module-level library decode_attention calls

        def kernel() -> torch.Tensor:
            return decode_kernels.decode_attention(q, k, v, tables, lens, BLOCK, scale)

        result["max_abs_diff"][name] = float((kernel().float() - want.float()).abs().max())
        result["us"][name] = round(_time(kernel, repeats), 1)
    decode_kernels.LIBRARY = engine_build
    kv_bytes = int(lens.sum()) * KV_HEADS * DIM * 2 * k.element_size()
    result["kernel_gb_per_s"] = {
        name: round(kv_bytes / (result["us"][name] * 1e-6) / 1e9, 1) for name in builds
    }  # the K/V the kernel must read, over its time
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not decode_kernels.available():
        raise SystemExit(
            "the native paged attention kernel does not run here (needs x86 AVX2 and a C compiler)"
        )
    builds = {"kernel": decode_kernels.LIBRARY}
    if {"avx512f", "avx2"} <= native.cpu_flags():  # the engine runs the AVX-512 build; time AVX2 too
        avx2 = native.Library(
            "decode", decode_kernels.SOURCE, lambda: decode_kernels.AVX2_FLAGS, decode_kernels._declare
        )
        builds["kernel-avx2"] = avx2
    report = {
        "machine": {"cpu_model": _cpu_model(), "cpu_flags": _cpu_flags(), "torch": torch.__version__},
        "threads": args.threads,
        "shape": {"heads": HEADS, "kv_heads": KV_HEADS, "head_dim": DIM, "block_size": BLOCK},
        "cases": [run_case(d, r, c, builds, args.repeats) for d, r, c in CASES],
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
