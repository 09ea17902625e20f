"""Paged attention over a block-structured KV cache, for one flat batch of prefill and decode tokens.

The engine packs every scheduled token of a step into one flat batch: first the prefill chunks
(one contiguous run per sequence), then one token per decoding sequence. Each layer writes its new
K/V into the cache at ``slot_mapping`` and attends over the sequence's cached context, which it
gathers through precomputed slot indices. ``AttentionMetadata`` carries everything a layer needs;
the model runner builds it once per step and every layer shares it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(slots=True)
class PrefillChunk:
    """One sequence's run of new tokens in the flat batch (tokens ``start:end``)."""

    start: int
    end: int
    context_len: int  # tokens in the cache after this chunk, cached prefix included
    slots: Tensor | None  # [context_len] cache slots of the whole context; None when no prefix is cached


@dataclass(slots=True)
class AttentionMetadata:
    slot_mapping: Tensor  # [num_tokens] where each new token's K/V goes
    prefills: list[PrefillChunk]
    num_prefill_tokens: int
    decode_slots: Tensor | None = None  # [num_decodes, max_context_len] (padding points at slot 0)
    decode_context_lens: Tensor | None = None  # [num_decodes]
    _masks: dict[tuple[str, int, int], Tensor] = field(default_factory=dict)

    @property
    def num_decodes(self) -> int:
        return 0 if self.decode_slots is None else self.decode_slots.shape[0]

    def decode_mask(self, window: int) -> Tensor:
        """[num_decodes, 1, 1, max_context_len] bool: True where a key is visible (optionally windowed)."""
        key = ("decode", window, 0)
        mask = self._masks.get(key)
        if mask is None:
            assert self.decode_slots is not None and self.decode_context_lens is not None
            idx = torch.arange(self.decode_slots.shape[1], device=self.decode_slots.device)
            lens = self.decode_context_lens[:, None]
            mask = idx[None, :] < lens
            if window > 0:
                mask &= idx[None, :] >= lens - window
            mask = mask[:, None, None, :]
            self._masks[key] = mask
        return mask

    def prefill_mask(self, i: int, window: int) -> Tensor | None:
        """[q_len, context_len] bool mask for prefill chunk ``i``; None means plain causal."""
        chunk = self.prefills[i]
        q_len = chunk.end - chunk.start
        if chunk.context_len == q_len and window <= 0:
            return None
        key = ("prefill", window, i)
        mask = self._masks.get(key)
        if mask is None:
            device = self.slot_mapping.device
            q_pos = torch.arange(chunk.context_len - q_len, chunk.context_len, device=device)[:, None]
            k_pos = torch.arange(chunk.context_len, device=device)[None, :]
            mask = k_pos <= q_pos
            if window > 0:
                mask &= k_pos > q_pos - window
            self._masks[key] = mask
        return mask


class PagedAttention(nn.Module):
    """Stores this layer's K/V in the paged cache and attends over each sequence's context.

    ``k_cache``/``v_cache`` are ``[num_slots, num_kv_heads, head_dim]`` tensors assigned by the
    model runner (``num_slots = num_blocks * block_size``); until then the layer holds empty ones.
    """

    def __init__(self, num_heads: int, num_kv_heads: int, head_dim: int, scale: float, sliding_window: int = 0):
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.scale = scale
        self.sliding_window = sliding_window
        self.k_cache = torch.empty(0)
        self.v_cache = torch.empty(0)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, meta: AttentionMetadata) -> Tensor:
        """q: [T, H, D], k/v: [T, KV, D] → [T, H, D]."""
        if self.k_cache.numel():
            self.k_cache.index_copy_(0, meta.slot_mapping, k)
            self.v_cache.index_copy_(0, meta.slot_mapping, v)
        out = torch.empty_like(q)
        gqa = self.num_heads != self.num_kv_heads
        for i, chunk in enumerate(meta.prefills):
            qi = q[chunk.start : chunk.end].transpose(0, 1).unsqueeze(0)  # [1, H, q, D]
            if chunk.slots is None:
                ki, vi = k[chunk.start : chunk.end], v[chunk.start : chunk.end]
            else:
                ki, vi = self.k_cache[chunk.slots], self.v_cache[chunk.slots]
            ki = ki.transpose(0, 1).unsqueeze(0)
            vi = vi.transpose(0, 1).unsqueeze(0)
            mask = meta.prefill_mask(i, self.sliding_window)
            oi = F.scaled_dot_product_attention(
                qi, ki, vi, attn_mask=mask, is_causal=mask is None, scale=self.scale, enable_gqa=gqa
            )
            out[chunk.start : chunk.end] = oi.squeeze(0).transpose(0, 1)
        if meta.num_decodes:
            n = meta.num_prefill_tokens
            qd = q[n:].unsqueeze(2)  # [S, H, 1, D]
            kd = self.k_cache[meta.decode_slots].transpose(1, 2)  # [S, KV, L, D]
            vd = self.v_cache[meta.decode_slots].transpose(1, 2)
            od = F.scaled_dot_product_attention(
                qd, kd, vd, attn_mask=meta.decode_mask(self.sliding_window), scale=self.scale, enable_gqa=gqa
            )
            out[n:] = od.squeeze(2)
        return out


def single_sequence_metadata(num_tokens: int, device: torch.device | str = "cpu") -> AttentionMetadata:
    """Metadata for one uncached prefill of ``num_tokens`` (model tests and cache-less forwards)."""
    return AttentionMetadata(
        slot_mapping=torch.arange(num_tokens, device=device),
        prefills=[PrefillChunk(0, num_tokens, num_tokens, None)],
        num_prefill_tokens=num_tokens,
    )
