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

from llmos.engine.outputs import Completion, RequestOutput, TokenLogprob
from llmos.engine.sampling_params import SamplingParams
from llmos.errors import InvalidRequest, RequestTimeout
from llmos.runtime import ModelRuntime
from llmos.server.metrics import ServerMetrics
from llmos.server.model_pool import Lease
from llmos.server.protocol import MAX_PROMPTS, ChatCompletionRequest, CompletionRequest
from llmos.tokenizer import TextTokenizer


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


def completion_logprobs(
    tokenizer: TextTokenizer, logprobs: list[TokenLogprob] | None, offset: int = 0
) -> dict | None:
    if logprobs is None:
        return None
    tokens = [_token_text(tokenizer, lp.token_id) for lp in logprobs]
    offsets, position = [], offset
    for token in tokens:
        offsets.append(position)
        position += len(token)
    return {
        "tokens": tokens,
        "token_logprobs": [lp.logprob for lp in logprobs],
        "top_logprobs": [{_token_text(tokenizer, t): v for t, v in lp.top} for lp in logprobs],
        "text_offset": offsets,
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
                        clocks[index].finish(out.finish_reason, getattr(out, "queue_seconds", None))
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


def chat_prompt(runtime: ModelRuntime, body: ChatCompletionRequest) -> list[int]:
    messages = [m.to_template() for m in body.messages]
    return runtime.tokenizer.encode_chat(messages, add_generation_prompt=body.add_generation_prompt)


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
