"""Keys, scopes, limits, budgets, usage, request ids and the access and audit logs, through the real
app (TestClient) on a tiny model: every route declares a scope and is refused without it, a revoked
key is refused on its next request, limits answer 429 with OpenAI's headers, and the usage rows,
the Prometheus counters and the responses' ``usage`` agree."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
from fastapi.testclient import TestClient

from llmos.access.keys import KeyStore
from llmos.access.limits import Budget, Limits
from llmos.access.scopes import SCOPES
from llmos.config import Settings
from llmos.monitor.requests import ACCESS_LOG_SCHEMA
from llmos.registry import Registry
from llmos.server.app import create_app
from llmos.server.auth import SCOPE_KEY

ADMIN = "sk-admin-test"


@pytest.fixture
def settings(isolated_home: Path, tiny_chat_folder: Path) -> Settings:
    settings = Settings(home=isolated_home, dtype="float32", max_model_len=256)
    registry = Registry(settings)
    registry.import_path(tiny_chat_folder, "tiny")
    registry.close()
    return settings


def _make_key(settings: Settings, name: str, scopes: list[str], **options: object) -> tuple[str, str]:
    store = KeyStore(settings)
    try:
        key, token = store.create(name, scopes, actor="test", **options)  # type: ignore[arg-type]
        return key.id, token
    finally:
        store.close()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _wait_ready(c: TestClient, headers: dict[str, str]) -> None:
    """Wait for the preloaded model (on the app, so the key needs no ``metrics`` scope)."""
    startup = c.app.state.startup  # type: ignore[attr-defined]
    assert startup.done.wait(60) and startup.error is None, startup.error


def _chat(c: TestClient, token: str, **extra: object) -> object:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
    return c.post("/v1/chat/completions", json={**body, **extra}, headers=_bearer(token))


def _routes(app: object) -> list[tuple[str, str, str | None]]:
    """(method, path, declared scope) of every route, the ones hidden from the schema included."""
    found = []

    def walk(routes: list[object], prefix: str) -> None:
        for route in routes:
            included = getattr(route, "original_router", None)  # FastAPI's included router
            if included is not None:
                walk(included.routes, prefix + route.include_context.prefix)  # type: ignore[attr-defined]
                continue
            methods = getattr(route, "methods", None)
            if not methods or not hasattr(route, "openapi_extra"):
                continue
            scope = (route.openapi_extra or {}).get(SCOPE_KEY)  # type: ignore[attr-defined]
            found.extend((m, prefix + route.path, scope) for m in sorted(methods) if m != "HEAD")  # type: ignore[attr-defined]

    walk(app.routes, "")  # type: ignore[attr-defined]
    return found


def test_every_route_declares_a_scope_in_the_openapi_description(settings: Settings) -> None:
    app = create_app(settings)
    paths = app.openapi()["paths"]
    undeclared = [
        f"{method.upper()} {path}"
        for path, ops in paths.items()
        for method, op in ops.items()
        if SCOPE_KEY not in op
    ]
    assert undeclared == [], "give each route **requires(SCOPE) (llmos.server.auth)"
    assert [r for r in _routes(app) if r[2] is None] == []  # hidden routes too
    declared = {op[SCOPE_KEY] for ops in paths.values() for op in ops.values()}
    assert declared <= {*SCOPES, "public", "any"} and "admin" in declared and "inference" in declared


def test_scope_by_route_matrix_401_without_a_key_403_without_the_scope(settings: Settings) -> None:
    real_scopes = [s for s in SCOPES if s != "admin"]
    only = {s: _make_key(settings, f"only-{s}", [s])[1] for s in SCOPES}
    without = {s: _make_key(settings, f"no-{s}", [o for o in real_scopes if o != s])[1] for s in SCOPES}
    app = create_app(settings)
    with TestClient(app) as c:
        checked = 0
        for method, path, scope in _routes(app):
            url = re.sub(r"\{[^}]+\}", "missing-thing", path)
            body = {"nonsense_field": 1} if method in ("POST", "PUT") else None

            def call(headers: dict[str, str], _m: str = method, _u: str = url, _b: object = body) -> int:
                return c.request(_m, _u, json=_b, headers=headers).status_code

            if scope == "public":
                assert call({}) not in (401, 403), (method, path)
                continue
            assert call({}) == 401, (method, path)
            assert call(_bearer("llmos-knope.wrong")) == 401, (method, path)
            if scope == "any":
                assert call(_bearer(only["inference"])) not in (401, 403), (method, path)
                continue
            assert scope is not None
            assert call(_bearer(without[scope])) == 403, (method, path, scope)
            assert call(_bearer(only[scope])) not in (401, 403), (method, path, scope)
            assert call(_bearer(only["admin"])) not in (401, 403), (method, path, "admin")
            checked += 1
        assert checked > 30
        refused = c.get("/api/keys", headers=_bearer(only["inference"]))
        assert (
            refused.json()["error"]["code"] == "insufficient_scope"
            and "admin" in refused.json()["error"]["message"]
        )


def test_a_model_outside_the_keys_allow_list_is_403_before_it_loads(settings: Settings) -> None:
    _, token = _make_key(settings, "elsewhere", ["inference", "metrics"], models=["qwen"])
    with TestClient(create_app(settings)) as c:
        response = _chat(c, token)
        assert response.status_code == 403 and response.json()["error"]["code"] == "model_not_allowed"
        assert c.app.state.pool.entries == {}  # nothing was loaded for it
        assert (
            'llmos:auth_failures_total{reason="model"} 1.0' in c.get("/metrics", headers=_bearer(token)).text
        )


def test_a_revoked_key_is_refused_on_its_next_request_and_a_rotated_one_at_once(settings: Settings) -> None:
    key_id, token = _make_key(settings, "app1", ["inference", "models:read"])
    with TestClient(create_app(settings)) as c:
        assert c.get("/v1/models", headers=_bearer(token)).status_code == 200
        store = KeyStore(settings)  # as `llmos keys rotate` / `revoke` in another process would
        _, new_token = store.rotate(key_id, actor="test")
        assert c.get("/v1/models", headers=_bearer(token)).status_code == 401
        assert c.get("/v1/models", headers=_bearer(new_token)).status_code == 200
        store.revoke(key_id, actor="test")
        store.close()
        refused = c.get("/v1/models", headers=_bearer(new_token))
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "key_revoked"
        assert refused.headers["www-authenticate"] == "Bearer"


def test_keys_over_http_secret_shown_once_and_admin_keys_still_work(settings: Settings) -> None:
    settings.api_keys = ADMIN
    with TestClient(create_app(settings)) as c:
        made = c.post(
            "/api/keys",
            json={
                "name": "app1",
                "scopes": ["inference"],
                "limits": "rpm=60,tpm=20000",
                "budget": "1000000/month",
            },
            headers=_bearer(ADMIN),
        )
        assert made.status_code == 200, made.text
        key = made.json()
        assert key["key"].startswith(f"llmos-{key['id']}.") and key["limits"] == {"rpm": 60, "tpm": 20000}
        assert key["budget"]["tokens"] == 1_000_000 and key["budget"]["period"] == "month"
        shown = c.get(f"/api/keys/{key['id']}", headers=_bearer(ADMIN)).json()
        assert "key" not in shown and key["key"].split(".")[1] not in json.dumps(shown)
        assert c.get("/api/whoami", headers=_bearer(key["key"])).json()["key_id"] == key["id"]
        bad = c.post("/api/keys", json={"name": "x", "scopes": ["root"]}, headers=_bearer(ADMIN))
        assert bad.status_code == 400 and "root" in bad.json()["error"]["message"]
        c.post(f"/api/keys/{key['id']}/revoke", headers=_bearer(ADMIN))
        assert c.get("/api/whoami", headers=_bearer(key["key"])).status_code == 401
        audit = c.get("/api/audit", headers=_bearer(ADMIN)).json()["data"]
        assert [(e["action"], e["actor"]) for e in audit[:2]] == [
            ("key.revoked", "admin"),
            ("key.created", "admin"),
        ]
        assert audit[0]["request_id"]
    # the secret is nowhere in the store: only its HMAC
    secret = key["key"].split(".", 1)[1]
    assert secret.encode() not in (settings.home / "llmos.db").read_bytes()


def test_the_request_after_the_rpm_limit_is_429_with_openais_headers(settings: Settings) -> None:
    _, token = _make_key(settings, "rpm2", ["inference"], limits=Limits(rpm=2, tpm=10_000))
    with TestClient(create_app(settings, preload=["tiny"])) as c:
        _wait_ready(c, _bearer(token))
        ok = _chat(c, token)
        assert ok.status_code == 200
        assert ok.headers["x-ratelimit-limit-requests"] == "2"
        assert ok.headers["x-ratelimit-limit-tokens"] == "10000"
        assert int(ok.headers["x-ratelimit-remaining-tokens"]) < 10_000
        assert "x-ratelimit-reset-requests" in ok.headers and "x-ratelimit-reset-tokens" in ok.headers
        never = _chat(c, token, max_tokens=10_000)  # refused outright: counted nowhere
        assert never.status_code == 429 and "never fit" in never.json()["error"]["message"]
        failed = _chat(c, token, max_tokens=1_000)  # admitted, then past the context: it still counts
        assert failed.status_code == 400 and failed.json()["error"]["code"] == "context_length_exceeded"
        refused = _chat(c, token)
        assert refused.status_code == 429
        error = refused.json()["error"]
        assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"


def test_a_budget_stops_a_key_at_admission(settings: Settings) -> None:
    _, token = _make_key(settings, "tight", ["inference", "metrics"], budget=Budget(tokens=40, period="day"))
    with TestClient(create_app(settings, preload=["tiny"])) as c:
        _wait_ready(c, _bearer(token))
        refused = _chat(c, token, max_tokens=200)  # could overspend: refused before it runs
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "insufficient_quota"
        text = c.get("/metrics", headers=_bearer(token)).text
        assert re.search(r'llmos:budget_remaining_tokens\{key_id="k[0-9a-f]+"\} 40\.0', text), text
        assert 'llmos:rate_limited_total{reason="budget"} 1.0' in text


def test_usage_rows_prometheus_counters_and_responses_agree_after_50_mixed_requests(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    key_id, token = _make_key(settings, "mixed", ["inference", "metrics", "models:read"])
    caplog.set_level(logging.INFO, logger="llmos.access")
    with TestClient(create_app(settings, preload=["tiny"])) as c:
        _wait_ready(c, _bearer(token))
        prompt = completion = 0
        ids = []
        for i in range(50):
            kind = i % 5
            headers = _bearer(token) | {"X-Request-Id": f"mixed-{i}"}
            if kind == 0:
                r = c.post("/v1/chat/completions", headers=headers, json={
                    "model": "tiny", "messages": [{"role": "user", "content": f"hello {i}"}],
                    "max_tokens": 3 + i % 4,
                })  # fmt: skip
            elif kind == 1:
                r = c.post(
                    "/v1/completions",
                    headers=headers,
                    json={"model": "tiny", "prompt": f"once {i}", "max_tokens": 5},
                )
            elif kind == 2:
                r = c.post("/v1/chat/completions", headers=headers, json={
                    "model": "tiny", "messages": [{"role": "user", "content": "stream"}], "max_tokens": 4,
                    "stream": True, "stream_options": {"include_usage": True},
                })  # fmt: skip
            elif kind == 3:
                r = c.post("/v1/chat/completions", headers=headers, json={
                    "model": "tiny", "messages": [{"role": "user", "content": "two"}], "max_tokens": 2,
                    "n": 2,
                })  # fmt: skip
            else:
                r = c.post("/v1/chat/completions", headers=headers, json={"model": "tiny", "max_tokens": 0})
                assert r.status_code == 400
            assert r.headers["x-request-id"] == f"mixed-{i}"
            ids.append(f"mixed-{i}")
            if r.status_code != 200:
                continue
            if kind == 2:
                events = [json.loads(x[6:]) for x in r.text.splitlines() if x.startswith("data: {")]
                usage = events[-1]["usage"]
            else:
                usage = r.json()["usage"]
            prompt += usage["prompt_tokens"]
            completion += usage["completion_tokens"]
        metrics = c.get("/metrics", headers=_bearer(token)).text
        c.app.state.access.writer.flush()
        rows = c.app.state.access.usage.records(key_id=key_id, limit=1000)
        by_day = c.get("/api/usage", headers=_bearer(token)).json()["data"]
    counted = {row["request_id"]: row for row in rows}
    assert set(ids) <= set(counted)
    assert sum(counted[i]["prompt_tokens"] for i in ids) == prompt
    assert sum(counted[i]["completion_tokens"] for i in ids) == completion
    assert [counted[f"mixed-{i}"]["status"] for i in range(5)] == [200, 200, 200, 200, 400]
    assert counted["mixed-4"]["error_code"] is not None
    assert f'llmos:prompt_tokens_total{{model_name="tiny:1"}} {float(prompt)}' in metrics
    assert f'llmos:generation_tokens_total{{model_name="tiny:1"}} {float(completion)}' in metrics
    assert by_day[0]["prompt_tokens"] >= prompt and by_day[0]["requests"] >= 50
    assert by_day[0]["errors"] >= 10
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "llmos.access"]
    for line in lines:
        jsonschema.validate(line, ACCESS_LOG_SCHEMA)
    logged = {line["request_id"]: line for line in lines}
    assert logged["mixed-0"]["key_id"] == key_id and logged["mixed-0"]["route"] == "/v1/chat/completions"
    assert (
        logged["mixed-0"]["ttft_ms"] is not None
        and logged["mixed-0"]["e2e_ms"] >= logged["mixed-0"]["ttft_ms"]
    )
    assert logged["mixed-4"]["status"] == 400 and "prompt" not in logged["mixed-0"]


def test_a_clients_request_id_is_kept_only_when_it_is_safe(settings: Settings) -> None:
    with TestClient(create_app(settings)) as c:
        assert (
            c.get("/version", headers={"X-Request-Id": "abc.DEF-1_2"}).headers["x-request-id"]
            == "abc.DEF-1_2"
        )
        for bad in ("has space", "x" * 129, "semi;colon"):
            echoed = c.get("/version", headers={"X-Request-Id": bad}).headers["x-request-id"]
            assert echoed != bad and echoed.startswith("req_")
        missing = c.get("/api/models/nope")
        assert missing.status_code == 404
        assert missing.json()["error"]["request_id"] == missing.headers["x-request-id"]


def test_prompts_are_logged_only_when_asked_and_then_redacted(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings.log_prompts = True
    caplog.set_level(logging.INFO, logger="llmos.access")
    with TestClient(create_app(settings, preload=["tiny"])) as c:
        _wait_ready(c, {})
        body = {
            "model": "tiny",
            "messages": [{"role": "user", "content": "mail bob@example.com"}],
            "max_tokens": 2,
        }
        assert c.post("/v1/chat/completions", json=body).status_code == 200
    line = next(
        json.loads(r.getMessage()) for r in caplog.records if '"/v1/chat/completions"' in r.getMessage()
    )
    jsonschema.validate(line, ACCESS_LOG_SCHEMA)
    assert "[EMAIL]" in line["prompt"] and "bob@example.com" not in json.dumps(line)
    assert "output" in line


@pytest.fixture
def open_client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


def test_a_server_without_keys_stays_open_until_the_first_key_is_made(
    settings: Settings, open_client: TestClient
) -> None:
    assert open_client.get("/v1/models").status_code == 200
    _make_key(settings, "first", ["inference"])
    time.sleep(1.1)  # "no keys" is believed for at most a second
    assert open_client.get("/v1/models").status_code == 401


def test_a_traced_request_is_one_span_tree_without_its_prompt(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import llmos.server.app as app_module
    from llmos.monitor.tracing import Tracing

    exporter = InMemorySpanExporter()
    monkeypatch.setattr(app_module, "_tracing", lambda _: Tracing.from_endpoint(None, exporter=exporter))
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    with TestClient(create_app(settings, preload=["tiny"])) as c:
        _wait_ready(c, {})
        body = {"model": "tiny", "messages": [{"role": "user", "content": "SECRET words"}], "max_tokens": 3}
        assert c.post("/v1/chat/completions", json=body, headers={"traceparent": parent}).status_code == 200
    spans = {s.name: s for s in exporter.get_finished_spans()}
    root = spans["chat tiny"]
    assert {"queue", "prefill", "decode"} <= set(spans)
    assert all(spans[n].parent.span_id == root.context.span_id for n in ("queue", "prefill", "decode"))
    assert format(root.context.trace_id, "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert (
        root.attributes["gen_ai.usage.output_tokens"] == 3
        and root.attributes["http.response.status_code"] == 200
    )
    assert "SECRET" not in json.dumps([s.to_json() for s in spans.values()])


def test_guardrails_mask_and_block_inputs_and_are_counted(settings: Settings, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        "  - {name: pii, type: pii, stages: [input], action: mask}\n"
        "  - {name: secret, type: deny, phrases: [project nightingale], stages: [input], action: block}\n"
    )
    settings.guardrails = str(rules)
    settings.log_prompts = True
    with TestClient(create_app(settings, preload=["tiny"])) as c:
        _wait_ready(c, {})
        body = {
            "model": "tiny",
            "messages": [{"role": "user", "content": "mail bob@example.com"}],
            "max_tokens": 2,
        }
        assert c.post("/v1/chat/completions", json=body).status_code == 200
        body["messages"] = [{"role": "user", "content": "tell me about Project Nightingale"}]
        blocked = c.post("/v1/chat/completions", json=body)
        assert blocked.status_code == 400 and blocked.json()["error"]["code"] == "content_blocked"
        assert "secret" in blocked.json()["error"]["message"]
        text = c.get("/metrics").text
        audit = c.app.state.access.audit.list(action="guardrail.")
    assert 'llmos:guardrail_actions_total{action="mask",rule="pii",stage="input"} 1.0' in text
    assert 'llmos:guardrail_actions_total{action="block",rule="secret",stage="input"}' in text
    assert [(e.target, e.details["stage"]) for e in audit] == [("secret", "input")]
