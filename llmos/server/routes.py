"""HTTP routes of the OpenAI-compatible API, vLLM's tokenizer endpoints, health and metrics: each
validates its input, calls one ``OpenAIServing`` method and returns its answer — a response model
(so ``/openapi.json`` describes it), an SSE stream, or 499 when the client left first."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable
from contextlib import suppress
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from llmos.monitor.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from llmos.server.auth import check_model, requires
from llmos.server.model_pool import ModelPool
from llmos.server.protocol import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionRequest,
    CompletionResponse,
    DetokenizeRequest,
    DetokenizeResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    ErrorResponse,
    ModelCard,
    ModelList,
    TokenizeRequest,
    TokenizeResponse,
    TokenizerInfo,
)
from llmos.server.serving import OpenAIServing, start_stream

logger = logging.getLogger(__name__)
T = TypeVar("T")

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in [
        (400, "Invalid request (OpenAI error envelope)"),
        (404, "No such model"),
        (429, "The model's queue is full; retry after Retry-After seconds"),
        (500, "Generation failed"),
        (503, "Loading, draining, or no room for the model"),
    ]
}
STREAM: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE chunks with stream=true"}
}
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

router = APIRouter(responses=ERRORS)


def _pool(request: Request) -> ModelPool:
    return request.app.state.pool


def _serving(request: Request) -> OpenAIServing:
    return request.app.state.serving


@router.get("/health", **requires("public"))
async def health(request: Request) -> JSONResponse:
    """Liveness: cheap, never waits on an engine."""
    dead = [r.name for r in _pool(request).runtimes.values() if not r.is_healthy]
    if dead:
        return JSONResponse({"status": "unhealthy", "dead_engines": dead}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/ready", **requires("metrics"))
async def ready(request: Request) -> JSONResponse:
    """Readiness: 503 while preloading models, draining, or holding a dead engine (until the pool
    drops it, within a second; the next request then reloads it), so a load balancer holds traffic."""
    startup, pool = request.app.state.startup, _pool(request)
    loaded = sorted(pool.entries)
    if pool.is_draining:
        return JSONResponse({"status": "draining", "models": loaded}, status_code=503)
    if not startup.done.is_set():
        return JSONResponse({"status": "loading", "models": loaded}, status_code=503)
    if startup.error:
        body = {"status": "failed", "error": startup.error, "models": loaded}
        return JSONResponse(body, status_code=503)
    dead = pool.dead()
    if dead:
        body = {"status": "engine_dead", "dead_engines": dead, "models": loaded}
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "ready", "models": loaded})


@router.get("/metrics", **requires("metrics"))
async def metrics(request: Request) -> Response:
    """Prometheus text format; every series is prefixed ``llmos:`` and labelled by model."""
    return Response(request.app.state.metrics.render(), media_type=METRICS_CONTENT_TYPE)


@router.get("/v1/models", response_model=ModelList, **requires("models:read"))
async def list_models(request: Request) -> ModelList:
    return await _serving(request).models()


@router.get("/v1/models/{model_id:path}", response_model=ModelCard, **requires("models:read"))
async def get_model(model_id: str, request: Request) -> ModelCard:
    return await _serving(request).model(model_id)


@router.get("/tokenizer_info", response_model=TokenizerInfo, **requires("inference"))
async def tokenizer_info(request: Request, model: str | None = None) -> TokenizerInfo:
    """vLLM's tokenizer description, for clients that tokenize as the server does (lm-eval's
    ``local-completions`` asks it without a model: then the server's first model answers)."""
    return await _serving(request).tokenizer_info(model)


@router.post("/tokenize", response_model=TokenizeResponse, **requires("inference"))
async def tokenize(body: TokenizeRequest, request: Request) -> TokenizeResponse:
    return await _serving(request).tokenize(body)


@router.post("/detokenize", response_model=DetokenizeResponse, **requires("inference"))
async def detokenize(body: DetokenizeRequest, request: Request) -> DetokenizeResponse:
    return await _serving(request).detokenize(body)


@router.post(
    "/v1/chat/completions", response_model=ChatCompletionResponse, responses=STREAM, **requires("inference")
)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    check_model(request, body.model)
    if body.stream:
        return await _event_stream(_serving(request).chat_stream(body))
    return await _unless_disconnected(request, _serving(request).chat(body))


@router.post("/v1/completions", response_model=CompletionResponse, responses=STREAM, **requires("inference"))
async def completions(body: CompletionRequest, request: Request) -> Any:
    check_model(request, body.model)
    if body.stream:
        return await _event_stream(_serving(request).complete_stream(body))
    return await _unless_disconnected(request, _serving(request).complete(body))


@router.post("/v1/embeddings", response_model=EmbeddingResponse, **requires("inference"))
async def embeddings(body: EmbeddingRequest, request: Request) -> EmbeddingResponse:
    check_model(request, body.model)
    return await _serving(request).embed(body)


@router.get("/version", **requires("any"))
async def version() -> dict[str, Any]:
    from llmos import __version__

    return {"version": __version__, "time": time.time()}


async def _event_stream(events: AsyncGenerator[str, None]) -> StreamingResponse:
    """The SSE response for ``events``; a failure before its first chunk is an HTTP error instead.
    Closing ``events`` afterwards releases the lease even if the body was never sent."""
    chunks = await start_stream(events)
    return StreamingResponse(
        chunks, media_type="text/event-stream", headers=SSE_HEADERS, background=BackgroundTask(events.aclose)
    )


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T | Response:
    """``work``'s answer, or 499 if the client goes away first: ``work`` is then cancelled, which
    aborts its engine requests and releases its lease."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_until_disconnected(request))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
    if not task.done() or task.cancelled():
        logger.info("client disconnected: aborted its request")
        with suppress(asyncio.CancelledError):
            await task
        return Response(status_code=499)
    return task.result()


async def _until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
