"""A real ``llmos serve`` on loopback with stored keys, driven by the real ``openai`` client: keys,
scopes, the model allow-list, rate limits with OpenAI's headers, revocation from the CLI in another
process, the JSON access log on the server's stderr, and a guardrail that never lets a blocked
phrase out of a stream, whichever chunks it is split across.

A tiny random model keeps it fast (its greedy output is fixed, so the test can pick a phrase that
spans token boundaries); what is tested is the server and the client, not the model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import openai
import pytest

from llmos.access.keys import KeyStore
from llmos.access.limits import Limits
from llmos.config import Settings
from llmos.monitor.requests import ACCESS_LOG_SCHEMA
from llmos.registry import Registry
from tests.conftest import start_server, wait_healthy
from tests.unit.tiny_models import build_tiny_chat_folder

pytestmark = pytest.mark.integration
ADMIN = "sk-admin-integration"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("access-home")
    folder = build_tiny_chat_folder(tmp_path_factory.mktemp("tiny") / "model")
    registry = Registry(Settings(home=home, dtype="float32"))
    registry.import_path(folder, "tiny")
    registry.close()
    return home


class Server:
    """`llmos serve -m tiny --api-key ADMIN` on ``home`` (the shared start helpers: its log is a
    file, and the access log in it is what the tests read)."""

    def __init__(self, home: Path, **env: str):
        self.proc, self.url = start_server(
            home, "-m", "tiny", "--api-key", ADMIN, log_dir=home, env={"LLMOS_DTYPE": "float32", **env}
        )
        self.log = self.proc.log
        wait_healthy(self.url, self.proc, headers={"Authorization": f"Bearer {ADMIN}"})

    def lines(self) -> list[dict[str, object]]:
        """The access-log lines written so far (one per request, flushed as each ends)."""
        lines = [line for line in self.log.read_text().splitlines() if line.startswith('{"time"')]
        return [json.loads(line) for line in lines]

    def stop(self) -> list[dict[str, object]]:
        """Stop the server; its access-log lines."""
        self.proc.terminate()
        self.proc.wait(timeout=60)
        return self.lines()


def _key(home: Path, name: str, scopes: list[str], **options: object) -> str:
    store = KeyStore(Settings(home=home))
    try:
        return store.create(name, scopes, actor="test", **options)[1]  # type: ignore[arg-type]
    finally:
        store.close()


def _client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[Server]:
    server = Server(home)
    yield server
    server.stop()


def _ask(client: openai.OpenAI, **extra: object) -> object:
    return client.chat.completions.with_raw_response.create(
        model="tiny", messages=[{"role": "user", "content": "hello"}], max_tokens=4, temperature=0, **extra
    )


def test_the_openai_client_sees_keys_scopes_and_limits(home: Path, server: Server) -> None:
    limited = _key(home, "limited", ["inference"], limits=Limits(rpm=2, tpm=5000))
    reader = _key(home, "reader", ["models:read"])
    elsewhere = _key(home, "elsewhere", ["inference"], models=["qwen"])
    first = _ask(_client(server.url, limited))
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-request-id"].startswith("req_")
    assert first.parse().usage.completion_tokens == 4
    _ask(_client(server.url, limited))
    with pytest.raises(openai.RateLimitError) as refused:
        _ask(_client(server.url, limited))
    assert refused.value.status_code == 429 and int(refused.value.response.headers["retry-after"]) >= 1
    assert refused.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.AuthenticationError):
        _ask(_client(server.url, "llmos-kwhatever.nope"))
    with pytest.raises(openai.PermissionDeniedError) as denied:
        _ask(_client(server.url, reader))
    assert "inference" in denied.value.message
    assert [m.id for m in _client(server.url, reader).models.list()] == ["tiny"]
    with pytest.raises(openai.PermissionDeniedError) as other_model:
        _ask(_client(server.url, elsewhere))
    assert other_model.value.code == "model_not_allowed"


def test_a_key_revoked_from_the_cli_is_refused_on_its_next_request(home: Path, server: Server) -> None:
    token = _key(home, "short-lived", ["inference"])
    client = _client(server.url, token)
    _ask(client)
    key_id = token.removeprefix("llmos-").split(".")[0]
    env = {**os.environ, "LLMOS_HOME": str(home)}
    revoked = subprocess.run(
        [sys.executable, "-m", "llmos.cli.main", "keys", "revoke", key_id],
        env=env,
        capture_output=True,
        text=True,
    )
    assert revoked.returncode == 0, revoked.stderr
    with pytest.raises(openai.AuthenticationError) as refused:
        _ask(client)
    assert "revoked" in refused.value.message


def _greedy_text(client: openai.OpenAI) -> list[str]:
    return list(_greedy_text_raw(client))


def test_a_banned_phrase_split_across_chunks_never_leaves_the_server(home: Path, server: Server) -> None:
    token = _key(home, "guarded", ["inference"])
    chunks = [c for c in _greedy_text(_client(server.url, token)) if c]
    # speculative decoding streams a run of accepted tokens as one chunk: fewer, longer chunks
    assert len(chunks) >= 4, chunks
    # a phrase that starts inside one chunk and ends inside a later one
    text = "".join(chunks)
    start = len(chunks[0]) + len(chunks[1]) - 1
    end = start + 1 + len(chunks[2]) + 1
    banned = text[start:end]
    assert len(banned) >= 3 and not any(banned in c for c in chunks), (banned, chunks)
    rules = home / "guardrails.yaml"
    rules.write_text(
        json.dumps(
            {
                "rules": [{"name": "banned", "type": "deny", "phrases": [banned], "action": "block"}],
                "apply": {"default": ["banned"]},
            }
        )
    )
    guarded = Server(home, LLMOS_GUARDRAILS=str(rules))
    try:
        client = _client(guarded.url, token)
        received = []
        with pytest.raises(openai.APIError) as blocked:
            for piece in _greedy_text_raw(client):
                received.append(piece)
        assert banned not in "".join(received)
        assert "banned" in str(blocked.value)
        audit = httpx.get(f"{guarded.url}/api/audit", headers={"Authorization": f"Bearer {ADMIN}"}).json()
        assert [e["target"] for e in audit["data"] if e["action"] == "guardrail.blocked"] == ["banned"]
    finally:
        lines = guarded.stop()
    chat = [line for line in lines if line["route"] == "/v1/chat/completions"]
    assert chat and "stream:banned:block" in chat[-1]["guardrail_actions"]


def _greedy_text_raw(client: openai.OpenAI) -> Iterator[str]:
    stream = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "hello"}],
        max_tokens=12,
        temperature=0,
        stream=True,
    )
    for chunk in stream:
        if chunk.choices:
            yield chunk.choices[0].delta.content or ""


def test_every_request_is_one_schema_valid_access_log_line(home: Path, server: Server) -> None:
    token = _key(home, "logged", ["inference", "models:read"])
    client = _client(server.url, token)
    _ask(client, extra_headers={"X-Request-Id": "complaint-42"})
    client.models.list()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    time.sleep(0.2)  # the last line is written just after its response
    lines = server.lines()
    for line in lines:
        jsonschema.validate(line, ACCESS_LOG_SCHEMA)
    by_id = {line["request_id"]: line for line in lines}
    assert by_id["complaint-42"]["completion_tokens"] == 4 and by_id["complaint-42"]["status"] == 200
    assert by_id["complaint-42"]["key_id"] == token.removeprefix("llmos-").split(".")[0]
    assert any(line["status"] == 404 and line["error_code"] == "model_not_found" for line in lines)
    assert all("prompt" not in line for line in lines)
