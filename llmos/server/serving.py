"""OpenAI ⇄ engine: render prompts, build SamplingParams, run requests, shape responses and SSE chunks."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from pydantic import BaseModel

from llmos.engine.outputs import Completion, RequestOutput, TokenLogprob
from llmos.engine.sampling_params import SamplingParams
from llmos.errors import InvalidRequest, RequestTimeout
from llmos.runtime.model_runtime import ModelRuntime
from llmos.runtime.tokenizer import TextTokenizer
from llmos.server.metrics import ServerMetrics
from llmos.server.model_pool import Lease
from llmos.server.protocol import MAX_PROMPTS, ChatCompletionRequest, CompletionRequest
from llmos.server.tools import ToolPlan, parse_tool_calls, plan_tools, template_messages, tools_for_prompt
from llmos.server.tools import structured_output as tool_grammar


def sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


def usage(completions: list[Completion]) -> dict[str, int]:
    prompt = completions[0].num_prompt_tokens if completions else 0
    generated = sum(c.num_output_tokens for c in completions)
    return {"prompt_tokens": prompt, "completion_tokens": generated, "total_tokens": prompt + generated}


def _token_text(tokenizer: TextTokenizer, token_id: int) -> str:
    return tokenizer.decode([token_id], skip_special_tokens=False)


def chat_logprobs(tokenizer: TextTokenizer, logprobs: list[TokenLogprob] | None) -> dict[str, Any] | None:
    if logprobs is None:
        return None

    def entry(token_id: int, logprob: float) -> dict[str, Any]:
        text = _token_text(tokenizer, token_id)
        return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

    return {
        "content": [
            {**entry(lp.token_id, lp.logprob), "top_logprobs": [entry(t, v) for t, v in lp.top]}
            for lp in logprobs
        ]
    }


LogprobEntry = tuple[int, float | None, list[tuple[int, float]] | None]


def completion_logprobs(
    tokenizer: TextTokenizer,
    logprobs: list[TokenLogprob] | None,
    offset: int = 0,
    prompt: tuple[list[int], list[TokenLogprob | None]] | None = None,
) -> dict | None:
    """The legacy completions ``logprobs`` object; with ``prompt`` (ids, prompt logprobs) the echoed
    prompt tokens come first, the very first one with ``null`` logprobs (it has no context)."""
    if logprobs is None and prompt is None:
        return None
    entries: list[LogprobEntry] = []
    if prompt is not None:
        for token_id, lp in zip(*prompt):
            entries.append((token_id, None, None) if lp is None else (token_id, lp.logprob, lp.top))
    entries += [(lp.token_id, lp.logprob, lp.top) for lp in logprobs or []]
    tokens = [_token_text(tokenizer, token_id) for token_id, _, _ in entries]
    offsets, position = [], offset
    for token in tokens:
        offsets.append(position)
        position += len(token)
    return {
        "tokens": tokens,
        "token_logprobs": [value for _, value, _ in entries],
        "top_logprobs": [
            None if top is None else {_token_text(tokenizer, t): v for t, v in top} for _, _, top in entries
        ],
        "text_offset": offsets,
    }


def completion_params(body: CompletionRequest) -> list[SamplingParams]:
    """One SamplingParams per choice. ``max_tokens=0`` with ``echo`` scores the prompt only (one
    token is generated and dropped); ``echo`` with ``logprobs`` asks the engine for prompt logprobs."""
    if body.max_tokens == 0 and not body.echo:
        raise InvalidRequest("max_tokens=0 needs echo=true (it scores the prompt only).", param="max_tokens")
    max_tokens = 1 if body.max_tokens == 0 else body.max_tokens
    prompt_logprobs = body.logprobs if body.echo and body.logprobs is not None else None
    structured = body.structured_output()
    return [
        body.sampling_params(max_tokens, body.logprobs, i, structured, prompt_logprobs) for i in range(body.n)
    ]


def completion_choice(
    tokenizer: TextTokenizer, body: CompletionRequest, prompt_ids: list[int], c: Completion, index: int
) -> dict[str, Any]:
    score_only = body.max_tokens == 0
    prefix = tokenizer.decode(prompt_ids) if body.echo else ""
    logprobs = None if score_only and body.logprobs is not None else c.logprobs
    prompt = (prompt_ids, c.prompt_logprobs) if body.echo and c.prompt_logprobs is not None else None
    if score_only:
        c.num_output_tokens = 0
    return {
        "index": index,
        "text": prefix + ("" if score_only else c.text),
        "logprobs": None if body.logprobs is None else completion_logprobs(tokenizer, logprobs, 0, prompt),
        "finish_reason": "length" if score_only else c.finish_reason,
    }


class Generation:
    """One API call: n engine requests for one prompt, run together under a lease on the model.

    Validates every request at construction (so a bad one is a 400 before anything streams),
    times them for the metrics, aborts them at the deadline, and releases the lease when done.
    """

    def __init__(
        self,
        lease: Lease,
        prompt_ids: list[int],
        params: list[SamplingParams],
        timeout: float,
        metrics: ServerMetrics | None = None,
    ):
        self.lease = lease
        self.runtime: ModelRuntime = lease.runtime  # type: ignore[assignment]
        self.prompt_ids = prompt_ids
        self.params = params
        self.timeout = timeout
        self.metrics = metrics
        for p in params:
            self.runtime.engine.engine.check_request(prompt_ids, p)

    async def stream(self) -> AsyncIterator[tuple[int, RequestOutput]]:
        """Outputs of all n choices, interleaved as they arrive, tagged with the choice index.

        Raises RequestTimeout past the deadline; closing the iterator aborts what still runs.
        """
        merged: asyncio.Queue[tuple[int, RequestOutput] | None] = asyncio.Queue()
        name = self.runtime.name
        clocks = [self.metrics.clock(name, len(self.prompt_ids)) for _ in self.params] if self.metrics else []

        async def pump(index: int, params: SamplingParams) -> None:
            async for out in self.runtime.engine.generate(self.prompt_ids, params):
                await merged.put((index, out))
            await merged.put(None)

        tasks = [asyncio.create_task(pump(i, p)) for i, p in enumerate(self.params)]
        remaining = len(tasks)
        deadline = time.monotonic() + self.timeout
        try:
            while remaining:
                try:
                    item = await asyncio.wait_for(merged.get(), max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    if self.metrics:
                        self.metrics.reject(name, "timeout")
                    raise RequestTimeout(
                        f"The request did not finish within {self.timeout:g} s (LLMOS_REQUEST_TIMEOUT); "
                        "ask for fewer tokens or retry later."
                    ) from None
                if item is None:
                    remaining -= 1
                    continue
                index, out = item
                if clocks:
                    clocks[index].token(len(out.token_ids))
                    if out.finished:
                        clocks[index].finish(out.finish_reason, out.queue_seconds)
                yield item
        finally:
            for task in tasks:
                task.cancel()
            for clock in clocks:
                clock.finish("abort")
            self.lease.release()

    async def collect(self) -> list[Completion]:
        outputs: list[list[RequestOutput]] = [[] for _ in self.params]
        async for index, out in self.stream():
            outputs[index].append(out)
        return [Completion.merge(outs) for outs in outputs]


def chat_request(
    runtime: ModelRuntime, body: ChatCompletionRequest
) -> tuple[list[int], ToolPlan, list[SamplingParams]]:
    """The prompt (tools rendered), the tool plan, and one SamplingParams per choice."""
    choice = body.tool_choice.model_dump() if isinstance(body.tool_choice, BaseModel) else body.tool_choice
    plan = plan_tools([t.model_dump(exclude_none=True) for t in body.tools or []], choice)
    structured, forced = body.structured_output(), tool_grammar(plan)
    if structured is not None and forced is not None:
        raise InvalidRequest(
            "A forced tool call cannot be combined with response_format.", param="tool_choice"
        )
    messages, tools = tools_for_prompt(
        plan, template_messages(body.messages), runtime.tokenizer.chat_template
    )
    prompt_ids = runtime.tokenizer.encode_chat(messages, body.add_generation_prompt, tools)
    max_tokens = body.max_completion_tokens or body.max_tokens
    num_logprobs = (body.top_logprobs or 0) if body.logprobs else None
    params = [body.sampling_params(max_tokens, num_logprobs, i, structured or forced) for i in range(body.n)]
    return prompt_ids, plan, params


def chat_message(text: str, finish_reason: str | None, plan: ToolPlan) -> tuple[dict[str, Any], str | None]:
    """The assistant message for ``text`` (tool calls parsed out) and the finish reason to report."""
    content, calls = parse_tool_calls(text, plan)
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
        return message, "tool_calls"
    return message, finish_reason


def num_prompts(body: CompletionRequest) -> int:
    """How many prompts ``body.prompt`` holds (a string or one token list count as one)."""
    prompt = body.prompt
    single = isinstance(prompt, str) or (bool(prompt) and all(isinstance(p, int) for p in prompt))
    count = 1 if single else len(prompt)
    if not 1 <= count <= MAX_PROMPTS:
        raise InvalidRequest(f"prompt must hold 1 to {MAX_PROMPTS} prompts.", param="prompt")
    return count


def completion_prompts(runtime: ModelRuntime, body: CompletionRequest) -> list[list[int]]:
    if body.suffix:
        raise InvalidRequest("suffix is not supported by this server.", param="suffix")
    prompt = body.prompt
    if isinstance(prompt, str):
        prompts = [runtime.tokenizer.encode(prompt)]
    elif prompt and all(isinstance(p, int) for p in prompt):
        prompts = [list(prompt)]  # type: ignore[arg-type]
    elif prompt and all(isinstance(p, str) for p in prompt):
        prompts = [runtime.tokenizer.encode(p) for p in prompt]  # type: ignore[arg-type]
    else:
        prompts = [list(p) for p in prompt]  # type: ignore[arg-type]
    if not prompts or len(prompts) > MAX_PROMPTS:
        raise InvalidRequest(f"prompt must hold 1 to {MAX_PROMPTS} prompts.", param="prompt")
    return prompts


def embedding_texts(runtime: Any, given: str | list[str] | list[int] | list[list[int]]) -> list[str]:
    """The texts to embed; token id lists are decoded with the embedding model's tokenizer."""
    if isinstance(given, str):
        return [given]
    if not given:
        raise InvalidRequest("input must not be empty.", param="input")
    if all(isinstance(x, str) for x in given):
        return list(given)  # type: ignore[arg-type]
    token_lists = [given] if all(isinstance(x, int) for x in given) else given
    tokenizer = runtime.model.tokenizer
    return [tokenizer.decode(ids, skip_special_tokens=True) for ids in token_lists]  # type: ignore[union-attr]


def encode_embedding(vector: list[float], encoding_format: str) -> list[float] | str:
    """OpenAI's encodings: a float list, or base64 of little-endian float32 bytes."""
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return vector


def base(kind: str, model: str, request_id: str | None = None) -> dict[str, Any]:
    return {
        "id": request_id or f"{'chatcmpl' if kind.startswith('chat') else 'cmpl'}-{uuid.uuid4().hex}",
        "object": kind,
        "created": int(time.time()),
        "model": model,
    }
