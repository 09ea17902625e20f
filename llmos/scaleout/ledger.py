"""What the Ray Serve request routers of this process saw: each request's routing decision and
each replica's last reported stats. Ray builds a deployment's router inside the caller's process
(a copy of ``ray_router``, pickled by value), so the engine client reads the router's view here."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from llmos.scaleout.routing import Decision


class RoutingLedger:
    """The routers' decisions by request id (bounded) and the replicas' stats, by deployment."""

    def __init__(self, max_entries: int = 10_000):
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._decisions: OrderedDict[str, Decision] = OrderedDict()
        self.replicas: dict[str, dict[str, dict[str, Any]]] = {}  # deployment -> replica -> stats

    def record(self, request_id: str, decision: Decision) -> None:
        with self._lock:
            self._decisions[request_id] = decision
            while len(self._decisions) > self.max_entries:
                self._decisions.popitem(last=False)

    def get(self, request_id: str) -> Decision | None:
        with self._lock:
            return self._decisions.get(request_id)

    def pop(self, request_id: str) -> Decision | None:
        with self._lock:
            return self._decisions.pop(request_id, None)


LEDGER = RoutingLedger()
