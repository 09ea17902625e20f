"""OpenAI ⇄ engine: render prompts, build SamplingParams, run requests, shape responses and SSE chunks."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from llmos.engine.outputs import Completion, RequestOutput, TokenLogprob
from llmos.errors import InvalidRequest
from llmos.runtime import ModelRuntime
from llmos.server.protocol import MAX_PROMPTS, ChatCompletionRequest, CompletionRequest, SamplingFields
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
    """One API call: n engine requests for one prompt, run together."""

    def __init__(
        self,
        runtime: ModelRuntime,
        prompt_ids: list[int],
        body: SamplingFields,
        max_tokens: int | None,
        logprobs: int | None,
    ):
        self.runtime = runtime
        self.prompt_ids = prompt_ids
        self.params = [body.sampling_params(max_tokens, logprobs, i) for i in range(body.n)]
        for params in self.params:
            runtime.engine.engine.check_request(prompt_ids, params)

    async def stream(self) -> AsyncIterator[tuple[int, RequestOutput]]:
        """Outputs of all n choices, interleaved as they arrive, tagged with the choice index."""
        merged: asyncio.Queue[tuple[int, RequestOutput] | None] = asyncio.Queue()

        async def pump(index: int, params: Any) -> None:
            async for out in self.runtime.engine.generate(self.prompt_ids, params):
                await merged.put((index, out))
            await merged.put(None)

        tasks = [asyncio.create_task(pump(i, p)) for i, p in enumerate(self.params)]
        remaining = len(tasks)
        try:
            while remaining:
                item = await merged.get()
                if item is None:
                    remaining -= 1
                else:
                    yield item
        finally:
            for task in tasks:
                task.cancel()

    async def collect(self) -> list[Completion]:
        outputs: list[list[RequestOutput]] = [[] for _ in self.params]
        async for index, out in self.stream():
            outputs[index].append(out)
        return [Completion.merge(outs) for outs in outputs]


def chat_prompt(runtime: ModelRuntime, body: ChatCompletionRequest) -> list[int]:
    messages = [m.to_template() for m in body.messages]
    return runtime.tokenizer.encode_chat(messages, add_generation_prompt=body.add_generation_prompt)


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


def base(kind: str, model: str, request_id: str | None = None) -> dict[str, Any]:
    return {
        "id": request_id or f"{'chatcmpl' if kind.startswith('chat') else 'cmpl'}-{uuid.uuid4().hex}",
        "object": kind,
        "created": int(time.time()),
        "model": model,
    }
