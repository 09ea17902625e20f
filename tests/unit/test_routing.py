"""The replica routing policy: least loaded by default, prefix affinity while the owner's load is
within the slack, power of two choices, a bounded prefix table, forgetting replicas that left —
and, on a simulated workload with shared system prompts, the prefix-cache hits affinity buys."""

from __future__ import annotations

import random
from collections import OrderedDict

import pytest

from llmos.scaleout import ReplicaLoad, Router, prefix_hashes


def loads(**by_id: int) -> list[ReplicaLoad]:
    return [ReplicaLoad(replica_id, running=load) for replica_id, load in by_id.items()]


def test_least_loaded_picks_the_idlest_replica_and_spreads_ties() -> None:
    router = Router(rng=random.Random(0))
    assert router.choose(loads(a=3, b=1, c=2)).replica_id == "b"
    assert router.choose(loads(a=3, b=1, c=2)).reason == "least_loaded"
    picked = {router.choose(loads(a=1, b=1, c=5)).replica_id for _ in range(50)}
    assert picked == {"a", "b"}
    assert router.choose(loads(only=9)).reason == "only_replica"
    with pytest.raises(ValueError, match="no replicas"):
        router.choose([])
    with pytest.raises(ValueError, match="unknown routing policy"):
        Router("random")


def test_prefix_hashes_chain_blocks_so_a_shared_start_shares_the_first_entries() -> None:
    system = list(range(100, 148))  # three 16-token blocks
    a, b = prefix_hashes(system + [1, 2, 3] * 10), prefix_hashes(system + [7, 8, 9] * 10)
    assert a[:3] == b[:3] and a[3] != b[3]
    assert prefix_hashes(list(range(15))) == []  # no whole block
    assert prefix_hashes("x" * 64) == prefix_hashes("x" * 64 + "tail")[:1]  # characters: 64 a block
    assert len(prefix_hashes(list(range(10_000)))) == 32  # bounded
    assert prefix_hashes([1] * 32) != prefix_hashes([2] * 32)


def test_a_repeated_prefix_returns_to_its_replica_while_its_load_is_within_the_slack() -> None:
    router = Router("prefix", slack=2, rng=random.Random(0))
    system = prefix_hashes(list(range(64)))
    first = router.choose(loads(a=0, b=0), system)
    assert first.reason == "no_prefix"
    owner, other = first.replica_id, ({"a", "b"} - {first.replica_id}).pop()
    again = router.choose([ReplicaLoad(owner, running=2), ReplicaLoad(other, running=0)], system)
    assert (again.replica_id, again.reason, again.matched_blocks) == (owner, "prefix_hit", 4)
    # a longer prompt with the same start still matches its first blocks
    longer = prefix_hashes(list(range(64)) + list(range(500, 532)))
    assert router.choose([ReplicaLoad(owner, 1), ReplicaLoad(other, 0)], longer).replica_id == owner
    # too busy: least loaded instead, and the prefix now belongs to that replica too
    busy = router.choose([ReplicaLoad(owner, running=5), ReplicaLoad(other, running=0)], system)
    assert (busy.replica_id, busy.reason) == (other, "prefix_overloaded")
    assert router.choose([ReplicaLoad(owner, 0), ReplicaLoad(other, 0)], system).replica_id == other


def test_a_replica_that_left_is_forgotten_and_the_table_is_bounded() -> None:
    router = Router("prefix", max_entries=10, rng=random.Random(1))
    system = prefix_hashes(list(range(64)))
    owner = router.choose(loads(a=0, b=0), system).replica_id
    router.forget(owner)
    assert router.choose(loads(a=0, b=0), system).reason == "no_prefix"
    for i in range(20):
        router.choose(loads(a=0, b=0), prefix_hashes(list(range(i * 1000, i * 1000 + 32))))
    assert len(router) == 10


def test_power_of_two_choices_takes_the_less_loaded_of_two() -> None:
    router = Router("p2c", rng=random.Random(0))
    replicas = loads(a=0, b=10, c=10, d=10)
    chosen = [router.choose(replicas).replica_id for _ in range(200)]
    assert chosen.count("a") > 80  # a wins whenever it is drawn (half the pairs)
    assert all(router.choose(loads(x=3, y=1)).replica_id == "y" for _ in range(20))


def test_prefix_affinity_hits_the_prefix_cache_more_than_least_loaded_on_shared_system_prompts() -> None:
    """Simulated: 4 replicas, 8 system prompts of 4 blocks, 2,000 requests each with its own tail;
    each replica's prefix cache holds 12 blocks (3 system prompts), least recently used out.
    Loads are what each replica has in flight (a window of the last 8 requests)."""

    def run(policy: str) -> float:
        rng = random.Random(42)
        router = Router(policy, slack=2, rng=random.Random(7))
        cached: dict[str, OrderedDict[int, None]] = {r: OrderedDict() for r in "abcd"}
        in_flight: list[str] = []
        hits = total = 0
        for _ in range(2000):
            system = rng.randrange(8)
            prompt = [system * 1000 + t for t in range(64)] + [rng.randrange(30_000) for _ in range(32)]
            keys = prefix_hashes(prompt)
            replicas = [ReplicaLoad(r, running=in_flight.count(r)) for r in "abcd"]
            chosen = router.choose(replicas, keys).replica_id
            hits += sum(1 for k in keys[:4] if k in cached[chosen])
            total += 4
            for k in keys[:4]:
                cached[chosen][k] = None
                cached[chosen].move_to_end(k)
            while len(cached[chosen]) > 12:
                cached[chosen].popitem(last=False)
            in_flight = [*in_flight, chosen][-8:]
        return hits / total

    affinity, spread = run("prefix"), run("least_loaded")
    assert affinity > 0.8 and spread < affinity - 0.3, (affinity, spread)  # here: 0.87 vs 0.38
