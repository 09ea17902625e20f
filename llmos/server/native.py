"""The native model API (Ollama-like): pull with NDJSON progress, list, show, tag, copy, history,
delete, load, unload, ps, and the store's verify and gc.

Registry work runs off the event loop; pull progress comes from the registry's ``ByteProgress``
seam, bridged from the pulling thread to the response stream through an asyncio queue.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from llmos.errors import LLMOSError, ModelNotFound
from llmos.registry import ModelVersion, Registry, find_entry, load_catalog
from llmos.registry.versions.aliases import check_removable
from llmos.runtime import capability
from llmos.server.access import audit
from llmos.server.auth import requires
from llmos.server.model_pool import ModelPool
from llmos.server.protocol import LoadRequest, PullRequest
from llmos.store.names import HUB_PREFIX

router = APIRouter(prefix="/api", tags=["native"])

PROGRESS_INTERVAL = 0.25  # seconds between progress lines per task
_pulls: set[asyncio.Task[None]] = set()  # running pulls, referenced so they are not collected


def _pool(request: Request) -> ModelPool:
    return request.app.state.pool


class TagRequest(BaseModel):
    """Body of POST /api/models/{name}/tag: the alias to point at the version ``name`` names."""

    alias: str = Field(min_length=1, max_length=64)


class CopyRequest(BaseModel):
    """Body of POST /api/models/{name}/copy: the name to register the version under."""

    destination: str = Field(min_length=1, max_length=64)


class VerifyRequest(BaseModel):
    """Body of POST /api/verify: one model (name, name:N, name@alias), or every version."""

    name: str | None = Field(None, min_length=1, max_length=256)


class GcRequest(BaseModel):
    """Body of POST /api/gc."""

    dry_run: bool = False


def _with_registry(request: Request, work: Callable[[Registry], Any], *, recover: bool = True) -> Any:
    registry = Registry(request.app.state.settings, recover=recover, probe=capability.check)
    try:
        return work(registry)
    finally:
        registry.close()


def _describe(mv: ModelVersion, pool: ModelPool) -> dict[str, Any]:
    manifest = mv.manifest
    return {
        "name": mv.name,
        "version": mv.version,
        "ref": mv.ref,
        "kind": manifest.kind or "generate",
        "size_bytes": manifest.size,
        "digest": mv.digest,
        "aliases": list(mv.aliases),
        "parents": [p.to_dict() for p in mv.parents],
        "created_at": mv.created_at.isoformat(),
        "loaded": mv.ref in pool.entries,
    }


@router.get("/models", **requires("models:read"))
async def list_models(request: Request) -> dict[str, Any]:
    versions = await asyncio.to_thread(_with_registry, request, lambda r: r.list())
    return {"models": [_describe(mv, _pool(request)) for mv in versions]}


# before GET /models/{name:path}, which would match it
@router.get("/models/{name:path}/history", **requires("models:read"))
async def model_history(name: str, request: Request) -> dict[str, Any]:
    found = await asyncio.to_thread(_with_registry, request, lambda r: r.history(name))
    pool = _pool(request)
    return {
        "name": found.name,
        "versions": [_describe(mv, pool) for mv in found.versions],
        "events": [event.to_dict() for event in found.events],
    }


@router.post("/models/{name:path}/tag", **requires("models:write"))
async def tag_model(name: str, body: TagRequest, request: Request) -> dict[str, Any]:
    mv = await asyncio.to_thread(_with_registry, request, lambda r: r.tag(name, body.alias))
    audit(request, "model.tagged", mv.ref, {"alias": body.alias})
    return _describe(mv, _pool(request))


@router.post("/models/{name:path}/copy", **requires("models:write"))
async def copy_model(name: str, body: CopyRequest, request: Request) -> dict[str, Any]:
    mv = await asyncio.to_thread(_with_registry, request, lambda r: r.copy(name, body.destination))
    audit(request, "model.copied", mv.ref, {"source": name})
    return _describe(mv, _pool(request))


@router.post("/verify", **requires("models:write"))
async def verify(request: Request, body: VerifyRequest | None = None) -> dict[str, Any]:
    """Re-hash stored files; ``ok`` is false (with each problem listed) when any file is wrong."""
    name = body.name if body else None
    report = await asyncio.to_thread(_with_registry, request, lambda r: r.verify_all(name))
    return report.to_dict()


@router.post("/gc", **requires("models:write"))
async def gc(request: Request, body: GcRequest | None = None) -> dict[str, Any]:
    """Remove unreferenced blobs, orphan snapshots and stale temp files (``dry_run``: only list them)."""
    dry_run = body.dry_run if body else False
    report = await asyncio.to_thread(_with_registry, request, lambda r: r.gc(dry_run), recover=False)
    return report.to_dict()


@router.get("/models/{name:path}", **requires("models:read"))
async def show_model(name: str, request: Request) -> dict[str, Any]:
    mv = await asyncio.to_thread(_with_registry, request, lambda r: r.resolve(name))
    return {
        **_describe(mv, _pool(request)),
        "path": str(mv.path),
        "shape": mv.shape(),  # layers, heads, kv_heads, hidden_size, vocab_size
        "manifest": mv.manifest.to_dict(),
    }


@router.delete("/models/{name:path}", **requires("models:write"))
async def delete_model(name: str, request: Request, force: bool = False) -> dict[str, Any]:
    """Remove a version (or every version of a bare name); 409 while an alias other than
    ``latest`` points at one, unless ``?force=true``."""
    pool = _pool(request)

    def remove(registry: Registry) -> list[ModelVersion]:
        targets = registry.versions(name) or [registry.resolve(name)]
        check_removable(targets, force=force)
        for mv in targets:
            pool.unload(mv.ref)
        return registry.remove(name, force=force)

    removed = await asyncio.to_thread(_with_registry, request, remove)
    audit(request, "model.deleted", name, {"versions": [mv.ref for mv in removed], "force": force})
    return {"deleted": [mv.ref for mv in removed]}


@router.post("/models/{name:path}/load", **requires("models:write"))
async def load_model(name: str, request: Request, body: LoadRequest | None = None) -> dict[str, Any]:
    body = body or LoadRequest()
    entry = await _pool(request).load(name, keep_alive=body.keep_alive, pin=body.pin)
    return {
        "model": entry.name,
        "load_seconds": round(entry.runtime.load_seconds, 3),
        "keep_alive": entry.keep_alive,
        "pinned": entry.is_pinned,
    }


@router.post("/models/{name:path}/unload", **requires("models:write"))
async def unload_model(name: str, request: Request) -> dict[str, Any]:
    unloaded = await asyncio.to_thread(_pool(request).unload, name)
    if unloaded is None:
        raise ModelNotFound(f"{name} is not loaded; see GET /api/ps.", param="name")
    return {"model": unloaded, "unloaded": True}


@router.get("/ps", **requires("models:read"))
async def ps(request: Request) -> dict[str, Any]:
    return {"models": _pool(request).ps()}


class _QueueProgress:
    """``ByteProgress`` that forwards throttled progress lines to an asyncio queue."""

    def __init__(self, emit: Callable[[dict[str, Any]], None]):
        self.emit = emit

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
        done, last = 0, 0.0

        def advance(num_bytes: int) -> None:
            nonlocal done, last
            done += num_bytes
            now = time.monotonic()
            if now - last >= PROGRESS_INTERVAL:
                last = now
                self.emit({"status": "pulling", "detail": description, "completed": done, "total": total})

        self.emit({"status": "pulling", "detail": description, "completed": 0, "total": total})
        yield advance
        self.emit({"status": "pulling", "detail": description, "completed": done, "total": total or done})


@router.get("/catalog", **requires("models:read"))
async def catalog(request: Request) -> dict[str, Any]:
    """The models ``POST /api/pull`` knows by name, each with the versions of it already in the store."""
    return {"models": await asyncio.to_thread(_with_registry, request, lambda r: r.catalog())}


@router.post("/pull", response_model=None, **requires("models:write"))
async def pull(body: PullRequest, request: Request) -> Any:
    """Pull a catalog model; with ``stream`` (the default) progress arrives as NDJSON lines."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    def emit(line: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(lines.put_nowait, line)

    def run(registry: Registry) -> dict[str, Any]:
        mv = registry.pull(body.name, _QueueProgress(emit), force=body.force)
        audit(request, "model.pulled", mv.ref, {"name": body.name, "digest": mv.digest})
        return {"status": "success", "model": mv.ref, "digest": mv.digest}

    if not body.stream:
        return await asyncio.to_thread(_with_registry, request, run)

    async def produce() -> None:
        try:
            emit(await asyncio.to_thread(_with_registry, request, run))
        except LLMOSError as exc:
            emit({"status": "error", **exc.to_openai()})
        finally:
            emit(None)  # type: ignore[arg-type]

    if not body.name.startswith(HUB_PREFIX) and find_entry(body.name) is None:  # a 404 before any progress
        names = ", ".join(sorted(load_catalog()))
        raise ModelNotFound(f"{body.name!r} is not in the catalog (available: {names}).", param="name")

    async def ndjson() -> AsyncIterator[str]:
        task = asyncio.create_task(produce())  # a pull in progress finishes even if the client leaves
        _pulls.add(task)
        task.add_done_callback(_pulls.discard)
        while (line := await lines.get()) is not None:
            yield json.dumps(line) + "\n"

    return StreamingResponse(ndjson(), media_type="application/x-ndjson")
