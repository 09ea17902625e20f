"""The ASGI layer in front of every route: request ids, authentication, the body limit, and what is
written when a request is done (the usage row, the JSON access-log line, the trace, the metrics).

Pure ASGI (not ``BaseHTTPMiddleware``) so streamed responses pass through untouched and the
context it sets (the request's record and principal) is the one the route runs in. Every response
carries ``X-Request-Id`` (the client's, when it is 1–128 characters of ``[A-Za-z0-9._-]``) and the
key's ``x-ratelimit-*`` headers; ``/health`` stays open for load balancers' liveness probes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmos.errors import LLMOSError, PayloadTooLarge, Unauthorized
from llmos.monitor.requests import RequestRecord, current_request, request_id_from, reset_current, set_current
from llmos.server import access
from llmos.server.access import AccessControl

OPEN_PATHS = frozenset({"/health", "/", "/docs"})
# The console's pages and assets hold no data (it comes from the API, with the user's key), so a
# browser without a key can load them and then ask for one.
OPEN_PREFIXES = ("/ui/", "/static/")
# Keys of the ASGI scope only the server itself sets (a batch's lines, sent in-process): who the
# request is from and its engine priority. Nothing a client sends can put them there.
INTERNAL_PRINCIPAL = "llmos.principal"
INTERNAL_PRIORITY = "llmos.priority"
INTERNAL_BATCH = "llmos.batch"
UPLOAD_PATHS = frozenset({"/v1/files"})  # bodies up to LLMOS_MAX_FILE_BYTES (multipart uploads)
UNACCOUNTED = frozenset({"/health", "/ready", "/metrics"})  # probes and scrapes: no usage rows
access_log = logging.getLogger("llmos.access")
logger = logging.getLogger(__name__)


def is_open(path: str) -> bool:
    """Whether ``path`` is served without a key (liveness and the console's pages)."""
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def stamped(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI error envelope with the current request's id in it (``error.request_id``)."""
    record = current_request()
    if record is not None and isinstance(body.get("error"), dict):
        body["error"]["request_id"] = record.request_id
        record.error_code = record.error_code or body["error"].get("code") or body["error"].get("type")
    return body


async def send_error(send: Send, error: LLMOSError, headers: dict[str, str] | None = None) -> None:
    body = json.dumps(stamped(error.to_openai())).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": error.status_code, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


class AccessMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        control: AccessControl,
        max_request_bytes: int,
        on_done: Any = None,
        max_upload_bytes: int = 0,
    ):
        """``on_done(record)`` runs after each request's record is complete (tracing);
        ``max_upload_bytes`` bounds the bodies of ``UPLOAD_PATHS`` instead of ``max_request_bytes``."""
        self.app = app
        self.control = control
        self.max_request_bytes = max_request_bytes
        self.max_upload_bytes = max(max_upload_bytes, max_request_bytes)
        self.on_done = on_done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        request_id = request_id_from(headers.get(b"x-request-id", b"").decode("latin-1") or None)
        record = RequestRecord(
            request_id=request_id, method=scope["method"], path=scope["path"], arrival=time.monotonic()
        )
        record.traceparent = headers.get(b"traceparent", b"").decode("latin-1")[:128] or None
        record.priority = scope.get(INTERNAL_PRIORITY, 0)
        record.batch_id = scope.get(INTERNAL_BATCH)
        token = set_current(record)
        extra = {"x-request-id": request_id}
        try:
            principal = await self._authenticate(scope, headers, record)
        except Unauthorized as exc:
            record.status, record.error_code = 401, exc.code
            await send_error(send, exc, {**extra, "www-authenticate": "Bearer"})
            self._done(record, scope)
            reset_current(token)
            return
        record.key_id = principal.key_id
        state = access.begin(principal)
        try:
            await self._run(scope, receive, send, headers, record)
        finally:
            try:
                self.control.settle(record, state[2])
            finally:
                access.end(state)
                self._done(record, scope)
                reset_current(token)

    async def _authenticate(self, scope: Scope, headers: dict[bytes, bytes], record: RequestRecord) -> Any:
        internal = scope.get(INTERNAL_PRINCIPAL)
        if internal is not None:  # a batch line the server sends itself, as its submitter
            return internal
        if is_open(scope["path"]):
            return access.OPEN
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        try:
            return await asyncio.to_thread(self.control.authenticate, authorization or None)
        except Unauthorized as exc:
            self.control.metrics.auth_failures.labels(exc.code or "invalid").inc()
            raise

    async def _run(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes], record: RequestRecord
    ) -> None:
        is_upload = scope["path"] in UPLOAD_PATHS
        limit = self.max_upload_bytes if is_upload else self.max_request_bytes
        request_id = record.request_id
        too_large = PayloadTooLarge(
            f"The request body is larger than {limit} bytes "
            f"({'LLMOS_MAX_FILE_BYTES' if is_upload else 'LLMOS_MAX_REQUEST_BYTES'})."
        )
        try:
            declared = int(headers.get(b"content-length", b"0"))
        except ValueError:
            declared = 0
        if declared > limit:
            record.status, record.error_code = 413, too_large.code
            await send_error(send, too_large, {"x-request-id": request_id})
            return
        received, responded = 0, False

        async def limited_receive() -> Message:
            # A chunked body that said nothing (or lied): answer 413 ourselves, tell the app the
            # client left, and drop whatever the app then tries to send.
            nonlocal received, responded
            message: Any = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if not responded:
                        responded = True
                        record.status, record.error_code = 413, too_large.code
                        await send_error(send, too_large, {"x-request-id": request_id})
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if responded:
                return
            if message["type"] == "http.response.start":
                record.status = message["status"]
                added = {"x-request-id": request_id, **self.control.rate_headers()}
                message = {**message, "headers": [*message.get("headers", []), *_raw(added)]}
            await send(message)

        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await guarded_send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except Exception:  # answered here, with the request id, rather than by Starlette outside
            logger.exception("unhandled error in %s %s", scope["method"], scope["path"])
            if started:
                raise
            record.status, record.error_code = 500, "server_error"
            await send_error(send, LLMOSError("Internal server error."), {"x-request-id": request_id})

    def _done(self, record: RequestRecord, scope: Scope) -> None:
        """The request is over: metrics, the access-log line, the usage row, the trace."""
        record.finished = time.monotonic()
        route = scope.get("route")
        record.route = getattr(route, "path", None) or record.route
        status = record.status or 499  # the client left before any response started
        record.status = status
        metrics = self.control.metrics
        metrics.http_requests.labels(record.route or "unmatched", str(status)).inc()
        try:
            if record.path != "/health":
                access_log.info(json.dumps(record.to_log(), ensure_ascii=False))
            if record.path not in UNACCOUNTED and not is_open(record.path):
                self.control.account(record)
            if self.on_done is not None:
                self.on_done(record)
        except Exception:  # what is written after a request must never break the next one
            logger.exception("recording request %s failed", record.request_id)


def _raw(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
