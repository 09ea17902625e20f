"""POST /v1/tasks/{task} in-process on the tiny byte-BPE model: one route per task in the OpenAPI
description, batched items answered in order with the spec version and usage, the same answer the
SDK gives, and every bad input a 400 with an OpenAI error body (never a 404, 422 or 500)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import register_tiny
from fastapi.testclient import TestClient

import llmos
from llmos.config import Settings
from llmos.server.app import create_app
from llmos.tasks import TASKS


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, tiny_bpe_chat_folder: Path) -> Path:
    return register_tiny(tmp_path_factory.mktemp("tasks-home"), tiny_bpe_chat_folder, "bpe")


@pytest.fixture(scope="module")
def client(home: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(home=home, dtype="float32"), preload=["bpe"])) as c:
        for _ in range(400):
            if c.get("/ready").status_code == 200:
                break
            time.sleep(0.05)
        yield c


def test_every_task_is_a_route_with_its_input_schema(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for name in TASKS:
        operation = spec["paths"][f"/v1/tasks/{name}"]["post"]
        assert "requestBody" in operation and "200" in operation["responses"]
    listed = {t["name"]: t for t in client.get("/v1/tasks").json()}
    assert list(listed) == list(TASKS)
    assert listed["ner"]["output_schema"] == TASKS["ner"].output_schema
    assert "labels" in listed["classify"]["input_schema"]["properties"]


def test_a_batch_is_answered_in_order_with_version_and_usage(client: TestClient, home: Path) -> None:
    items = [{"text": "Alice met Bob in Paris."}, {"text": "北京是中国的首都。"}]
    answer = client.post("/v1/tasks/ner", json={"model": "bpe", "input": items}).json()
    assert (
        answer["task"] == "ner"
        and answer["version"] == TASKS["ner"].version
        and answer["model"].startswith("bpe")
    )
    assert len(answer["results"]) == 2
    for item, result in zip(items, answer["results"], strict=True):
        assert result["diagnostics"]["parse_failed"] is False
        assert all(item["text"][e["start"] : e["end"]] == e["text"] for e in result["output"]["entities"])
    total = sum(r["usage"]["total_tokens"] for r in answer["results"])
    assert answer["usage"]["total_tokens"] == total > 0
    with llmos.load_model("bpe", home=home, dtype="float32") as local:  # greedy: the SDK agrees
        assert local.run_task("ner", items)["results"][0]["output"] == answer["results"][0]["output"]


def test_one_item_without_a_list_and_a_constrained_label(client: TestClient) -> None:
    body = {"model": "bpe", "input": {"text": "hi", "labels": ["a", "b"]}, "temperature": 1.0, "seed": 3}
    answer = client.post("/v1/tasks/classify", json=body).json()
    assert [r["output"]["label"] for r in answer["results"]] in (["a"], ["b"])


@pytest.mark.parametrize(
    ("path", "body", "word"),
    [
        ("/v1/tasks/sing", {"model": "bpe", "input": {"text": "la"}}, "Unknown task"),
        ("/v1/tasks/classify", {"model": "bpe", "input": {"text": "hi", "labels": []}}, "labels"),
        ("/v1/tasks/sentiment", {"model": "bpe", "input": {"text": ""}}, "text"),
        ("/v1/tasks/sentiment", {"model": "bpe", "input": []}, "input"),
        ("/v1/tasks/sentiment", {"model": "bpe", "input": [{"text": "x"}] * 257}, "input"),
        ("/v1/tasks/sentiment", {"model": "bpe"}, "input"),
        ("/v1/tasks/sentiment", {"model": "bpe", "input": {"text": "x"}, "temprature": 1}, "temprature"),
        (
            "/v1/tasks/sentiment",
            {"model": "bpe", "input": {"text": "word " * 5000}, "shard": False},
            "context",
        ),
        ("/v1/tasks/translate", {"model": "bpe", "input": {"text": "hi", "to": "klingon"}}, "to"),
    ],
)
def test_bad_task_requests_are_400_with_an_openai_error(
    client: TestClient, path: str, body: dict, word: str
) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert word in error["message"] and error["type"] == "invalid_request_error"


def test_an_unknown_model_is_a_404(client: TestClient) -> None:
    response = client.post("/v1/tasks/sentiment", json={"model": "nope", "input": {"text": "x"}})
    assert response.status_code == 404 and "nope" in response.json()["error"]["message"]
