"""RMSNorm in the two flavours the native models need.

Both normalise in float32 and cast back, as transformers does, so native and reference logits agree
to rounding. Gemma stores ``weight`` as an offset from one and scales by ``1 + weight`` in float32.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from llmos.layers import decode_kernels


class RMSNorm(nn.Module):
    """Llama-style RMSNorm: normalise in float32, cast back, then scale by ``weight``."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.native_kernels = False  # one native call instead of eight ops (set by the engine)

    def forward(self, x: Tensor) -> Tensor:
        if self.native_kernels and decode_kernels.fuses(x):
            return decode_kernels.rms_norm(x, self.weight, self.eps)
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class GemmaRMSNorm(RMSNorm):
    """Gemma-style RMSNorm: the scale ``1 + weight`` is applied in float32 before the cast back."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__(dim, eps)
        nn.init.zeros_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return (h * (1.0 + self.weight.float())).to(x.dtype)
