"""Which models the server has loaded, by every name a client may use for them.

This first pool loads on demand and keeps models until shutdown; keep-alive, LRU eviction and
memory budgets come with the production server.
"""

from __future__ import annotations

import asyncio
import logging

from llmos.config import Settings
from llmos.runtime import ModelRuntime, load_runtime

logger = logging.getLogger(__name__)


class ModelPool:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.runtimes: dict[str, ModelRuntime] = {}  # canonical "name:version" -> runtime
        self.names: dict[str, str] = {}  # any name a client used -> canonical
        self._lock = asyncio.Lock()

    def load_sync(self, ref: str) -> ModelRuntime:
        runtime = load_runtime(ref, self.settings)
        existing = self.runtimes.get(runtime.name)
        if existing is not None:
            runtime.close()
            runtime = existing
        self.runtimes[runtime.name] = runtime
        for alias in {ref, runtime.name, runtime.name.split(":")[0]}:
            self.names[alias] = runtime.name
        return runtime

    async def get(self, ref: str) -> ModelRuntime:
        """The runtime for ``ref``, loading it (off the event loop) if needed; raises ModelNotFound."""
        canonical = self.names.get(ref)
        if canonical is not None:
            return self.runtimes[canonical]
        async with self._lock:
            canonical = self.names.get(ref)
            if canonical is not None:
                return self.runtimes[canonical]
            return await asyncio.to_thread(self.load_sync, ref)

    def close(self) -> None:
        for runtime in self.runtimes.values():
            runtime.close()
        self.runtimes.clear()
        self.names.clear()
