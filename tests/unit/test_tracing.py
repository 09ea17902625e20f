"""Tracing: a finished request record becomes one SERVER span with queue/prefill/decode children,
gen_ai.* attributes and no prompt text; off by default and free when off; the OTLP/HTTP path posts."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from llmos.monitor.requests import RequestRecord
from llmos.monitor.tracing import Tracing, traces_url

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracing(exporter: InMemorySpanExporter) -> Iterator[Tracing]:
    tracing = Tracing.from_endpoint(None, exporter=exporter)
    assert tracing is not None
    yield tracing
    tracing.shutdown()


def chat_record(**overrides: object) -> RequestRecord:
    """A finished streamed chat request: 2 ms to the engine, 3 ms queued, 10 ms prefill, 50 ms decode."""
    t0 = time.monotonic()
    record = RequestRecord(request_id="req_abc", method="POST", path="/v1/chat/completions", arrival=t0)
    record.route = "/v1/chat/completions"
    record.key_id = "key_1"
    record.operation = "chat"
    record.model = "qwen"
    record.status = 200
    record.max_tokens = 64
    record.temperature = 0.7
    record.prompt_text = "SECRET PROMPT"
    record.output_text = "SECRET OUTPUT"
    record.add_generation(
        prompt_tokens=12,
        completion_tokens=5,
        cached_tokens=4,
        finish_reason="stop",
        queue_seconds=0.003,
        engine_arrival=t0 + 0.002,
        first_token=t0 + 0.015,
    )
    record.finished = t0 + 0.065
    for name, value in overrides.items():
        setattr(record, name, value)
    return record


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans}


def test_a_chat_request_is_a_root_span_with_queue_prefill_and_decode_children(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    tracing.record(chat_record())
    spans = by_name(exporter.get_finished_spans())
    assert set(spans) == {"chat qwen", "queue", "prefill", "decode"}
    root = spans["chat qwen"]
    assert root.kind is SpanKind.SERVER and root.parent is None
    for child in ("queue", "prefill", "decode"):
        assert spans[child].parent.span_id == root.context.span_id
        assert spans[child].context.trace_id == root.context.trace_id
    queue, prefill, decode = spans["queue"], spans["prefill"], spans["decode"]
    assert root.start_time < queue.start_time < queue.end_time == prefill.start_time
    assert prefill.start_time < prefill.end_time == decode.start_time < decode.end_time == root.end_time
    assert abs((queue.end_time - queue.start_time) - 3_000_000) < 10_000  # 3 ms, to the microsecond
    assert abs((decode.end_time - decode.start_time) - 50_000_000) < 10_000


def test_the_root_span_carries_gen_ai_and_http_attributes(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    tracing.record(chat_record())
    attrs = by_name(exporter.get_finished_spans())["chat qwen"].attributes
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "qwen"
    assert attrs["gen_ai.usage.input_tokens"] == 12
    assert attrs["gen_ai.usage.output_tokens"] == 5
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 4
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["gen_ai.request.max_tokens"] == 64
    assert attrs["gen_ai.request.temperature"] == 0.7
    assert attrs["http.request.method"] == "POST"
    assert attrs["http.route"] == "/v1/chat/completions"
    assert attrs["http.response.status_code"] == 200
    assert attrs["llmos.request_id"] == "req_abc"
    assert attrs["llmos.key_id"] == "key_1"
    assert "error.type" not in attrs


def test_no_span_carries_prompt_or_output_text(tracing: Tracing, exporter: InMemorySpanExporter) -> None:
    tracing.record(chat_record(guardrail_actions=["input:pii:redact"]))
    spans = exporter.get_finished_spans()
    dumped = "\n".join(span.to_json() for span in spans)
    assert len(spans) == 4 and "input:pii:redact" in dumped
    assert "SECRET" not in dumped


def test_a_request_refused_before_the_engine_is_a_lone_root_span(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    record = RequestRecord(request_id="req_bad", method="POST", path="/v1/chat/completions", arrival=1.0)
    record.route, record.operation, record.model = "/v1/chat/completions", "chat", "qwen"
    record.status, record.error_code, record.finished = 400, "invalid_request", 1.001
    tracing.record(record)
    (root,) = exporter.get_finished_spans()
    assert root.name == "chat qwen"
    assert root.attributes["http.response.status_code"] == 400
    assert root.attributes["llmos.error_code"] == "invalid_request"
    assert root.status.status_code is StatusCode.UNSET  # a client error is not the server's failure
    assert "error.type" not in root.attributes


def test_a_server_error_sets_status_error_and_error_type(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    tracing.record(chat_record(status=500, error_code="generation_failed", finish_reasons=[]))
    root = by_name(exporter.get_finished_spans())["chat qwen"]
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes["error.type"] == "generation_failed"
    assert "gen_ai.response.finish_reasons" not in root.attributes


def test_a_non_model_route_is_named_by_method_and_route(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    record = RequestRecord(request_id="req_m", method="GET", path="/v1/models/qwen", arrival=2.0)
    record.route, record.status, record.finished = "/v1/models/{model_id}", 200, 2.002
    tracing.record(record)
    (root,) = exporter.get_finished_spans()
    assert root.name == "GET /v1/models/{model_id}"
    assert not any(key.startswith("gen_ai.") for key in root.attributes)


def test_a_traceparent_header_makes_the_root_a_child_of_the_callers_trace(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    tracing.record(chat_record(), traceparent=TRACEPARENT)
    tracing.record(chat_record(), traceparent="not-a-traceparent")
    roots = [span for span in exporter.get_finished_spans() if span.kind is SpanKind.SERVER]
    joined, fresh = roots
    assert format(joined.context.trace_id, "032x") == TRACE_ID
    assert format(joined.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert joined.parent.is_remote
    assert fresh.parent is None and format(fresh.context.trace_id, "032x") != TRACE_ID


def test_tracing_is_off_without_an_endpoint() -> None:
    assert Tracing.from_endpoint(None) is None
    assert Tracing.from_endpoint("") is None


def test_importing_the_tracing_module_does_not_import_opentelemetry() -> None:
    code = "import sys, llmos.monitor.tracing; print([m for m in sys.modules if 'opentelemetry' in m])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_endpoint_is_a_collector_base_url() -> None:
    assert traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert traces_url("https://collector:4318/") == "https://collector:4318/v1/traces"
    assert traces_url("http://collector:4318/v1/traces") == "http://collector:4318/v1/traces"
    with pytest.raises(ValueError, match="LLMOS_OTLP_ENDPOINT"):
        Tracing.from_endpoint("collector:4318")


def test_an_otlp_endpoint_builds_without_sending_anything() -> None:
    tracing = Tracing.from_endpoint("http://127.0.0.1:4318")  # nothing listens there; nothing is sent
    assert tracing is not None
    tracing.shutdown(timeout_seconds=0.5)
    tracing.shutdown(timeout_seconds=0.5)  # idempotent


def test_shutdown_gives_up_on_a_dead_collector_at_its_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    tracing = Tracing.from_endpoint(f"http://127.0.0.1:{port}")
    assert tracing is not None
    tracing.record(chat_record())
    start = time.monotonic()
    tracing.shutdown(timeout_seconds=0.3)
    assert time.monotonic() - start < 3  # the SDK alone retries for up to 10 s


class Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP collector on loopback that keeps every request it is sent."""

    received: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, self.headers["Content-Type"], body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # requests would route loopback through a proxy
    received: list[tuple[str, str, bytes]] = []
    server = HTTPServer(("127.0.0.1", 0), type("Handler", (Collector,), {"received": received}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", received
    server.shutdown()
    server.server_close()


def test_the_otlp_exporter_posts_the_span_tree_on_shutdown(
    collector: tuple[str, list[tuple[str, str, bytes]]],
) -> None:
    url, received = collector
    tracing = Tracing.from_endpoint(url, service_name="llmos-test")
    assert tracing is not None
    tracing.record(chat_record())
    tracing.shutdown(timeout_seconds=5)
    ((path, content_type, body),) = received
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    request = ExportTraceServiceRequest.FromString(body)
    (resource_spans,) = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
    names = {span.name for scope in resource_spans.scope_spans for span in scope.spans}
    assert service == "llmos-test"
    assert names == {"chat qwen", "queue", "prefill", "decode"}
    assert b"SECRET" not in body
