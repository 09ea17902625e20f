"""The FastAPI application: wiring, lifespan and the one place errors become HTTP responses.

Every error leaves as the OpenAI envelope ``{"error": {message, type, param, code}}``; validation
problems are 400 (as vLLM and OpenAI do), never 500; unexpected errors are logged and answered
with a generic 500 that carries no traceback.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmos import __version__
from llmos.config import Settings
from llmos.errors import LLMOSError
from llmos.server.model_pool import ModelPool
from llmos.server.routes import router

logger = logging.getLogger(__name__)


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


def create_app(settings: Settings, pool: ModelPool | None = None) -> FastAPI:
    """The app serving ``pool``'s models (load models into the pool before serving them)."""
    pool = pool or ModelPool(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        pool.close()

    app = FastAPI(title="llmos", version=__version__, lifespan=lifespan)
    app.state.pool = pool
    app.state.settings = settings
    app.include_router(router)

    @app.exception_handler(LLMOSError)
    async def llmos_error(_: Request, exc: LLMOSError) -> JSONResponse:
        return JSONResponse(exc.to_openai(), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return JSONResponse(error_body(message, "invalid_request_error", None, param), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(exc.detail), kind), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected_error(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error")
        return JSONResponse(error_body("Internal server error.", "server_error"), status_code=500)

    return app
