"""OpenAI ⇄ engine: the work of each OpenAI-compatible endpoint, one ``OpenAIServing`` method each —
hold a lease on the model, run the request, shape the answer as a response model or as SSE chunks
(built here; the routes only send them). Failures are ``llmos.errors`` classes, turned into HTTP
answers in one place (``app.py``) or, once a stream has started, into an SSE error event."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from llmos.engine.outputs import Completion
from llmos.engine.sampling_params import SamplingParams
from llmos.errors import InvalidRequest, LLMOSError, ModelNotFound
from llmos.monitor.metrics import ServerMetrics
from llmos.monitor.requests import current_request
from llmos.runtime.model_runtime import ModelRuntime
from llmos.server.access import AccessControl
from llmos.server.generation import Generation
from llmos.server.guarded import RequestGuard, admit, keep_texts
from llmos.server.logprobs import chat_logprobs, completion_logprobs
from llmos.server.middleware import stamped
from llmos.server.model_pool import Lease, ModelPool, runtime_kind
from llmos.server.prompts import (
    chat_request,
    completion_params,
    completion_prompts,
    embedding_texts,
    num_prompts,
)
from llmos.server.protocol import (
    AssistantMessage,
    ChatCompletionChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    DetokenizeRequest,
    DetokenizeResponse,
    Embedding,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
    ModelCard,
    ModelList,
    TokenizeRequest,
    TokenizeResponse,
    TokenizerInfo,
    ToolCall,
    Usage,
)
from llmos.server.tools import ToolPlan, parse_tool_calls

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class OpenAIServing:
    """The OpenAI endpoints over a model pool. ``preload``: the server's ``--model`` list, whose
    first entry answers the tokenizer endpoints when a request names no model."""

    pool: ModelPool
    metrics: ServerMetrics
    request_timeout: float
    preload: list[str] = field(default_factory=list)
    access: AccessControl | None = None
    guardrails: Any = None  # a GuardrailConfig, or None: no rules
    log_prompts: bool = False

    def _guard(self, model: str) -> RequestGuard | None:
        return RequestGuard.of(self.guardrails, model, self.metrics, self.access, self._classifier_runtime)

    def _classifier_runtime(self, name: str) -> Any:
        return self.pool.load_sync(name).runtime  # runs on the guard's worker thread

    # --- chat and completions ---------------------------------------------------------------
    async def chat(self, body: ChatCompletionRequest) -> ChatCompletionResponse:
        guard = self._guard(body.model)
        async with self.pool.lease(body.model, body.n) as lease:
            runtime = _generator(lease)
            body = body.with_defaults(runtime.sampling_defaults.to_dict())
            body = await asyncio.to_thread(guard.chat, body) if guard else body
            prompt_ids, plan, params = chat_request(runtime, body)
            self._admit(runtime, body.model, [prompt_ids], params, "chat", body.temperature)
            if self.log_prompts:  # joining the messages costs a little: only when it is kept
                keep_texts(True, prompt=_chat_text(body))
            completions = await self._generation(runtime, prompt_ids, params).collect()
        choices = []
        for i, c in enumerate(completions):
            text = await asyncio.to_thread(guard.output, c.text) if guard else c.text
            keep_texts(self.log_prompts, output=text)
            message, finish_reason = _chat_message(text, c.finish_reason, plan)
            logprobs = chat_logprobs(runtime.tokenizer, c.logprobs)
            choices.append(
                ChatCompletionChoice(index=i, message=message, logprobs=logprobs, finish_reason=finish_reason)
            )
        return ChatCompletionResponse(
            id=_request_id("chat"),
            created=int(time.time()),
            model=body.model,
            choices=choices,
            usage=usage(completions),
        )

    async def chat_stream(self, body: ChatCompletionRequest) -> AsyncGenerator[str, None]:
        """SSE chunks; with tools in play each choice's text is held back until it is complete,
        then sent as one delta of tool calls (or of content, when the model called nothing)."""
        guard = self._guard(body.model)
        async with self.pool.lease(body.model, body.n) as lease:
            runtime = _generator(lease)
            body = body.with_defaults(runtime.sampling_defaults.to_dict())
            body = await asyncio.to_thread(guard.chat, body) if guard else body
            prompt_ids, plan, params = chat_request(runtime, body)
            self._admit(runtime, body.model, [prompt_ids], params, "chat", body.temperature)
            if self.log_prompts:  # joining the messages costs a little: only when it is kept
                keep_texts(True, prompt=_chat_text(body))
            generation = self._generation(runtime, prompt_ids, params)
            async for chunk in _chat_chunks(runtime, body, generation, plan, guard, self.log_prompts):
                yield chunk

    async def complete(self, body: CompletionRequest) -> CompletionResponse:
        guard = self._guard(body.model)
        async with self.pool.lease(body.model, body.n * num_prompts(body)) as lease:
            runtime = _generator(lease)
            body = await asyncio.to_thread(guard.completion, body) if guard else body
            prompts = completion_prompts(runtime, body)
            params = completion_params(body.with_defaults(runtime.sampling_defaults.to_dict()))
            self._admit(runtime, body.model, prompts, params, "text_completion", body.temperature)
            self._keep_completion_prompt(runtime, body, prompts)
            generations = [self._generation(runtime, prompt, params) for prompt in prompts]
            results = await _collect_all(generations)
        choices: list[CompletionChoice] = []
        for prompt, completions in zip(prompts, results):
            for c in completions:
                if guard:
                    c.text = await asyncio.to_thread(guard.output, c.text)
                keep_texts(self.log_prompts, output=c.text)
                choices.append(completion_choice(runtime, body, prompt, c, len(choices)))
        counts = [usage(r) for r in results]  # after the choices: score-only ones count no output
        return CompletionResponse(
            id=_request_id("completion"),
            created=int(time.time()),
            model=body.model,
            choices=choices,
            usage=Usage.of(sum(u.prompt_tokens for u in counts), sum(u.completion_tokens for u in counts)),
        )

    async def complete_stream(self, body: CompletionRequest) -> AsyncGenerator[str, None]:
        guard = self._guard(body.model)
        async with self.pool.lease(body.model, body.n * num_prompts(body)) as lease:
            runtime = _generator(lease)
            body = await asyncio.to_thread(guard.completion, body) if guard else body
            prompts = completion_prompts(runtime, body)
            params = completion_params(body.with_defaults(runtime.sampling_defaults.to_dict()))
            self._admit(runtime, body.model, prompts, params, "text_completion", body.temperature)
            self._keep_completion_prompt(runtime, body, prompts)
            generations = [self._generation(runtime, prompt, params) for prompt in prompts]
            async for chunk in _completion_chunks(runtime, body, generations, guard, self.log_prompts):
                yield chunk

    def _admit(
        self,
        runtime: ModelRuntime,
        model: str,
        prompts: list[list[int]],
        params: list[SamplingParams],
        operation: str,
        temperature: float | None,
    ) -> None:
        """Record what the request is and reserve its worst case (every prompt's choices) against
        the key's limits."""
        record = current_request()
        if record is not None:
            record.operation, record.model = operation, model
            record.max_tokens = params[0].max_tokens if params else None
            record.temperature = temperature
        admit(self.access, model, prompts, params, runtime.max_model_len)

    def _keep_completion_prompt(
        self, runtime: ModelRuntime, body: CompletionRequest, prompts: list[list[int]]
    ) -> None:
        if self.log_prompts:
            given = body.prompt
            text = given if isinstance(given, str) else "\n".join(p for p in given if isinstance(p, str))
            keep_texts(True, prompt=text or runtime.tokenizer.decode(prompts[0]))

    def _generation(
        self, runtime: ModelRuntime, prompt_ids: list[int], params: list[SamplingParams]
    ) -> Generation:
        return Generation(runtime, prompt_ids, params, self.request_timeout, self.metrics)

    # --- embeddings, models, tokenizer ------------------------------------------------------
    async def embed(self, body: EmbeddingRequest) -> EmbeddingResponse:
        runtime: Any = await self.pool.get(body.model, kind="embedding")
        if body.dimensions is not None and body.dimensions != runtime.dimensions:
            raise InvalidRequest(
                f"{runtime.name} makes {runtime.dimensions}-dimensional embeddings; "
                f"dimensions={body.dimensions} is not supported.",
                param="dimensions",
            )
        texts = embedding_texts(runtime, body.input)
        guard = self._guard(body.model)
        texts = await asyncio.to_thread(guard.texts, texts) if guard else texts
        record = current_request()
        if record is not None:
            record.operation, record.model = "embeddings", body.model
        if self.access is not None:  # a text has at most a token per character, plus two specials
            self.access.admit(body.model, sum(len(t) + 2 for t in texts), 0)
        result = await asyncio.to_thread(runtime.embed, texts, truncate=body.truncate)
        self.metrics.prompt_tokens.labels(runtime.name).inc(result.num_tokens)
        if record is not None:
            record.add_generation(prompt_tokens=result.num_tokens, completion_tokens=0)
        data = [
            Embedding(index=i, embedding=encode_embedding(v, body.encoding_format))
            for i, v in enumerate(result.vectors)
        ]
        tokens = EmbeddingUsage(prompt_tokens=result.num_tokens, total_tokens=result.num_tokens)
        return EmbeddingResponse(data=data, model=body.model, usage=tokens)

    async def models(self) -> ModelList:
        """The loaded models and every model in the registry, by bare name."""
        names = dict.fromkeys(r.name.split(":")[0] for r in self.pool.runtimes.values())
        names.update(dict.fromkeys(await asyncio.to_thread(self._registry_names)))
        return ModelList(data=[ModelCard(id=n) for n in names])

    def _registry_names(self) -> list[str]:
        try:
            from llmos.registry import Registry

            registry = Registry(self.pool.settings, recover=False)
            try:
                return [v.name for v in registry.list()]
            finally:
                registry.close()
        except Exception:  # the listing of loaded models must work even if the store is unreadable
            logger.exception("cannot list the registry's models")
            return []

    async def model(self, model_id: str) -> ModelCard:
        """One entry of ``models()``, or a loaded model under any name it was asked by."""
        for card in (await self.models()).data:
            if card.id == model_id:
                return card
        if model_id in self.pool.names:
            return ModelCard(id=model_id)
        raise ModelNotFound(f"model {model_id!r} not found; see GET /v1/models.", param="model")

    async def tokenize(self, body: TokenizeRequest) -> TokenizeResponse:
        if (body.prompt is None) == (body.messages is None):
            raise InvalidRequest("Give exactly one of prompt or messages.", param="prompt")
        runtime = await self._text_runtime(body.model)
        if body.messages is not None:
            messages = [m.to_template() for m in body.messages]
            tokens = runtime.tokenizer.encode_chat(messages, add_generation_prompt=body.add_generation_prompt)
        else:
            tokens = runtime.tokenizer.encode(body.prompt or "", add_special_tokens=body.add_special_tokens)
        return TokenizeResponse(tokens=tokens, count=len(tokens), max_model_len=runtime.max_model_len)

    async def detokenize(self, body: DetokenizeRequest) -> DetokenizeResponse:
        runtime = await self._text_runtime(body.model)
        vocab_size = runtime.tokenizer.vocab_size
        if any(not 0 <= t < vocab_size for t in body.tokens):
            raise InvalidRequest(f"Token ids must be in [0, {vocab_size}).", param="tokens")
        return DetokenizeResponse(prompt=runtime.tokenizer.decode(body.tokens, skip_special_tokens=False))

    async def tokenizer_info(self, model: str | None) -> TokenizerInfo:
        runtime = await self._text_runtime(model)
        hf = runtime.tokenizer.hf
        return TokenizerInfo(
            tokenizer_class=type(hf).__name__,
            eos_token=hf.eos_token,
            eos_token_id=hf.eos_token_id,
            bos_token=hf.bos_token,
            bos_token_id=hf.bos_token_id,
            pad_token=hf.pad_token,
            pad_token_id=hf.pad_token_id,
            chat_template=runtime.tokenizer.chat_template,
            model_max_length=runtime.max_model_len,
        )

    async def _text_runtime(self, model: str | None) -> ModelRuntime:
        return cast(ModelRuntime, await self.pool.get(model or self.default_model()))

    def default_model(self) -> str:
        """The model a tokenizer request that names none means (vLLM serves one model): the first
        preloaded, else the first text generation model loaded. Raises ModelNotFound if none."""
        if self.preload:
            return self.preload[0]
        loaded = (name for name, e in self.pool.entries.items() if runtime_kind(e.runtime) == "generate")
        first = next(loaded, None)
        if first is None:
            raise ModelNotFound("No model is loaded; name one with `model` (or ?model=).", param="model")
        return first


def _chat_text(body: ChatCompletionRequest) -> str:
    """The messages as one text (for the access log, with LLMOS_LOG_PROMPTS=1)."""
    return "\n".join(f"{m.role}: {m.to_template()['content']}" for m in body.messages)


def _generator(lease: Lease) -> ModelRuntime:
    return cast(ModelRuntime, lease.runtime)  # the lease was taken with kind="generate"


async def _collect_all(generations: list[Generation]) -> list[list[Completion]]:
    """Every generation's completions; the first failure cancels the rest, so none outlives the lease."""
    tasks = [asyncio.ensure_future(g.collect()) for g in generations]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()


# --- response shapes --------------------------------------------------------------------------


def usage(completions: list[Completion]) -> Usage:
    prompt = completions[0].num_prompt_tokens if completions else 0
    return Usage.of(prompt, sum(c.num_output_tokens for c in completions))


def _request_id(kind: str) -> str:
    return f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"


def _chat_message(
    text: str, finish_reason: str | None, plan: ToolPlan
) -> tuple[AssistantMessage, str | None]:
    """The assistant message for ``text`` (tool calls parsed out) and the finish reason to report."""
    content, calls = parse_tool_calls(text, plan)
    if calls:
        return AssistantMessage(content=content, tool_calls=[ToolCall(**c) for c in calls]), "tool_calls"
    return AssistantMessage(content=content), finish_reason


def completion_choice(
    runtime: ModelRuntime, body: CompletionRequest, prompt_ids: list[int], c: Completion, index: int
) -> CompletionChoice:
    """One choice; ``max_tokens=0`` (score the prompt) drops the token generated to get there."""
    tokenizer = runtime.tokenizer
    score_only = body.max_tokens == 0
    prefix = tokenizer.decode(prompt_ids) if body.echo else ""
    logprobs = None if score_only and body.logprobs is not None else c.logprobs
    prompt = (prompt_ids, c.prompt_logprobs) if body.echo and c.prompt_logprobs is not None else None
    if score_only:
        c.num_output_tokens = 0
    return CompletionChoice(
        index=index,
        text=prefix + ("" if score_only else c.text),
        logprobs=None if body.logprobs is None else completion_logprobs(tokenizer, logprobs, 0, prompt),
        finish_reason="length" if score_only else c.finish_reason,
    )


def encode_embedding(vector: list[float], encoding_format: str) -> list[float] | str:
    """OpenAI's encodings: a float list, or base64 of little-endian float32 bytes."""
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return vector


# --- server-sent events -----------------------------------------------------------------------


def sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


async def start_stream(events: AsyncGenerator[str, None]) -> AsyncIterator[str]:
    """Run ``events`` to its first chunk here, so a failure before any byte is sent raises (and
    becomes an HTTP error status); returns the whole stream, in which a later failure becomes an
    OpenAI error event and ``[DONE]``. A stream never sent must still have ``events`` closed."""
    first = await anext(events)

    async def stream() -> AsyncIterator[str]:
        yield first
        try:
            async for chunk in events:
                yield chunk
        except LLMOSError as exc:
            yield sse(stamped(exc.to_openai()))
            yield sse("[DONE]")
        finally:
            await events.aclose()  # a client that left mid-stream: abort, release the lease

    return stream()


def _head(kind: str, model: str) -> dict[str, Any]:
    """The fields every chunk of one stream repeats."""
    name = "chat.completion.chunk" if kind == "chat" else "text_completion"
    return {"id": _request_id(kind), "object": name, "created": int(time.time()), "model": model}


async def _chat_chunks(
    runtime: ModelRuntime,
    body: ChatCompletionRequest,
    generation: Generation,
    plan: ToolPlan,
    guard: RequestGuard | None = None,
    log_prompts: bool = False,
) -> AsyncIterator[str]:
    head = _head("chat", body.model)
    finals: dict[int, Completion] = {}
    held: dict[int, list[str]] = {i: [] for i in range(body.n)}
    # with tools the whole text is checked at the end; otherwise through each choice's window
    streams = {i: guard.stream() for i in range(body.n)} if guard and not plan.is_active else {}
    for i in range(body.n):
        role = {"role": "assistant", "content": ""}
        yield sse({**head, "choices": [{"index": i, "delta": role, "logprobs": None, "finish_reason": None}]})
    async for index, out in generation.stream():
        text = out.text
        if index in streams:
            text = streams[index].feed(text)
            if out.finished:
                text += streams[index].finish()
        keep_texts(log_prompts, output=text)
        delta: dict[str, Any] = {"content": text} if text else {}
        finish_reason = out.finish_reason
        if plan.is_active:
            held[index].append(out.text)
            delta = {}
            if out.finished:
                whole = "".join(held[index])
                whole = guard.output(whole) if guard else whole
                message, finish_reason = _chat_message(whole, out.finish_reason, plan)
                delta = message.model_dump(exclude={"role"}, exclude_none=True)
                for n, call in enumerate(delta.get("tool_calls", [])):
                    call["index"] = n
        logprobs = chat_logprobs(runtime.tokenizer, out.logprobs)
        choice = {
            "index": index,
            "delta": delta,
            "logprobs": None if logprobs is None else logprobs.model_dump(),
            "finish_reason": finish_reason,
        }
        yield sse({**head, "choices": [choice]})
        if out.finished:
            finals[index] = Completion.merge([out])
    if body.stream_options and body.stream_options.include_usage:
        yield sse({**head, "choices": [], "usage": usage(list(finals.values())).model_dump()})
    yield sse("[DONE]")


async def _completion_chunks(
    runtime: ModelRuntime,
    body: CompletionRequest,
    generations: list[Generation],
    guard: RequestGuard | None = None,
    log_prompts: bool = False,
) -> AsyncIterator[str]:
    head = _head("completion", body.model)
    prompt_tokens = completion_tokens = 0
    for g_index, generation in enumerate(generations):
        if body.echo:
            text = runtime.tokenizer.decode(generation.prompt_ids)
            for i in range(body.n):
                echo = {"index": g_index * body.n + i, "text": text, "logprobs": None, "finish_reason": None}
                yield sse({**head, "choices": [echo]})
        prompt_tokens += len(generation.prompt_ids)
        streams = {i: guard.stream() for i in range(body.n)} if guard else {}
        async for index, out in generation.stream():
            text = out.text
            if streams:
                text = streams[index].feed(text)
                if out.finished:
                    text += streams[index].finish()
            keep_texts(log_prompts, output=text)
            logprobs = completion_logprobs(runtime.tokenizer, out.logprobs)
            choice = {
                "index": g_index * body.n + index,
                "text": text,
                "logprobs": None if logprobs is None else logprobs.model_dump(),
                "finish_reason": out.finish_reason,
            }
            yield sse({**head, "choices": [choice]})
            if out.finished:
                completion_tokens += out.num_output_tokens
    if body.stream_options and body.stream_options.include_usage:
        counts = Usage.of(prompt_tokens, completion_tokens).model_dump()
        yield sse({**head, "choices": [], "usage": counts})
    yield sse("[DONE]")
