"""Continuous batching: which requests run this step, and with how many tokens each.

Every step has a token budget. Running requests go first (one token for a decode, the next chunk
for a long prefill), then waiting requests are admitted first-come-first-served within their
priority (interactive before batch jobs) while the budget, ``max_num_seqs`` and free KV blocks allow.
When blocks run out, the most recently admitted running request of the lowest priority is
preempted: its blocks are freed and it is recomputed later (prompt + tokens so far). A waiting
request that outranks running ones and can be admitted now runs its first chunk in a step of its
own class (the lower-priority running requests sit that step out).
"""

from __future__ import annotations

import time
from collections import deque

from llmos.engine.block_manager import BlockManager
from llmos.engine.config import EngineConfig
from llmos.engine.outputs import EngineOutput, ModelRunnerOutput, ScheduledRequest, SchedulerOutput
from llmos.engine.request import Request, RequestStatus
from llmos.engine.speculative import NgramProposer, can_speculate


class Scheduler:
    def __init__(self, config: EngineConfig, block_manager: BlockManager):
        self.config = config
        self.block_manager = block_manager
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.requests: dict[str, Request] = {}
        self.num_preemptions = 0
        n = config.num_speculative_tokens
        self.proposer = NgramProposer(n) if n > 0 else None
        self.num_draft_tokens = 0  # speculative tokens verified
        self.num_accepted_tokens = 0  # of which the model agreed with

    def add_request(self, request: Request) -> None:
        self.requests[request.request_id] = request
        self._enqueue(request, first=False)

    def _enqueue(self, request: Request, first: bool) -> None:
        """Put ``request`` in the waiting queue after every request of a higher or equal priority
        (``first``: only of a higher one — a preempted request resumes first within its class)."""
        waiting = self.waiting
        if not waiting or (waiting[-1].priority <= request.priority and not first):
            waiting.append(request)  # the common case: one class, FCFS
            return
        for i, queued in enumerate(waiting):
            if queued.priority > request.priority or (first and queued.priority == request.priority):
                waiting.insert(i, request)
                return
        waiting.append(request)

    @property
    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> SchedulerOutput:
        out = SchedulerOutput()
        budget = self.config.max_num_batched_tokens
        held = self._held_priority(budget)
        i = 0
        while i < len(self.running) and budget > 0:
            request = self.running[i]
            if held is not None and request.priority >= held:
                i += 1  # sits out one step so the more urgent waiting request's prefill runs alone
                continue
            num_new = min(request.num_tokens - request.num_computed_tokens, budget)
            drafts = self._drafts(request, budget) if num_new == 1 else []
            if drafts and self.block_manager.allocate(request, 1 + len(drafts)):
                out.scheduled.append(ScheduledRequest(request, 1 + len(drafts), drafts))
                budget -= 1 + len(drafts)
                i += 1
                continue
            while not self.block_manager.allocate(request, num_new):
                victim = self.running.pop(self._victim_index(i))
                self._preempt(victim)
                out.num_preempted += 1
                if victim is request:
                    break
            else:
                out.scheduled.append(ScheduledRequest(request, num_new))
                budget -= num_new
                i += 1
        if out.num_preempted:
            return out
        while self.waiting and budget > 0 and len(self.running) < self.config.max_num_seqs:
            request = self.waiting[0]
            # A request that wants prompt logprobs computes its whole prompt: cached blocks skip positions.
            use_cache = request.num_computed_tokens == 0 and not request.needs_prompt_logprobs
            cached = self.block_manager.find_cached_blocks(request) if use_cache else []
            num_new = min(request.num_tokens - len(cached) * self.block_manager.block_size, budget)
            if not self.block_manager.allocate(request, num_new, cached):
                break
            if not request.num_preemptions:
                request.num_cached_tokens = len(cached) * self.block_manager.block_size
                request.queue_seconds = time.monotonic() - request.arrival_time
            self.waiting.popleft()
            request.status = RequestStatus.RUNNING
            self.running.append(request)
            out.scheduled.append(ScheduledRequest(request, num_new))
            budget -= num_new
        return out

    def _drafts(self, request: Request, budget: int) -> list[int]:
        """Speculative tokens to verify after ``request``'s next one (``engine.speculative``): only
        for few running sequences (each draft is one more row of every product) and within its
        ``max_tokens`` and the step's budget."""
        if self.proposer is None or len(self.running) > self.config.speculative_max_num_seqs:
            return []
        if not can_speculate(request):
            return []
        limit = min(budget - 1, request.max_tokens - request.num_output_tokens - 1)
        return self.proposer.propose(request, limit)

    def _held_priority(self, budget: int) -> int | None:
        """When the head of the queue outranks some running requests and can be admitted now, the
        priority from which running requests sit out this step (so an interactive request's first
        chunk is not slowed by batch decodes); else None. Only admissible requests hold others, so
        holding never stalls the engine."""
        if not self.waiting or not self.running or len(self.running) >= self.config.max_num_seqs:
            return None
        head = self.waiting[0]
        if head.num_computed_tokens or head.priority >= max(r.priority for r in self.running):
            return None
        need = self.block_manager.num_blocks_for(min(head.num_tokens, budget))
        return head.priority + 1 if self.block_manager.num_free_blocks >= need else None

    def _victim_index(self, start: int) -> int:
        """The running request to preempt: the latest admitted of the lowest priority among those
        not yet scheduled this step (from ``start``, the one asking for blocks, on)."""
        lowest = max(r.priority for r in self.running[start:])
        return max(i for i in range(start, len(self.running)) if self.running[i].priority == lowest)

    def _preempt(self, request: Request) -> None:
        self.block_manager.free(request)
        request.num_computed_tokens = 0
        request.num_preemptions += 1
        request.status = RequestStatus.WAITING
        self._enqueue(request, first=True)
        self.num_preemptions += 1

    def update_from_output(self, sched: SchedulerOutput, runner_out: ModelRunnerOutput) -> list[EngineOutput]:
        """Advance each scheduled request, append sampled tokens, and finish the ones that are done."""
        outputs: list[EngineOutput] = []
        for item in sched.scheduled:
            request = item.request
            request.num_computed_tokens += item.num_new_tokens - len(item.draft_token_ids)
            request.prompt_logprobs.extend(runner_out.prompt_logprobs.get(request.request_id, []))
            error = runner_out.errors.get(request.request_id)
            if error is not None:
                request.error = error
                self.finish(request, "error")
                outputs.append(self._output(request, [], None))
                continue
            token_id = runner_out.sampled_token_ids.get(request.request_id)
            if token_id is None:
                self.block_manager.cache_full_blocks(request)
                continue
            if item.draft_token_ids:
                outputs.append(
                    self._append_verified(
                        item, [token_id, *runner_out.accepted_token_ids.get(request.request_id, [])]
                    )
                )
                continue
            request.append_token(token_id)
            self.block_manager.cache_full_blocks(request)
            if request.matcher is None or not self._advance_grammar(request, token_id):
                self._check_stop(request, token_id)
            logprob = runner_out.logprobs.get(request.request_id)
            outputs.append(self._output(request, [token_id], [logprob] if logprob else None))
        return outputs

    def _append_verified(self, item: ScheduledRequest, token_ids: list[int]) -> EngineOutput:
        """Append a verification step's tokens (the sampled one, then one per accepted draft) up to
        the first that finishes the request. The K/V of each accepted draft is in the cache: it is
        the token appended before it."""
        request = item.request
        computed = request.num_computed_tokens  # the input token's K/V, so far
        self.num_draft_tokens += len(item.draft_token_ids)
        self.num_accepted_tokens += len(token_ids) - 1
        appended: list[int] = []
        for i, token_id in enumerate(token_ids):
            request.num_computed_tokens = computed + i
            request.append_token(token_id)
            appended.append(token_id)
            self.block_manager.cache_full_blocks(request)
            self._check_stop(request, token_id)
            if request.is_finished:
                break
        return self._output(request, appended, None)

    def _advance_grammar(self, request: Request, token_id: int) -> bool:
        """Feed the sampled token to the request's grammar; True when that finished the request
        (the grammar is complete: ``stop``, or it rejected the token: ``error``)."""
        matcher = request.matcher
        assert matcher is not None
        error = matcher.accept(token_id)
        if error is not None:
            request.error = error
            self.finish(request, "error")
        elif matcher.is_stopped:
            self.finish(request, "stop", token_id if token_id in request.eos_token_ids else None)
        else:
            return False
        return True

    def _check_stop(self, request: Request, token_id: int) -> None:
        params = request.params
        if request.num_output_tokens >= params.min_tokens:
            if not params.ignore_eos and token_id in request.eos_token_ids:
                self.finish(request, "stop", token_id)
                return
            if token_id in params.stop_token_ids:
                self.finish(request, "stop", token_id)
                return
        if request.num_output_tokens >= request.max_tokens:
            self.finish(request, "length")

    def finish(self, request: Request, reason: str, stop_reason: int | str | None = None) -> None:
        """Take the request out of the queues and free its blocks (idempotent)."""
        if request.is_finished:
            return
        if request.status is RequestStatus.RUNNING:
            self.running.remove(request)
        else:
            self.waiting.remove(request)
        self.block_manager.free(request)
        request.matcher = None
        request.status = RequestStatus.FINISHED
        request.finish_reason = reason
        request.stop_reason = stop_reason
        del self.requests[request.request_id]

    def abort(self, request_id: str, reason: str = "abort", error: str | None = None) -> EngineOutput | None:
        request = self.requests.get(request_id)
        if request is None:
            return None
        request.error = error
        self.finish(request, reason)
        return self._output(request, [], None)

    @staticmethod
    def _output(request: Request, token_ids: list[int], logprobs: list | None) -> EngineOutput:
        is_first = bool(token_ids) and request.num_output_tokens == 1
        return EngineOutput(
            request_id=request.request_id,
            new_token_ids=token_ids,
            new_logprobs=logprobs,
            finish_reason=request.finish_reason,
            stop_reason=request.stop_reason,
            num_prompt_tokens=request.num_prompt_tokens,
            num_cached_tokens=request.num_cached_tokens,
            prompt_logprobs=request.prompt_logprobs if is_first and request.prompt_logprobs else None,
            error=request.error,
            queue_seconds=request.queue_seconds,
        )
