"""Drives an ``Engine`` from a background thread and serves many concurrent callers.

Callers submit through a command queue (the engine itself is touched by the loop thread only);
each request has a sink that receives ``RequestOutput`` text deltas — an asyncio queue for the
server, a plain queue for the synchronous SDK. A caller that goes away (closed generator, client
disconnect, Ctrl-C) aborts its request, which frees its KV blocks at the next step.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from llmos.engine.detokenizer import Detokenizer, Tokenizer
from llmos.engine.engine import Engine, EngineStats
from llmos.engine.outputs import Completion, EngineOutput, RequestOutput
from llmos.engine.sampling_params import SamplingParams
from llmos.errors import EngineDead, LLMOSError

logger = logging.getLogger(__name__)

Sink = Callable[[RequestOutput], None]


class EngineClient(Protocol):
    """What the server and SDK need from an engine; ``AsyncEngine`` is the in-process one."""

    def generate(
        self, prompt_token_ids: list[int], params: SamplingParams, request_id: str | None = None
    ) -> AsyncIterator[RequestOutput]: ...

    def stream(self, prompt_token_ids: list[int], params: SamplingParams) -> Iterator[RequestOutput]: ...

    def abort(self, request_id: str) -> None: ...

    def stats(self) -> EngineStats: ...

    @property
    def is_healthy(self) -> bool: ...


@dataclass(slots=True)
class _Stream:
    sink: Sink
    detokenizer: Detokenizer
    num_output_tokens: int = 0
    finish_reason: str | None = None
    stop_reason: int | str | None = None


def _failed(request_id: str, num_prompt_tokens: int, message: str) -> RequestOutput:
    return RequestOutput(request_id, "", [], None, "error", None, num_prompt_tokens, 0, error=message)


class AsyncEngine:
    def __init__(
        self,
        engine: Engine | Callable[[], Engine],
        tokenizer: Tokenizer,
        eos_token_ids: frozenset[int] = frozenset(),
    ):
        """``engine`` may be a factory, which then runs on the loop thread (preferred: see ``_run``).

        Raises whatever the factory raises.
        """
        self._build = engine if not isinstance(engine, Engine) else (lambda: engine)
        self.engine: Engine
        self._started = threading.Event()
        self._build_error: BaseException | None = None
        self.tokenizer = tokenizer
        self.eos_token_ids = eos_token_ids
        self._commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._wakeup = threading.Event()
        self._streams: dict[str, _Stream] = {}
        self._stopped = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="llmos-engine", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._build_error is not None:
            raise self._build_error

    @property
    def is_healthy(self) -> bool:
        return self._thread.is_alive() and not self._stopped

    def stats(self) -> EngineStats:
        return self.engine.stats()

    # --- the loop thread -------------------------------------------------------------------
    def _run(self) -> None:
        # All torch work (loading included) happens on this one thread. Torch's OpenMP pools are
        # per calling thread; a second busy pool (say, the main thread's, left by loading the
        # weights) puts more spinning threads than cores and halves decode speed on small CPUs.
        try:
            self.engine = self._build()
        except BaseException as exc:
            self._build_error = exc
            self._stopped = True
            return
        finally:
            self._started.set()
        while not self._stopped:
            self._wakeup.clear()
            while not self._commands.empty():
                command = self._commands.get()
                try:
                    command()
                except Exception:  # a bad command must not kill the loop
                    logger.exception("engine command failed")
            if not self.engine.has_unfinished():
                self._wakeup.wait()
                continue
            try:
                outputs = self.engine.step()
            except Exception as exc:  # a failed step fails its requests, not the process
                logger.exception("engine step failed")
                self.error = exc
                outputs = self.engine.fail_all(f"{type(exc).__name__}: {exc}")
            for out in outputs:
                self._dispatch(out)
        for request_id in list(self._streams):
            self.engine.abort(request_id)
        for out in self.engine.step() if self.engine.has_unfinished() else []:
            self._dispatch(out)

    def _dispatch(self, out: EngineOutput) -> None:
        stream = self._streams.get(out.request_id)
        if stream is None:  # already finished by a stop string
            return
        stream.num_output_tokens += len(out.new_token_ids)
        finished = out.finish_reason is not None
        text, stop = stream.detokenizer.add(out.new_token_ids, finished)
        stream.finish_reason, stream.stop_reason = out.finish_reason, out.stop_reason
        if stop is not None:
            if not finished:  # the engine would keep generating past the stop string
                self.engine.abort(out.request_id)
            stream.finish_reason, stream.stop_reason = "stop", stop
        result = RequestOutput(
            request_id=out.request_id,
            text=text,
            token_ids=out.new_token_ids,
            logprobs=out.new_logprobs,
            finish_reason=stream.finish_reason,
            stop_reason=stream.stop_reason,
            num_prompt_tokens=out.num_prompt_tokens,
            num_output_tokens=stream.num_output_tokens,
            num_cached_tokens=out.num_cached_tokens,
            error=(out.error or str(self.error)) if stream.finish_reason == "error" else None,
            prompt_logprobs=out.prompt_logprobs,
            queue_seconds=out.queue_seconds,
        )
        if result.finished:
            del self._streams[out.request_id]
        try:
            stream.sink(result)
        except Exception:  # a caller's sink must not kill the loop
            logger.exception("delivering output for %s failed", out.request_id)

    # --- callers' side ---------------------------------------------------------------------
    def _submit(
        self, prompt_token_ids: list[int], params: SamplingParams, request_id: str | None, sink: Sink
    ) -> str:
        if self._stopped or not self._thread.is_alive():
            raise EngineDead("The engine has stopped; restart the model.")
        self.engine.check_request(prompt_token_ids, params)
        request_id = request_id or f"req-{uuid.uuid4().hex}"
        detokenizer = Detokenizer(self.tokenizer, prompt_token_ids, params)

        def add() -> None:
            try:
                self.engine.add_request(prompt_token_ids, params, request_id, self.eos_token_ids)
            except LLMOSError as exc:  # e.g. a request id already in use: fail this caller only
                sink(_failed(request_id, len(prompt_token_ids), exc.message))
                return
            self._streams[request_id] = _Stream(sink, detokenizer)

        self._commands.put(add)
        self._wakeup.set()
        return request_id

    def abort(self, request_id: str) -> None:
        def drop() -> None:
            if self._streams.pop(request_id, None) is not None:
                self.engine.abort(request_id)

        self._commands.put(drop)
        self._wakeup.set()

    async def generate(
        self, prompt_token_ids: list[int], params: SamplingParams, request_id: str | None = None
    ) -> AsyncIterator[RequestOutput]:
        """Stream outputs for one request; closing the iterator early aborts the request."""
        loop = asyncio.get_running_loop()
        outputs: asyncio.Queue[RequestOutput] = asyncio.Queue()

        def sink(out: RequestOutput) -> None:
            try:
                loop.call_soon_threadsafe(outputs.put_nowait, out)
            except RuntimeError:  # the caller's loop is gone
                pass

        request_id = self._submit(prompt_token_ids, params, request_id, sink)
        finished = False
        try:
            while not finished:
                out = await outputs.get()
                finished = out.finished
                yield out
        finally:
            if not finished:
                self.abort(request_id)

    def stream(self, prompt_token_ids: list[int], params: SamplingParams) -> Iterator[RequestOutput]:
        """The synchronous twin of ``generate`` (for the in-process SDK and CLI)."""
        outputs: queue.SimpleQueue[RequestOutput] = queue.SimpleQueue()
        request_id = self._submit(prompt_token_ids, params, None, outputs.put)
        finished = False
        try:
            while not finished:
                out = outputs.get()
                finished = out.finished
                yield out
        finally:
            if not finished:
                self.abort(request_id)

    def generate_batch(self, prompts: list[list[int]], params: list[SamplingParams]) -> list[Completion]:
        """Submit every prompt at once (they batch together) and wait for all of them."""
        for prompt, sp in zip(prompts, params):  # reject the batch before any of it runs
            self.engine.check_request(prompt, sp)
        outputs: queue.SimpleQueue[RequestOutput] = queue.SimpleQueue()
        ids = [self._submit(p, sp, None, outputs.put) for p, sp in zip(prompts, params)]
        collected: dict[str, list[RequestOutput]] = {i: [] for i in ids}
        remaining = len(ids)
        try:
            while remaining:
                out = outputs.get()
                collected[out.request_id].append(out)
                remaining -= out.finished
        finally:
            for request_id, outs in collected.items():
                if not outs or not outs[-1].finished:
                    self.abort(request_id)
        return [Completion.merge(collected[i]) for i in ids]

    def shutdown(self) -> None:
        self._stopped = True
        self._wakeup.set()
        self._thread.join(timeout=30)
