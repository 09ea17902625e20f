"""The synchronous engine: add requests, step, read token outputs.

``step()`` is the whole loop body — schedule, execute, update. Callers that want text, streaming
and many concurrent clients use ``AsyncEngine`` on top of this.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from llmos.engine.block_manager import BlockManager
from llmos.engine.config import EngineConfig
from llmos.engine.model_runner import ModelRunner
from llmos.engine.outputs import EngineOutput
from llmos.engine.request import Request
from llmos.engine.sampling_params import SamplingParams
from llmos.engine.scheduler import Scheduler
from llmos.engine.structured_output import StructuredOutputBackend
from llmos.errors import ContextOverflow, InvalidRequest

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class EngineStats:
    num_running: int
    num_waiting: int
    kv_cache_usage: float
    prefix_cache_hit_rate: float
    num_preemptions: int
    kv_cache_reserved_bytes: int = 0  # the whole cache, allocated (not committed) at load
    kv_cache_committed_bytes: int = 0  # the part of it touched so far (see ModelRunner)
    num_draft_tokens: int = 0  # speculative tokens verified since load (engine.speculative)
    num_accepted_tokens: int = 0  # of which the model agreed with: each one a token for free


class Engine:
    def __init__(
        self,
        model: nn.Module,
        config: EngineConfig,
        vocab_size: int | None = None,
        structured_output: StructuredOutputBackend | None = None,
    ):
        """``structured_output``: the grammar backend built from the model's tokenizer; without
        one, requests that ask for structured output are rejected."""
        self.config = config
        self.runner = ModelRunner(model, config)
        self.block_manager = BlockManager(
            self.runner.num_blocks, config.block_size, config.enable_prefix_caching
        )
        self.scheduler = Scheduler(config, self.block_manager)
        self.vocab_size = vocab_size
        self.structured_output = structured_output
        self._ids = itertools.count()
        self._aborted: list[EngineOutput] = []
        self._warmup: Iterator[int] | None = self.runner.shape_warmup()
        self._warmup_calls, self._warmup_seconds = 0, 0.0

    @classmethod
    def from_model_dir(
        cls, model_dir: Path, config: EngineConfig, structured_output: StructuredOutputBackend | None = None
    ) -> Engine:
        """Load a Hugging Face folder with the native model code."""
        from llmos.models.loader import load_model

        model = load_model(Path(model_dir), config.dtype, config.device, quantization=config.quantization)
        return cls(model, config, getattr(model, "vocab_size", None), structured_output)

    def check_request(self, prompt_token_ids: list[int], params: SamplingParams) -> int:
        """Validate a request without touching engine state; returns its resolved max_tokens.

        Raises ContextOverflow / InvalidRequest with the numbers and the fix, or naming what is
        wrong with a structured output spec (compiled here, and cached for ``add_request``).
        """
        room = check_limits(prompt_token_ids, params, self.config.max_model_len, self.vocab_size)
        if params.structured_output is not None:
            if self.structured_output is None:
                raise InvalidRequest(
                    "This model has no tokenizer for structured output (llguidance needs a Hugging Face "
                    "fast tokenizer); drop response_format / structured_output.",
                    param="response_format",
                )
            self.structured_output.compile(params.structured_output)
        return params.max_tokens if params.max_tokens is not None else room

    def add_request(
        self,
        prompt_token_ids: list[int],
        params: SamplingParams,
        request_id: str | None = None,
        eos_token_ids: frozenset[int] = frozenset(),
        priority: int = 0,
    ) -> str:
        """Queue a request (``priority``: lower runs first); raises like ``check_request``."""
        max_tokens = self.check_request(prompt_token_ids, params)
        request_id = request_id or f"req-{next(self._ids)}"
        if request_id in self.scheduler.requests:
            raise InvalidRequest(f"Request id {request_id!r} is already running.", param="request_id")
        request = Request(
            request_id=request_id,
            prompt_token_ids=list(prompt_token_ids),
            params=params,
            max_tokens=max_tokens,
            eos_token_ids=eos_token_ids,
            priority=priority,
        )
        if params.structured_output is not None:
            assert self.structured_output is not None  # check_request rejects it otherwise
            request.matcher = self.structured_output.new_matcher(params.structured_output)
        self.scheduler.add_request(request)
        return request_id

    def abort(self, request_id: str, reason: str = "abort", error: str | None = None) -> None:
        out = self.scheduler.abort(request_id, reason, error)
        if out is not None:
            self._aborted.append(out)

    def has_unfinished(self) -> bool:
        return self.scheduler.has_unfinished or bool(self._aborted)

    def idle_work(self) -> bool:
        """One piece of the shape warm-up (``ModelRunner.shape_warmup``) for a loop with nothing
        to step; False once there is none left. A failed warm-up is logged and dropped: it is an
        optimisation, and the requests' own steps would meet the same fault with a clear error."""
        if self._warmup is None:
            return False
        start = time.perf_counter()
        try:
            next(self._warmup)
            self._warmup_calls += 1
            return True
        except StopIteration:
            if self._warmup_calls:
                logger.info(
                    "shape warm-up: %d kernels or graphs built in %.2f s",
                    self._warmup_calls,
                    self._warmup_seconds,
                )
        except Exception:
            logger.warning("shape warm-up failed; kernels are built as requests need them", exc_info=True)
        finally:
            self._warmup_seconds += time.perf_counter() - start
        self._warmup = None
        return False

    def step(self) -> list[EngineOutput]:
        outputs, self._aborted = self._aborted, []
        sched = self.scheduler.schedule()
        if sched.is_empty:
            return outputs
        runner_out = self.runner.execute(sched)
        return outputs + self.scheduler.update_from_output(sched, runner_out)

    def finish_all(self, reason: str, error: str | None = None) -> list[EngineOutput]:
        """Finish every unfinished request, waiting or running, with ``reason`` (``abort`` at
        shutdown, ``error`` when the engine died); returns their final outputs."""
        for request_id in list(self.scheduler.requests):
            self.abort(request_id, reason, error)
        outputs, self._aborted = self._aborted, []
        return outputs

    def stats(self) -> EngineStats:
        bm = self.block_manager
        return EngineStats(
            num_running=len(self.scheduler.running),
            num_waiting=len(self.scheduler.waiting),
            kv_cache_usage=bm.usage,
            prefix_cache_hit_rate=bm.num_prefix_hits / bm.num_prefix_queries
            if bm.num_prefix_queries
            else 0.0,
            num_preemptions=self.scheduler.num_preemptions,
            kv_cache_reserved_bytes=self.runner.num_blocks * self.runner.bytes_per_block,
            kv_cache_committed_bytes=self.runner.kv_cache_committed_bytes(bm.num_touched_blocks),
            num_draft_tokens=self.scheduler.num_draft_tokens,
            num_accepted_tokens=self.scheduler.num_accepted_tokens,
        )

    def generate(
        self,
        prompts: list[list[int]],
        params: SamplingParams | list[SamplingParams],
        eos_token_ids: frozenset[int] = frozenset(),
    ) -> list[list[int]]:
        """Run prompts to completion together (offline batch); returns output token ids per prompt."""
        params_list = params if isinstance(params, list) else [params] * len(prompts)
        ids = [self.add_request(p, sp, eos_token_ids=eos_token_ids) for p, sp in zip(prompts, params_list)]
        results: dict[str, list[int]] = {i: [] for i in ids}
        with torch.inference_mode():
            while self.has_unfinished():
                for out in self.step():
                    results[out.request_id].extend(out.new_token_ids)
        return [results[i] for i in ids]


def check_limits(
    prompt_token_ids: list[int], params: SamplingParams, max_model_len: int, vocab_size: int | None = None
) -> int:
    """The prompt and length checks of ``Engine.check_request`` (no model needed, so a router in
    front of engine replicas can apply them too); returns the room left for the completion.

    Raises InvalidRequest (empty prompt, token id out of range) or ContextOverflow.
    """
    num_prompt = len(prompt_token_ids)
    if num_prompt == 0:
        raise InvalidRequest("The prompt is empty: give at least one token.", param="prompt")
    if vocab_size is not None and any(not 0 <= t < vocab_size for t in prompt_token_ids):
        raise InvalidRequest(f"Prompt token ids must be in [0, {vocab_size}).", param="prompt")
    if num_prompt >= max_model_len:
        raise ContextOverflow(
            f"This model's maximum context length is {max_model_len} tokens, but the prompt has {num_prompt} "
            f"tokens (at least one more is needed to generate). Shorten the prompt.",
            param="messages",
        )
    room = max_model_len - num_prompt
    if params.max_tokens is not None and params.max_tokens > room:
        raise ContextOverflow(
            f"This model's maximum context length is {max_model_len} tokens. However, you requested "
            f"{num_prompt + params.max_tokens} tokens ({num_prompt} in the prompt, {params.max_tokens} "
            f"for the completion). Reduce the prompt or max_tokens (at most {room} here).",
            param="max_tokens",
        )
    return room
