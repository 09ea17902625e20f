"""Rotary position embedding (RoPE) in the rotate-half layout transformers uses.

``rope_parameters`` reads a config's RoPE settings in either transformers layout (5.x
``rope_parameters``, per layer type where a model has several; 4.x ``rope_theta`` + ``rope_scaling``).
``RotaryEmbedding`` turns absolute positions into cos/sin once per forward; ``apply_rotary`` rotates
q or k with them. Supported scalings: default, linear and llama3.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from llmos.layers import decode_kernels


def rope_parameters(config: Any, layer_type: str | None = None) -> dict[str, Any]:
    """The RoPE settings (``rope_type``, ``rope_theta``, scaling keys) for ``layer_type`` of ``config``."""
    params = getattr(config, "rope_parameters", None)
    if params is None:  # transformers 4.x: rope_theta plus an optional rope_scaling dict
        if layer_type == "sliding_attention" and getattr(config, "rope_local_base_freq", None):
            return {"rope_type": "default", "rope_theta": config.rope_local_base_freq}
        params = {"rope_theta": getattr(config, "rope_theta", 10000.0), **(config.rope_scaling or {})}
    if layer_type is not None and layer_type in params:
        params = params[layer_type]
    return params


def _llama3_inv_freq(inv_freq: Tensor, params: dict[str, Any]) -> Tensor:
    """Llama 3.1's frequency-dependent scaling: long wavelengths slowed by ``factor``, short kept."""
    factor = params["factor"]
    low, high = params["low_freq_factor"], params["high_freq_factor"]
    old_len = params["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    return torch.where(is_medium, smoothed, scaled)


class RotaryEmbedding(nn.Module):
    """cos/sin tables for absolute positions; ``params`` as returned by ``rope_parameters``."""

    def __init__(self, head_dim: int, params: dict[str, Any]):
        super().__init__()
        rope_type = params.get("rope_type", params.get("type", "default"))
        if params.get("partial_rotary_factor", 1.0) != 1.0:
            raise NotImplementedError("partial rotary embeddings are not supported by the native models")
        # built on the CPU even under a meta-device context, so a loader can materialise the
        # model with ``to_empty`` and cast it to bf16 without touching these float32 frequencies
        exponent = torch.arange(0, head_dim, 2, dtype=torch.int64, device="cpu").float() / head_dim
        inv_freq = 1.0 / (params["rope_theta"] ** exponent)
        if rope_type == "linear":
            inv_freq = inv_freq / params["factor"]
        elif rope_type == "llama3":
            inv_freq = _llama3_inv_freq(inv_freq, params)
        elif rope_type != "default":
            raise NotImplementedError(f"rope type {rope_type!r} is not supported (default, linear, llama3)")
        # a plain attribute, not a buffer: it stays float32 when the model runs in bf16
        self.inv_freq = inv_freq.float()

    def forward(self, positions: Tensor, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        """positions: [T] → (cos, sin), each [T, head_dim], computed in float32 and cast to ``dtype``
        once per forward (as transformers does) rather than once per layer."""
        if self.inv_freq.device != positions.device:
            self.inv_freq = self.inv_freq.to(positions.device)
        freqs = positions[:, None].float() * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor, native: bool = False) -> Tensor:
    """Rotate x: [T, heads, head_dim] by the per-token cos/sin ([T, head_dim], already in x's dtype).
    ``native``: in one call of ``decode_kernels.rotary`` where it runs (the same values)."""
    if native and decode_kernels.fuses(x):
        return decode_kernels.rotary(x, cos, sin)
    cos = cos[:, None, :]
    sin = sin[:, None, :]
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin
