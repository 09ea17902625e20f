"""The native /api registry routes in-process (TestClient): aliases in listings, tag, copy,
history, delete with aliases (409 unless forced), verify and gc — errors as OpenAI-style bodies."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llmos.config import Settings
from llmos.registry import Registry
from llmos.server.app import create_app


@pytest.fixture
def settings(isolated_home: Path, tiny_chat_folder: Path) -> Settings:
    settings = Settings(home=isolated_home)
    registry = Registry(settings)
    registry.import_path(tiny_chat_folder, "tiny", check=False)
    registry.import_path(tiny_chat_folder, "tiny", check=False)
    registry.close()
    return settings


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


def test_listing_shows_aliases_and_tag_moves_them(client: TestClient) -> None:
    listing = client.get("/api/models").json()["models"]
    assert [(m["ref"], m["aliases"]) for m in listing] == [("tiny:1", []), ("tiny:2", ["latest"])]
    assert listing[0]["size_bytes"] > 0
    tagged = client.post("/api/models/tiny:1/tag", json={"alias": "prod"})
    assert tagged.status_code == 200 and tagged.json()["aliases"] == ["prod"]
    assert client.get("/api/models/tiny@prod").json()["ref"] == "tiny:1"
    moved = client.post("/api/models/tiny@latest/tag", json={"alias": "prod"}).json()
    assert moved["ref"] == "tiny:2" and moved["aliases"] == ["latest", "prod"]
    bad = client.post("/api/models/tiny:1/tag", json={"alias": "Not An Alias"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_model_name"
    missing = client.post("/api/models/nope/tag", json={"alias": "prod"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


def test_copy_and_history(client: TestClient) -> None:
    copied = client.post("/api/models/tiny:1/copy", json={"destination": "assistant"})
    assert copied.status_code == 200
    body = copied.json()
    assert body["ref"] == "assistant:1" and body["parents"][0]["relation"] == "copied_from"
    history = client.get("/api/models/tiny/history").json()
    assert [v["ref"] for v in history["versions"]] == ["tiny:1", "tiny:2"]
    actions = [(e["action"], e["version"]) for e in history["events"]]
    assert actions[0] == ("imported", 1) and ("copied", 1) in actions
    assert client.get("/api/models/nope/history").status_code == 404
    assert client.post("/api/models/tiny/copy", json={"destination": "../x"}).status_code == 400


def test_delete_refuses_an_aliased_version_unless_forced(client: TestClient) -> None:
    client.post("/api/models/tiny:1/tag", json={"alias": "prod"})
    refused = client.delete("/api/models/tiny:1")
    assert refused.status_code == 409 and refused.json()["error"]["type"] == "conflict_error"
    assert "@prod" in refused.json()["error"]["message"]
    assert client.delete("/api/models/tiny:1?force=true").json() == {"deleted": ["tiny:1"]}
    assert client.delete("/api/models/tiny:2").json() == {"deleted": ["tiny:2"]}
    assert client.get("/api/models").json()["models"] == []


def test_verify_and_gc(client: TestClient, settings: Settings) -> None:
    report = client.post("/api/verify", json={}).json()
    assert report["ok"] is True and report["versions"] == ["tiny:1", "tiny:2"]
    assert client.post("/api/verify", json={"name": "tiny:1"}).json()["versions"] == ["tiny:1"]
    assert client.post("/api/verify", json={"name": "nope"}).status_code == 404
    orphan = settings.models_dir / "blobs" / f"sha256-{hashlib.sha256(b'x').hexdigest()}"
    orphan.write_bytes(b"x")
    assert client.post("/api/gc", json={"dry_run": True}).json()["num_removed"] == 1 and orphan.exists()
    freed = client.post("/api/gc").json()
    assert freed["blobs"] == [orphan.name.removeprefix("sha256-")] and not orphan.exists()
    snapshot = settings.models_dir / "snapshots" / "tiny" / "1" / "config.json"
    snapshot.chmod(0o644)
    snapshot.write_text("{}")
    broken = client.post("/api/verify").json()
    assert broken["ok"] is False and broken["problems"][0]["filename"] == "config.json"
