"""One API call's engine requests: the n choices of one prompt, run together on a model runtime,
timed for the metrics and bounded by the request deadline. The caller holds the model's lease."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from llmos.engine.outputs import Completion, RequestOutput
from llmos.engine.sampling_params import SamplingParams
from llmos.errors import ContextOverflow, GenerationFailed, LLMOSError, ReplicaFailed, RequestTimeout
from llmos.monitor.metrics import RequestClock, ServerMetrics
from llmos.monitor.requests import current_request
from llmos.runtime.model_runtime import ModelRuntime


class Generation:
    """n engine requests for one prompt. Every request is checked at construction, so a bad one
    is a 400 (counted as rejected) before anything runs or streams."""

    def __init__(
        self,
        runtime: ModelRuntime,
        prompt_ids: list[int],
        params: list[SamplingParams],
        timeout: float,
        metrics: ServerMetrics,
    ):
        self.runtime = runtime
        self.prompt_ids = prompt_ids
        self.params = params
        self.timeout = timeout
        self.metrics = metrics
        try:
            for p in params:
                runtime.engine.check_request(prompt_ids, p)
        except LLMOSError as exc:
            reason = "context_length" if isinstance(exc, ContextOverflow) else "invalid_request"
            metrics.reject(runtime.name, reason)
            raise

    async def stream(self) -> AsyncIterator[tuple[int, RequestOutput]]:
        """Outputs of all n choices, interleaved as they arrive, tagged with the choice index.

        Raises GenerationFailed when the engine fails a request, RequestTimeout past the deadline;
        closing the iterator aborts what still runs.
        """
        merged: asyncio.Queue[tuple[int, RequestOutput] | None] = asyncio.Queue()
        name = self.runtime.name
        # the n choices share one prompt: it is counted once, as the response's usage counts it
        clocks = [
            self.metrics.clock(name, len(self.prompt_ids) if i == 0 else 0) for i in range(len(self.params))
        ]
        finals: dict[int, RequestOutput] = {}
        record = current_request()
        priority = record.priority if record is not None else 0  # batch jobs run behind the rest

        async def pump(index: int, params: SamplingParams) -> None:
            async for out in self.runtime.engine.generate(self.prompt_ids, params, priority=priority):
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
                    self.metrics.reject(name, "timeout")
                    raise RequestTimeout(
                        f"The request did not finish within {self.timeout:g} s (LLMOS_REQUEST_TIMEOUT); "
                        "ask for fewer tokens or retry later."
                    ) from None
                if item is None:
                    remaining -= 1
                    continue
                index, out = item
                clocks[index].token(len(out.token_ids))
                if out.finished:
                    finals[index] = out
                    clocks[index].finish(out.finish_reason, out.queue_seconds)
                if out.finish_reason == "error":
                    if out.error_code == ReplicaFailed.code:
                        raise ReplicaFailed(out.error or "The replica failed.", retry_after=1)
                    raise GenerationFailed.because(out.error)
                yield item
        finally:
            for task in tasks:
                task.cancel()
            for clock in clocks:
                clock.finish("abort")
            self._account(clocks, finals)

    def _account(self, clocks: list[RequestClock], finals: dict[int, RequestOutput]) -> None:
        """Add each choice to the HTTP request's record (tokens, finish reason, timings)."""
        record = current_request()
        if record is None:
            return
        for i, clock in enumerate(clocks):
            out = finals.get(i)
            record.add_generation(
                prompt_tokens=clock.num_prompt_tokens,
                completion_tokens=clock.num_output_tokens,
                cached_tokens=(out.num_cached_tokens or 0) if out is not None and i == 0 else 0,
                finish_reason=out.finish_reason if out is not None else "abort",
                queue_seconds=None if out is None else out.queue_seconds,
                engine_arrival=clock.arrival,
                first_token=clock.first_token,
            )

    async def collect(self) -> list[Completion]:
        """The n completions, in choice order; raises as ``stream``."""
        outputs: list[list[RequestOutput]] = [[] for _ in self.params]
        async for index, out in self.stream():
            outputs[index].append(out)
        return [Completion.merge(outs) for outs in outputs]
