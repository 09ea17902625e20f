"""HTTP routes: thin — parse, hand to ``serving``, shape the response."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from llmos.engine.outputs import Completion
from llmos.engine.sampling_params import SamplingParams
from llmos.errors import ContextOverflow, InvalidRequest, LLMOSError, ModelNotFound
from llmos.runtime.model_runtime import ModelRuntime
from llmos.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from llmos.server.model_pool import Lease, ModelPool
from llmos.server.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    EmbeddingRequest,
    TokenizeRequest,
)
from llmos.server.serving import (
    Generation,
    base,
    chat_logprobs,
    chat_message,
    chat_request,
    completion_choice,
    completion_logprobs,
    completion_params,
    completion_prompts,
    embedding_texts,
    encode_embedding,
    num_prompts,
    sse,
    usage,
)
from llmos.server.tools import ToolPlan

logger = logging.getLogger(__name__)
router = APIRouter()


def _pool(request: Request) -> ModelPool:
    return request.app.state.pool


def _error_event(message: str) -> str:
    return sse(
        {"error": {"message": message, "type": "server_error", "param": None, "code": "generation_failed"}}
    )


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    """Liveness: cheap, never waits on an engine."""
    dead = [r.name for r in _pool(request).runtimes.values() if not r.is_healthy]
    if dead:
        return JSONResponse({"status": "unhealthy", "dead_engines": dead}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    """Readiness: 503 while preloading models or draining, so a load balancer holds traffic."""
    startup, pool = request.app.state.startup, _pool(request)
    loaded = sorted(pool.entries)
    if pool.is_draining:
        return JSONResponse({"status": "draining", "models": loaded}, status_code=503)
    if not startup.done.is_set():
        return JSONResponse({"status": "loading", "models": loaded}, status_code=503)
    if startup.error:
        body = {"status": "failed", "error": startup.error, "models": loaded}
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "ready", "models": loaded})


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus text format; every series is prefixed ``llmos:`` and labelled by model."""
    return Response(request.app.state.metrics.render(), media_type=METRICS_CONTENT_TYPE)


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    pool = _pool(request)
    names = dict.fromkeys(r.name.split(":")[0] for r in pool.runtimes.values())
    try:
        from llmos.registry import Registry

        registry = Registry(pool.settings, recover=False)
        try:
            names.update(dict.fromkeys(v.name for v in registry.list()))
        finally:
            registry.close()
    except Exception:  # the listing of loaded models must work even if the store is unreadable
        logger.exception("cannot list the registry's models")
    return {
        "object": "list",
        "data": [{"id": n, "object": "model", "created": 0, "owned_by": "llmos"} for n in names],
    }


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    listing = await list_models(request)
    for entry in listing["data"]:
        if entry["id"] == model_id:
            return entry
    if model_id in _pool(request).names:
        return {"id": model_id, "object": "model", "created": 0, "owned_by": "llmos"}
    raise ModelNotFound(f"model {model_id!r} not found; see GET /v1/models.", param="model")


@router.post("/tokenize")
async def tokenize(body: TokenizeRequest, request: Request) -> dict[str, Any]:
    runtime: Any = await _pool(request).get(body.model)
    if (body.prompt is None) == (body.messages is None):
        raise InvalidRequest("Give exactly one of prompt or messages.", param="prompt")
    if body.messages is not None:
        messages = [m.to_template() for m in body.messages]
        tokens = runtime.tokenizer.encode_chat(messages, add_generation_prompt=body.add_generation_prompt)
    else:
        tokens = runtime.tokenizer.encode(body.prompt or "", add_special_tokens=body.add_special_tokens)
    return {"tokens": tokens, "count": len(tokens), "max_model_len": runtime.max_model_len}


@router.post("/detokenize")
async def detokenize(body: DetokenizeRequest, request: Request) -> dict[str, Any]:
    runtime: Any = await _pool(request).get(body.model)
    vocab_size = runtime.tokenizer.vocab_size
    if any(not 0 <= t < vocab_size for t in body.tokens):
        raise InvalidRequest(f"Token ids must be in [0, {vocab_size}).", param="tokens")
    return {"prompt": runtime.tokenizer.decode(body.tokens, skip_special_tokens=False)}


async def _lease(request: Request, model: str, num_requests: int) -> Lease:
    return await _pool(request).lease(model, num_requests)


def _generation(
    request: Request, lease: Lease, prompt_ids: list[int], params: list[SamplingParams]
) -> Generation:
    """A Generation holding ``lease``; on a 400 (say, context overflow) the lease is released."""
    try:
        return Generation(
            lease, prompt_ids, params, request.app.state.settings.request_timeout, request.app.state.metrics
        )
    except LLMOSError as exc:
        lease.release()
        reason = "context_length" if isinstance(exc, ContextOverflow) else "invalid_request"
        request.app.state.metrics.reject(lease.runtime.name, reason)
        raise
    except BaseException:
        lease.release()
        raise


async def _until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _collect(request: Request, generations: list[Generation]) -> list[list[Completion]] | None:
    """Run the generations to the end, or abort them all if the client goes away (then None)."""

    async def run_all() -> list[list[Completion]]:
        return list(await asyncio.gather(*(g.collect() for g in generations)))

    work = asyncio.ensure_future(run_all())
    watch = asyncio.ensure_future(_until_disconnected(request))
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not work.done():
            work.cancel()
            logger.info("client disconnected: aborted its request")
    if work.cancelled():
        for g in generations:
            g.lease.release()
        return None
    return work.result()


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    lease = await _lease(request, body.model, body.n)
    try:
        runtime: ModelRuntime = lease.runtime  # type: ignore[assignment]
        prompt_ids, plan, params = chat_request(runtime, body)
    except BaseException:
        lease.release()
        raise
    generation = _generation(request, lease, prompt_ids, params)
    if body.stream:
        return _stream(_chat_chunks(runtime, body, generation, plan), generation)
    results = await _collect(request, [generation])
    if results is None:
        return Response(status_code=499)
    completions = results[0]
    _raise_failed(completions)
    choices = []
    for i, c in enumerate(completions):
        message, finish_reason = chat_message(c.text, c.finish_reason, plan)
        logprobs = chat_logprobs(runtime.tokenizer, c.logprobs)
        choices.append({"index": i, "message": message, "logprobs": logprobs, "finish_reason": finish_reason})
    return JSONResponse(
        {**base("chat.completion", body.model), "choices": choices, "usage": usage(completions)}
    )


async def _chat_chunks(
    runtime: ModelRuntime, body: ChatCompletionRequest, generation: Generation, plan: ToolPlan
) -> AsyncIterator[str]:
    """SSE chunks; with tools in play each choice's text is held back until it is complete,
    then sent as one delta of tool calls (or of content, when the model called nothing)."""
    head = base("chat.completion.chunk", body.model)
    finals: dict[int, Completion] = {}
    held: dict[int, list[str]] = {i: [] for i in range(body.n)}
    for i in range(body.n):
        first = {
            "index": i,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }
        yield sse({**head, "choices": [first]})
    async for index, out in generation.stream():
        if out.finish_reason == "error":
            yield _error_event(out.error or "generation failed")
            yield sse("[DONE]")
            return
        delta: dict[str, Any] = {"content": out.text} if out.text else {}
        finish_reason = out.finish_reason
        if plan.is_active:
            held[index].append(out.text)
            delta = {}
            if out.finished:
                message, finish_reason = chat_message("".join(held[index]), out.finish_reason, plan)
                delta = {k: v for k, v in message.items() if k != "role" and v is not None}
                calls: list[dict[str, Any]] = delta.get("tool_calls", [])
                for n, call in enumerate(calls):
                    call["index"] = n
        choice = {
            "index": index,
            "delta": delta,
            "logprobs": chat_logprobs(runtime.tokenizer, out.logprobs),
            "finish_reason": finish_reason,
        }
        yield sse({**head, "choices": [choice]})
        if out.finished:
            finals[index] = Completion.merge([out])
    if body.stream_options and body.stream_options.include_usage:
        yield sse({**head, "choices": [], "usage": usage(list(finals.values()))})
    yield sse("[DONE]")


@router.post("/v1/completions", response_model=None)
async def completions(body: CompletionRequest, request: Request) -> Response:
    lease = await _lease(request, body.model, body.n * num_prompts(body))
    try:
        runtime: ModelRuntime = lease.runtime  # type: ignore[assignment]
        prompts = completion_prompts(runtime, body)
        params = completion_params(body)
    except BaseException:
        lease.release()
        raise
    leases = lease.split(len(prompts))
    generations: list[Generation] = []
    for part, prompt in zip(leases, prompts):
        try:
            generations.append(_generation(request, part, prompt, params))
        except BaseException:
            for g_lease in leases:
                g_lease.release()
            raise
    if body.stream:
        return _stream(_completion_chunks(runtime, body, generations), *generations)
    results = await _collect(request, generations)
    if results is None:
        return Response(status_code=499)
    choices: list[dict[str, Any]] = []
    for prompt, completions_ in zip(prompts, results):
        _raise_failed(completions_)
        for c in completions_:
            choices.append(completion_choice(runtime.tokenizer, body, prompt, c, len(choices)))
    total = [usage(r) for r in results]
    summed = {k: sum(u[k] for u in total) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
    return JSONResponse({**base("text_completion", body.model), "choices": choices, "usage": summed})


async def _completion_chunks(
    runtime: ModelRuntime, body: CompletionRequest, generations: list[Generation]
) -> AsyncIterator[str]:
    head = base("text_completion", body.model)
    prompt_tokens = completion_tokens = 0
    for g_index, generation in enumerate(generations):
        if body.echo:
            for i in range(body.n):
                text = runtime.tokenizer.decode(generation.prompt_ids)
                choice = {
                    "index": g_index * body.n + i,
                    "text": text,
                    "logprobs": None,
                    "finish_reason": None,
                }
                yield sse({**head, "choices": [choice]})
        prompt_tokens += len(generation.prompt_ids)
        async for index, out in generation.stream():
            if out.finish_reason == "error":
                yield _error_event(out.error or "generation failed")
                yield sse("[DONE]")
                return
            choice = {
                "index": g_index * body.n + index,
                "text": out.text,
                "logprobs": completion_logprobs(runtime.tokenizer, out.logprobs),
                "finish_reason": out.finish_reason,
            }
            yield sse({**head, "choices": [choice]})
            if out.finished:
                completion_tokens += out.num_output_tokens
    if body.stream_options and body.stream_options.include_usage:
        total = prompt_tokens + completion_tokens
        counts = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": total,
        }
        yield sse({**head, "choices": [], "usage": counts})
    yield sse("[DONE]")


def _stream(chunks: AsyncIterator[str], *generations: Generation) -> StreamingResponse:
    """An SSE response; errors after the first byte become an error event, then [DONE]. The
    leases are released in the background task too, in case the body never started."""

    async def guarded() -> AsyncIterator[str]:
        try:
            async for chunk in chunks:
                yield chunk
        except LLMOSError as exc:
            yield sse(exc.to_openai())
            yield sse("[DONE]")

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

    def release_all() -> None:
        for g in generations:
            g.lease.release()

    release = BackgroundTask(release_all)
    return StreamingResponse(guarded(), media_type="text/event-stream", headers=headers, background=release)


def _raise_failed(completions: list[Completion]) -> None:
    for c in completions:
        if c.finish_reason == "error":
            raise LLMOSError(f"Generation failed: {c.error}")


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingRequest, request: Request) -> dict[str, Any]:
    runtime: Any = await _pool(request).get(body.model, kind="embedding")
    if body.dimensions is not None and body.dimensions != runtime.dimensions:
        raise InvalidRequest(
            f"{runtime.name} makes {runtime.dimensions}-dimensional embeddings; "
            f"dimensions={body.dimensions} is not supported.",
            param="dimensions",
        )
    texts = embedding_texts(runtime, body.input)
    result = await asyncio.to_thread(runtime.embed, texts, truncate=body.truncate)
    data = [
        {"object": "embedding", "index": i, "embedding": encode_embedding(v, body.encoding_format)}
        for i, v in enumerate(result.vectors)
    ]
    tokens = {"prompt_tokens": result.num_tokens, "total_tokens": result.num_tokens}
    return {"object": "list", "data": data, "model": body.model, "usage": tokens}


@router.get("/version")
async def version() -> dict[str, Any]:
    from llmos import __version__

    return {"version": __version__, "time": time.time()}
