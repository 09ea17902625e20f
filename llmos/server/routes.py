"""HTTP routes: thin — parse, hand to ``serving``, shape the response."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from llmos.engine.outputs import Completion
from llmos.errors import InvalidRequest, LLMOSError, ModelNotFound
from llmos.runtime import ModelRuntime
from llmos.server.model_pool import ModelPool
from llmos.server.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    TokenizeRequest,
)
from llmos.server.serving import (
    Generation,
    base,
    chat_logprobs,
    chat_prompt,
    completion_logprobs,
    completion_prompts,
    sse,
    usage,
)

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
    dead = [r.name for r in _pool(request).runtimes.values() if not r.engine.is_healthy]
    if dead:
        return JSONResponse({"status": "unhealthy", "dead_engines": dead}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    pool = _pool(request)
    names = dict.fromkeys(r.name.split(":")[0] for r in pool.runtimes.values())
    try:
        from llmos.registry import Registry

        names.update(dict.fromkeys(v.name for v in Registry(pool.settings).list()))
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
    runtime = await _pool(request).get(body.model)
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
    runtime = await _pool(request).get(body.model)
    vocab_size = runtime.tokenizer.vocab_size
    if any(not 0 <= t < vocab_size for t in body.tokens):
        raise InvalidRequest(f"Token ids must be in [0, {vocab_size}).", param="tokens")
    return {"prompt": runtime.tokenizer.decode(body.tokens, skip_special_tokens=False)}


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> JSONResponse | StreamingResponse:
    runtime = await _pool(request).get(body.model)
    max_tokens = body.max_completion_tokens or body.max_tokens
    num_logprobs = (body.top_logprobs or 0) if body.logprobs else None
    generation = Generation(runtime, chat_prompt(runtime, body), body, max_tokens, num_logprobs)
    if body.stream:
        return _stream(_chat_chunks(runtime, body, generation))
    completions = await generation.collect()
    _raise_failed(completions)
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": c.text},
            "logprobs": chat_logprobs(runtime.tokenizer, c.logprobs),
            "finish_reason": c.finish_reason,
        }
        for i, c in enumerate(completions)
    ]
    return JSONResponse(
        {**base("chat.completion", body.model), "choices": choices, "usage": usage(completions)}
    )


async def _chat_chunks(
    runtime: ModelRuntime, body: ChatCompletionRequest, generation: Generation
) -> AsyncIterator[str]:
    head = base("chat.completion.chunk", body.model)
    finals: dict[int, Completion] = {}
    for i in range(body.n):
        delta = {"role": "assistant", "content": ""}
        yield sse(
            {**head, "choices": [{"index": i, "delta": delta, "logprobs": None, "finish_reason": None}]}
        )
    async for index, out in generation.stream():
        if out.finish_reason == "error":
            yield _error_event(out.error or "generation failed")
            yield sse("[DONE]")
            return
        choice = {
            "index": index,
            "delta": {"content": out.text} if out.text else {},
            "logprobs": chat_logprobs(runtime.tokenizer, out.logprobs),
            "finish_reason": out.finish_reason,
        }
        yield sse({**head, "choices": [choice]})
        if out.finished:
            finals[index] = Completion.merge([out])
    if body.stream_options and body.stream_options.include_usage:
        yield sse({**head, "choices": [], "usage": usage(list(finals.values()))})
    yield sse("[DONE]")


@router.post("/v1/completions", response_model=None)
async def completions(body: CompletionRequest, request: Request) -> JSONResponse | StreamingResponse:
    runtime = await _pool(request).get(body.model)
    prompts = completion_prompts(runtime, body)
    generations = [Generation(runtime, p, body, body.max_tokens, body.logprobs) for p in prompts]
    if body.stream:
        return _stream(_completion_chunks(runtime, body, generations))
    choices: list[dict[str, Any]] = []
    all_completions: list[list[Completion]] = []
    for p, generation in zip(prompts, generations):
        results = await generation.collect()
        _raise_failed(results)
        prefix = runtime.tokenizer.decode(p) if body.echo else ""
        for c in results:
            choices.append(
                {
                    "index": len(choices),
                    "text": prefix + c.text,
                    "logprobs": completion_logprobs(runtime.tokenizer, c.logprobs, len(prefix)),
                    "finish_reason": c.finish_reason,
                }
            )
        all_completions.append(results)
    total = [usage(r) for r in all_completions]
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


def _stream(chunks: AsyncIterator[str]) -> StreamingResponse:
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(chunks, media_type="text/event-stream", headers=headers)


def _raise_failed(completions: list[Completion]) -> None:
    for c in completions:
        if c.finish_reason == "error":
            raise LLMOSError(f"Generation failed: {c.error}")


@router.get("/version")
async def version() -> dict[str, Any]:
    from llmos import __version__

    return {"version": __version__, "time": time.time()}
