"""The FastAPI application: wiring, lifespan and the one place errors become HTTP responses.

Every error leaves as the OpenAI envelope ``{"error": {message, type, param, code}}``; validation
problems are 400 (as vLLM and OpenAI do), never 500; unexpected errors are logged and answered
with a generic 500 that carries no traceback.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import logging
import logging.handlers
import queue
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmos import __version__
from llmos.batch import BatchStore
from llmos.config import Settings
from llmos.errors import LLMOSError
from llmos.monitor.metrics import ServerMetrics
from llmos.server.access import AccessControl
from llmos.server.admin import router as admin_router
from llmos.server.auth import requires
from llmos.server.batches import BatchRunner
from llmos.server.batches import router as batches_router
from llmos.server.datasets import router as datasets_router
from llmos.server.evaluations import router as evaluations_router
from llmos.server.explain import router as explain_router
from llmos.server.jobs import router as jobs_router
from llmos.server.middleware import AccessMiddleware, stamped
from llmos.server.model_pool import ModelPool
from llmos.server.native import router as native_router
from llmos.server.routes import router
from llmos.server.serving import OpenAIServing
from llmos.server.tasks import router as tasks_router
from llmos.web.console import console_router, static_app

logger = logging.getLogger(__name__)
MULTIPART_OVERHEAD = 1 << 16  # an upload's form fields and boundaries around the file itself


def error_body(message: str, error_type: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "Invalid request body.", None
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    message = first.get("msg", "invalid value")
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return (f"{param}: {message}{more}" if param else f"{message}{more}"), param


class Startup:
    """Preloads models on a background thread so the server answers /health (and /ready: 503)
    while they load, and SIGTERM during a load still shuts down promptly."""

    def __init__(self, pool: ModelPool, preload: list[str]):
        self.pool, self.preload = pool, preload
        self.error: str | None = None
        self.done = threading.Event()
        if not preload:
            self.done.set()

    def start(self) -> None:
        if self.preload:
            threading.Thread(target=self._run, name="llmos-preload", daemon=True).start()

    def _run(self) -> None:
        try:
            for ref in self.preload:
                if self.pool.is_draining:
                    return
                self.pool.load_sync(ref, keep_alive=-1)  # preloaded models stay until stopped
        except Exception as exc:
            logger.exception("preloading failed")
            self.error = str(exc)
        finally:
            self.done.set()


async def _expire_idle(pool: ModelPool, control: AccessControl) -> None:
    """Every second unload models idle past their keep-alive; every few seconds notice names the
    registry moved (a newer ``latest``), so they load the version they now mean; every hour drop
    usage rows past their retention."""
    for tick in itertools.count(1):
        await asyncio.sleep(1.0)
        try:
            await asyncio.to_thread(pool.expire)
            if tick % 5 == 0:
                await asyncio.to_thread(pool.refresh_names)
            if tick % 3600 == 1:
                await control.expire_usage()
        except Exception:  # the reaper must keep running
            logger.exception("unloading idle models failed")


def create_app(
    settings: Settings, pool: ModelPool | None = None, preload: list[str] | None = None
) -> FastAPI:
    """The app serving ``pool``'s models; ``preload`` models load in the background at startup."""
    pool = pool or ModelPool(settings)
    budgets: dict[str, Any] = {}
    metrics = ServerMetrics(pool.engines, budgets=lambda: budgets["limiter"].budget_remaining())
    control = AccessControl(settings, metrics)
    budgets["limiter"] = control.limiter
    pool.metrics = metrics
    startup = Startup(pool, list(preload or []))
    tracing = _tracing(settings)
    guardrails = _guardrails(settings)

    batches = BatchStore(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        startup.start()
        reaper = asyncio.create_task(_expire_idle(pool, control))
        app.state.batch_runner.start()  # picks up batches a previous run left unfinished
        yield
        pool.is_draining = True
        await app.state.batch_runner.stop()  # lines in flight are redone after the restart
        reaper.cancel()
        with suppress(asyncio.CancelledError):
            await reaper
        await asyncio.to_thread(pool.close)
        await asyncio.to_thread(control.close)
        await asyncio.to_thread(batches.close)
        if tracing is not None:
            await asyncio.to_thread(tracing.shutdown)

    app = FastAPI(
        title="llmos",
        version=__version__,
        lifespan=lifespan,
        description="OpenAI-compatible and native model API of llmos.",
        docs_url=None,  # the console serves /docs from vendored files (FastAPI's loads a CDN)
        redoc_url=None,
    )
    app.state.pool = pool
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.startup = startup
    app.state.access = control
    app.state.guardrails = guardrails
    app.state.batches = batches
    app.state.batch_runner = BatchRunner(app, settings, batches, control)
    app.state.serving = OpenAIServing(
        pool,
        metrics,
        settings.request_timeout,
        startup.preload,
        access=control,
        guardrails=guardrails,
        log_prompts=settings.log_prompts,
    )
    app.include_router(router)
    app.include_router(native_router)
    app.include_router(datasets_router)
    app.include_router(jobs_router)
    app.include_router(explain_router)
    app.include_router(evaluations_router)
    app.include_router(tasks_router)
    app.include_router(admin_router)
    app.include_router(batches_router)
    app.include_router(console_router(requires("public")))
    app.mount("/static", static_app(), name="static")
    app.add_middleware(
        AccessMiddleware,
        control=control,
        max_request_bytes=settings.max_request_bytes,
        max_upload_bytes=settings.max_file_bytes + MULTIPART_OVERHEAD,
        on_done=None if tracing is None else (lambda record: tracing.record(record, record.traceparent)),
    )

    @app.exception_handler(LLMOSError)
    async def llmos_error(_: Request, exc: LLMOSError) -> JSONResponse:
        headers = dict(getattr(exc, "headers", None) or {})
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        return JSONResponse(stamped(exc.to_openai()), status_code=exc.status_code, headers=headers or None)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        body = error_body(message, "invalid_request_error", None, param)
        return JSONResponse(stamped(body), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(stamped(error_body(str(exc.detail), kind)), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected_error(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error")
        body = stamped(error_body("Internal server error.", "server_error"))
        return JSONResponse(body, status_code=500)

    return app


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    """Hands log lines to a writer thread; when the writer is stuck (a full pipe nobody reads) the
    lines are counted and dropped instead of stopping the event loop or piling up in memory."""

    dropped = 0

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)  # type: ignore[union-attr]
        except queue.Full:
            self.dropped += 1


ACCESS_LOG_BACKLOG = 10_000  # lines waiting for the writer before new ones are dropped


def configure_access_log(settings: Settings) -> None:
    """Where the one-JSON-line-per-request access log goes: ``-`` stderr, a file, or ``off``.
    Lines are written by a background thread, never by the event loop."""
    target = settings.access_log.strip()
    log = logging.getLogger("llmos.access")
    log.propagate = False
    for old in list(log.handlers):
        log.removeHandler(old)
    if target.lower() in ("off", "none", "0", ""):
        log.disabled = True
        return
    log.disabled = False
    writer: logging.Handler = logging.StreamHandler() if target == "-" else logging.FileHandler(target)
    writer.setFormatter(logging.Formatter("%(message)s"))
    lines: queue.Queue[logging.LogRecord] = queue.Queue(ACCESS_LOG_BACKLOG)
    listener = logging.handlers.QueueListener(lines, writer)
    listener.start()

    def flush() -> None:  # at exit: write what is queued, but never wait long on a stuck stream
        listener.enqueue_sentinel()
        thread = getattr(listener, "_thread", None)
        if thread is not None:
            thread.join(timeout=2.0)

    atexit.register(flush)
    log.addHandler(_DroppingQueueHandler(lines))
    log.setLevel(logging.INFO)


def _tracing(settings: Settings) -> Any:
    """OpenTelemetry spans per request when ``LLMOS_OTLP_ENDPOINT`` is set (else nothing loads)."""
    if not settings.otlp_endpoint:
        return None
    from llmos.monitor.tracing import Tracing

    return Tracing.from_endpoint(settings.otlp_endpoint)


def _guardrails(settings: Settings) -> Any:
    """The guardrail rules of ``LLMOS_GUARDRAILS`` (a YAML file), checked at start-up."""
    if not settings.guardrails:
        return None
    from llmos.guardrails import GuardrailConfig

    return GuardrailConfig.load(Path(settings.guardrails))


class DrainingServer(uvicorn.Server):
    """uvicorn's server, but SIGTERM/SIGINT first marks the pool as draining: new requests get
    503 while in-flight ones finish (up to ``drain_timeout`` seconds), then models unload."""

    def __init__(self, app: FastAPI, settings: Settings, pool: ModelPool):
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            timeout_graceful_shutdown=settings.drain_timeout,
        )
        super().__init__(config)
        self.pool = pool

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.pool.is_draining = True
        super().handle_exit(sig, frame)

    def run(self, sockets: Any = None) -> None:
        # uvicorn re-raises the captured signal once it has shut down, which would end the
        # process "killed by SIGTERM"; a drained shutdown is a clean exit, so make that a no-op.
        signal.signal(signal.SIGTERM, lambda *_: None)
        super().run(sockets)
