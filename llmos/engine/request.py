"""A request's state inside the engine: its tokens, progress, KV block table and status."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from llmos.engine.sampling_params import SamplingParams

if TYPE_CHECKING:
    from llmos.engine.outputs import TokenLogprob
    from llmos.engine.speculative import NgramIndex
    from llmos.engine.structured_output import GrammarMatcher


BATCH_PRIORITY = 1  # a batch job's lines wait behind interactive requests (priority 0)


class RequestStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(slots=True, eq=False)
class Request:
    request_id: str
    prompt_token_ids: list[int]
    params: SamplingParams
    max_tokens: int  # resolved: never past the context length
    eos_token_ids: frozenset[int] = frozenset()
    arrival_time: float = field(default_factory=time.monotonic)
    output_token_ids: list[int] = field(default_factory=list)
    all_token_ids: list[int] = field(default_factory=list)
    num_computed_tokens: int = 0  # tokens whose K/V are in the cache
    num_cached_tokens: int = 0  # prompt tokens served from the prefix cache at admission
    block_table: list[int] = field(default_factory=list)
    block_hashes: list[int] = field(default_factory=list)  # hash chain of the full blocks so far
    status: RequestStatus = RequestStatus.WAITING
    finish_reason: str | None = None
    stop_reason: int | str | None = None
    num_preemptions: int = 0
    generator: torch.Generator | None = None
    queue_seconds: float | None = None  # from arrival to first scheduled
    matcher: GrammarMatcher | None = None  # structured output: where the output is in its grammar
    # prompt_logprobs: entry i is token i's logprob given the tokens before it (None for token 0)
    prompt_logprobs: list[TokenLogprob | None] = field(default_factory=list)
    error: str | None = None  # why the request failed, when finish_reason is "error"
    priority: int = 0  # lower runs first: 0 interactive, BATCH_PRIORITY for a batch job's lines
    ngram_index: NgramIndex | None = None  # speculative decoding: where each n-gram of the tokens ended

    def __post_init__(self) -> None:
        self.all_token_ids = list(self.prompt_token_ids)
        if self.params.prompt_logprobs is not None:
            self.prompt_logprobs = [None]
        if self.params.seed is not None:
            self.generator = torch.Generator().manual_seed(self.params.seed)

    @property
    def num_tokens(self) -> int:
        return len(self.all_token_ids)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.output_token_ids)

    @property
    def needs_prompt_logprobs(self) -> bool:
        """True while some asked-for prompt logprobs are still to be computed."""
        return self.params.prompt_logprobs is not None and len(self.prompt_logprobs) < self.num_prompt_tokens

    @property
    def is_finished(self) -> bool:
        return self.status is RequestStatus.FINISHED

    def append_token(self, token_id: int) -> None:
        self.output_token_ids.append(token_id)
        self.all_token_ids.append(token_id)
