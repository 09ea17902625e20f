"""bf16 CPU prefill attention runs at bucketed query/key lengths (``layers.attention``): the
answer for the real rows equals unpadded attention, for plain causal prefills, chunks over a cached
context and sliding windows, and every length reaches the kernel padded."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llmos.layers import attention
from llmos.layers.attention import AttentionMetadata, PagedAttention, PrefillChunk
from llmos.layers.linear import bucket_rows

H, KV, D = 6, 2, 16


def _layer(window: int = 0) -> PagedAttention:
    layer = PagedAttention(H, KV, D, scale=D**-0.5, sliding_window=window)
    layer.k_cache = torch.zeros(KV, 256, D, dtype=torch.bfloat16)
    layer.v_cache = torch.zeros(KV, 256, D, dtype=torch.bfloat16)
    return layer


def _run(
    layer: PagedAttention, q_len: int, context: int, pad: bool, monkeypatch: pytest.MonkeyPatch
) -> torch.Tensor:
    """Prefill ``q_len`` new tokens whose context (cached prefix included) is ``context`` long."""
    monkeypatch.setattr(attention, "pads_prefill", lambda x: pad)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(q_len, n, D, generator=g).to(torch.bfloat16) for n in (H, KV, KV))
    layer.k_cache.copy_(torch.randn(layer.k_cache.shape, generator=g).to(torch.bfloat16))
    layer.v_cache.copy_(torch.randn(layer.v_cache.shape, generator=g).to(torch.bfloat16))
    slots = torch.arange(context)
    cached = context > q_len
    meta = AttentionMetadata(
        slots[context - q_len :], [PrefillChunk(0, q_len, context, slots if cached else None)], q_len
    )
    return layer(q, k, v, meta)


@pytest.mark.parametrize(
    ("q_len", "context", "window"),
    [(37, 37, 0), (200, 200, 0), (5, 41, 0), (23, 150, 0), (37, 37, 8), (9, 61, 16)],
    ids=["causal", "causal-long", "chunk-over-cache", "long-chunk-over-cache", "window", "window-over-cache"],
)
def test_padded_prefill_attention_equals_the_unpadded_one(
    q_len: int, context: int, window: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert bucket_rows(q_len) != q_len or bucket_rows(context) != context  # something gets padded
    plain = _run(_layer(window), q_len, context, False, monkeypatch)
    padded = _run(_layer(window), q_len, context, True, monkeypatch)
    assert padded.shape == plain.shape == (q_len, H, D)
    assert torch.isfinite(padded).all()
    torch.testing.assert_close(padded.float(), plain.float(), atol=2e-2, rtol=2e-2)  # bf16 blocking


def test_the_kernel_sees_only_bucket_lengths(monkeypatch: pytest.MonkeyPatch) -> None:
    assert attention.pads_prefill(torch.zeros(1, dtype=torch.bfloat16))
    assert not attention.pads_prefill(torch.zeros(1, dtype=torch.float32))  # fp32 keeps exact lengths
    seen: list[tuple[int, int, bool]] = []
    sdpa = F.scaled_dot_product_attention

    def recording(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs: object) -> torch.Tensor:
        seen.append((q.shape[2], k.shape[2], q.is_contiguous() and k.is_contiguous()))
        return sdpa(q, k, v, **kwargs)

    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", recording)
    for q_len, context in [(37, 37), (5, 41), (100, 100)]:
        _run(_layer(), q_len, context, True, monkeypatch)
    assert seen == [(40, 40, True), (5, 44, True), (104, 104, True)]
