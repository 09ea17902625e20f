"""Paged attention over a block-structured KV cache, for one flat batch of prefill and decode tokens.

The engine packs every scheduled token of a step into one flat batch: first the prefill chunks
(one contiguous run per sequence), then one token per decoding sequence. Each layer writes its new
K/V into the cache at ``slot_mapping`` and attends over the sequence's cached context, which it
gathers through precomputed slot indices. ``AttentionMetadata`` carries everything a layer needs;
the model runner builds it once per step and every layer shares it.

On CPU in bf16/fp16, prefill attention runs on oneDNN brgemm micro-kernels that torch keeps in a
per-thread cache with no limit, one per (query block, key block) shape: prompts of every length
from 1 to 1,024 tokens left ~600 MiB of kernels behind (AMX Xeon). So a prefill's query and key
lengths are padded up to ``layers.linear.bucket_rows`` sizes (exact below 16, eight per power of
two above), with the padded keys masked out (or never reached: causal) and the padded query rows
dropped; the kernels then stay a bounded set (~16 MiB for the same sweep).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmos.layers import decode_kernels
from llmos.layers.linear import bucket_rows


def pads_prefill(x: Tensor) -> bool:
    """Whether prefill attention on ``x`` is padded to bucket lengths (see the module docstring)."""
    return x.device.type == "cpu" and x.dtype in (torch.bfloat16, torch.float16)


def padded_heads(x: Tensor, length: int) -> Tensor:
    """``[1, heads, n, D]`` as a new contiguous ``[1, heads, length, D]``, zeros after ``n`` (a fixed
    layout, so the kernels' keys depend on the lengths alone)."""
    out = x.new_zeros(1, x.shape[1], length, x.shape[3])
    out[:, :, : x.shape[2]] = x
    return out


@dataclass(slots=True)
class PrefillChunk:
    """One sequence's run of new tokens in the flat batch (tokens ``start:end``)."""

    start: int
    end: int
    context_len: int  # tokens in the cache after this chunk, cached prefix included
    slots: Tensor | None  # [context_len] cache slots of the whole context; None when no prefix is cached


@dataclass(slots=True)
class DecodeGroup:
    """Decoding sequences of similar context length, one token each (tokens ``start:start+n``).

    Grouping by length keeps the padding that batched decode attention gathers and attends small.
    """

    start: int
    block_tables: Tensor  # [n, max_blocks] (padding points at block 0, which is kept finite)
    context_lens: Tensor  # [n]
    block_size: int
    _cache: dict[tuple[str, int, int], Tensor] = field(default_factory=dict)

    @property
    def num_seqs(self) -> int:
        return self.block_tables.shape[0]

    def slots(self) -> Tensor:
        """[n, max_blocks * block_size] cache slot of every context position."""
        offsets = torch.arange(self.block_size, device=self.block_tables.device)
        return (self.block_tables[:, :, None] * self.block_size + offsets).flatten(1)

    def gather_index(self, num_kv_heads: int, num_blocks: int) -> Tensor:
        """Rows of the ``[kv_heads * num_blocks, block_size, D]`` cache view to gather, ordered
        (kv head, sequence, block): one fast dim-0 ``index_select`` fetches every context."""
        key = ("gather", num_kv_heads, num_blocks)
        index = self._cache.get(key)
        if index is None:
            blocks = self.block_tables.flatten()
            heads = torch.arange(num_kv_heads, device=blocks.device)[:, None] * num_blocks
            index = self._cache[key] = (heads + blocks[None, :]).flatten()
        return index

    def mask(self, window: int) -> Tensor:
        """[n, 1, 1, max_blocks * block_size] bool: True where a key is visible."""
        key = ("mask", window, 0)
        mask = self._cache.get(key)
        if mask is None:
            idx = torch.arange(self.block_tables.shape[1] * self.block_size, device=self.block_tables.device)
            lens = self.context_lens[:, None]
            visible = idx[None, :] < lens
            if window > 0:
                visible &= idx[None, :] >= lens - window
            mask = self._cache[key] = visible[:, None, None, :]
        return mask


@dataclass(slots=True)
class AttentionMetadata:
    slot_mapping: Tensor  # [num_tokens] where each new token's K/V goes
    prefills: list[PrefillChunk]
    num_prefill_tokens: int
    block_size: int = 16
    decodes: list[DecodeGroup] = field(default_factory=list)
    _masks: dict[tuple[object, ...], Tensor] = field(default_factory=dict)

    @property
    def num_decodes(self) -> int:
        return sum(g.num_seqs for g in self.decodes)

    def prefill_mask(self, i: int, window: int, padded: tuple[int, int] | None = None) -> Tensor | None:
        """[q_len, context_len] bool mask for prefill chunk ``i``; None means plain causal.

        ``padded=(q_rows, keys)``: the mask for the query and key lengths padded up to those, the
        padded keys hidden and the padded query rows seeing key 0 (so no row is all-masked)."""
        chunk = self.prefills[i]
        q_len = chunk.end - chunk.start
        if chunk.context_len == q_len and window <= 0:
            return None
        key = ("prefill", window, i, padded)
        mask = self._masks.get(key)
        if mask is None:
            device = self.slot_mapping.device
            q_pos = torch.arange(chunk.context_len - q_len, chunk.context_len, device=device)[:, None]
            k_pos = torch.arange(chunk.context_len, device=device)[None, :]
            mask = k_pos <= q_pos
            if window > 0:
                mask &= k_pos > q_pos - window
            if padded is not None:
                rows, keys = padded
                mask = F.pad(mask, (0, keys - chunk.context_len, 0, rows - q_len), value=False)
                mask[q_len:, 0] = True
            self._masks[key] = mask
        return mask


class PagedAttention(nn.Module):
    """Stores this layer's K/V in the paged cache and attends over each sequence's context.

    ``k_cache``/``v_cache`` are head-major ``[num_kv_heads, num_slots, head_dim]`` tensors assigned
    by the model runner (``num_slots = num_blocks * block_size``); until then the layer holds empty
    ones and works for uncached prefills only. Head-major blocks let decode gather every context
    with one ``index_select`` of whole blocks (contiguous ``block_size x head_dim`` runs). With
    ``native_decode`` (the runner sets it where ``llmos.layers.decode_kernels`` runs: x86 CPUs) decode
    reads the cache in place through the block tables instead of gathering a copy.
    """

    def __init__(
        self, num_heads: int, num_kv_heads: int, head_dim: int, scale: float, sliding_window: int = 0
    ):
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.scale = scale
        self.sliding_window = sliding_window
        self.k_cache = torch.empty(0)
        self.v_cache = torch.empty(0)
        self.native_decode = False  # decode on llmos.layers.decode_kernels (set with the caches)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, meta: AttentionMetadata) -> Tensor:
        """q: [T, H, D], k/v: [T, KV, D] → [T, H, D]."""
        if self.native_decode:
            decode_kernels.store(k, v, self.k_cache, self.v_cache, meta.slot_mapping)
        elif self.k_cache.numel():
            self.k_cache.index_copy_(1, meta.slot_mapping, k.transpose(0, 1))
            self.v_cache.index_copy_(1, meta.slot_mapping, v.transpose(0, 1))
        out = torch.empty_like(q)
        for i, chunk in enumerate(meta.prefills):
            out[chunk.start : chunk.end] = self._prefill(q, k, v, meta, i)
        for group in meta.decodes:
            end = group.start + group.num_seqs
            out[group.start : end] = self._decode(q[group.start : end], group)
        return out

    def _prefill(self, q: Tensor, k: Tensor, v: Tensor, meta: AttentionMetadata, i: int) -> Tensor:
        chunk = meta.prefills[i]
        qi = q[chunk.start : chunk.end].transpose(0, 1).unsqueeze(0)  # [1, H, q, D]
        if chunk.slots is None:
            ki = k[chunk.start : chunk.end].transpose(0, 1).unsqueeze(0)  # [1, KV, q, D]
            vi = v[chunk.start : chunk.end].transpose(0, 1).unsqueeze(0)
        else:
            ki = self.k_cache.index_select(1, chunk.slots).unsqueeze(0)  # [1, KV, context, D]
            vi = self.v_cache.index_select(1, chunk.slots).unsqueeze(0)
        q_len, context = qi.shape[2], ki.shape[2]
        padded = (bucket_rows(q_len), bucket_rows(context)) if pads_prefill(qi) else None
        mask = meta.prefill_mask(i, self.sliding_window, padded)
        if padded is not None:
            if mask is None:  # plain causal (query = keys): padding at the end is never attended
                padded = (padded[0], padded[0])
            qi = padded_heads(qi, padded[0])
            ki, vi = padded_heads(ki, padded[1]), padded_heads(vi, padded[1])
        oi = F.scaled_dot_product_attention(
            qi,
            ki,
            vi,
            attn_mask=mask,
            is_causal=mask is None,
            scale=self.scale,
            enable_gqa=self.num_heads != self.num_kv_heads,
        )
        return oi[:, :, :q_len].squeeze(0).transpose(0, 1)

    def _decode(self, q: Tensor, group: DecodeGroup) -> Tensor:
        """One query token per sequence against its cached context: [n, H, D] → [n, H, D].

        The query heads sharing a KV head become that head's "query length" (G rows), so plain
        SDPA over ``[n, KV, G, D]`` x ``[n, KV, context, D]`` does grouped-query decoding.
        """
        if self.native_decode:
            return decode_kernels.decode_attention(
                q, self.k_cache, self.v_cache, group.block_tables, group.context_lens,
                group.block_size, self.scale, self.sliding_window,
            )  # fmt: skip
        num_seqs, kv, d, bs = q.shape[0], self.num_kv_heads, self.head_dim, group.block_size
        index = group.gather_index(kv, self.k_cache.shape[1] // bs)
        shape = (kv, num_seqs, -1, d)
        kd = self.k_cache.view(-1, bs, d).index_select(0, index).view(shape).transpose(0, 1)
        vd = self.v_cache.view(-1, bs, d).index_select(0, index).view(shape).transpose(0, 1)
        qd = q.view(num_seqs, kv, self.num_heads // kv, d)
        out = F.scaled_dot_product_attention(
            qd, kd, vd, attn_mask=group.mask(self.sliding_window), scale=self.scale
        )
        return out.reshape(num_seqs, self.num_heads, d)


def single_sequence_metadata(num_tokens: int, device: torch.device | str = "cpu") -> AttentionMetadata:
    """Metadata for one uncached prefill of ``num_tokens`` (model tests and cache-less forwards)."""
    return AttentionMetadata(
        slot_mapping=torch.arange(num_tokens, device=device),
        prefills=[PrefillChunk(0, num_tokens, num_tokens, None)],
        num_prefill_tokens=num_tokens,
    )
