"""Gemma 3 text decoder (``gemma3_text``: Gemma3ForCausalLM) on paged attention.

Differs from llama by: embeddings scaled by sqrt(hidden_size), per-head q/k RMSNorms, norms before
and after both attention and MLP (all ``1 + weight``), a GELU-tanh MLP, ``query_pre_attn_scalar``
as the attention scale, and sliding-window layers (``layer_types``) with their own RoPE settings
(transformers 5: ``rope_parameters["sliding_attention"]`` / ``["full_attention"]``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from llmos.layers.attention import AttentionMetadata, PagedAttention
from llmos.layers.linear import Linear, MergedLinear
from llmos.layers.norm import GemmaRMSNorm
from llmos.layers.rotary import RotaryEmbedding, apply_rotary, rope_parameters
from llmos.models.llama import GatedMLP, LlamaForCausalLM, head_dim_of, sliding_windows


class Gemma3Attention(nn.Module):
    def __init__(self, config: Any, sliding_window: int):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = head_dim_of(config)
        q_size, kv_size = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        bias = config.attention_bias
        self.qkv_proj = MergedLinear(config.hidden_size, [q_size, kv_size, kv_size], bias=bias)
        self.o_proj = Linear(q_size, config.hidden_size, bias=bias)
        self.q_norm = GemmaRMSNorm(self.head_dim, config.rms_norm_eps)
        self.k_norm = GemmaRMSNorm(self.head_dim, config.rms_norm_eps)
        scale = config.query_pre_attn_scalar**-0.5
        self.attn = PagedAttention(self.num_heads, self.num_kv_heads, self.head_dim, scale, sliding_window)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, meta: AttentionMetadata) -> Tensor:
        q, k, v = self.qkv_proj(x).split(self.qkv_proj.output_sizes, dim=-1)
        q = apply_rotary(self.q_norm(q.view(-1, self.num_heads, self.head_dim)), cos, sin)
        k = apply_rotary(self.k_norm(k.view(-1, self.num_kv_heads, self.head_dim)), cos, sin)
        o = self.attn(q, k, v.view(-1, self.num_kv_heads, self.head_dim), meta)
        return self.o_proj(o.flatten(1))


class Gemma3DecoderLayer(nn.Module):
    def __init__(self, config: Any, sliding_window: int):
        super().__init__()
        self.is_sliding = sliding_window > 0
        self.self_attn = Gemma3Attention(config, sliding_window)
        self.mlp = GatedMLP(config.hidden_size, config.intermediate_size, config.hidden_activation)
        dim, eps = config.hidden_size, config.rms_norm_eps
        self.input_layernorm = GemmaRMSNorm(dim, eps)
        self.post_attention_layernorm = GemmaRMSNorm(dim, eps)
        self.pre_feedforward_layernorm = GemmaRMSNorm(dim, eps)
        self.post_feedforward_layernorm = GemmaRMSNorm(dim, eps)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, meta: AttentionMetadata) -> Tensor:
        h = self.self_attn(self.input_layernorm(x), cos, sin, meta)
        x = x + self.post_attention_layernorm(h)
        h = self.mlp(self.pre_feedforward_layernorm(x))
        return x + self.post_feedforward_layernorm(h)


class Gemma3Model(nn.Module):
    def __init__(self, config: Any):
        super().__init__()
        if getattr(config, "attn_logit_softcapping", None) is not None:
            raise NotImplementedError("attention logit softcapping is not supported by the native Gemma 3")
        if getattr(config, "use_bidirectional_attention", False):
            raise NotImplementedError("bidirectional attention (embedding Gemma) is not supported natively")
        self.embed_scale = config.hidden_size**0.5
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        windows = sliding_windows(config)
        self.layers = nn.ModuleList(Gemma3DecoderLayer(config, w) for w in windows)
        self.norm = GemmaRMSNorm(config.hidden_size, config.rms_norm_eps)
        head_dim = head_dim_of(config)
        self.rotary_local = RotaryEmbedding(head_dim, rope_parameters(config, "sliding_attention"))
        self.rotary_global = RotaryEmbedding(head_dim, rope_parameters(config, "full_attention"))

    def forward(self, input_ids: Tensor, positions: Tensor, meta: AttentionMetadata) -> Tensor:
        x = self.embed_tokens(input_ids)
        # scaled in the model dtype, as transformers does (sqrt(hidden) is rounded to bf16 in bf16)
        x = x * torch.tensor(self.embed_scale, dtype=x.dtype, device=x.device)
        local, full = self.rotary_local(positions, x.dtype), self.rotary_global(positions, x.dtype)
        for layer in self.layers:
            cos, sin = local if layer.is_sliding else full
            x = layer(x, cos, sin, meta)
        return self.norm(x)


class Gemma3ForCausalLM(LlamaForCausalLM):
    """The llama wrapper (tied lm_head, final logit softcapping, weight loading) around Gemma3Model."""

    model_class = Gemma3Model
