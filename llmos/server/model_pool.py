"""Which models the server has loaded: load on demand, keep-alive TTL, LRU eviction, pinning, admission.

A request holds a ``Lease`` on a model (loading it if needed) while it runs — ``async with
pool.lease(model, n) as lease`` — counting the engine requests it will run; when the model's
running batch plus its waiting queue is full, the lease is refused with ``ServerBusy`` (429 +
Retry-After). Idle models expire after their keep-alive; when a new model needs room
(``max_loaded_models``, ``memory_budget_mb``), the least recently used idle, unpinned model is
unloaded. A model whose engine died (a step failed outside any one request) is dropped as soon as
the pool notices — the next lookup, or the reaper's tick — and the next request loads it again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmos.config import Settings
from llmos.errors import InvalidRequest, LLMOSError, ServerBusy, ServiceUnavailable
from llmos.runtime.embeddings import EmbeddingRuntime
from llmos.runtime.model_runtime import ModelRuntime, load_any_runtime, resolve_model_dir

logger = logging.getLogger(__name__)

Runtime = ModelRuntime | EmbeddingRuntime


def runtime_kind(runtime: Runtime) -> str:
    return "embedding" if isinstance(runtime, EmbeddingRuntime) else "generate"


@dataclass(frozen=True, slots=True)
class RuntimeMemory:
    """A loaded model's memory: its weights and its KV cache, reserved whole at load and
    committed by the OS page by page as blocks are first used (``EngineStats``)."""

    weights_bytes: int
    kv_reserved_bytes: int = 0
    kv_committed_bytes: int = 0

    @property
    def reserved_bytes(self) -> int:
        return self.weights_bytes + self.kv_reserved_bytes

    @property
    def committed_bytes(self) -> int:
        return self.weights_bytes + self.kv_committed_bytes


def runtime_memory(runtime: Runtime) -> RuntimeMemory:
    if isinstance(runtime, EmbeddingRuntime):
        return RuntimeMemory(runtime.memory_bytes)
    engine = getattr(runtime.engine, "engine", None)
    if engine is None:
        return RuntimeMemory(0)
    weights = sum(p.numel() * p.element_size() for p in engine.runner.model.parameters())
    stats = engine.stats()
    return RuntimeMemory(weights, stats.kv_cache_reserved_bytes, stats.kv_cache_committed_bytes)


def runtime_memory_bytes(runtime: Runtime) -> int:
    """Weights plus the KV cache reserved for them (the cache is committed as it fills)."""
    return runtime_memory(runtime).reserved_bytes


def _estimate_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.glob("*.safetensors"))


@dataclass
class PoolEntry:
    runtime: Runtime
    keep_alive: float | None  # seconds idle before unloading; None: until stopped
    is_pinned: bool
    memory_bytes: int
    last_used: float = field(default_factory=time.monotonic)
    num_active: int = 0  # engine requests admitted and not yet released

    @property
    def name(self) -> str:
        return self.runtime.name

    def expires_in(self, now: float) -> float | None:
        if self.keep_alive is None or self.num_active:
            return None
        return max(0.0, self.last_used + self.keep_alive - now)


class Lease:
    """Permission to run ``num_requests`` engine requests on a loaded model; taken and released by
    ``ModelPool.lease`` (``release`` is idempotent, so capacity is never freed twice)."""

    def __init__(self, entry: PoolEntry, num_requests: int):
        self.entry, self.num_requests = entry, num_requests
        self.runtime = entry.runtime
        self._released = False
        entry.num_active += num_requests
        entry.last_used = time.monotonic()

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.entry.num_active -= self.num_requests
            self.entry.last_used = time.monotonic()


class ModelPool:
    def __init__(
        self,
        settings: Settings,
        metrics: Any = None,
        loader: Callable[[str, Settings], Runtime] | None = None,
    ):
        """``loader`` loads a model instead of ``load_any_runtime`` (``llmos serve --ray``)."""
        self.settings = settings
        self.loader = loader
        self.metrics = metrics  # ServerMetrics, or None outside the server
        self.entries: dict[str, PoolEntry] = {}  # canonical "name:version" -> entry
        self.names: dict[str, str] = {}  # any name a client used -> canonical
        self._locks: dict[str, asyncio.Lock] = {}
        self._sync_lock = threading.Lock()  # guards entries/names against the preload thread
        self._load_lock = threading.Lock()  # one load at a time: no model loaded twice
        self.is_draining = False

    # --- looking up -------------------------------------------------------------------------
    @property
    def runtimes(self) -> dict[str, Runtime]:
        return {name: e.runtime for name, e in self.entries.items()}

    def engines(self) -> dict[str, Any]:
        return {n: e.runtime.engine for n, e in self.entries.items() if isinstance(e.runtime, ModelRuntime)}

    def find(self, ref: str) -> PoolEntry | None:
        """The entry ``ref`` names, or None; a dead engine's entry is dropped first (None then)."""
        canonical = self.names.get(ref)
        entry = self.entries.get(canonical) if canonical else None
        if entry is not None and self._drop_if_dead(entry):
            return None
        return entry

    def dead(self) -> list[str]:
        """Names of the loaded models whose engine has died (until the pool drops them)."""
        return sorted(e.name for e in list(self.entries.values()) if not e.runtime.is_healthy)

    # --- loading ----------------------------------------------------------------------------
    def load_sync(self, ref: str, *, keep_alive: float | None = None, pin: bool | None = None) -> PoolEntry:
        """Load ``ref`` on this thread. ``keep_alive``: idle seconds before unloading (None: the
        server's default, negative: never); ``pin`` True pins, False unpins, None leaves it (a new
        entry unpinned). An already loaded model gets the new keep-alive/pin."""
        with self._load_lock:
            name, path, manifest = resolve_model_dir(ref, self.settings, verify=False, allow_path=False)
            for other in list(self.entries.values()):  # a dead engine neither serves nor needs room
                self._drop_if_dead(other)
            entry = self.entries.get(name)
            if entry is None:
                self._make_room(_estimate_bytes(path), exclude=name)
                runtime = self._load_runtime(ref)
                if self.metrics is not None:
                    self.metrics.model_load_seconds.labels(name).inc(runtime.load_seconds)
                    self.metrics.model_loads.labels(name).inc()
                entry = PoolEntry(
                    runtime, self._keep_alive(keep_alive), bool(pin), runtime_memory_bytes(runtime)
                )
            elif keep_alive is not None:
                entry.keep_alive = self._keep_alive(keep_alive)
            if pin is not None:
                entry.is_pinned = pin
            entry.last_used = time.monotonic()
            with self._sync_lock:
                self.entries[name] = entry
                for alias in {ref, name, name.split(":")[0]}:
                    self.names[alias] = name
            return entry

    def _load_runtime(self, ref: str) -> Runtime:
        if self.loader is not None:
            runtime = self.loader(ref, self.settings)
        else:
            runtime = load_any_runtime(ref, self.settings, allow_path=False)
        # a generation engine in this process (not an embedding model, nor replicas on Ray)
        engine = getattr(runtime.engine, "engine", None) if isinstance(runtime, ModelRuntime) else None
        if engine is not None and engine.structured_output is not None:
            # Convert the vocabulary for grammars now, not inside the first guided request.
            backend = engine.structured_output

            def warm() -> None:
                try:
                    _ = backend.tokenizer
                except Exception as exc:  # the first guided request reports it as a 400
                    logger.info("no structured output for %s: %s", runtime.name, exc)

            threading.Thread(target=warm, name="llmos-grammar", daemon=True).start()
        return runtime

    def _keep_alive(self, value: float | None) -> float | None:
        value = self.settings.keep_alive if value is None else value
        return None if value < 0 else float(value)

    async def load(self, ref: str, *, keep_alive: float | None = None, pin: bool | None = None) -> PoolEntry:
        """Load ``ref`` off the event loop, once even when many requests ask at the same time."""
        if self.is_draining:
            raise ServiceUnavailable("The server is shutting down.", retry_after=5)
        lock = self._locks.setdefault(ref, asyncio.Lock())
        async with lock:
            entry = self.find(ref)
            if entry is not None and keep_alive is None and pin is None:
                return entry
            return await asyncio.to_thread(self.load_sync, ref, keep_alive=keep_alive, pin=pin)

    @asynccontextmanager
    async def lease(self, ref: str, num_requests: int = 1, kind: str = "generate") -> AsyncIterator[Lease]:
        """Hold ``num_requests`` on ``ref`` for the ``async with`` block: admitted on entry (raising
        as ``acquire``), released when the block ends however it ends — returned, raised, cancelled
        by a client that went away, or an SSE stream closed."""
        lease = await self.acquire(ref, num_requests, kind)
        try:
            yield lease
        finally:
            lease.release()

    async def acquire(self, ref: str, num_requests: int = 1, kind: str = "generate") -> Lease:
        """Admit ``num_requests`` on ``ref`` (loading it if needed); the caller releases the lease.

        Raises ModelNotFound, InvalidRequest (wrong kind of model), ServerBusy (queue full) or
        ServiceUnavailable (draining).
        """
        if self.is_draining:
            raise ServiceUnavailable("The server is shutting down; retry on another instance.", retry_after=5)
        entry = self.find(ref) or await self.load(ref)
        if runtime_kind(entry.runtime) != kind:
            what = "an embedding model" if kind == "generate" else "a text generation model"
            use = "/v1/embeddings" if kind == "generate" else "/v1/chat/completions or /v1/completions"
            raise InvalidRequest(f"{entry.name} is {what}; use it with {use}.", param="model")
        capacity = self.settings.max_num_seqs + self.settings.max_waiting_requests
        if kind == "generate" and entry.num_active + num_requests > capacity:
            if self.metrics is not None:
                self.metrics.reject(entry.name, "queue_full")
            raise ServerBusy(
                f"{entry.name} has {entry.num_active} requests running or waiting (capacity {capacity}); "
                "retry shortly.",
                retry_after=1,
            )
        return Lease(entry, num_requests)

    async def get(self, ref: str, kind: str = "generate") -> Runtime:
        """The loaded runtime for ``ref`` (loading it if needed), without admitting requests."""
        async with self.lease(ref, 0, kind) as lease:
            return lease.runtime

    # --- unloading --------------------------------------------------------------------------
    def _make_room(self, incoming_bytes: int, exclude: str) -> None:
        """Unload idle, unpinned models (least recently used first) until ``incoming`` fits.

        The memory budget counts what the loaded models have *committed* — weights plus the KV
        blocks they have touched so far — not their whole reserved KV caches, which the OS backs
        only as they fill. So the budget bounds the memory in use when a model loads; a cache that
        fills later can still take the total past it (set ``kv_cache_memory_mb`` to bound that).
        """
        budget = self.settings.memory_budget_mb << 20

        def full() -> bool:
            others = [e for n, e in self.entries.items() if n != exclude]
            used = sum(runtime_memory(e.runtime).committed_bytes for e in others)
            over_budget = bool(budget) and used + incoming_bytes > budget
            return len(others) >= self.settings.max_loaded_models or over_budget

        while full():
            idle = [e for e in self.entries.values() if not e.num_active and not e.is_pinned]
            if not idle:
                busy = ", ".join(sorted(self.entries))
                raise ServiceUnavailable(
                    f"No room to load another model: {busy} are busy or pinned "
                    "(raise LLMOS_MAX_LOADED_MODELS / LLMOS_MEMORY_BUDGET_MB, or `llmos stop` one).",
                    retry_after=10,
                )
            victim = min(idle, key=lambda e: e.last_used)
            logger.info("unloading %s to make room", victim.name)
            self.unload(victim.name)

    def unload(self, ref: str) -> str | None:
        """Unload a model now (its running requests finish with ``abort``); its name, or None."""
        with self._sync_lock:
            canonical = self.names.get(ref)
            entry = (self.entries.get(canonical) if canonical else None) or self.entries.get(ref)
            if entry is None:
                return None
            self._forget(entry)
        entry.runtime.close()
        return entry.name

    def _drop_if_dead(self, entry: PoolEntry) -> bool:
        """Unload ``entry`` if its engine has died, counting an engine restart (the next request
        loads the model again); True when this call dropped it."""
        if entry.runtime.is_healthy:
            return False
        with self._sync_lock:
            if self.entries.get(entry.name) is not entry:  # another thread dropped it first
                return False
            self._forget(entry)
        error = getattr(getattr(entry.runtime, "engine", None), "error", None)
        logger.error(
            "the engine of %s died (%r): unloading it; the next request reloads it", entry.name, error
        )
        if self.metrics is not None:
            self.metrics.engine_restarts.labels(entry.name).inc()
        entry.runtime.close()
        return True

    def _forget(self, entry: PoolEntry) -> None:
        """Take ``entry`` and its names out of the pool (the caller holds ``_sync_lock``)."""
        del self.entries[entry.name]
        for alias in [a for a, n in self.names.items() if n == entry.name]:
            del self.names[alias]

    def expire(self, now: float | None = None) -> list[str]:
        """Drop models whose engine died and unload every model idle past its keep-alive; returns
        the names of the expired ones."""
        for entry in list(self.entries.values()):
            self._drop_if_dead(entry)
        now = time.monotonic() if now is None else now
        expired = [
            e.name
            for e in list(self.entries.values())
            if not e.is_pinned and (left := e.expires_in(now)) is not None and left <= 0
        ]
        for name in expired:
            logger.info("keep-alive expired: unloading %s", name)
            self.unload(name)
        return expired

    def refresh_names(self) -> list[str]:
        """Forget names the registry now resolves elsewhere (a new ``latest``, a moved alias), so
        the next request for them loads the version they mean now; returns the forgotten names."""
        from llmos.registry import Registry

        registry = Registry(self.settings, recover=False)
        stale = []
        try:
            for alias, canonical in list(self.names.items()):
                if ":" in alias and "@" not in alias:
                    continue  # an exact version never moves
                try:
                    current = registry.resolve(alias.split("+")[0]).ref if "+" not in alias else canonical
                except LLMOSError:
                    current = None
                if current != canonical:
                    stale.append(alias)
        finally:
            registry.close()
        with self._sync_lock:
            for alias in stale:
                self.names.pop(alias, None)
        return stale

    def ps(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        rows = []
        for e in list(self.entries.values()):
            memory = runtime_memory(e.runtime)
            row: dict[str, Any] = {
                "name": e.name,
                "kind": runtime_kind(e.runtime),
                "memory_bytes": e.memory_bytes,  # reserved: weights + the whole KV cache
                "memory_committed_bytes": memory.committed_bytes,  # weights + the KV touched so far
                "kv_reserved_bytes": memory.kv_reserved_bytes,
                "kv_committed_bytes": memory.kv_committed_bytes,
                "idle_seconds": 0.0 if e.num_active else round(now - e.last_used, 1),
                "expires_in": None if (left := e.expires_in(now)) is None else round(left, 1),
                "keep_alive": e.keep_alive,
                "pinned": e.is_pinned,
                "active": e.num_active,
            }
            if isinstance(e.runtime, ModelRuntime):
                engine = e.runtime.engine
                stats = engine.stats() if hasattr(engine, "engine") else None
                row["running"] = stats.num_running if stats else 0
                row["waiting"] = stats.num_waiting if stats else 0
                row["max_model_len"] = e.runtime.max_model_len
                row["dtype"] = e.runtime.dtype
                row["quantization"] = e.runtime.quantization
            rows.append(row)
        return rows

    def close(self) -> None:
        for name in list(self.entries):
            self.unload(name)
