"""Which engine replica serves a request: the routing policy of a scaled-out ``llmos serve``.

Three policies, one decision function:

- ``least_loaded`` (the default): the replica with the fewest running + waiting requests; ties go
  to a random one of them.
- ``prefix``: when the prompt's first blocks were recently sent to a replica whose load is within
  ``slack`` requests of the least loaded, send it there again, so that replica's prefix cache keeps
  hitting; otherwise least loaded (``prefix_overloaded`` when the owner was too busy).
- ``p2c`` (power of two choices): the less loaded of two replicas picked at random — what
  ``prefix`` falls back to when loads are unknown.

A prompt is keyed by a chain of hashes over fixed-size blocks of its token ids (or characters), as
the engine's prefix cache chains its KV blocks, so "the same first 3 blocks" means the same cached
prefix. The table of recent prefixes is bounded (least recently used entries go first) and a
replica that left is forgotten. Every decision names its policy and reason, for the
``llmos:route_total{policy,reason}`` counter and the request log.
"""

from __future__ import annotations

import hashlib
import random
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

POLICIES = ("least_loaded", "prefix", "p2c")
DEFAULT_BLOCK = 16  # tokens per block (the engine's KV block size); characters are blocked by 4x
MAX_BLOCKS = 32  # prompt blocks hashed: a longer shared prefix than this is still one match


@dataclass(frozen=True, slots=True)
class ReplicaLoad:
    """What a replica reports about itself: its id and its requests running and waiting."""

    replica_id: str
    running: int = 0
    waiting: int = 0

    @property
    def load(self) -> int:
        return self.running + self.waiting


@dataclass(frozen=True, slots=True)
class Decision:
    replica_id: str
    policy: str
    reason: str  # least_loaded | prefix_hit | prefix_overloaded | no_prefix | p2c | only_replica
    matched_blocks: int = 0


def prefix_hashes(
    prompt: Sequence[int] | str, block: int = DEFAULT_BLOCK, max_blocks: int = MAX_BLOCKS
) -> list[int]:
    """Chained hashes of the prompt's whole blocks (the first ``max_blocks``): entry i stands for
    the first i+1 blocks, so two prompts share entry i exactly when they share that prefix."""
    size = block * 4 if isinstance(prompt, str) else block
    hashes: list[int] = []
    previous = b""
    for start in range(0, min(len(prompt), size * max_blocks) - size + 1, size):
        chunk = prompt[start : start + size]
        data = chunk.encode() if isinstance(chunk, str) else b",".join(b"%d" % t for t in chunk)
        previous = hashlib.blake2b(previous + data, digest_size=8).digest()  # stable across processes
        hashes.append(int.from_bytes(previous, "big"))
    return hashes


class Router:
    def __init__(
        self,
        policy: str = "least_loaded",
        *,
        slack: int = 2,
        max_entries: int = 100_000,
        rng: random.Random | None = None,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown routing policy {policy!r}; use one of {', '.join(POLICIES)}")
        self.policy = policy
        self.slack = slack
        self.max_entries = max_entries
        self.rng = rng or random.Random()
        self._owners: OrderedDict[int, str] = OrderedDict()  # prefix hash -> replica that served it

    def choose(self, replicas: Sequence[ReplicaLoad], prefix: Sequence[int] = ()) -> Decision:
        """The replica for a request whose prompt has ``prefix`` (its ``prefix_hashes``); the
        prefix is then remembered as that replica's. Raises ValueError without replicas."""
        if not replicas:
            raise ValueError("no replicas to route to")
        if len(replicas) == 1:
            decision = Decision(replicas[0].replica_id, self.policy, "only_replica")
        elif self.policy == "p2c":
            decision = self._p2c(replicas)
        elif self.policy == "prefix":
            decision = self._prefix(replicas, prefix)
        else:
            decision = Decision(self._least_loaded(replicas), self.policy, "least_loaded")
        self._remember(prefix, decision.replica_id)
        return decision

    def forget(self, replica_id: str) -> None:
        """Drop what a replica that left (died, scaled down) was remembered for."""
        for key in [k for k, owner in self._owners.items() if owner == replica_id]:
            del self._owners[key]

    def __len__(self) -> int:
        return len(self._owners)

    # --- the policies --------------------------------------------------------------------------
    def _least_loaded(self, replicas: Sequence[ReplicaLoad]) -> str:
        lowest = min(r.load for r in replicas)
        return self.rng.choice([r.replica_id for r in replicas if r.load == lowest])

    def _p2c(self, replicas: Sequence[ReplicaLoad]) -> Decision:
        a, b = self.rng.sample(list(replicas), 2)
        return Decision((a if a.load <= b.load else b).replica_id, self.policy, "p2c")

    def _prefix(self, replicas: Sequence[ReplicaLoad], prefix: Sequence[int]) -> Decision:
        by_id = {r.replica_id: r for r in replicas}
        owner, matched = None, 0
        for depth in range(len(prefix), 0, -1):  # the longest prefix a live replica holds
            candidate = self._owners.get(prefix[depth - 1])
            if candidate in by_id:
                owner, matched = candidate, depth
                break
        if owner is None:
            return Decision(self._least_loaded(replicas), self.policy, "no_prefix")
        lowest = min(r.load for r in replicas)
        if by_id[owner].load <= lowest + self.slack:
            return Decision(owner, self.policy, "prefix_hit", matched)
        return Decision(self._least_loaded(replicas), self.policy, "prefix_overloaded", matched)

    def _remember(self, prefix: Sequence[int], replica_id: str) -> None:
        for key in prefix:
            self._owners[key] = replica_id
            self._owners.move_to_end(key)
        while len(self._owners) > self.max_entries:
            self._owners.popitem(last=False)
