"""The native paged decode attention (``llmos.layers.paged``): it computes what attention over each
row's context computes (checked against a float64 reference that walks the block table itself),
for fp32 and bf16 caches, grouped heads, several head sizes, block sizes and sliding windows; it
never reads a slot outside a row's context; the engine decodes through it with the torch path's
tokens and logprobs; it runs on torch's own OpenMP pool; and it can be switched off. Where it
cannot run (not x86 AVX2, no compiler) the tests say so and skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_models import VOCAB_SIZE, build_tiny_llama

from llmos.engine.config import EngineConfig
from llmos.engine.engine import Engine
from llmos.engine.sampling_params import SamplingParams
from llmos.layers import decode_kernels, native
from llmos.layers.norm import RMSNorm
from llmos.layers.rotary import RotaryEmbedding, apply_rotary

pytestmark = pytest.mark.skipif(
    not decode_kernels.available(),
    reason="the native paged attention kernel needs x86 AVX2+FMA and a C compiler",
)


def _case(
    heads: int, kv_heads: int, dim: int, block_size: int, lens: list[int], dtype: torch.dtype, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries, caches with every row's blocks scattered in random order, block tables, lengths."""
    g = torch.Generator().manual_seed(seed)
    per_row = [-(-n // block_size) for n in lens]
    num_blocks = sum(per_row) + 3
    order = torch.randperm(num_blocks, generator=g)
    tables = torch.zeros(len(lens), max(per_row), dtype=torch.long)
    used = 0
    for i, n in enumerate(per_row):
        tables[i, :n] = order[used : used + n]
        used += n
    k = torch.randn(kv_heads, num_blocks * block_size, dim, generator=g).to(dtype)
    v = torch.randn(kv_heads, num_blocks * block_size, dim, generator=g).to(dtype)
    q = torch.randn(len(lens), heads, dim, generator=g).to(dtype)
    return q, k, v, tables, torch.tensor(lens)


def _reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, tables: torch.Tensor, lens: torch.Tensor,
    block_size: int, scale: float, window: int,
) -> torch.Tensor:  # fmt: skip
    heads, kv_heads = q.shape[1], k.shape[0]
    out = torch.empty(q.shape, dtype=torch.float64)
    for i, n in enumerate(lens.tolist()):
        positions = torch.arange(n)
        if window > 0:
            positions = positions[max(0, n - window) :]
        slots = tables[i, positions // block_size] * block_size + positions % block_size
        for h in range(heads):
            kh = k[h // (heads // kv_heads), slots].double()
            vh = v[h // (heads // kv_heads), slots].double()
            weights = torch.softmax(kh @ q[i, h].double() * scale, dim=0)
            out[i, h] = weights @ vh
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("heads", "kv_heads", "dim", "block_size"),
    [(4, 2, 16, 4), (9, 3, 64, 16), (14, 2, 64, 16), (4, 1, 128, 32), (8, 8, 32, 8), (16, 1, 256, 16)],
)
@pytest.mark.parametrize("window", [0, 5])
def test_the_kernel_computes_attention_over_each_rows_own_blocks(
    dtype: torch.dtype, heads: int, kv_heads: int, dim: int, block_size: int, window: int
) -> None:
    lens = [1, block_size, block_size + 1, 17, 100, 3]  # under a block, exactly one, many
    q, k, v, tables, context_lens = _case(heads, kv_heads, dim, block_size, lens, dtype, seed=heads + dim)
    scale = dim**-0.5
    got = decode_kernels.decode_attention(q, k, v, tables, context_lens, block_size, scale, window)
    want = _reference(q, k, v, tables, context_lens, block_size, scale, window)
    assert got.shape == q.shape and got.dtype == dtype
    if dtype == torch.float32:
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
    else:  # fp32 arithmetic, one bf16 rounding of the output
        torch.testing.assert_close(got.double(), want, rtol=1e-2, atol=1e-2)


@pytest.mark.skipif(not {"avx2", "fma"} <= native.cpu_flags(), reason="the AVX2 build needs AVX2+FMA")
def test_the_avx2_build_computes_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # where the CPU has AVX-512 the engine runs the 16-lane build; the 8-lane one is checked here too
    monkeypatch.setenv("LLMOS_KERNEL_DIR", str(tmp_path))
    monkeypatch.setattr(
        decode_kernels,
        "LIBRARY",
        native.Library(
            "decode", decode_kernels.SOURCE, lambda: decode_kernels.AVX2_FLAGS, decode_kernels._declare
        ),
    )
    for dtype in (torch.float32, torch.bfloat16):
        for heads, kv_heads, dim, block_size in [(9, 3, 64, 16), (4, 1, 128, 32), (8, 8, 32, 8)]:
            for window in (0, 5):
                test_the_kernel_computes_attention_over_each_rows_own_blocks(
                    dtype, heads, kv_heads, dim, block_size, window
                )
    assert decode_kernels.LIBRARY.library is not None
    assert [p.name.startswith("decode-") for p in tmp_path.iterdir()] == [True]


def test_large_scores_and_long_contexts_stay_exact() -> None:
    # scores up to ~±400 (exp would overflow without the running max) over 1,000 keys
    q, k, v, tables, lens = _case(4, 2, 64, 16, [1000, 999, 40], torch.float32, seed=7)
    q *= 20
    got = decode_kernels.decode_attention(q, k, v, tables, lens, 16, 0.125)
    torch.testing.assert_close(
        got.double(), _reference(q, k, v, tables, lens, 16, 0.125, 0), rtol=1e-5, atol=1e-5
    )


def test_slots_outside_a_rows_context_are_never_read() -> None:
    q, k, v, tables, lens = _case(4, 2, 32, 4, [6, 13], torch.bfloat16, seed=3)
    want = decode_kernels.decode_attention(q, k, v, tables, lens, 4, 0.2)
    visible = torch.zeros(k.shape[1], dtype=torch.bool)
    for i, n in enumerate(lens.tolist()):
        positions = torch.arange(n)
        visible[tables[i, positions // 4] * 4 + positions % 4] = True
    k[:, ~visible] = float("nan")  # the rest of each row's last block, other blocks, padding
    v[:, ~visible] = float("nan")
    got = decode_kernels.decode_attention(q, k, v, tables, lens, 4, 0.2)
    assert not got.isnan().any()
    assert torch.equal(got, want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_store_writes_what_index_copy_writes(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(1)
    k, v = (torch.randn(7, 3, 32, generator=g).to(dtype) for _ in range(2))
    slots = torch.tensor([5, 0, 63, 17, 18, 40, 2])
    k_cache, v_cache = torch.zeros(3, 64, 32, dtype=dtype), torch.zeros(3, 64, 32, dtype=dtype)
    decode_kernels.store(k, v, k_cache, v_cache, slots)
    want_k, want_v = torch.zeros_like(k_cache), torch.zeros_like(v_cache)
    want_k.index_copy_(1, slots, k.transpose(0, 1))
    want_v.index_copy_(1, slots, v.transpose(0, 1))
    assert torch.equal(k_cache, want_k) and torch.equal(v_cache, want_v)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", [1, 7, 64])
def test_rms_norm_and_rotary_compute_what_the_torch_layers_do(dtype: torch.dtype, rows: int) -> None:
    g = torch.Generator().manual_seed(rows)
    with torch.inference_mode():
        norm = RMSNorm(576, 1e-5)
        norm.weight.copy_(torch.randn(576, generator=g) * 0.1 + 1)
        norm = norm.to(dtype)
        x = (torch.randn(rows, 576, generator=g) * 3).to(dtype)
        fused = decode_kernels.rms_norm(x, norm.weight, 1e-5)
        qkv = torch.randn(rows, 960, generator=g).to(dtype)
        q = qkv[:, :576].view(rows, 9, 64)  # strided tokens, as split from the fused projection
        cos, sin = RotaryEmbedding(64, {"rope_theta": 100000.0})(
            torch.randint(0, 4000, (rows,), generator=g), dtype
        )
        rotated = decode_kernels.rotary(q, cos, sin)
        if dtype == torch.bfloat16:  # bf16: the same rounding after every step, so the same bits
            assert torch.equal(fused, norm(x))
            assert torch.equal(rotated, apply_rotary(q, cos, sin))
        else:  # fp32: the sum of squares is added in another order
            torch.testing.assert_close(fused, norm(x), rtol=1e-6, atol=1e-6)
            assert torch.equal(rotated, apply_rotary(q, cos, sin))
        norm.native_kernels = True  # what the engine sets: the module then calls the kernel
        assert torch.equal(norm(x), fused)
    assert decode_kernels.fuses(torch.ones(2, dtype=dtype)) is False  # autograd on: torch's ops
    with torch.no_grad():
        assert decode_kernels.fuses(torch.ones(2, dtype=dtype))


def _engine(model_dir: Path, **overrides: object) -> Engine:
    config = EngineConfig(
        **{  # type: ignore[arg-type]
            "max_model_len": 256,
            "block_size": 4,
            "num_blocks": 256,
            "max_num_batched_tokens": 16,
            "max_num_seqs": 8,
            "dtype": torch.float32,
            "num_speculative_tokens": 0,
            **overrides,
        }
    )
    return Engine.from_model_dir(model_dir, config)


def _generate(engine: Engine, prompts: list[list[int]]) -> tuple[list[list[int]], list[list[float]]]:
    params = SamplingParams(temperature=0.0, max_tokens=20, ignore_eos=True, logprobs=1)
    ids = [engine.add_request(p, params) for p in prompts]
    tokens: dict[str, list[int]] = {i: [] for i in ids}
    logprobs: dict[str, list[float]] = {i: [] for i in ids}
    while engine.has_unfinished():
        for out in engine.step():
            tokens[out.request_id] += out.new_token_ids
            logprobs[out.request_id] += [lp.logprob for lp in out.new_logprobs or []]
    return [tokens[i] for i in ids], [logprobs[i] for i in ids]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_engine_decodes_through_the_kernel_with_the_torch_paths_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype
) -> None:
    model_dir = build_tiny_llama(tmp_path / "tiny")
    g = torch.Generator().manual_seed(5)
    prompts = [torch.randint(3, VOCAB_SIZE, (n,), generator=g).tolist() for n in (1, 3, 9, 30, 45, 7)]
    native = _engine(model_dir, dtype=dtype)
    assert all(layer.native_decode for layer in native.runner.layers)
    flagged = [m for m in native.runner.model.modules() if hasattr(m, "native_kernels")]
    assert len(flagged) == 2 * 2 + 1 + 2 and all(m.native_kernels for m in flagged)  # norms, attention
    calls = decode_kernels.calls
    tokens, logprobs = _generate(native, prompts)
    assert decode_kernels.calls - calls >= 2 * 19  # every decode step of both layers
    monkeypatch.setattr(decode_kernels, "supports", lambda *args: False)
    gathered = _engine(model_dir, dtype=dtype)
    assert not any(layer.native_decode for layer in gathered.runner.layers)
    calls = decode_kernels.calls
    want_tokens, want_logprobs = _generate(gathered, prompts)
    assert decode_kernels.calls == calls
    if dtype == torch.float32:
        assert tokens == want_tokens
        for got, want in zip(logprobs, want_logprobs, strict=True):
            torch.testing.assert_close(torch.tensor(got), torch.tensor(want), rtol=1e-4, atol=1e-4)
    else:  # bf16 rounds differently in the two paths: where greedy picks part, it was a near tie
        agreed = 0
        for got, want, got_lp, want_lp in zip(tokens, want_tokens, logprobs, want_logprobs, strict=True):
            same = next((i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b), len(got))
            agreed += same
            end = min(same + 1, len(got))  # through the first token they part at
            torch.testing.assert_close(
                torch.tensor(got_lp[:end]), torch.tensor(want_lp[:end]), rtol=0, atol=0.05
            )
        assert agreed >= 40  # of 120: most of the way, not parting at once


def test_it_runs_on_torchs_openmp_pool_and_can_be_switched_off(tmp_path: Path) -> None:
    script = (
        "import torch; from llmos.layers import decode_kernels\n"
        "q = torch.randn(2, 4, 16); k = torch.randn(2, 8, 16); v = torch.randn(2, 8, 16)\n"
        "tables, lens = torch.tensor([[0, 1], [1, 0]]), torch.tensor([8, 5])\n"
        "decode_kernels.decode_attention(q, k, v, tables, lens, 4, 0.25)\n"
        "maps = {line.split()[-1] for line in open('/proc/self/maps') if 'libgomp' in line}\n"
        "print(decode_kernels.available(), len(maps))"
    )
    env = {**os.environ, "LLMOS_KERNEL_DIR": str(tmp_path / "kernels")}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "1"]  # one OpenMP runtime in the process: torch's
    (library,) = (tmp_path / "kernels").iterdir()
    assert library.name.startswith("decode-") and library.suffix == ".so"
    off = subprocess.run(
        [sys.executable, "-c", "from llmos.layers import decode_kernels; print(decode_kernels.available())"],
        env={**env, "LLMOS_NATIVE_KERNELS": "0"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert off.stdout.strip() == "False"
