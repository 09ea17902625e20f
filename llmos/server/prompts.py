"""From OpenAI request bodies to engine inputs: prompt ids (chat template and tools rendered), one
SamplingParams per choice, and the texts of an embedding request. Bad values raise InvalidRequest."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from llmos.engine.sampling_params import SamplingParams
from llmos.errors import InvalidRequest
from llmos.runtime.model_runtime import ModelRuntime
from llmos.server.protocol import MAX_PROMPTS, ChatCompletionRequest, CompletionRequest
from llmos.server.tools import ToolPlan, plan_tools, template_messages, tools_for_prompt
from llmos.server.tools import structured_output as tool_grammar


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
