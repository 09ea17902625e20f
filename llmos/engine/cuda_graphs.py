"""Decode steps replayed from CUDA graphs.

On a GPU an eager decode step of a small model is bound by kernel launches: about thirty per layer,
each a few microseconds of Python and dispatch, while the arithmetic takes a fraction of that. A
step made only of one-token rows (plain decodes, and the rows that verify speculative drafts: the
sequence with i drafts appended, see ``engine.speculative``) runs the same kernels for every batch
of the same shape, so each shape is captured once into a CUDA graph and replayed (what vLLM and
gpt-fast do). Steps with a prefill chunk run eagerly.

Shapes are bucketed: the rows up to the next of 1, 2, 4, then multiples of 8; each row's block
table up to the next power of two blocks. Every row of a replay is one decode group (one gather and
one attention call per layer, padded to the bucket's blocks). Padding rows write their K/V into a
scratch block that no sequence owns and attend to it alone; their outputs are dropped.

A row of a step is ``[token id, position, cache slot, context length, block table...]``: one int64
tensor per bucket shape is the graph's only input, so a replay costs one host-to-device copy.

``capture=False`` runs the same padded, static-shape path eagerly: the CPU tests check it against
the plain path, which is what keeps the captured one honest.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from llmos.layers.attention import AttentionMetadata, DecodeGroup

logger = logging.getLogger(__name__)

META_COLUMNS = 4  # token id, position, cache slot, context length; the block table follows


def row_buckets(max_rows: int) -> list[int]:
    """1, 2, 4, then every multiple of 8, up to the first bucket holding ``max_rows``."""
    buckets = [1, 2, 4]
    while buckets[-1] < max_rows:
        buckets.append(8 if buckets[-1] < 8 else buckets[-1] + 8)
    return buckets


def block_buckets(max_blocks: int) -> list[int]:
    """Powers of two up to the first one holding ``max_blocks``."""
    buckets = [1]
    while buckets[-1] < max_blocks:
        buckets.append(buckets[-1] * 2)
    return buckets


def _bucket(value: int, buckets: list[int]) -> int | None:
    return next((b for b in buckets if b >= value), None)


@dataclass(slots=True)
class _Captured:
    inputs: Tensor  # [rows, META_COLUMNS + blocks] int64 on the device: the graph's static input
    hidden: Tensor  # [rows, hidden_size]: the graph's static output
    graph: torch.cuda.CUDAGraph | None  # None: eager (capture=False)


class DecodeGraphs:
    """Replays decode-only steps of ``model`` from graphs captured per bucket shape."""

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        block_size: int,
        scratch_block: int,
        max_rows: int,
        max_blocks: int,
        capture: bool = True,
    ):
        self.model = model
        self.device = device
        self.block_size = block_size
        self.scratch_block = scratch_block
        self.rows = row_buckets(max_rows)
        self.blocks = block_buckets(max_blocks)
        self.capture = capture
        self.disabled = False  # set when a capture fails: every later step runs eagerly
        self.num_replays = 0
        self._captured: dict[tuple[int, int], _Captured] = {}
        self._pool: Any = None  # the graphs' shared memory pool (torch's handle), after the first
        self._warmed_up = False

    def run(self, rows: list[list[int]], num_blocks: int) -> Tensor | None:
        """Hidden states ``[len(rows), hidden]`` for ``rows`` (see the module docstring; each row's
        block table already cut to ``num_blocks``), or None when no bucket holds the step."""
        if self.disabled:
            return None
        rows_bucket, blocks_bucket = _bucket(len(rows), self.rows), _bucket(num_blocks, self.blocks)
        if rows_bucket is None or blocks_bucket is None:
            return None
        entry = self._captured.get((rows_bucket, blocks_bucket)) or self._build(rows_bucket, blocks_bucket)
        if entry is None:
            return None
        padded = self._pad_rows(rows_bucket, blocks_bucket)
        width = META_COLUMNS + num_blocks
        padded[: len(rows), :width] = torch.tensor(rows, dtype=torch.long)
        entry.inputs.copy_(padded)
        if entry.graph is None:
            hidden = self._forward(entry.inputs)
        else:
            entry.graph.replay()
            hidden = entry.hidden
        self.num_replays += 1
        return hidden[: len(rows)]

    def warmup(self) -> Iterator[tuple[int, int]]:
        """Capture every bucket shape, smallest first, one per ``next()`` (the engine's idle work)."""
        if not self.capture:
            return
        for blocks in self.blocks:
            for rows in self.rows:
                if self.disabled:
                    return
                if (rows, blocks) not in self._captured:
                    self._build(rows, blocks)
                    yield rows, blocks

    def _pad_rows(self, rows: int, blocks: int) -> Tensor:
        """A CPU ``[rows, META_COLUMNS + blocks]`` of padding rows: token 0 at position 0, written to
        and attending only the scratch block."""
        pad = torch.full((rows, META_COLUMNS + blocks), self.scratch_block, dtype=torch.long)
        pad[:, 0] = 0
        pad[:, 1] = 0
        pad[:, 2] = self.scratch_block * self.block_size
        pad[:, 3] = 1
        return pad

    def _forward(self, inputs: Tensor) -> Tensor:
        group = DecodeGroup(
            start=0,
            block_tables=inputs[:, META_COLUMNS:].contiguous(),
            context_lens=inputs[:, 3].contiguous(),
            block_size=self.block_size,
        )
        meta = AttentionMetadata(
            slot_mapping=inputs[:, 2].contiguous(),
            prefills=[],
            num_prefill_tokens=0,
            block_size=self.block_size,
            decodes=[group],
        )
        return self.model(inputs[:, 0].contiguous(), inputs[:, 1].contiguous(), meta)

    def _build(self, rows: int, blocks: int) -> _Captured | None:
        inputs = self._pad_rows(rows, blocks).to(self.device)
        if not self.capture:
            entry = self._captured[(rows, blocks)] = _Captured(inputs, torch.empty(0), None)
            return entry
        try:
            with torch.inference_mode():
                if not self._warmed_up:  # lazy CUDA/cuBLAS state is set up outside any capture
                    stream = torch.cuda.Stream(self.device)
                    stream.wait_stream(torch.cuda.current_stream(self.device))
                    with torch.cuda.stream(stream):
                        for _ in range(2):
                            self._forward(inputs)
                    torch.cuda.current_stream(self.device).wait_stream(stream)
                    self._warmed_up = True
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=self._pool):
                    hidden = self._forward(inputs)
            self._pool = graph.pool()
        except Exception:  # noqa: BLE001 - a failed capture must not take the engine down
            logger.warning(
                "CUDA graph capture failed for %d rows x %d blocks; decoding eagerly from now on",
                rows,
                blocks,
                exc_info=True,
            )
            self.disabled = True
            return None
        entry = self._captured[(rows, blocks)] = _Captured(inputs, hidden, graph)
        return entry
