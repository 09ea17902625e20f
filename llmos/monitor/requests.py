"""One HTTP request's record: who sent it, what it asked, what it cost and how long each part took.

The server's outermost middleware opens a ``RequestRecord`` per request and makes it the current
one (a context variable, so the route, the serving code and the worker threads they start all see
the same record); the serving code fills in the model, the token counts and the engine timings; when
the response is done the middleware writes it out — one JSON access-log line, one usage row, and,
when tracing is on, one span tree. Times are ``time.monotonic()`` seconds except ``started_at``.
"""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from llmos.store.audit import utcnow

REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def request_id_from(header: str | None) -> str:
    """The client's ``X-Request-Id`` when it is 1–128 characters of ``[A-Za-z0-9._-]``, else a new one."""
    if header and REQUEST_ID.fullmatch(header):
        return header
    return f"req_{secrets.token_hex(12)}"


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    method: str
    path: str
    arrival: float  # monotonic seconds when the server first saw the request
    started_at: datetime = field(default_factory=utcnow)
    route: str | None = None  # the route template (``/v1/models/{model_id}``), not the raw path
    key_id: str | None = None
    operation: str | None = None  # gen_ai.operation.name: chat, text_completion, embeddings, task
    model: str | None = None
    status: int | None = None
    error_code: str | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    max_tokens: int | None = None
    temperature: float | None = None
    finish_reasons: list[str] = field(default_factory=list)
    queue_seconds: float | None = None  # arrival at the engine to first scheduled
    engine_arrival: float | None = None  # monotonic, when the first engine request was submitted
    first_token: float | None = None  # monotonic, first output token of any choice
    finished: float | None = None  # monotonic, the response's last byte
    guardrail_actions: list[str] = field(default_factory=list)  # "stage:rule:action"
    traceparent: str | None = None  # the client's W3C trace context, continued by tracing
    prompt_text: str | None = None  # only kept when LLMOS_LOG_PROMPTS=1 (and then redacted)
    output_text: str | None = None
    priority: int = 0  # the engine's: 0 interactive, higher for a batch job's lines
    batch_id: str | None = None  # the batch a line of which this request is
    replica: str | None = None  # scaled out (``serve --ray``): the replica that served it
    route_reason: str | None = None  # and why the router chose it (``routing.Decision.reason``)

    @property
    def finish_reason(self) -> str | None:
        """One reason for the request: the first choice's (the others are in ``finish_reasons``)."""
        return self.finish_reasons[0] if self.finish_reasons else None

    def ms(self, start: float | None, end: float | None) -> float | None:
        if start is None or end is None:
            return None
        return round((end - start) * 1000, 2)

    @property
    def ttft_ms(self) -> float | None:
        return self.ms(self.arrival, self.first_token)

    @property
    def e2e_ms(self) -> float | None:
        return self.ms(self.arrival, self.finished)

    @property
    def queue_ms(self) -> float | None:
        return None if self.queue_seconds is None else round(self.queue_seconds * 1000, 2)

    def add_generation(
        self,
        *,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int = 0,
        finish_reason: str | None = None,
        queue_seconds: float | None = None,
        engine_arrival: float | None = None,
        first_token: float | None = None,
    ) -> None:
        """Fold one engine request (one choice of one prompt) into the record."""
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.cached_tokens += cached_tokens
        if finish_reason:
            self.finish_reasons.append(finish_reason)
        if queue_seconds is not None:
            self.queue_seconds = max(queue_seconds, self.queue_seconds or 0.0)
        if engine_arrival is not None:
            self.engine_arrival = min(engine_arrival, self.engine_arrival or engine_arrival)
        if first_token is not None:
            self.first_token = min(first_token, self.first_token or first_token)

    def to_log(self) -> dict[str, Any]:
        """The access-log line (``ACCESS_LOG_SCHEMA``); the replica and route reason only when scaled
        out, prompt and output only when they were kept."""
        line: dict[str, Any] = {
            "time": self.started_at.isoformat(timespec="milliseconds"),
            "request_id": self.request_id,
            "key_id": self.key_id,
            "method": self.method,
            "route": self.route or self.path,
            "model": self.model,
            "status": self.status,
            "error_code": self.error_code,
            "prompt_tokens": self.prompt_tokens,
            "cached_tokens": self.cached_tokens,
            "completion_tokens": self.completion_tokens,
            "queue_ms": self.queue_ms,
            "ttft_ms": self.ttft_ms,
            "e2e_ms": self.e2e_ms,
            "finish_reason": self.finish_reason,
            "guardrail_actions": list(self.guardrail_actions),
        }
        if self.replica is not None:
            line["replica"] = self.replica
            line["route_reason"] = self.route_reason
        if self.prompt_text is not None:
            line["prompt"] = self.prompt_text
        if self.output_text is not None:
            line["output"] = self.output_text
        return line


_current: ContextVar[RequestRecord | None] = ContextVar("llmos_request", default=None)


def current_request() -> RequestRecord | None:
    """The record of the HTTP request this code runs for, or None outside one (SDK, CLI, tests)."""
    return _current.get()


def set_current(record: RequestRecord | None) -> Any:
    """Make ``record`` current; returns the token ``reset_current`` takes."""
    return _current.set(record)


def reset_current(token: Any) -> None:
    _current.reset(token)


_NULLABLE_INT = {"type": ["integer", "null"]}
_NULLABLE_NUMBER = {"type": ["number", "null"], "minimum": 0}
_NULLABLE_STRING = {"type": ["string", "null"]}

ACCESS_LOG_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "llmos access-log line",
    "type": "object",
    "required": [
        "time",
        "request_id",
        "key_id",
        "method",
        "route",
        "model",
        "status",
        "error_code",
        "prompt_tokens",
        "cached_tokens",
        "completion_tokens",
        "queue_ms",
        "ttft_ms",
        "e2e_ms",
        "finish_reason",
        "guardrail_actions",
    ],
    "additionalProperties": False,
    "properties": {
        "time": {"type": "string", "format": "date-time"},
        "request_id": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,128}$"},
        "key_id": _NULLABLE_STRING,
        "method": {"type": "string"},
        "route": {"type": "string"},
        "model": _NULLABLE_STRING,
        "status": _NULLABLE_INT,
        "error_code": _NULLABLE_STRING,
        "prompt_tokens": {"type": "integer", "minimum": 0},
        "cached_tokens": {"type": "integer", "minimum": 0},
        "completion_tokens": {"type": "integer", "minimum": 0},
        "queue_ms": _NULLABLE_NUMBER,
        "ttft_ms": _NULLABLE_NUMBER,
        "e2e_ms": _NULLABLE_NUMBER,
        "finish_reason": _NULLABLE_STRING,
        "guardrail_actions": {"type": "array", "items": {"type": "string"}},
        "replica": {"type": "string"},
        "route_reason": {"type": "string"},
        "prompt": {"type": "string"},
        "output": {"type": "string"},
    },
}
