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
        self,
        prompt_token_ids: list[int],
        params: SamplingParams,
        request_id: str | None = None,
        priority: int = 0,
    ) -> AsyncIterator[RequestOutput]: ...

    def stream(self, prompt_token_ids: list[int], params: SamplingParams) -> Iterator[RequestOutput]: ...

    def abort(self, request_id: str) -> None: ...

    def check_request(self, prompt_token_ids: list[int], params: SamplingParams) -> None: ...

    def stats(self) -> EngineStats: ...

    @property
    def is_healthy(self) -> bool: ...


@dataclass(slots=True)
class _Stream:
    sink: Sink
    detokenizer: Detokenizer
    num_prompt_tokens: int = 0
    num_output_tokens: int = 0
    finish_reason: str | None = None
    stop_reason: int | str | None = None


def _failed(
    request_id: str, num_prompt_tokens: int, message: str, num_output_tokens: int = 0
) -> RequestOutput:
    return RequestOutput(
        request_id, "", [], None, "error", None, num_prompt_tokens, num_output_tokens, error=message
    )


class AsyncEngine:
    """Runs the engine loop on its own thread. A step that raises is a fault outside any one
    request (those fail through ``ModelRunnerOutput.errors`` instead), so the engine *dies*: every
    request it holds, waiting or running, finishes with ``error`` at once, ``is_healthy`` turns
    False, new requests raise ``EngineDead`` and the loop thread exits. Whoever owns the engine
    (the server's model pool) replaces it."""

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
        # Held while checking _stopped and queueing a request, so none slips in after the loop's
        # last look at the queue (it would never be answered).
        self._submit_lock = threading.Lock()
        self._wakeup = threading.Event()
        self._streams: dict[str, _Stream] = {}
        self._stopped = False
        self.error: BaseException | None = None  # what killed the engine; None while alive
        self._thread = threading.Thread(target=self._run, name="llmos-engine", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._build_error is not None:
            raise self._build_error

    @property
    def is_healthy(self) -> bool:
        return self._thread.is_alive() and not self._stopped

    @property
    def is_dead(self) -> bool:
        """True once a fault stopped the engine (not after a plain ``shutdown``)."""
        return self.error is not None

    def stats(self) -> EngineStats:
        return self.engine.stats()

    def check_request(self, prompt_token_ids: list[int], params: SamplingParams) -> None:
        """Raises as ``Engine.check_request`` (callable from any thread: it touches no state)."""
        self.engine.check_request(prompt_token_ids, params)

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
        try:
            while not self._stopped:
                self._wakeup.clear()
                self._run_commands()
                if not self.engine.has_unfinished():
                    if not self.engine.idle_work():  # a piece of warm-up, then look for work again
                        self._wakeup.wait()
                    continue
                for out in self.engine.step():
                    self._dispatch(out)
        except BaseException as exc:  # whatever it is, no caller may be left waiting
            self._die(exc)
            return
        self._finish_all("abort")

    def _run_commands(self) -> None:
        while not self._commands.empty():
            command = self._commands.get()
            try:
                command()
            except Exception:  # a bad command must not kill the loop
                logger.exception("engine command failed")

    def _die(self, exc: BaseException) -> None:
        logger.error("engine step failed; the engine is dead", exc_info=exc)
        with self._submit_lock:
            self.error = exc
            self._stopped = True
        detail = f"{type(exc).__name__}: {exc}"
        self._finish_all("error", f"The engine stopped after an internal error ({detail[:300]}).")

    def _finish_all(self, reason: str, error: str | None = None) -> None:
        """Answer every request the loop still holds, queued ones included, as it stops."""
        with self._submit_lock:
            self._stopped = True  # no request is queued after this (``_submit`` checks under the lock)
        self._run_commands()
        try:
            outputs = self.engine.finish_all(reason, error)
        except Exception:  # a broken engine: its callers are answered directly below
            logger.exception("finishing the engine's requests failed")
            outputs = []
        for out in outputs:
            self._dispatch(out)
        for request_id, stream in list(self._streams.items()):  # any the engine lost track of
            del self._streams[request_id]
            message = error or "The engine stopped."
            self._deliver(
                stream, _failed(request_id, stream.num_prompt_tokens, message, stream.num_output_tokens)
            )
        if outputs:
            logger.info("engine stopped: %d requests finished with %s", len(outputs), reason)

    def _dispatch(self, out: EngineOutput) -> None:
        stream = self._streams.get(out.request_id)
        if stream is None:  # already finished by a stop string
            return
        stream.num_output_tokens += len(out.new_token_ids)
        finished = out.finish_reason is not None
        try:
            text, stop = stream.detokenizer.add(out.new_token_ids, finished)
        except Exception as exc:  # this request's text cannot be made: fail it alone
            logger.exception("detokenizing %s failed", out.request_id)
            if not finished:
                self.engine.abort(out.request_id)
            del self._streams[out.request_id]
            failed = _failed(out.request_id, out.num_prompt_tokens, f"detokenizing failed: {exc}")
            self._deliver(stream, failed)
            return
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
        self._deliver(stream, result)

    @staticmethod
    def _deliver(stream: _Stream, result: RequestOutput) -> None:
        try:
            stream.sink(result)
        except Exception:  # a caller's sink must not kill the loop
            logger.exception("delivering output for %s failed", result.request_id)

    # --- callers' side ---------------------------------------------------------------------
    def _submit(
        self,
        prompt_token_ids: list[int],
        params: SamplingParams,
        request_id: str | None,
        sink: Sink,
        priority: int = 0,
    ) -> str:
        self._raise_if_stopped()
        self.engine.check_request(prompt_token_ids, params)
        request_id = request_id or f"req-{uuid.uuid4().hex}"
        detokenizer = Detokenizer(self.tokenizer, prompt_token_ids, params)
        num_prompt_tokens = len(prompt_token_ids)

        def add() -> None:
            try:
                self.engine.add_request(prompt_token_ids, params, request_id, self.eos_token_ids, priority)
            except LLMOSError as exc:  # e.g. a request id already in use: fail this caller only
                sink(_failed(request_id, num_prompt_tokens, exc.message))
                return
            except Exception as exc:  # a bug, but still this caller's alone, and it gets an answer
                logger.exception("adding request %s failed", request_id)
                sink(_failed(request_id, num_prompt_tokens, f"{type(exc).__name__}: {exc}"))
                return
            self._streams[request_id] = _Stream(sink, detokenizer, num_prompt_tokens)

        with self._submit_lock:
            self._raise_if_stopped()
            self._commands.put(add)
        self._wakeup.set()
        return request_id

    def _raise_if_stopped(self) -> None:
        """Raises EngineDead once the engine died or was shut down."""
        if self.error is not None:
            raise EngineDead(
                f"The engine stopped after an internal error ({type(self.error).__name__}); "
                "load the model again."
            )
        if self._stopped or not self._thread.is_alive():
            raise EngineDead("The engine has been shut down; load the model again.")

    def abort(self, request_id: str) -> None:
        def drop() -> None:
            if self._streams.pop(request_id, None) is not None:
                self.engine.abort(request_id)

        self._commands.put(drop)
        self._wakeup.set()

    async def generate(
        self,
        prompt_token_ids: list[int],
        params: SamplingParams,
        request_id: str | None = None,
        priority: int = 0,
    ) -> AsyncIterator[RequestOutput]:
        """Stream outputs for one request (``priority``: lower runs first); closing the iterator
        early aborts the request."""
        loop = asyncio.get_running_loop()
        outputs: asyncio.Queue[RequestOutput] = asyncio.Queue()

        def sink(out: RequestOutput) -> None:
            try:
                loop.call_soon_threadsafe(outputs.put_nowait, out)
            except RuntimeError:  # the caller's loop is gone
                pass

        request_id = self._submit(prompt_token_ids, params, request_id, sink, priority)
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
        """Stop the loop: requests still running or queued finish with ``abort``."""
        with self._submit_lock:
            self._stopped = True
        self._wakeup.set()
        self._thread.join(timeout=30)
