"""Opt-in OpenTelemetry tracing: one span tree per finished HTTP request, emitted after the fact.

The server's middleware hands each finished ``RequestRecord`` to ``Tracing.record``, which replays
it as a SERVER span named by the GenAI conventions with ``queue``, ``prefill`` and ``decode``
children. Only counts, names and timings go on spans, never prompt or output text. The SDK is
imported only when tracing is switched on, so a server without ``LLMOS_OTLP_ENDPOINT`` never loads it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from llmos.monitor.requests import RequestRecord

logger = logging.getLogger(__name__)

TRACES_PATH = "/v1/traces"


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL for a collector's base URL (``http://collector:4318``), which is what
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` means too; a URL already ending in ``/v1/traces`` is kept.

    Raises ValueError when ``endpoint`` is not an http(s) URL with a host."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"LLMOS_OTLP_ENDPOINT={endpoint!r} is not an OTLP/HTTP URL; "
            "set it to the collector's base URL, e.g. http://127.0.0.1:4318"
        )
    url = endpoint.rstrip("/")
    return url if url.endswith(TRACES_PATH) else url + TRACES_PATH


class Tracing:
    """Turns request records into spans on its own ``TracerProvider`` (never the global one, so
    several apps in one process each keep their spans). Call ``shutdown`` when the server stops."""

    def __init__(self, provider: TracerProvider, exporter: SpanExporter) -> None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self.exporter = exporter
        self.propagator = TraceContextTextMapPropagator()
        self.tracer = provider.get_tracer("llmos")
        # One anchor pair maps the record's monotonic seconds onto the epoch clock spans need;
        # converting each timestamp with time.time() would let a wall-clock step reorder them.
        self.anchor_ns = time.time_ns()
        self.anchor_monotonic = time.monotonic()
        self.is_shut_down = False

    @classmethod
    def from_endpoint(
        cls, endpoint: str | None, *, exporter: SpanExporter | None = None, service_name: str = "llmos"
    ) -> Tracing | None:
        """Tracing to ``exporter`` (spans exported as they end: tests pass an ``InMemorySpanExporter``)
        or else to the OTLP/HTTP collector at ``endpoint`` (batched in a background thread); None
        when neither is given — tracing off. Building sends nothing.

        Raises ValueError for an ``endpoint`` that is not an http(s) URL."""
        if exporter is None and not endpoint:
            return None
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        # shutdown_on_exit=False: no atexit hook per app; the server's lifespan calls shutdown().
        provider = TracerProvider(
            resource=Resource.create({SERVICE_NAME: service_name}), shutdown_on_exit=False
        )
        if exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            assert endpoint is not None
            exporter = OTLPSpanExporter(endpoint=traces_url(endpoint))
            provider.add_span_processor(BatchSpanProcessor(exporter))
        return cls(provider, exporter)

    def epoch_ns(self, monotonic_seconds: float) -> int:
        return self.anchor_ns + round((monotonic_seconds - self.anchor_monotonic) * 1e9)

    def record(self, record: RequestRecord, traceparent: str | None = None) -> None:
        """Emit ``record`` as a root span plus a child per engine phase whose timestamps it has; the
        root joins the caller's trace when ``traceparent`` is a valid W3C header."""
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        # Always an explicit context: without a header the root is a new trace, never a child of
        # whatever span happens to be current in the middleware.
        parent = self.propagator.extract({"traceparent": traceparent} if traceparent else {})
        finished = record.finished if record.finished is not None else time.monotonic()
        root = self.tracer.start_span(
            span_name(record),
            context=parent,
            kind=SpanKind.SERVER,
            attributes=span_attributes(record),
            start_time=self.epoch_ns(record.arrival),
        )
        if record.status is not None and record.status >= 500:
            root.set_attribute("error.type", record.error_code or str(record.status))
            root.set_status(Status(StatusCode.ERROR, record.error_code))
        inside = trace.set_span_in_context(root)
        for name, start, end in phases(record):
            child = self.tracer.start_span(name, context=inside, start_time=self.epoch_ns(start))
            child.end(end_time=self.epoch_ns(end))
        root.end(end_time=self.epoch_ns(finished))

    def shutdown(self, timeout_seconds: float = 10.0) -> None:
        """Export what is still batched and stop; past ``timeout_seconds`` (a dead or slow collector)
        the rest is dropped with a warning. Idempotent."""
        if self.is_shut_down:
            return
        self.is_shut_down = True
        # The SDK's flush ignores its timeout and retries a dead collector for up to 10 s a batch,
        # so it runs in a thread; past the deadline, stopping the exporter cuts the retries short.
        flush = threading.Thread(target=self.provider.shutdown, name="llmos-tracing-shutdown", daemon=True)
        flush.start()
        flush.join(timeout_seconds)
        if flush.is_alive():
            logger.warning("tracing: spans not exported within %ss; dropping the rest", timeout_seconds)
            self.exporter.shutdown()
            flush.join(timeout_seconds)


def span_name(record: RequestRecord) -> str:
    """``{operation} {model}`` (``chat qwen``) for model calls, else ``{method} {route}``; never the raw
    path, whose ids would make one span name per resource."""
    if record.operation:
        return f"{record.operation} {record.model}" if record.model else record.operation
    return f"{record.method} {record.route}" if record.route else record.method


def span_attributes(record: RequestRecord) -> dict[str, Any]:
    """The root span's gen_ai.*, http.* and llmos.* attributes: counts, names and ids only."""
    attrs: dict[str, Any] = {
        "http.request.method": record.method,
        "url.path": record.path,
        "llmos.request_id": record.request_id,
    }
    optional = {
        "http.route": record.route,
        "http.response.status_code": record.status,
        "llmos.key_id": record.key_id,
        "llmos.error_code": record.error_code,
        "gen_ai.operation.name": record.operation,
        "gen_ai.request.model": record.model,
        "gen_ai.request.max_tokens": record.max_tokens,
        "gen_ai.request.temperature": record.temperature,
    }
    attrs.update({key: value for key, value in optional.items() if value is not None})
    if record.operation:
        attrs["gen_ai.usage.input_tokens"] = record.prompt_tokens
        attrs["gen_ai.usage.output_tokens"] = record.completion_tokens
        attrs["gen_ai.usage.cache_read.input_tokens"] = record.cached_tokens
    if record.finish_reasons:
        attrs["gen_ai.response.finish_reasons"] = list(record.finish_reasons)
    if record.guardrail_actions:
        attrs["llmos.guardrail_actions"] = list(record.guardrail_actions)
    return attrs


def phases(record: RequestRecord) -> list[tuple[str, float, float]]:
    """``(name, start, end)`` in monotonic seconds for queue, prefill and decode, each only when the
    record has its timestamps. With several choices the queue time is the longest and the first
    token the earliest, so the prefill start is clamped to keep the phases in order."""
    spans: list[tuple[str, float, float]] = []
    prefill_start = record.engine_arrival
    if record.engine_arrival is not None and record.queue_seconds is not None:
        prefill_start = record.engine_arrival + record.queue_seconds
        if record.first_token is not None:
            prefill_start = min(prefill_start, record.first_token)
        spans.append(("queue", record.engine_arrival, prefill_start))
    if prefill_start is not None and record.first_token is not None:
        spans.append(("prefill", prefill_start, record.first_token))
    if record.first_token is not None and record.finished is not None:
        spans.append(("decode", record.first_token, record.finished))
    return spans
