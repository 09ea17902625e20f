"""The remote SDK without a server: request bodies, error mapping, SSE and NDJSON parsing, driven
through httpx's ``MockTransport`` so every request the client sends can be inspected."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import httpx
import pytest

from llmos import client as remote
from llmos.client import Client, RemoteError, error_from_envelope, request_fields
from llmos.engine.sampling_params import SamplingParams
from llmos.errors import (
    ContextOverflow,
    GenerationFailed,
    InvalidRequest,
    ModelNotFound,
    ServerBusy,
    SourceUnavailable,
    Unauthorized,
)

Handler = Callable[[httpx.Request], httpx.Response]


def mock_client(handler: Handler, api_key: str | None = None) -> Client:
    """A client whose server is ``handler``; model ``m`` recommends no sampling values (the remote
    model asks ``GET /api/models/m`` once for them, which ``handler`` then never sees)."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.endswith("/api/models/m"):
            return httpx.Response(200, json={"manifest": {}})
        return handler(request)

    client = Client("http://llmos.test/v1", api_key=api_key)
    client.http = httpx.Client(
        base_url=client.url, headers=client.http.headers, transport=httpx.MockTransport(answer)
    )
    return client


def recording(answer: Any, sent: list[httpx.Request], status: int = 200, **headers: str) -> Handler:
    """A server that answers every request with ``answer`` (JSON, or raw bytes) and keeps the requests."""

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if isinstance(answer, bytes):
            return httpx.Response(status, content=answer, headers=headers)
        return httpx.Response(status, json=answer, headers=headers)

    return handler


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"


def envelope(message: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": "x", "param": param, "code": code}}


def test_defaults_and_fields_match_the_in_process_sdk() -> None:
    from llmos import sdk
    from llmos.server.protocol import MAX_PROMPTS

    assert remote.DEFAULTS == sdk.DEFAULTS
    assert remote.MAX_PROMPTS == MAX_PROMPTS
    assert remote.SAMPLING_FIELDS == {f.name for f in fields(SamplingParams)}


def test_request_fields_apply_defaults_and_reject_unknown_options() -> None:
    assert request_fields({"top_k": 5}) == {"max_tokens": 256, "temperature": 0.7, "top_k": 5}
    with pytest.raises(InvalidRequest, match="temprature") as info:
        request_fields({"temprature": 0})
    assert info.value.param == "temprature"


def test_chat_logprobs_become_top_logprobs() -> None:
    body = request_fields({"logprobs": 3}, chat=True)
    assert body["logprobs"] is True and body["top_logprobs"] == 3


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"json": {"type": "object"}},
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "output", "schema": {"type": "object"}},
                }
            },
        ),
        ({"json_object": True}, {"response_format": {"type": "json_object"}}),
        ({"regex": "[0-9]+"}, {"guided_regex": "[0-9]+"}),
        ({"choice": ("yes", "no")}, {"guided_choice": ["yes", "no"]}),
        ({"grammar": "start: 'a'"}, {"guided_grammar": "start: 'a'"}),
    ],
)
def test_structured_output_maps_to_openai_and_vllm_fields(spec: dict, expected: dict) -> None:
    body = request_fields({"structured_output": spec})
    assert {k: v for k, v in body.items() if k not in remote.DEFAULTS} == expected


def test_structured_output_needs_exactly_one_kind() -> None:
    with pytest.raises(InvalidRequest, match="exactly one"):
        request_fields({"structured_output": {"regex": "a", "choice": ["b"]}})


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (404, "model_not_found", ModelNotFound),
        (404, None, ModelNotFound),
        (400, None, InvalidRequest),
        (422, None, InvalidRequest),
        (400, "context_length_exceeded", ContextOverflow),
        (401, "invalid_api_key", Unauthorized),
        (429, "server_busy", ServerBusy),
        (401, None, RemoteError),
        (500, None, RemoteError),
    ],
)
def test_error_envelope_maps_to_the_llmos_error_class(status: int, code: str | None, cls: type) -> None:
    exc = error_from_envelope({"message": "boom", "code": code, "param": "p"}, status)
    assert type(exc) is cls and "boom" in str(exc) and exc.param == "p"


def test_retry_after_is_named_in_a_429() -> None:
    handler = recording(envelope("queue full", "server_busy"), [], 429, **{"Retry-After": "3"})
    with pytest.raises(ServerBusy, match="retry after 3 s") as info:
        mock_client(handler).model("m").generate_text("hi")
    assert info.value.retry_after == 3


def test_a_missing_route_is_not_reported_as_a_missing_model() -> None:
    handler = recording({"error": {"message": "Not Found", "type": "not_found_error", "code": None}}, [], 404)
    with pytest.raises(RemoteError, match="GET /api/ps"):
        mock_client(handler).ps()


def test_every_request_carries_the_api_key() -> None:
    sent: list[httpx.Request] = []
    mock_client(recording({"models": []}, sent), api_key="sk-1").models()
    assert sent[0].headers["Authorization"] == "Bearer sk-1"
    assert str(sent[0].url) == "http://llmos.test/api/models"


def test_complete_fills_a_completion_from_the_answer() -> None:
    sent: list[httpx.Request] = []
    answer = {
        "id": "cmpl-1",
        "choices": [{"index": 0, "text": " Paris", "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }
    completion = mock_client(recording(answer, sent)).model("m").complete("The capital is", temperature=0)
    assert (completion.text, completion.finish_reason, completion.token_ids) == (" Paris", "stop", [])
    assert (completion.num_prompt_tokens, completion.num_output_tokens) == (5, 2)
    body = json.loads(sent[0].content)
    assert body == {"model": "m", "prompt": "The capital is", "max_tokens": 256, "temperature": 0}


def test_generate_batch_chunks_by_64_and_orders_by_index() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        prompts = json.loads(request.content)["prompt"]
        choices = [{"index": i, "text": p.upper()} for i, p in enumerate(prompts)]
        return httpx.Response(200, json={"choices": choices[::-1]})

    prompts = [f"p{i}" for i in range(70)]
    assert mock_client(handler).model("m").generate_batch(prompts) == [p.upper() for p in prompts]
    assert [len(json.loads(r.content)["prompt"]) for r in sent] == [64, 6]


def test_stream_yields_text_chunks_and_raises_on_an_error_event() -> None:
    chunks = sse({"choices": [{"index": 0, "text": "a"}]}, {"choices": [{"index": 0, "text": "b"}]})
    assert list(mock_client(recording(chunks, [])).model("m").stream("x")) == ["a", "b"]
    failing = sse({"choices": [{"index": 0, "text": "a"}]}, envelope("engine died", "generation_failed"))
    with pytest.raises(GenerationFailed, match="engine died"):
        list(mock_client(recording(failing, [])).model("m").stream("x"))


def test_stream_chat_yields_delta_contents() -> None:
    chunks = sse(
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"index": 0, "delta": {"content": "Hi"}}]},
        {"choices": [], "usage": {"completion_tokens": 1}},
    )
    assert list(mock_client(recording(chunks, [])).model("m").stream_chat("hello")) == ["Hi"]


def test_pull_reports_each_line_and_raises_on_an_error_line() -> None:
    lines = [{"status": "pulling", "completed": 1, "total": 2}, {"status": "success", "model": "m:1"}]
    ndjson = "".join(json.dumps(line) + "\n" for line in lines).encode()
    seen: list[dict] = []
    assert mock_client(recording(ndjson, [])).pull("m", progress=seen.append) == lines[-1]
    assert seen == lines
    failing = json.dumps({"status": "error", **envelope("no network", "source_unavailable")}).encode()
    with pytest.raises(SourceUnavailable, match="no network"):
        mock_client(recording(failing, [])).pull("m")


def test_embed_returns_vectors_in_input_order() -> None:
    sent: list[httpx.Request] = []
    answer = {"data": [{"index": 1, "embedding": [0.0, 1.0]}, {"index": 0, "embedding": [1.0, 0.0]}]}
    assert mock_client(recording(answer, sent)).model("e").embed(["a", "b"]) == [[1.0, 0.0], [0.0, 1.0]]
    assert json.loads(sent[0].content) == {"model": "e", "input": ["a", "b"]}


def test_show_asks_the_native_route_and_raises_model_not_found() -> None:
    sent: list[httpx.Request] = []
    answer = {"ref": "tiny:1", "manifest": {"has_chat_template": True}}
    assert mock_client(recording(answer, sent)).show("tiny@prod") == answer
    assert (sent[0].method, sent[0].url.path) == ("GET", "/api/models/tiny@prod")
    with pytest.raises(ModelNotFound, match="nope"):
        mock_client(recording(envelope("no model nope", "model_not_found"), [], 404)).show("nope")
