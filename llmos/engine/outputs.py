"""The contracts between the engine's stages, as plain dataclasses.

Scheduler → ``SchedulerOutput`` → ModelRunner → ``ModelRunnerOutput`` → Scheduler → ``EngineOutput``
(token ids per request) → AsyncEngine/Detokenizer → ``RequestOutput`` (text per request).
Each stage can be tested by building its input by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmos.engine.request import Request


@dataclass(slots=True)
class ScheduledRequest:
    request: Request
    num_new_tokens: int  # tokens to compute this step, starting at request.num_computed_tokens
    # speculative decoding: guessed tokens after the known ones, verified this step (their count
    # is in num_new_tokens: a decode with drafts computes 1 + len(draft_token_ids) positions)
    draft_token_ids: list[int] = field(default_factory=list)

    @property
    def is_prefill(self) -> bool:
        """A run of prompt (or recomputed) tokens, as opposed to one token plus its drafts."""
        return self.num_new_tokens > 1 and not self.draft_token_ids

    @property
    def is_last_chunk(self) -> bool:
        """True when this step reaches the end of the known tokens, so a new token gets sampled."""
        end = self.request.num_computed_tokens + self.num_new_tokens - len(self.draft_token_ids)
        return end == self.request.num_tokens


@dataclass(slots=True)
class SchedulerOutput:
    scheduled: list[ScheduledRequest] = field(default_factory=list)
    num_preempted: int = 0

    @property
    def is_empty(self) -> bool:
        return not self.scheduled

    @property
    def num_batched_tokens(self) -> int:
        return sum(s.num_new_tokens for s in self.scheduled)


@dataclass(slots=True)
class TokenLogprob:
    token_id: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)  # most likely alternatives, best first


@dataclass(slots=True)
class ModelRunnerOutput:
    """One sampled token per request that reached its last chunk (keyed by request id)."""

    sampled_token_ids: dict[str, int] = field(default_factory=dict)
    # speculative decoding: the verified tokens after the sampled one (the accepted drafts' picks)
    accepted_token_ids: dict[str, list[int]] = field(default_factory=dict)
    logprobs: dict[str, TokenLogprob] = field(default_factory=dict)
    # the next prompt logprobs of requests that asked for them (continuing request.prompt_logprobs)
    prompt_logprobs: dict[str, list[TokenLogprob]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # requests that failed (no token sampled)


@dataclass(slots=True)
class EngineOutput:
    request_id: str
    new_token_ids: list[int]
    new_logprobs: list[TokenLogprob] | None
    finish_reason: str | None  # None while running; "stop" | "length" | "abort" | "error"
    stop_reason: int | str | None = None
    num_prompt_tokens: int = 0
    num_cached_tokens: int = 0
    prompt_logprobs: list[TokenLogprob | None] | None = None  # with the first token only
    error: str | None = None
    queue_seconds: float | None = None  # arrival to first scheduled (None while still waiting)


@dataclass(slots=True)
class RequestOutput:
    """What a caller sees for one request after a step: the text and tokens added since last time."""

    request_id: str
    text: str
    token_ids: list[int]
    logprobs: list[TokenLogprob] | None
    finish_reason: str | None
    stop_reason: int | str | None
    num_prompt_tokens: int
    num_output_tokens: int
    num_cached_tokens: int = 0
    error: str | None = None
    prompt_logprobs: list[TokenLogprob | None] | None = None  # in the first output only
    queue_seconds: float | None = None  # arrival to first scheduled
    error_code: str | None = None  # with ``error``: the API error code it maps to (else generation_failed)

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass(slots=True)
class Completion:
    """A finished request, merged from its stream of ``RequestOutput`` deltas."""

    request_id: str
    text: str
    token_ids: list[int]
    logprobs: list[TokenLogprob] | None
    finish_reason: str | None
    stop_reason: int | str | None
    num_prompt_tokens: int
    num_output_tokens: int
    num_cached_tokens: int = 0
    error: str | None = None
    prompt_logprobs: list[TokenLogprob | None] | None = None

    @classmethod
    def merge(cls, outputs: list[RequestOutput]) -> Completion:
        last = outputs[-1]
        logprobs = (
            [lp for o in outputs for lp in (o.logprobs or [])] if any(o.logprobs for o in outputs) else None
        )
        return cls(
            request_id=last.request_id,
            text="".join(o.text for o in outputs),
            token_ids=[t for o in outputs for t in o.token_ids],
            logprobs=logprobs,
            finish_reason=last.finish_reason,
            stop_reason=last.stop_reason,
            num_prompt_tokens=last.num_prompt_tokens,
            num_output_tokens=last.num_output_tokens,
            num_cached_tokens=last.num_cached_tokens,
            error=last.error,
            prompt_logprobs=next((o.prompt_logprobs for o in outputs if o.prompt_logprobs is not None), None),
        )
