"""The server app in-process (TestClient) on a tiny model: keys, body limit, readiness, metrics,
the native /api model routes and their errors, vLLM's tokenizer endpoints, the OpenAI response
shapes and their OpenAPI description, and how a failed generation is reported."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llmos.config import Settings
from llmos.registry import Registry
from llmos.server.app import create_app

KEY = "sk-test-123"


@pytest.fixture
def settings(isolated_home: Path, tiny_chat_folder: Path) -> Settings:
    settings = Settings(home=isolated_home, dtype="float32", max_request_bytes=4096)
    registry = Registry(settings)
    registry.import_path(tiny_chat_folder, "tiny")
    registry.close()
    return settings


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, preload=["tiny"])) as c:
        _wait_ready(c)
        yield c


def _wait_ready(c: TestClient, headers: dict[str, str] | None = None) -> None:
    for _ in range(200):
        if c.get("/ready", headers=headers).status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError(c.get("/ready", headers=headers).json())


def _chat(c: TestClient, **extra: object) -> object:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
    return c.post("/v1/chat/completions", json={**body, **extra})


def test_every_route_but_health_and_the_console_pages_needs_the_key(settings: Settings) -> None:
    settings.api_keys = f"other-key,{KEY}"
    app = create_app(settings)
    with TestClient(app) as c:
        api = [(m.upper(), path) for path, ops in app.openapi()["paths"].items() for m in ops]
        # The console's pages and /docs hold no data (it comes from the API, with a key): open.
        console = [("GET", "/"), ("GET", "/ui/models"), ("GET", "/docs"), ("GET", "/static/console.js")]
        routes = api + [("GET", "/openapi.json"), ("GET", "/redoc")] + console
        assert len(routes) > 15 and ("GET", "/health") in routes
        for method, path in routes:
            if method == "HEAD":
                continue
            url = re.sub(r"\{[^}]+\}", "x", path)
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
                response = c.request(method, url, headers=headers)
                expected = 200 if path == "/health" or ("GET", path) in console else 401
                assert response.status_code == expected, (method, path, headers)
                if expected == 401:
                    assert response.json()["error"]["type"] == "authentication_error"
                    assert response.headers["www-authenticate"] == "Bearer"
        assert c.get("/ready", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        assert c.get("/v1/models", headers={"Authorization": "Bearer other-key"}).status_code == 200


def test_an_oversized_body_is_413_with_or_without_content_length(client: TestClient) -> None:
    big = "word " * 2000
    response = _chat(client, messages=[{"role": "user", "content": big}])
    assert response.status_code == 413
    assert "larger than 4096 bytes" in response.json()["error"]["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while reading
        yield b'{"model": "tiny", "messages": [{"role": "user", "content": "'
        for _ in range(100):
            yield b"x" * 100
        yield b'"}]}'

    response = client.post(
        "/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert _chat(client).status_code == 200  # the server is fine afterwards


def test_ready_is_503_until_the_preloaded_model_is_in(settings: Settings) -> None:
    app = create_app(settings, preload=["tiny"])
    with TestClient(app) as c:
        assert c.get("/health").status_code == 200
        first = c.get("/ready")
        assert first.status_code in (200, 503)
        if first.status_code == 503:
            assert first.json()["status"] == "loading"
        _wait_ready(c)
        assert c.get("/ready").json()["models"] == ["tiny:1"]


def test_metrics_count_tokens_and_finish_reasons_by_model(client: TestClient) -> None:
    assert _chat(client, max_tokens=3, ignore_eos=True).status_code == 200
    text = client.get("/metrics").text
    assert 'llmos:generation_tokens_total{model_name="tiny:1"} 3.0' in text
    assert 'llmos:request_success_total{finished_reason="length",model_name="tiny:1"} 1.0' in text
    assert 'llmos:time_to_first_token_seconds_count{model_name="tiny:1"} 1.0' in text
    assert 'llmos:request_queue_time_seconds_count{model_name="tiny:1"} 1.0' in text
    assert 'llmos:num_requests_running{model_name="tiny:1"} 0.0' in text
    assert "llmos:kv_cache_usage_perc" in text and "llmos:model_load_seconds_total" in text
    overflow = _chat(client, max_tokens=100_000)
    assert overflow.status_code == 400 and overflow.json()["error"]["code"] == "context_length_exceeded"
    assert (
        'llmos:requests_rejected_total{model_name="tiny:1",reason="context_length"} 1.0'
        in client.get("/metrics").text
    )


def test_native_model_routes(client: TestClient) -> None:
    listing = client.get("/api/models").json()["models"]
    assert [(m["name"], m["version"], m["loaded"]) for m in listing] == [("tiny", 1, True)]
    shown = client.get("/api/models/tiny").json()
    assert shown["ref"] == "tiny:1" and shown["digest"].startswith("sha256:") and "manifest" in shown
    ps = client.get("/api/ps").json()["models"]
    assert ps[0]["name"] == "tiny:1" and ps[0]["memory_bytes"] > 0 and ps[0]["kind"] == "generate"

    assert client.post("/api/models/tiny/unload").json() == {"model": "tiny:1", "unloaded": True}
    assert client.get("/api/ps").json()["models"] == []
    assert client.post("/api/models/tiny/unload").status_code == 404
    loaded = client.post("/api/models/tiny/load", json={"keep_alive": 60, "pin": True}).json()
    assert loaded["model"] == "tiny:1" and loaded["pinned"] is True and loaded["keep_alive"] == 60
    assert client.get("/api/ps").json()["models"][0]["pinned"] is True

    assert client.delete("/api/models/tiny").json() == {"deleted": ["tiny:1"]}
    assert client.get("/api/models").json()["models"] == []
    assert client.get("/api/ps").json()["models"] == []
    missing = client.get("/api/models/tiny")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


def test_the_catalog_lists_each_entry_with_its_versions_in_the_store(
    client: TestClient, settings: Settings, tiny_chat_folder: Path
) -> None:
    from llmos.registry import load_catalog

    rows = {row["name"]: row for row in client.get("/api/catalog").json()["models"]}
    assert set(rows) == set(load_catalog()) and rows["qwen2.5-coder-0.5b-instruct"]["aliases"] == ["qwen"]
    assert rows["all-minilm-l6-v2"]["pulled"] == []
    registry = Registry(settings)
    registry.import_path(tiny_chat_folder, "all-minilm-l6-v2")
    registry.close()
    rows = {row["name"]: row for row in client.get("/api/catalog").json()["models"]}
    assert rows["all-minilm-l6-v2"]["pulled"] == ["all-minilm-l6-v2:1"]


def test_pull_of_an_unknown_name_is_404_before_any_progress(client: TestClient) -> None:
    response = client.post("/api/pull", json={"name": "no-such-model"})
    assert response.status_code == 404
    assert "not in the catalog" in response.json()["error"]["message"]


def test_an_embedding_request_to_a_generation_model_is_a_clear_400(client: TestClient) -> None:
    response = client.post("/v1/embeddings", json={"model": "tiny", "input": "hello"})
    assert response.status_code == 400
    assert "/v1/chat/completions" in response.json()["error"]["message"]


def test_the_server_never_loads_a_folder_path_named_by_a_client(
    client: TestClient, tiny_chat_folder: Path
) -> None:
    for name in (str(tiny_chat_folder), ".", "~root"):
        response = _chat(client, model=name)
        assert response.status_code in (400, 404), name
        assert response.json()["error"]["code"] in ("invalid_model_name", "model_not_found")
    assert [row["name"] for row in client.get("/api/ps").json()["models"]] == ["tiny:1"]


def test_a_request_past_its_deadline_is_aborted_with_408(settings: Settings) -> None:
    settings.request_timeout = 0.05  # 500 tokens take far longer, even for the tiny model
    with TestClient(create_app(settings, preload=["tiny"])) as c:
        _wait_ready(c)
        response = _chat(c, max_tokens=500, ignore_eos=True)
        assert response.status_code == 408, response.text
        assert response.json()["error"]["type"] == "timeout_error"
        assert 'reason="timeout"' in c.get("/metrics").text
        for _ in range(40):  # the aborted request leaves the engine at once
            if 'llmos:num_requests_running{model_name="tiny:1"} 0.0' in c.get("/metrics").text:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the timed-out request is still running")


def test_tokenizer_info_answers_for_the_first_model_unless_one_is_named(client: TestClient) -> None:
    info = client.get("/tokenizer_info")
    assert info.status_code == 200
    body = info.json()
    hf = client.app.state.pool.find("tiny").runtime.tokenizer.hf
    assert body["tokenizer_class"] == type(hf).__name__
    assert (body["eos_token"], body["eos_token_id"]) == (hf.eos_token, hf.eos_token_id)
    assert body["model_max_length"] == 512 and body["chat_template"]
    assert set(body) >= {"bos_token", "bos_token_id", "pad_token", "pad_token_id"}
    assert client.get("/tokenizer_info", params={"model": "tiny"}).json() == body
    missing = client.get("/tokenizer_info", params={"model": "no-such-model"})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"
    assert missing.json()["error"]["type"] == "not_found_error"


def test_tokenize_and_detokenize_without_a_model_use_the_first_model(client: TestClient) -> None:
    lm_eval_probe = {"prompt": "hello world", "add_special_tokens": False}  # what lm-eval sends
    tokens = client.post("/tokenize", json=lm_eval_probe).json()
    assert tokens == client.post("/tokenize", json={**lm_eval_probe, "model": "tiny"}).json()
    assert tokens["count"] == len(tokens["tokens"]) > 0
    text = client.post("/detokenize", json={"tokens": tokens["tokens"]}).json()["prompt"]
    assert (
        text
        == client.post("/detokenize", json={"tokens": tokens["tokens"], "model": "tiny"}).json()["prompt"]
    )
    assert "hello" in text


def test_tokenizer_endpoints_without_any_model_loaded_are_a_404(settings: Settings) -> None:
    with TestClient(create_app(settings)) as c:
        for response in (c.get("/tokenizer_info"), c.post("/tokenize", json={"prompt": "x"})):
            assert response.status_code == 404
            assert "No model is loaded" in response.json()["error"]["message"]
        assert c.get("/tokenizer_info", params={"model": "tiny"}).status_code == 200  # loads it


def test_responses_keep_openais_json_shape(client: TestClient) -> None:
    chat = _chat(client).json()
    assert list(chat) == ["id", "object", "created", "model", "choices", "usage"]
    choice = chat["choices"][0]
    assert list(choice) == ["index", "message", "logprobs", "finish_reason"] and choice["logprobs"] is None
    assert list(choice["message"]) == ["role", "content"]  # no "tool_calls": null
    body = {"model": "tiny", "prompt": "hello", "max_tokens": 2}
    completion = client.post("/v1/completions", json=body).json()
    assert list(completion["choices"][0]) == ["index", "text", "logprobs", "finish_reason"]
    assert client.get("/v1/models").json() == {
        "object": "list",
        "data": [{"id": "tiny", "object": "model", "created": 0, "owned_by": "llmos"}],
    }


def test_openapi_describes_responses_and_errors(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    chat = spec["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert chat["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/ChatCompletionResponse")
    assert "text/event-stream" in chat["200"]["content"]
    assert chat["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    schemas = spec["components"]["schemas"]
    assert {"CompletionResponse", "EmbeddingResponse", "ModelList", "TokenizerInfo"} <= set(schemas)
    info = spec["paths"]["/tokenizer_info"]["get"]
    assert [p["name"] for p in info["parameters"]] == ["model"] and not info["parameters"][0]["required"]


def _fail_generation(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the tiny model's engine fail every request, as a fault inside step() does."""
    from llmos.engine.outputs import RequestOutput

    engine = client.app.state.pool.find("tiny").runtime.engine

    async def generate(prompt_ids: list[int], params: object, **_: object) -> AsyncIterator[RequestOutput]:
        yield RequestOutput("r", "", [], None, "error", None, len(prompt_ids), 0, error="device lost")

    monkeypatch.setattr(engine, "generate", generate)


def test_a_failed_generation_is_one_error_everywhere(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fail_generation(client, monkeypatch)
    expected = {"message": "Generation failed: device lost", "type": "server_error", "param": None}
    for path, body in [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
        ("/v1/completions", {"prompt": "hi"}),
        ("/v1/completions", {"prompt": "hi", "stream": True}),  # fails before its first chunk
    ]:
        response = client.post(path, json={"model": "tiny", **body}, headers={"X-Request-Id": "trace-1"})
        assert response.status_code == 500, path
        assert response.headers["x-request-id"] == "trace-1"  # a complaint can name the request
        assert response.json() == {
            "error": {**expected, "code": "generation_failed", "request_id": "trace-1"}
        }
    # a chat stream has sent its role chunk already: the error arrives as an event, then [DONE]
    stream = client.post("/v1/chat/completions", json={**_chat_body(), "stream": True})
    events = [line.removeprefix("data: ") for line in stream.text.splitlines() if line]
    request_id = stream.headers["x-request-id"]
    assert request_id.startswith("req_")
    assert json.loads(events[-2]) == {
        "error": {**expected, "code": "generation_failed", "request_id": request_id}
    }
    assert events[-1] == "[DONE]"
    assert client.app.state.pool.find("tiny").num_active == 0


def _chat_body() -> dict[str, object]:
    return {"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
