"""The HTTP API's wire shapes (OpenAI's and vLLM's), in pydantic — the only pydantic in llmos.

Request bodies cap what multiplies work (``n``, ``logprobs``, stop strings, prompt count), so a bad
request gets a 400 before it reaches the engine. Response models document ``/openapi.json`` and
serialize to exactly OpenAI's JSON: a field that OpenAI sends as ``null`` is always present, one that
it leaves out when empty (``tool_calls``) is left out. A sampling field the request leaves out (or
sends as ``null``) takes the model's recommended value (``SamplingFields.with_defaults``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from llmos.engine.sampling_params import MAX_LOGPROBS, MAX_STOP_STRINGS, SamplingParams
from llmos.engine.structured_output import StructuredOutput
from llmos.errors import InvalidRequest

MAX_N = 8
MAX_PROMPTS = 64


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    def to_template(self) -> dict[str, Any]:
        content = self.content
        if isinstance(content, list):
            content = "".join(part.text for part in content)
        role = "system" if self.role == "developer" else self.role
        entry: dict[str, Any] = {"role": role, "content": content or ""}
        if self.tool_calls:
            entry["tool_calls"] = [dict(c, function=dict(c.get("function") or {})) for c in self.tool_calls]
        if self.tool_call_id:
            entry["tool_call_id"] = self.tool_call_id
        if self.name:
            entry["name"] = self.name
        return entry


class JsonSchemaFormat(BaseModel):
    name: str = "output"
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=lambda: {"type": "object"}, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    """OpenAI's ``response_format``: text, any JSON object, or a JSON schema."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StructuredOutputs(BaseModel):
    """vLLM's ``structured_outputs`` object: exactly one of these."""

    json_: dict[str, Any] | str | None = Field(None, alias="json")
    json_object: bool = False
    regex: str | None = None
    choice: list[str] | None = None
    grammar: str | None = None


class FunctionDefinition(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(BaseModel):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class NamedToolChoice(BaseModel):
    type: Literal["function"] = "function"
    function: dict[str, str]


class StreamOptions(BaseModel):
    include_usage: bool = False


class SamplingFields(BaseModel):
    """Fields shared by chat and completions; the non-OpenAI ones are vLLM's extras."""

    model_config = ConfigDict(extra="ignore")

    model: str
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=MAX_N)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = Field(None)
    seed: int | None = None
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    user: str | None = None
    top_k: int = Field(0, ge=-1)
    min_p: float = Field(0.0, ge=0, le=1)
    repetition_penalty: float = Field(1.0, gt=0)
    ignore_eos: bool = False
    min_tokens: int = Field(0, ge=0)
    stop_token_ids: list[int] | None = None
    skip_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    response_format: ResponseFormat | None = None
    structured_outputs: StructuredOutputs | None = None
    guided_json: dict[str, Any] | str | None = None
    guided_regex: str | None = None
    guided_choice: list[str] | None = None
    guided_grammar: str | None = None

    def with_defaults(self, defaults: Mapping[str, Any]) -> Self:
        """This request with the model's sampling ``defaults`` (``temperature``, ``top_p``…) in the
        fields it did not send, or sent as ``null`` (vLLM's use of a model's generation config); a
        value the client sent, ``temperature: 0`` included, is kept."""
        unset = {
            k: v
            for k, v in defaults.items()
            if k in type(self).model_fields and (k not in self.model_fields_set or getattr(self, k) is None)
        }
        return self.model_copy(update=unset) if unset else self

    def structured_output(self) -> StructuredOutput | None:
        """The one structured-output request among response_format, structured_outputs, guided_*."""
        given: list[StructuredOutput] = []
        fmt = self.response_format
        if fmt is not None and fmt.type == "json_object":
            given.append(StructuredOutput(json_object=True))
        elif fmt is not None and fmt.type == "json_schema":
            if fmt.json_schema is None:
                raise InvalidRequest("response_format.json_schema is required.", param="response_format")
            given.append(StructuredOutput(json=fmt.json_schema.schema_))
        if self.structured_outputs is not None:
            so = self.structured_outputs
            given.append(StructuredOutput(so.json_, so.json_object, so.regex, so.choice, so.grammar))
        guided = (self.guided_json, self.guided_regex, self.guided_choice, self.guided_grammar)
        if any(g is not None for g in guided):
            given.append(
                StructuredOutput(
                    json=self.guided_json,
                    regex=self.guided_regex,
                    choice=self.guided_choice,
                    grammar=self.guided_grammar,
                )
            )
        if len(given) > 1:
            raise InvalidRequest(
                "Give one of response_format, structured_outputs or guided_*, not several.",
                param="response_format",
            )
        return given[0] if given else None

    def sampling_params(
        self,
        max_tokens: int | None,
        logprobs: int | None,
        index: int = 0,
        structured_output: StructuredOutput | None = None,
        prompt_logprobs: int | None = None,
    ) -> SamplingParams:
        stop = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            top_k=self.top_k,
            min_p=self.min_p,
            repetition_penalty=self.repetition_penalty,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            seed=None if self.seed is None else self.seed + index,
            stop=stop[: MAX_STOP_STRINGS + 1],
            stop_token_ids=self.stop_token_ids or [],
            ignore_eos=self.ignore_eos,
            min_tokens=self.min_tokens,
            logprobs=logprobs,
            include_stop_str_in_output=self.include_stop_str_in_output,
            skip_special_tokens=self.skip_special_tokens,
            structured_output=structured_output,
            prompt_logprobs=prompt_logprobs,
        )


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    add_generation_prompt: bool = True
    tools: list[Tool] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(16, ge=0)  # 0 only with echo: score the prompt, generate nothing
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    echo: bool = False
    suffix: str | None = None


class TokenizeRequest(BaseModel):
    """vLLM's /tokenize: a prompt, or chat messages rendered through the chat template; without
    ``model``, the server's first model (as vLLM, which serves one)."""

    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    add_special_tokens: bool = True
    add_generation_prompt: bool = True


class DetokenizeRequest(BaseModel):
    model: str | None = None
    tokens: list[int] = Field(max_length=1 << 20)


class EmbeddingRequest(BaseModel):
    """OpenAI's /v1/embeddings; ``truncate`` (default true, as Ollama) cuts texts to the model's window."""

    model_config = ConfigDict(extra="ignore")

    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None
    truncate: bool = True


class LoadRequest(BaseModel):
    """Body of POST /api/models/{name}/load: keep-alive seconds (negative: forever) and pinning."""

    keep_alive: float | None = None
    pin: bool | None = Field(
        default=None,
        description="true: never evicted nor expired; false: unpin; absent: as it is (new: unpinned)",
    )


class PullRequest(BaseModel):
    name: str = Field(min_length=1, max_length=256)
    force: bool = False
    stream: bool = True


# --- responses ------------------------------------------------------------------------------


def _is_none(value: object) -> bool:
    return value is None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> Usage:
        return cls(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]


class ChatTokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    content: list[ChatTokenLogprob]


class ToolCallFunction(BaseModel):
    name: str
    arguments: str  # JSON text, as OpenAI sends it


class ToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCall] | None = Field(default=None, exclude_if=_is_none)


class ChatCompletionChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None
    finish_reason: str | None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatCompletionChoice]
    usage: Usage


class CompletionLogprobs(BaseModel):
    """The legacy completions ``logprobs``; an echoed prompt's first token has ``null``s."""

    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None
    finish_reason: str | None


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str  # str: base64 of little-endian float32


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "llmos"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class TokenizeResponse(BaseModel):
    tokens: list[int]
    count: int
    max_model_len: int


class DetokenizeResponse(BaseModel):
    prompt: str


class TokenizerInfo(BaseModel):
    """vLLM's ``GET /tokenizer_info``: what a client needs to tokenize as the server does (the
    fields of ``tokenizer_config.json``; ``model_max_length`` is the window the server serves)."""

    tokenizer_class: str
    eos_token: str | None
    eos_token_id: int | None
    bos_token: str | None
    bos_token_id: int | None
    pad_token: str | None
    pad_token_id: int | None
    chat_template: str | None
    model_max_length: int


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """OpenAI's error envelope, the body of every error answer."""

    error: ErrorInfo
