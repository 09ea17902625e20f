"""The ``/api/datasets`` routes in-process (TestClient): list, show, rows, annotations, reviews and
agreement — and their errors as the OpenAI envelope with 400/404, never 500."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from data_samples import LABELLED, write_jsonl
from fastapi.testclient import TestClient

from llmos import data
from llmos.config import Settings
from llmos.server.app import create_app


@pytest.fixture
def client(isolated_home: Path, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(home=isolated_home)
    data.import_file(
        write_jsonl(tmp_path / "r.jsonl", LABELLED), "reviews", "classification", settings=settings
    )
    with TestClient(create_app(settings)) as c:
        yield c


def test_list_and_show(client: TestClient) -> None:
    listed = client.get("/api/datasets").json()["datasets"]
    assert [d["ref"] for d in listed] == ["reviews:1"]
    shown = client.get("/api/datasets/reviews:1").json()
    assert shown["schema"] == "classification" and shown["splits"] == {"train": listed[0]["splits"]["train"]}
    assert shown["parents"][0]["relation"] == "imported_from"


def test_rows_pages_through_the_data(client: TestClient) -> None:
    page = client.get("/api/datasets/reviews/rows", params={"offset": 2, "limit": 3}).json()
    assert page["ref"] == "reviews:1" and page["total"] == 6
    assert [r["id"] for r in page["rows"]] == [3, 4, 5] and page["rows"][0]["text"] == LABELLED[2]["text"]
    assert client.get("/api/datasets/reviews/rows", params={"offset": 100}).json()["rows"] == []
    too_many = client.get("/api/datasets/reviews/rows", params={"limit": 100000})
    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "query.limit"


def test_rows_of_one_split_count_that_split(client: TestClient) -> None:
    data.split("reviews", test=0.5, seed=0, settings=client.app.state.settings)
    sizes = client.get("/api/datasets/reviews:2").json()["splits"]
    page = client.get("/api/datasets/reviews:2/rows", params={"split": "test", "limit": 100}).json()
    assert page["total"] == sizes["test"]["rows"] == len(page["rows"]) < 6
    assert client.get("/api/datasets/reviews:2/rows").json()["total"] == 6


def test_annotations_agreement_and_review(client: TestClient) -> None:
    for annotator, labels in (("alice", ["pos", "neg", "pos"]), ("bob", ["pos", "pos", "pos"])):
        for row_id, label in enumerate(labels, start=1):
            body = {"row_id": row_id, "label": label, "annotator": annotator}
            response = client.post("/api/datasets/reviews/annotations", json=body)
            assert response.status_code == 200, response.json()
    assert response.json()["status"] == "pending" and response.json()["ref"] == "reviews:1"
    listed = client.get("/api/datasets/reviews/annotations", params={"annotator": "bob"}).json()[
        "annotations"
    ]
    assert [a["label"] for a in listed] == ["pos", "pos", "pos"]
    agreement = client.get("/api/datasets/reviews/agreement").json()
    pair = agreement["pairs"][0]
    assert pair["annotators"] == ["alice", "bob"] and pair["num_items"] == 3
    assert pair["percent_agreement"] == pytest.approx(200 / 3) and pair["kappa"] == pytest.approx(0.0)
    reviewed = client.post(
        "/api/datasets/reviews/reviews", json={"row_id": 2, "annotator": "bob", "status": "rejected"}
    )
    assert reviewed.json()["status"] == "rejected"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "fragment"),
    [
        ("get", "/api/datasets/ghost", None, 404, "no dataset named 'ghost'"),
        ("get", "/api/datasets/reviews:9/rows", None, 404, "no version 9"),
        ("get", "/api/datasets/a..b", None, 400, "invalid dataset reference"),
        ("get", "/api/datasets/reviews@prod", None, 400, "invalid dataset reference"),
        (
            "post",
            "/api/datasets/reviews/annotations",
            {"row_id": 99, "label": "pos", "annotator": "a"},
            400,
            "99",
        ),
        (
            "post",
            "/api/datasets/reviews/annotations",
            {"row_id": 1, "label": "", "annotator": "a"},
            400,
            "label",
        ),
        (
            "post",
            "/api/datasets/reviews/annotations",
            {"row_id": -1, "label": "x", "annotator": "a"},
            400,
            "row_id",
        ),
        (
            "post",
            "/api/datasets/reviews/reviews",
            {"row_id": 1, "annotator": "a", "status": "ok"},
            400,
            "status",
        ),
        (
            "post",
            "/api/datasets/reviews/reviews",
            {"row_id": 1, "annotator": "zed", "status": "accepted"},
            404,
            "zed",
        ),
        ("get", "/api/datasets/reviews/rows?split=validation", None, 400, "no split 'validation'"),
    ],
)
def test_errors_are_4xx_with_the_openai_envelope(
    client: TestClient, method: str, path: str, body: dict | None, status: int, fragment: str
) -> None:
    response = client.request(method.upper(), path, json=body)
    assert response.status_code == status, response.json()
    error = response.json()["error"]
    assert fragment in error["message"] or fragment in str(error["param"])


def test_dataset_routes_need_the_api_key_when_one_is_set(isolated_home: Path) -> None:
    with TestClient(create_app(Settings(home=isolated_home, api_keys="sk-1"))) as c:
        assert c.get("/api/datasets").status_code == 401
        assert c.get("/api/datasets", headers={"Authorization": "Bearer sk-1"}).json() == {"datasets": []}


def test_stats_give_the_label_balance_and_a_token_length_histogram(client: TestClient) -> None:
    stats = client.get("/api/datasets/reviews/stats", params={"bins": 3}).json()
    assert stats["ref"] == "reviews:1" and stats["splits"] == {"train": 6}
    assert stats["labels"] == {"neg": 2, "neutral": 1, "pos": 3}
    lengths = [len(r["text"].split()) for r in LABELLED]
    histogram = stats["tokens"]["histogram"]
    assert len(histogram) == 3 and sum(b["count"] for b in histogram) == 6
    assert histogram[0]["lo"] == min(lengths) and histogram[-1]["hi"] >= max(lengths)
    assert client.get("/api/datasets/reviews/stats", params={"bins": 0}).status_code == 400


def test_a_label_taken_back_is_gone_from_labels_and_agreement(client: TestClient) -> None:
    for annotator in ("alice", "bob"):
        for row_id in (1, 2):
            body = {"row_id": row_id, "label": "pos", "annotator": annotator}
            assert client.post("/api/datasets/reviews/annotations", json=body).status_code == 200
    removed = client.delete("/api/datasets/reviews/annotations/2", params={"annotator": "alice"})
    assert removed.status_code == 200 and removed.json()["label"] == "pos"
    alice = client.get("/api/datasets/reviews/annotations", params={"annotator": "alice"}).json()
    assert [a["row_id"] for a in alice["annotations"]] == [1]
    assert client.get("/api/datasets/reviews/agreement").json()["pairs"][0]["num_items"] == 1
    again = client.delete("/api/datasets/reviews/annotations/2", params={"annotator": "alice"})
    assert again.status_code == 404 and "alice has not labelled row 2" in again.json()["error"]["message"]
    assert client.delete("/api/datasets/reviews/annotations/1").status_code == 400  # no annotator


def test_apply_annotations_writes_a_new_version_with_the_labels(client: TestClient) -> None:
    body = {"row_id": 2, "label": "pos", "annotator": "alice"}  # row 2 was "neg"
    assert client.post("/api/datasets/reviews/annotations", json=body).status_code == 200
    made = client.post("/api/datasets/reviews/apply-annotations", json={}).json()
    assert made["ref"] == "reviews:2" and made["is_new"] and made["report"]["changed"] == 1
    assert made["parents"] == [
        {"relation": "annotated_from", "ref": "reviews:1", "digest": made["parents"][0]["digest"]}
    ]
    row = client.get("/api/datasets/reviews:2/rows", params={"offset": 1, "limit": 1}).json()["rows"][0]
    assert row["id"] == 2 and row["label"] == "pos"
    empty = client.post("/api/datasets/reviews:2/apply-annotations", json={})
    assert empty.status_code == 400 and "no usable labels" in empty.json()["error"]["message"]


def test_clean_over_http_writes_the_version_the_sdk_would_with_its_report(
    client: TestClient, tmp_path: Path
) -> None:
    settings = client.app.state.settings
    rows = [
        *LABELLED,
        LABELLED[0],
        {"text": "Mail me at ann@example.com, ok?", "label": "neg"},
        {"text": "ok", "label": "pos"},
    ]
    data.import_file(
        write_jsonl(tmp_path / "dirty.jsonl", rows), "dirty", "classification", settings=settings
    )
    body = {"dedup": ["exact"], "pii": "mask", "min_chars": 5}
    response = client.post("/api/datasets/dirty/clean", json=body)
    assert response.status_code == 200, response.json()
    cleaned = response.json()
    assert cleaned["ref"] == "dirty:2" and cleaned["is_new"] and cleaned["rows"] == len(LABELLED) + 1
    assert cleaned["parents"][0] == {**cleaned["parents"][0], "relation": "cleaned_from", "ref": "dirty:1"}
    report = cleaned["report"]
    assert report["removed"]["exact_duplicate"] == 1 and report["removed"]["too_short"] == 1
    assert report["masked"]["email"] == 1 and report["rows_in"] == len(rows)
    texts = [
        r["text"] for r in client.get("/api/datasets/dirty:2/rows", params={"limit": 100}).json()["rows"]
    ]
    assert not any("ann@example.com" in text for text in texts) and len(texts) == len(LABELLED) + 1
    again = data.clean("dirty:1", body_options(body), settings=settings)  # the SDK: nothing new
    assert not again.is_new and again.digest == cleaned["digest"]


def body_options(body: dict) -> data.CleanOptions:
    return data.CleanOptions(dedup=tuple(body["dedup"]), pii=body["pii"], min_chars=body["min_chars"])


def test_split_over_http_is_seeded_and_stratified(client: TestClient) -> None:
    first = client.post("/api/datasets/reviews/split", json={"test": 0.5, "seed": 3}).json()
    assert first["ref"] == "reviews:2" and first["report"]["stratified"] is True
    assert first["parents"][0]["relation"] == "split_from"
    assert sum(s["rows"] for s in first["splits"].values()) == 6 and set(first["splits"]) == {"train", "test"}
    same = client.post("/api/datasets/reviews:1/split", json={"test": 0.5, "seed": 3}).json()
    assert not same["is_new"] and same["digest"] == first["digest"]


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        ("/api/datasets/reviews/clean", {"dedup": ["fuzzy"]}, "dedup"),
        ("/api/datasets/reviews/clean", {"near_threshold": 0}, "near_threshold"),
        ("/api/datasets/reviews/clean", {"languages": ["english"]}, "two-letter"),
        ("/api/datasets/reviews/clean", {"pii": "drop"}, "pii"),
        ("/api/datasets/reviews/split", {"test": 1.5}, "test"),
        ("/api/datasets/reviews/split", {"test": 0.01}, "leaves a split empty"),
    ],
)
def test_bad_clean_and_split_forms_are_400_naming_the_field(
    client: TestClient, path: str, body: dict, fragment: str
) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert fragment in error["message"] or fragment in str(error["param"])
    assert [d["ref"] for d in client.get("/api/datasets").json()["datasets"]] == ["reviews:1"]
