"""A linear layer that fuses several projections of the same input into one matmul.

The fused weight is the HF projections stacked along the output dimension (q|k|v, gate|up);
``shard`` exposes each one's slice so a loader can copy an HF tensor straight into place.
"""

from __future__ import annotations

from torch import Tensor, nn


class MergedLinear(nn.Linear):
    """``nn.Linear(in_features, sum(output_sizes))`` whose output splits back into ``output_sizes``."""

    def __init__(self, in_features: int, output_sizes: list[int], bias: bool = False):
        super().__init__(in_features, sum(output_sizes), bias=bias)
        self.output_sizes = output_sizes

    def shard(self, param_name: str, index: int) -> Tensor:
        """The view of ``weight`` or ``bias`` that holds projection ``index``."""
        offset = sum(self.output_sizes[:index])
        return getattr(self, param_name).data.narrow(0, offset, self.output_sizes[index])
