"""The OpenAI Files and Batch APIs on the tiny model: a batch's lines answer as the same requests
sent one by one, its errors land in the error file, a bad input file fails validation with the
lines named, a cancelled batch keeps what it did, a restarted server resumes without redoing a
line, files and batches belong to their key, and uploads are size-limited."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmos.access.keys import KeyStore
from llmos.batch import BatchStore, Progress
from llmos.config import Settings
from llmos.registry import Registry
from llmos.server.app import create_app

GREEDY = {"temperature": 0, "max_tokens": 6}


@pytest.fixture
def settings(isolated_home: Path, tiny_chat_folder: Path) -> Settings:
    settings = Settings(home=isolated_home, dtype="float32", max_file_bytes=64 << 10)
    registry = Registry(settings)
    registry.import_path(tiny_chat_folder, "tiny")
    registry.close()
    return settings


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, preload=["tiny"])) as c:
        _wait_ready(c)
        yield c


def _wait_ready(c: TestClient) -> None:
    for _ in range(200):
        if c.get("/ready").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError(c.get("/ready").json())


def _lines(bodies: list[dict[str, Any]], url: str = "/v1/chat/completions") -> bytes:
    return b"".join(
        json.dumps({"custom_id": f"r{i}", "method": "POST", "url": url, "body": b}).encode() + b"\n"
        for i, b in enumerate(bodies)
    )


def _upload(c: TestClient, data: bytes, headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = c.post(
        "/v1/files", files={"file": ("in.jsonl", data)}, data={"purpose": "batch"}, headers=headers or {}
    )
    assert response.status_code == 200, response.text
    return response.json()


def _submit(c: TestClient, data: bytes, url: str = "/v1/chat/completions", **kw: Any) -> dict[str, Any]:
    headers = kw.pop("headers", None)
    file = _upload(c, data, headers)
    body = {"input_file_id": file["id"], "endpoint": url, "completion_window": "24h", **kw}
    response = c.post("/v1/batches", json=body, headers=headers or {})
    assert response.status_code == 200, response.text
    return response.json()


def _wait(c: TestClient, batch_id: str, headers: dict[str, str] | None = None, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = c.get(f"/v1/batches/{batch_id}", headers=headers or {}).json()
        if batch["status"] in ("completed", "failed", "cancelled", "expired"):
            return batch
        time.sleep(0.05)
    raise AssertionError(f"batch still {batch['status']}: {batch}")


def _content(c: TestClient, file_id: str, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    response = c.get(f"/v1/files/{file_id}/content", headers=headers or {})
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.content.splitlines()]


def _usage_ids(c: TestClient, headers: dict[str, str], key: str | None = None) -> set[str]:
    """Request ids in the usage log, once the background writer has committed what it holds."""
    c.app.state.access.writer.flush()  # type: ignore[attr-defined]
    params: dict[str, Any] = {"limit": 1000, **({"key": key} if key else {})}
    response = c.get("/api/usage/records", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return {r["request_id"] for r in response.json()["data"]}


def _chat(i: int) -> dict[str, Any]:
    return {"model": "tiny", "messages": [{"role": "user", "content": f"hello {i}"}], **GREEDY}


def test_a_batch_answers_as_the_same_requests_one_by_one_and_errors_go_to_the_error_file(
    client: TestClient,
) -> None:
    bodies = [_chat(i) for i in range(5)] + [
        {"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}
    ]
    batch = _submit(client, _lines(bodies), metadata={"team": "nlp"})
    assert (
        batch["object"] == "batch"
        and batch["status"] == "validating"
        and batch["metadata"] == {"team": "nlp"}
    )
    done = _wait(client, batch["id"])
    assert done["status"] == "completed", done
    assert done["request_counts"] == {"total": 6, "completed": 5, "failed": 1}
    assert (
        done["in_progress_at"] and done["completed_at"] and done["output_file_id"] and done["error_file_id"]
    )

    output = _content(client, done["output_file_id"])
    assert [item["custom_id"] for item in output] == [f"r{i}" for i in range(5)]  # input order
    for i, item in enumerate(output):
        assert item["error"] is None and item["response"]["status_code"] == 200
        alone = client.post("/v1/chat/completions", json=_chat(i)).json()
        assert item["response"]["body"]["choices"][0]["message"] == alone["choices"][0]["message"]
        assert item["response"]["body"]["usage"] == alone["usage"]
    errors = _content(client, done["error_file_id"])
    assert [e["custom_id"] for e in errors] == ["r5"]
    assert errors[0]["response"]["status_code"] == 404
    assert errors[0]["response"]["body"]["error"]["code"] == "model_not_found"

    # every line was a request of its own, accounted like any other (request id = batch id + line)
    wanted = {f"{batch['id']}-{n}" for n in range(1, 7)}
    assert wanted <= _usage_ids(client, {})
    metrics = client.get("/metrics").text
    assert 'llmos:batch_requests_total{status="completed"} 5.0' in metrics
    assert 'llmos:batch_requests_total{status="failed"} 1.0' in metrics
    assert client.get("/v1/batches").json()["data"][0]["id"] == batch["id"]


def test_completions_run_in_a_batch(client: TestClient) -> None:
    lines = _lines([{"model": "tiny", "prompt": "a b", **GREEDY}], "/v1/completions")
    done = _wait(client, _submit(client, lines, "/v1/completions")["id"])
    assert done["request_counts"] == {"total": 1, "completed": 1, "failed": 0}, done
    [item] = _content(client, done["output_file_id"])
    assert item["response"]["body"]["object"] == "text_completion"
    assert item["response"]["body"]["usage"]["completion_tokens"] == 6


def test_a_malformed_input_file_fails_validation_naming_each_bad_line(client: TestClient) -> None:
    good = json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": _chat(0)})
    data = "\n".join(
        [
            good,
            "{not json",
            good,  # custom_id "a" again
            json.dumps({"custom_id": "b", "method": "POST", "url": "/v1/completions", "body": {}}),
            json.dumps({"custom_id": "c", "method": "GET", "url": "/v1/chat/completions", "body": {}}),
        ]
    ).encode()
    done = _wait(client, _submit(client, data)["id"])
    assert done["status"] == "failed" and done["failed_at"] and done["output_file_id"] is None
    errors = done["errors"]["data"]
    assert [(e["line"], e["code"]) for e in errors] == [
        (2, "invalid_json_line"),
        (3, "duplicate_custom_id"),
        (4, "mismatched_endpoint"),
        (5, "invalid_method"),
    ]


def test_bad_batch_requests_are_clear_errors(client: TestClient) -> None:
    file = _upload(client, _lines([_chat(0)]))
    for body, param in [
        ({"input_file_id": file["id"], "endpoint": "/v1/images", "completion_window": "24h"}, "endpoint"),
        (
            {"input_file_id": file["id"], "endpoint": "/v1/tasks/../api/keys", "completion_window": "24h"},
            "endpoint",
        ),
        (
            {"input_file_id": file["id"], "endpoint": "/v1/completions", "completion_window": "1h"},
            "completion_window",
        ),
        (
            {"input_file_id": "file-nope", "endpoint": "/v1/completions", "completion_window": "24h"},
            "file_id",
        ),
    ]:
        response = client.post("/v1/batches", json=body)
        assert response.status_code in (400, 404), response.text
        assert response.json()["error"]["param"] == param
    assert (
        client.post("/v1/files", files={"file": ("x", b"{}")}, data={"purpose": "fine-tune"}).status_code
        == 400
    )
    assert client.get("/v1/batches/batch_nope").status_code == 404
    assert client.get("/v1/files/file-nope/content").status_code == 404


def test_an_upload_past_the_size_limit_is_413_and_leaves_nothing(
    client: TestClient, settings: Settings
) -> None:
    response = client.post(
        "/v1/files", files={"file": ("big.jsonl", b"x" * (70 << 10))}, data={"purpose": "batch"}
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "request_too_large"
    assert list((settings.home / "files").iterdir()) == []
    assert client.get("/v1/files").json()["data"] == []


def test_files_can_be_listed_read_and_deleted(client: TestClient, settings: Settings) -> None:
    data = _lines([_chat(0)])
    file = _upload(client, data)
    assert file["object"] == "file" and file["bytes"] == len(data) and file["purpose"] == "batch"
    assert client.get(f"/v1/files/{file['id']}/content").content == data
    assert [f["id"] for f in client.get("/v1/files", params={"purpose": "batch"}).json()["data"]] == [
        file["id"]
    ]
    assert client.delete(f"/v1/files/{file['id']}").json() == {
        "id": file["id"],
        "object": "file",
        "deleted": True,
    }
    assert client.get(f"/v1/files/{file['id']}").status_code == 404
    assert not (settings.home / "files" / file["id"]).exists()


def test_cancelling_keeps_the_lines_done_and_stops_the_rest(settings: Settings) -> None:
    settings.batch_concurrency = 1
    with TestClient(create_app(settings, preload=["tiny"])) as c:
        _wait_ready(c)
        batch = _submit(c, _lines([{**_chat(i), "max_tokens": 40} for i in range(40)]))
        deadline = time.monotonic() + 30
        while c.get(f"/v1/batches/{batch['id']}").json()["request_counts"]["completed"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        cancelling = c.post(f"/v1/batches/{batch['id']}/cancel").json()
        assert cancelling["status"] == "cancelling" and cancelling["cancelling_at"]
        done = _wait(c, batch["id"])
        assert done["status"] == "cancelled" and done["cancelled_at"]
        counts = done["request_counts"]
        assert 2 <= counts["completed"] < 40 and counts["total"] == 40
        assert len(_content(c, done["output_file_id"])) == counts["completed"]
        again = c.post(f"/v1/batches/{batch['id']}/cancel")
        assert again.status_code == 400 and "cancelled" in again.json()["error"]["message"]
        audit = c.get("/api/audit").json()["data"]
        assert any(e["action"] == "batch.cancelled" and e["target"] == batch["id"] for e in audit)


def test_a_restarted_server_resumes_a_batch_without_redoing_finished_lines(settings: Settings) -> None:
    """The first server is stopped with a batch half done (as a crash leaves it, plus a torn last
    progress line); the second finishes it, sending only the lines that were not done."""
    with TestClient(create_app(settings, preload=["tiny"])) as c:
        _wait_ready(c)
        file = _upload(c, _lines([_chat(i) for i in range(6)]))
        first = [c.post("/v1/chat/completions", json=_chat(i)).json() for i in range(6)]
    store = BatchStore(settings)
    batch = store.create(file["id"], "/v1/chat/completions")
    store.update(batch.id, "in_progress", total=6)
    progress = store.progress(batch.id)
    for i in range(3):
        body = {**first[i], "id": f"from-before-{i}"}
        progress.add(
            {
                "id": f"x{i}",
                "custom_id": f"r{i}",
                "response": {"status_code": 200, "request_id": "old", "body": body},
                "error": None,
            }
        )
    progress.close()
    with open(progress.path, "a", encoding="utf-8") as f:
        f.write('{"id": "x3", "custom_id": "r3", "respo')  # torn by the crash
    store.close()

    with TestClient(create_app(settings, preload=["tiny"])) as c:
        _wait_ready(c)
        runner = c.app.state.batch_runner  # type: ignore[attr-defined]
        done = _wait(c, batch.id)
        assert done["status"] == "completed" and done["request_counts"]["completed"] == 6
        assert runner.lines_sent == 3  # r3, r4, r5 only
        output = _content(c, done["output_file_id"])
        assert [o["custom_id"] for o in output] == [f"r{i}" for i in range(6)]
        assert [o["response"]["body"]["id"] for o in output[:3]] == [
            "from-before-0",
            "from-before-1",
            "from-before-2",
        ]
        for i in range(3, 6):
            assert output[i]["response"]["body"]["choices"][0]["message"] == first[i]["choices"][0]["message"]
    assert not (settings.home / "batches" / batch.id).exists()  # progress is dropped once final


def test_progress_reads_back_whole_lines_and_cuts_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    ok = {"custom_id": "a", "response": {"status_code": 200}, "error": None}
    bad = {"custom_id": "b", "response": {"status_code": 400}, "error": None}
    path.write_text(json.dumps(ok) + "\n" + json.dumps(bad) + "\n" + '{"custom_id": "c"')
    progress = Progress(path)
    assert list(progress.done) == ["a", "b"] and (progress.num_ok, progress.num_failed) == (1, 1)
    progress.add({"custom_id": "c", "response": {"status_code": 200}, "error": None})
    progress.close()
    assert [json.loads(line)["custom_id"] for line in path.read_text().splitlines()] == ["a", "b", "c"]


def test_files_and_batches_belong_to_their_key_and_a_revoked_key_stops_its_batch(settings: Settings) -> None:
    keys = KeyStore(settings)
    alice_key, alice = keys.create("alice", scopes=["inference"], actor="test")
    _, bob = keys.create("bob", scopes=["inference"], actor="test")
    alice_key_id = alice_key.id
    keys.close()
    settings.api_keys = "root-key"
    a, b, root = ({"Authorization": f"Bearer {k}"} for k in (alice, bob, "root-key"))
    with TestClient(create_app(settings, preload=["tiny"])) as c:
        for _ in range(200):
            if c.get("/ready", headers=root).status_code == 200:
                break
            time.sleep(0.05)
        batch = _submit(c, _lines([_chat(0)]), headers=a)
        done = _wait(c, batch["id"], a)
        assert done["status"] == "completed"
        assert c.get(f"/v1/batches/{batch['id']}", headers=b).status_code == 404
        assert c.get(f"/v1/files/{done['output_file_id']}/content", headers=b).status_code == 404
        assert c.get("/v1/batches", headers=b).json()["data"] == []
        assert c.get(f"/v1/batches/{batch['id']}", headers=root).status_code == 200  # admin sees all
        assert f"{batch['id']}-1" in _usage_ids(c, root, alice_key_id)  # usage under the submitter

        # a batch of alice's still queued when her key is revoked: its lines are refused
        file = _upload(c, _lines([_chat(1)]), root)
        assert c.post(f"/api/keys/{alice_key_id}/revoke", headers=root).status_code == 200
        later = BatchStore(settings).create(file["id"], "/v1/chat/completions", key_id=alice_key_id)
        c.app.state.batch_runner.wake()  # type: ignore[attr-defined]
        failed = _wait(c, later.id, root)
        assert failed["request_counts"] == {"total": 1, "completed": 0, "failed": 1}
        [line] = _content(c, failed["error_file_id"], root)
        assert line["response"]["status_code"] == 401
        assert line["response"]["body"]["error"]["code"] == "key_revoked"


NOTES = [f"note {i}: the printer on floor {i} jams again and again" for i in range(1, 6)]


def test_a_dataset_runs_as_a_task_batch_whose_lines_answer_as_the_task_route_does(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    from llmos import data

    source = tmp_path / "notes.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in NOTES))
    data.import_file(source, "notes", "text", settings=settings)
    body = {"task": "summarize", "model": "tiny", "max_tokens": 4, "options": {"max_words": 5}, "limit": 4}
    response = client.post("/api/datasets/notes/task-batch", json=body)
    assert response.status_code == 200, response.json()
    batch = response.json()
    assert batch["endpoint"] == "/v1/tasks/summarize" and batch["num_rows"] == 4
    assert batch["metadata"] == {"dataset": "notes:1", "split": "all", "task": "summarize", "column": "text"}
    done = _wait(client, batch["id"])
    assert done["status"] == "completed" and done["request_counts"] == {
        "total": 4,
        "completed": 4,
        "failed": 0,
    }
    lines = _content(client, batch["input_file_id"])
    assert [line["custom_id"] for line in lines] == ["row-1", "row-2", "row-3", "row-4"]
    assert lines[0]["body"]["input"] == {"max_words": 5, "text": NOTES[0]}
    outputs = {line["custom_id"]: line["response"] for line in _content(client, done["output_file_id"])}
    for i, text in enumerate(NOTES[:4], start=1):
        direct = client.post(
            "/v1/tasks/summarize",
            json={
                "model": "tiny",
                "input": {"text": text, "max_words": 5},
                "max_tokens": 4,
                "temperature": 0,
            },
        ).json()
        assert outputs[f"row-{i}"]["status_code"] == 200
        assert outputs[f"row-{i}"]["body"]["results"][0]["output"] == direct["results"][0]["output"]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"task": "summarize", "model": "tiny", "column": "body"}, 400, "no column 'body'"),
        ({"task": "summarize", "model": "tiny", "split": "test"}, 400, "no split 'test'"),
        ({"task": "classify", "model": "tiny"}, 400, "labels"),
        ({"task": "tokenize", "model": "tiny"}, 400, "runs no model"),
        ({"task": "dance", "model": "tiny"}, 400, "unknown task 'dance'"),
    ],
)
def test_a_bad_task_batch_is_one_clear_error_and_stores_nothing(
    client: TestClient, settings: Settings, tmp_path: Path, body: dict, status: int, fragment: str
) -> None:
    from llmos import data

    source = tmp_path / "notes.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in NOTES))
    data.import_file(source, "notes", "text", settings=settings)
    response = client.post("/api/datasets/notes/task-batch", json=body)
    assert response.status_code == status, response.json()
    assert fragment in response.json()["error"]["message"]
    assert client.get("/v1/batches").json()["data"] == [] and client.get("/v1/files").json()["data"] == []
    missing = client.post("/api/datasets/ghost/task-batch", json={"task": "summarize", "model": "tiny"})
    assert missing.status_code == 404


def test_a_task_batch_needs_the_inference_scope_and_the_model_beside_datasets(
    settings: Settings, tmp_path: Path
) -> None:
    from llmos import data

    source = tmp_path / "notes.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in NOTES))
    data.import_file(source, "notes", "text", settings=settings)
    keys = KeyStore(settings)
    _, curator = keys.create("curator", scopes=["datasets"], actor="test")
    _, limited = keys.create("limited", scopes=["datasets", "inference"], models=["other"], actor="test")
    keys.close()
    settings.api_keys = "root-key"
    body = {"task": "summarize", "model": "tiny"}
    with TestClient(create_app(settings)) as c:
        refused = c.post(
            "/api/datasets/notes/task-batch", json=body, headers={"Authorization": f"Bearer {curator}"}
        )
        assert refused.status_code == 403 and "'inference' scope" in refused.json()["error"]["message"]
        other = c.post(
            "/api/datasets/notes/task-batch", json=body, headers={"Authorization": f"Bearer {limited}"}
        )
        assert other.status_code == 403
        assert c.get("/v1/batches", headers={"Authorization": "Bearer root-key"}).json()["data"] == []
