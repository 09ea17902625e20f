"""ASGI guards in front of every route: API keys and the request body limit.

Pure ASGI (not ``BaseHTTPMiddleware``) so streamed responses pass through untouched. Keys are
compared in constant time; ``/health`` stays open for load balancers' liveness probes.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmos.errors import LLMOSError, PayloadTooLarge, Unauthorized

OPEN_PATHS = frozenset({"/health"})


async def send_error(send: Send, error: LLMOSError, headers: dict[str, str] | None = None) -> None:
    body = json.dumps(error.to_openai()).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": error.status_code, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    def __init__(self, app: ASGIApp, api_keys: list[str], max_request_bytes: int):
        self.app = app
        self.api_keys = [k.encode() for k in api_keys]
        self.max_request_bytes = max_request_bytes

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
        if scheme.lower() != b"bearer" or not token:
            return False
        # Compare against every key (no early exit) so timing says nothing about which matched.
        matches = [hmac.compare_digest(token.strip(), key) for key in self.api_keys]
        return any(matches)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if self.api_keys and scope["path"] not in OPEN_PATHS and not self._authorized(headers):
            error = Unauthorized("Missing or invalid API key: send `Authorization: Bearer <key>`.")
            await send_error(send, error, {"www-authenticate": "Bearer"})
            return
        limit = self.max_request_bytes
        too_large = PayloadTooLarge(
            f"The request body is larger than {limit} bytes (LLMOS_MAX_REQUEST_BYTES)."
        )
        try:
            declared = int(headers.get(b"content-length", b"0"))
        except ValueError:
            declared = 0
        if declared > limit:
            await send_error(send, too_large)
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
                        await send_error(send, too_large)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not responded:
                await send(message)

        await self.app(scope, limited_receive, guarded_send)
