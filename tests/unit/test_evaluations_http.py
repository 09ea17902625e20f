"""Stored evaluation results over HTTP (``/api/evaluations``): every result or one version's, and
two versions compared with deltas, read from the store; the routes need the ``eval`` scope."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llmos.access.keys import KeyStore
from llmos.config import Settings
from llmos.evaluate.results import EvalResult, ResultStore, compare
from llmos.server.app import create_app


@pytest.fixture
def settings(isolated_home: Path) -> Settings:
    settings = Settings(home=isolated_home, dtype="float32")
    store = ResultStore(settings)
    for ref, task, metrics in (
        ("tiny:1", "qa", {"exact_match": 0.25, "f1": 0.5, "note": "text"}),
        ("tiny:2", "qa", {"exact_match": 0.5, "f1": 0.75}),
        ("tiny:2", "ppl", {"perplexity": 12.0}),
    ):
        store.add(EvalResult(ref, "sha256:x", "-", "sha256:data", task, metrics, {}))
    store.close()
    return settings


@pytest.fixture
def keys(settings: Settings) -> dict[str, str]:
    store = KeyStore(settings)
    try:
        return {
            "eval": store.create("evaluator", ["eval"], actor="test")[1],
            "inference": store.create("chatter", ["inference"], actor="test")[1],
        }
    finally:
        store.close()


@pytest.fixture
def client(settings: Settings, keys: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {keys['eval']}"}) as c:
        yield c


def test_results_are_listed_all_or_per_model_version(client: TestClient) -> None:
    every = client.get("/api/evaluations").json()["results"]
    assert [(r["model_ref"], r["task"]) for r in every] == [
        ("tiny:1", "qa"),
        ("tiny:2", "qa"),
        ("tiny:2", "ppl"),
    ]
    assert every[0]["metrics"]["note"] == "text" and every[0]["created_at"]
    one = client.get("/api/evaluations", params={"model": "tiny:2"}).json()["results"]
    assert [r["task"] for r in one] == ["qa", "ppl"]


def test_two_versions_compare_with_the_deltas_the_store_computes(
    client: TestClient, settings: Settings
) -> None:
    answer = client.get("/api/evaluations/compare", params={"a": "tiny:1", "b": "tiny:2"}).json()
    assert answer["rows"] == compare(ResultStore(settings), "tiny:1", "tiny:2")
    f1 = next(r for r in answer["rows"] if r["metric"] == "f1")
    assert (f1["a"], f1["b"], f1["delta"]) == (0.5, 0.75, 0.25)
    assert next(r for r in answer["rows"] if r["metric"] == "perplexity")["a"] is None
    missing = client.get("/api/evaluations/compare", params={"a": "tiny:1", "b": "nope:1"})
    assert missing.status_code == 404 and "llmos eval" in missing.json()["error"]["message"]


def test_evaluations_need_the_eval_scope(client: TestClient, keys: dict[str, str]) -> None:
    refused = client.get("/api/evaluations", headers={"Authorization": f"Bearer {keys['inference']}"})
    assert refused.status_code == 403
    assert client.get("/api/evaluations", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_a_results_examples_are_paged_and_ordered_on_the_server(
    client: TestClient, settings: Settings, keys: dict[str, str]
) -> None:
    examples = [
        {"input": {"question": f"q{i}"}, "prediction": f"p{i}", "reference": f"r{i}", "score": score}
        for i, score in enumerate([0.5, None, 0.0, 1.0, 0.25])
    ]
    store = ResultStore(settings)
    result_id = store.add(EvalResult("tiny:2", "sha256:x", "-", "sha256:d", "qa", {"f1": 0.4}, {}), examples)
    store.close()
    listed = {
        r["id"]: r for r in client.get("/api/evaluations", params={"model": "tiny:2"}).json()["results"]
    }
    assert listed[result_id]["num_examples_stored"] == 5 and listed[result_id]["metrics"] == {"f1": 0.4}
    assert all(r["num_examples_stored"] == 0 for i, r in listed.items() if i != result_id)

    def page(**params: object) -> dict:
        response = client.get(f"/api/evaluations/{result_id}/examples", params=params)
        assert response.status_code == 200, response.json()
        return response.json()

    first = page(limit=2)
    assert first["total"] == 5 and first["result"]["task"] == "qa"
    assert first["examples"] == [{"position": i, **examples[i]} for i in (0, 1)]
    assert [e["position"] for e in page(offset=2, limit=10)["examples"]] == [2, 3, 4]
    assert [e["score"] for e in page(order="worst")["examples"]] == [0.0, 0.25, 0.5, 1.0, None]
    assert [e["score"] for e in page(order="best", limit=3)["examples"]] == [1.0, 0.5, 0.25]
    bad = client.get(f"/api/evaluations/{result_id}/examples", params={"order": "random"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "query.order"
    missing = client.get("/api/evaluations/99999/examples")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "result_not_found"
    refused = client.get(
        f"/api/evaluations/{result_id}/examples", headers={"Authorization": f"Bearer {keys['inference']}"}
    )
    assert refused.status_code == 403
