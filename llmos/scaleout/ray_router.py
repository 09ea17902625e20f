"""Ray Serve's request router for engine replicas, deciding with ``llmos.scaleout.Router``.

Ray pickles this module by value into every process that calls the deployment, so it keeps no
state of its own at module level: what it decides goes to ``ledger`` (imported by name).
"""

from __future__ import annotations

import time

from ray.serve.request_router import PendingRequest, ReplicaID, RequestRouter, RunningReplica

from llmos.scaleout import ledger
from llmos.scaleout.routing import ReplicaLoad, Router, prefix_hashes

# A decision counts toward its replica's load until Ray says it sent that request
# (``on_send_request``), or for at most this long (a replica that refused it): a burst of requests is
# decided before Ray counts the first one as sent, and without this every request of the burst saw
# the same loads and went to the same replica (it happened in a full test run).
PENDING_SECONDS = 2.0


class LlmosRequestRouter(RequestRouter):
    """Ray Serve's request router, deciding with ``llmos.scaleout.Router``: loads come from the
    router's own count of requests in flight per replica (else the replica's routing stats), plus
    the decisions it made that Ray has not sent yet."""

    def initialize_state(self, policy: str = "least_loaded", deployment: str = "") -> None:  # type: ignore[override]
        self.router = Router(policy)
        self.deployment = deployment
        self._known: set[str] = set()
        self._pending: list[tuple[float, str]] = []  # (when, replica id) of decisions not sent yet

    def update_replicas(self, replicas: list[RunningReplica]) -> None:
        super().update_replicas(replicas)
        ledger.LEDGER.replicas[self.deployment] = {
            r.replica_id.unique_id: dict(r.routing_stats) for r in replicas
        }
        live = {r.replica_id.unique_id for r in replicas}
        for gone in self._known - live:
            self.router.forget(gone)
        self._known = live

    def _load(self, replica: RunningReplica, pending: dict[str, int]) -> ReplicaLoad:
        key = replica.replica_id.unique_id
        in_flight = self._replica_queue_len_cache.get(replica.replica_id)
        if in_flight is not None:
            return ReplicaLoad(key, running=in_flight, waiting=pending.get(key, 0))
        stats = replica.routing_stats
        return ReplicaLoad(
            key, stats.get("num_running", 0), stats.get("num_waiting", 0) + pending.get(key, 0)
        )

    def _pending_counts(self, now: float) -> dict[str, int]:
        self._pending = [(when, key) for when, key in self._pending if now - when < PENDING_SECONDS]
        counts: dict[str, int] = {}
        for _, key in self._pending:
            counts[key] = counts.get(key, 0) + 1
        return counts

    def on_send_request(self, replica_id: ReplicaID) -> None:
        super().on_send_request(replica_id)  # Ray counts it from here on
        key = replica_id.unique_id
        for i, (_, pending) in enumerate(self._pending):
            if pending == key:
                del self._pending[i]
                break

    async def choose_replicas(
        self, candidate_replicas: list[RunningReplica], pending_request: PendingRequest | None = None
    ) -> list[list[RunningReplica]]:
        kwargs = pending_request.kwargs if pending_request is not None else {}
        avoid = set(kwargs.get("avoid", ()))
        candidates = [r for r in candidate_replicas if r.replica_id.unique_id not in avoid] or list(
            candidate_replicas
        )
        if not candidates:
            return []
        prefix = prefix_hashes(kwargs.get("prompt_token_ids", ()))
        now = time.monotonic()
        pending = self._pending_counts(now)
        decision = self.router.choose([self._load(r, pending) for r in candidates], prefix)
        self._pending.append((now, decision.replica_id))
        if "request_id" in kwargs:
            ledger.LEDGER.record(kwargs["request_id"], decision)
        chosen = [r for r in candidates if r.replica_id.unique_id == decision.replica_id]
        rest = [r for r in candidates if r.replica_id.unique_id != decision.replica_id]
        return [chosen, rest] if rest else [chosen]
