"""Fixed-size KV cache blocks: allocation, reference counts and prefix caching. No tensors here.

Prefix caching: every *full* block is identified by a hash chained over its parent's hash and its
token ids; a new request whose prompt starts with the same full blocks shares them (ref count + 1)
instead of recomputing them. Freed blocks keep their hash and stay reusable until the allocator
hands them out again, least recently freed first.

Blocks that were handed out before are reused before a never-used one: ids ``0..num_touched_blocks-1``
are the blocks ever used, so the high-water mark says how much of the (lazily committed) KV
cache memory the engine has really touched.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from llmos.engine.request import Request


@dataclass(slots=True)
class Block:
    block_id: int
    ref_count: int = 0
    block_hash: int | None = None


def chain_hash(parent_hash: int | None, token_ids: tuple[int, ...]) -> int:
    return hash((parent_hash, token_ids))


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True):
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        # Free blocks used before, in eviction order (front = evicted first); values unused.
        self.free_block_ids: OrderedDict[int, None] = OrderedDict()
        # Blocks ever handed out: ids below this. The rest are free and untouched; one is taken
        # only when no used block is free, so the cache's memory is committed as the load needs it.
        self.num_touched_blocks = 0
        self.cached_block_ids: dict[int, int] = {}  # block hash -> block id
        self.num_prefix_queries = 0  # prompt tokens looked up in the prefix cache
        self.num_prefix_hits = 0  # of which served from cached blocks

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def num_free_blocks(self) -> int:
        return len(self.free_block_ids) + self.num_blocks - self.num_touched_blocks

    @property
    def usage(self) -> float:
        return 1.0 - self.num_free_blocks / max(1, self.num_blocks)

    def num_blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def update_hashes(self, request: Request) -> None:
        """Extend the request's hash chain over every full block of its known tokens."""
        bs = self.block_size
        hashes = request.block_hashes
        for i in range(len(hashes), request.num_tokens // bs):
            hashes.append(
                chain_hash(
                    hashes[-1] if hashes else None, tuple(request.all_token_ids[i * bs : (i + 1) * bs])
                )
            )

    def find_cached_blocks(self, request: Request) -> list[int]:
        """Ids of the cached blocks that hold a prefix of the request's tokens (not yet referenced).

        At least one token is always left to compute, so the last prompt token's logits exist.
        """
        if not self.enable_prefix_caching:
            return []
        self.update_hashes(request)
        max_blocks = (request.num_tokens - 1) // self.block_size
        found: list[int] = []
        for block_hash in request.block_hashes[:max_blocks]:
            block_id = self.cached_block_ids.get(block_hash)
            if block_id is None:
                break
            found.append(block_id)
        self.num_prefix_queries += request.num_tokens
        self.num_prefix_hits += len(found) * self.block_size
        return found

    def allocate(self, request: Request, num_new_tokens: int, cached_block_ids: list[int] = ()) -> bool:  # type: ignore[assignment]
        """Grow the request's block table to hold ``num_new_tokens`` more tokens.

        ``cached_block_ids`` (from ``find_cached_blocks``, only before the request's first step)
        are shared rather than allocated. Returns False, changing nothing, when blocks run out.
        """
        num_cached_tokens = len(cached_block_ids) * self.block_size
        num_needed_tokens = request.num_computed_tokens + num_cached_tokens + num_new_tokens
        num_new_blocks = (
            self.num_blocks_for(num_needed_tokens) - len(request.block_table) - len(cached_block_ids)
        )
        num_revived = sum(1 for b in cached_block_ids if self.blocks[b].ref_count == 0)
        if num_new_blocks > self.num_free_blocks - num_revived:
            return False
        for block_id in cached_block_ids:
            block = self.blocks[block_id]
            if block.ref_count == 0:
                del self.free_block_ids[block_id]
            block.ref_count += 1
            request.block_table.append(block_id)
        request.num_computed_tokens += num_cached_tokens
        for _ in range(max(0, num_new_blocks)):
            request.block_table.append(self._take_free_block())
        return True

    def _take_free_block(self) -> int:
        if not self.free_block_ids:  # every used block is taken: touch the next one
            block_id = self.num_touched_blocks
            self.num_touched_blocks += 1
            self.blocks[block_id].ref_count = 1
            return block_id
        block_id, _ = self.free_block_ids.popitem(last=False)
        block = self.blocks[block_id]
        if block.block_hash is not None:
            if self.cached_block_ids.get(block.block_hash) == block_id:
                del self.cached_block_ids[block.block_hash]
            block.block_hash = None
        block.ref_count = 1
        return block_id

    def cache_full_blocks(self, request: Request) -> None:
        """Register the hashes of the request's blocks that are full and computed."""
        if not self.enable_prefix_caching:
            return
        self.update_hashes(request)
        num_full = min(request.num_computed_tokens // self.block_size, len(request.block_hashes))
        for i in range(num_full):
            block = self.blocks[request.block_table[i]]
            if block.block_hash is None:
                block_hash = request.block_hashes[i]
                block.block_hash = block_hash
                self.cached_block_ids.setdefault(block_hash, block.block_id)

    def free(self, request: Request) -> None:
        """Drop the request's references; the tail blocks are evicted before the shared prefix."""
        for block_id in reversed(request.block_table):
            block = self.blocks[block_id]
            block.ref_count -= 1
            assert block.ref_count >= 0, f"block {block_id} freed twice"
            if block.ref_count == 0:
                self.free_block_ids[block_id] = None
        request.block_table.clear()
