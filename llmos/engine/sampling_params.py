"""Per-request sampling parameters, validated where they are built."""

from __future__ import annotations

from dataclasses import dataclass, field

from llmos.engine.structured_output import StructuredOutput
from llmos.errors import InvalidRequest

MAX_LOGPROBS = 20
MAX_STOP_STRINGS = 16
MAX_STOP_STRING_LEN = 256


@dataclass(slots=True)
class SamplingParams:
    """What to generate and how; field names follow vLLM / the OpenAI API.

    ``temperature == 0`` means greedy. ``max_tokens=None`` means "up to the context length".
    ``logprobs=N`` returns the sampled token's logprob plus the N most likely alternatives;
    ``prompt_logprobs=N`` the same for every prompt token (in the first output).
    ``structured_output`` (a ``StructuredOutput`` or a dict of its fields, e.g. ``{"json": schema}``)
    keeps the output inside a JSON schema, regex, choice or grammar.
    """

    max_tokens: int | None = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    min_tokens: int = 0
    logprobs: int | None = None
    include_stop_str_in_output: bool = False
    skip_special_tokens: bool = True
    prompt_logprobs: int | None = None
    structured_output: StructuredOutput | None = None

    def __post_init__(self) -> None:
        if isinstance(self.structured_output, dict):
            try:
                self.structured_output = StructuredOutput(**self.structured_output)
            except TypeError as exc:
                raise InvalidRequest(
                    f"Unknown structured output option: {exc}; use one of json, json_object, regex, "
                    "choice, grammar.",
                    param="response_format",
                ) from exc
        if self.structured_output is not None and not isinstance(self.structured_output, StructuredOutput):
            raise InvalidRequest(
                "structured_output must be a StructuredOutput or a dict such as {'json': schema}.",
                param="response_format",
            )
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        self.stop = list(self.stop or [])
        self.stop_token_ids = list(self.stop_token_ids or [])
        if self.top_k == -1:
            self.top_k = 0
        checks: list[tuple[bool, str, str]] = [
            (self.max_tokens is not None and self.max_tokens < 1, "max_tokens", "must be at least 1"),
            (not 0.0 <= self.temperature <= 100.0, "temperature", "must be between 0 and 100"),
            (not 0.0 < self.top_p <= 1.0, "top_p", "must be in (0, 1]"),
            (self.top_k < 0, "top_k", "must be 0 or -1 (disabled) or a positive integer"),
            (not 0.0 <= self.min_p <= 1.0, "min_p", "must be in [0, 1]"),
            (self.repetition_penalty <= 0.0, "repetition_penalty", "must be greater than 0"),
            (not -2.0 <= self.presence_penalty <= 2.0, "presence_penalty", "must be in [-2, 2]"),
            (not -2.0 <= self.frequency_penalty <= 2.0, "frequency_penalty", "must be in [-2, 2]"),
            (self.min_tokens < 0, "min_tokens", "must be non-negative"),
            (
                self.logprobs is not None and not 0 <= self.logprobs <= MAX_LOGPROBS,
                "logprobs",
                f"must be between 0 and {MAX_LOGPROBS}",
            ),
            (
                self.prompt_logprobs is not None and not 0 <= self.prompt_logprobs <= MAX_LOGPROBS,
                "prompt_logprobs",
                f"must be between 0 and {MAX_LOGPROBS}",
            ),
            (len(self.stop) > MAX_STOP_STRINGS, "stop", f"at most {MAX_STOP_STRINGS} stop strings"),
            (
                any(not s or len(s) > MAX_STOP_STRING_LEN for s in self.stop),
                "stop",
                f"stop strings must be 1 to {MAX_STOP_STRING_LEN} characters",
            ),
            (any(t < 0 for t in self.stop_token_ids), "stop_token_ids", "token ids must be non-negative"),
        ]
        for failed, name, rule in checks:
            if failed:
                raise InvalidRequest(f"{name}={getattr(self, name)!r} is invalid: {rule}.", param=name)
        if self.max_tokens is not None and self.min_tokens > self.max_tokens:
            raise InvalidRequest(
                f"min_tokens={self.min_tokens} is larger than max_tokens={self.max_tokens}.",
                param="min_tokens",
            )

    @property
    def is_greedy(self) -> bool:
        return self.temperature == 0.0
