"""BlockManager driven by hand: block tables, running out of blocks, freeing, prefix caching, eviction."""

from __future__ import annotations

import itertools

import pytest

from llmos.engine.block_manager import BlockManager
from llmos.engine.request import Request
from llmos.engine.sampling_params import SamplingParams

BLOCK_SIZE = 4
_ids = itertools.count()


def make_request(token_ids: list[int]) -> Request:
    return Request(f"r{next(_ids)}", list(token_ids), SamplingParams(), max_tokens=16)


def admit(bm: BlockManager, request: Request) -> int:
    """Admit a fresh request the way the scheduler does (prefix lookup + allocate for the whole
    prompt), mark the prompt computed and register its full blocks; returns the number of tokens
    that had to be computed."""
    cached = bm.find_cached_blocks(request)
    num_new = request.num_tokens - len(cached) * bm.block_size
    assert bm.allocate(request, num_new, cached)
    request.num_computed_tokens += num_new
    bm.cache_full_blocks(request)
    return num_new


@pytest.fixture
def bm() -> BlockManager:
    return BlockManager(num_blocks=8, block_size=BLOCK_SIZE)


def test_allocate_grows_block_table_one_block_per_block_size_tokens(bm: BlockManager) -> None:
    request = make_request(range(5))
    assert bm.allocate(request, 5)
    assert len(request.block_table) == 2
    request.num_computed_tokens = 5
    assert bm.allocate(request, 3)  # 8 tokens still fit in 2 blocks
    assert len(request.block_table) == 2
    request.num_computed_tokens = 8
    assert bm.allocate(request, 1)
    assert len(request.block_table) == 3
    assert len(set(request.block_table)) == 3
    assert bm.num_free_blocks == 8 - 3
    assert all(bm.blocks[b].ref_count == 1 for b in request.block_table)


def test_allocate_returns_false_and_changes_nothing_when_out_of_blocks() -> None:
    bm = BlockManager(num_blocks=2, block_size=BLOCK_SIZE)
    request = make_request(range(9))  # needs 3 blocks
    assert not bm.allocate(request, 9)
    assert request.block_table == []
    assert request.num_computed_tokens == 0
    assert bm.num_free_blocks == 2
    assert all(b.ref_count == 0 for b in bm.blocks)
    assert bm.allocate(request, 8)  # what does fit still works afterwards
    assert len(request.block_table) == 2


def test_free_returns_every_block_to_the_pool(bm: BlockManager) -> None:
    a, b = make_request(range(10)), make_request(range(100, 107))
    admit(bm, a)
    admit(bm, b)
    assert bm.num_free_blocks == 8 - 3 - 2
    bm.free(a)
    assert a.block_table == []
    assert bm.num_free_blocks == 8 - 2
    bm.free(b)
    assert bm.num_free_blocks == 8
    assert bm.usage == 0.0


def test_prefix_cache_shares_full_blocks_only(bm: BlockManager) -> None:
    prefix = list(range(10, 20))  # 2.5 blocks
    a = make_request(prefix + [90, 91])
    b = make_request(prefix + [95, 96, 97])
    admit(bm, a)
    num_computed_b = admit(bm, b)
    assert b.block_table[:2] == a.block_table[:2]
    assert b.block_table[2] != a.block_table[2]  # the half-full block holding 18, 19 is not shared
    assert [bm.blocks[i].ref_count for i in a.block_table] == [2, 2, 1]
    assert [bm.blocks[i].ref_count for i in b.block_table] == [2, 2, 1, 1]
    assert num_computed_b == b.num_tokens - 8
    assert b.num_computed_tokens == b.num_tokens
    bm.free(a)
    assert [bm.blocks[i].ref_count for i in b.block_table] == [1, 1, 1, 1]  # still owned by b


def test_prefix_cache_needs_the_same_tokens_in_the_same_position(bm: BlockManager) -> None:
    admit(bm, make_request(list(range(8))))
    # the second block's tokens match, but its parent (the first block) does not
    assert bm.find_cached_blocks(make_request([50, 51, 52, 53, 4, 5, 6, 7, 9])) == []


def test_fully_cached_prompt_still_computes_its_last_token(bm: BlockManager) -> None:
    a = make_request(list(range(8)))  # exactly 2 full blocks
    admit(bm, a)
    same = make_request(list(range(8)))
    cached = bm.find_cached_blocks(same)
    assert cached == a.block_table[:1]  # the block holding the last token is recomputed
    longer = make_request(list(range(8)) + [8])
    assert bm.find_cached_blocks(longer) == a.block_table[:2]
    assert admit(bm, longer) == 1


def test_freed_cached_blocks_are_revived_on_a_prefix_hit() -> None:
    bm = BlockManager(num_blocks=3, block_size=BLOCK_SIZE)
    a = make_request(list(range(10)))
    admit(bm, a)
    prefix_blocks = a.block_table[:2]
    bm.free(a)
    assert bm.num_free_blocks == 3
    b = make_request(list(range(8)) + [70, 71, 72])
    cached = bm.find_cached_blocks(b)
    assert cached == prefix_blocks
    assert bm.allocate(b, 3, cached)  # 2 revived + 1 new: fits although only 1 block is "spare"
    assert b.block_table[:2] == prefix_blocks
    assert b.num_computed_tokens == 8
    assert bm.num_free_blocks == 0
    assert [bm.blocks[i].ref_count for i in b.block_table] == [1, 1, 1]


def test_reviving_cached_blocks_fails_cleanly_when_the_rest_does_not_fit() -> None:
    bm = BlockManager(num_blocks=3, block_size=BLOCK_SIZE)
    a = make_request(list(range(10)))
    admit(bm, a)
    bm.free(a)
    b = make_request(list(range(8)) + list(range(70, 79)))  # 2 cached blocks + 9 tokens = 3 more blocks
    cached = bm.find_cached_blocks(b)
    assert len(cached) == 2
    assert not bm.allocate(b, 9, cached)
    assert b.block_table == [] and b.num_computed_tokens == 0
    assert bm.num_free_blocks == 3
    assert all(block.ref_count == 0 for block in bm.blocks)
    assert bm.find_cached_blocks(make_request(list(range(9)))) == cached  # still cached


def test_reallocated_cached_block_is_evicted_tail_first() -> None:
    bm = BlockManager(num_blocks=3, block_size=BLOCK_SIZE)
    a = make_request(list(range(10)))
    admit(bm, a)
    first, second, tail = a.block_table
    bm.free(a)
    other = make_request(list(range(200, 204)))
    assert bm.allocate(other, 4)
    assert other.block_table == [tail]  # the uncached tail goes first; the prefix stays cached
    assert bm.find_cached_blocks(make_request(list(range(9)))) == [first, second]
    other.num_computed_tokens = 4
    assert bm.allocate(other, 4)  # growing `other` by a block evicts the second prefix block
    assert other.block_table == [tail, second]
    assert bm.blocks[second].block_hash is None
    assert second not in bm.cached_block_ids.values()
    assert bm.find_cached_blocks(make_request(list(range(9)))) == [first]


def test_hit_rate_counters_count_prompt_tokens_and_cached_tokens(bm: BlockManager) -> None:
    admit(bm, make_request(list(range(10))))
    assert (bm.num_prefix_queries, bm.num_prefix_hits) == (10, 0)
    admit(bm, make_request(list(range(9)) + [60, 61, 62]))
    assert (bm.num_prefix_queries, bm.num_prefix_hits) == (22, 8)


def test_prefix_caching_disabled_never_shares_blocks() -> None:
    bm = BlockManager(num_blocks=8, block_size=BLOCK_SIZE, enable_prefix_caching=False)
    a, b = make_request(list(range(10))), make_request(list(range(10)))
    admit(bm, a)
    assert admit(bm, b) == 10
    assert not set(a.block_table) & set(b.block_table)
    assert bm.cached_block_ids == {}


def test_used_blocks_are_reused_before_untouched_ones_so_the_high_water_mark_tracks_peak_use() -> None:
    bm = BlockManager(num_blocks=8, block_size=BLOCK_SIZE)
    assert bm.num_touched_blocks == 0 and bm.num_free_blocks == 8
    a, b = make_request(range(10)), make_request(range(100, 106))  # 3 + 2 blocks
    admit(bm, a)
    admit(bm, b)
    assert sorted(a.block_table + b.block_table) == [0, 1, 2, 3, 4]  # low ids first
    assert bm.num_touched_blocks == 5
    bm.free(a)
    bm.free(b)
    for i in range(10):  # one request at a time: never more than 3 blocks in use
        request = make_request(range(200 + 20 * i, 210 + 20 * i))
        admit(bm, request)
        bm.free(request)
    assert bm.num_touched_blocks == 5 and bm.num_free_blocks == 8
    many = [make_request(range(300 + 10 * i, 304 + 10 * i)) for i in range(8)]
    for request in many:  # all 8 at once: now every block gets touched
        admit(bm, request)
    assert bm.num_touched_blocks == 8 and bm.num_free_blocks == 0
    assert not bm.allocate(make_request(range(4)), 4)
