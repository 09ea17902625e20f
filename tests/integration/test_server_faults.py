"""Faults against a real `llmos serve` on loopback: bursts beyond the queue, clients that vanish,
over-long prompts, keys, and SIGTERM while loading and while serving."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from llmos.registry import ensure_pulled
from tests.conftest import ServerProcess, start_server, wait_healthy

pytestmark = pytest.mark.integration

KEY = "sk-faults"
AUTH = {"Authorization": f"Bearer {KEY}"}


def stop(proc: ServerProcess) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(real_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Small limits so a burst overflows: 4 running + 4 waiting per model."""
    env = {"LLMOS_MAX_NUM_SEQS": "4", "LLMOS_MAX_WAITING_REQUESTS": "4"}
    logs = tmp_path_factory.mktemp("faults")
    proc, url = start_server(real_home, "--model", "smollm2", "--api-key", KEY, env=env, log_dir=logs)
    try:
        wait_healthy(url, proc, path="/health")
        deadline = time.monotonic() + 120
        while httpx.get(f"{url}/ready", headers=AUTH).status_code != 200:
            assert time.monotonic() < deadline, "not ready"
            time.sleep(0.3)
        yield url
    finally:
        stop(proc)


def _running(url: str) -> float:
    text = httpx.get(f"{url}/metrics", headers=AUTH).text
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(("llmos:num_requests_running{", "llmos:num_requests_waiting{"))
    ]
    assert values, text
    return sum(values)


def _wait_idle(url: str, within: float) -> float:
    deadline = time.monotonic() + within
    while (busy := _running(url)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return busy


LONG = {"max_tokens": 2000, "ignore_eos": True, "temperature": 0}


def test_a_burst_beyond_the_queue_gets_only_200s_and_429s_with_retry_after(server: str) -> None:
    async def burst() -> list[httpx.Response]:
        body = {"model": "smollm2", "prompt": "Count to ten:", "max_tokens": 24, "ignore_eos": True}
        async with httpx.AsyncClient(headers=AUTH, timeout=120) as client:
            return list(
                await asyncio.gather(*(client.post(f"{server}/v1/completions", json=body) for _ in range(24)))
            )

    responses = asyncio.run(burst())
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(429) >= 1 and statuses.count(200) >= 4, statuses
    for r in responses:
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) >= 1
            assert r.json()["error"]["type"] == "rate_limit_error"
        else:
            assert r.json()["usage"]["completion_tokens"] == 24
    assert 'reason="queue_full"' in httpx.get(f"{server}/metrics", headers=AUTH).text


def test_eight_streams_cut_midway_free_the_engine_within_two_seconds(server: str) -> None:
    async def cut() -> None:
        body = {"model": "smollm2", "prompt": "Once upon a time", "stream": True, **LONG}
        async with httpx.AsyncClient(headers=AUTH, timeout=60) as client:

            async def one() -> None:
                async with client.stream("POST", f"{server}/v1/completions", json=body) as response:
                    assert response.status_code == 200
                    seen = 0
                    async for line in response.aiter_lines():
                        seen += line.startswith("data: ")
                        if seen >= 3:
                            return  # leaving the block closes the connection mid-stream

            await asyncio.gather(*(one() for _ in range(8)))

    asyncio.run(cut())
    assert _wait_idle(server, within=2.0) == 0


def test_a_non_streaming_client_that_leaves_aborts_its_request(server: str) -> None:
    body = {"model": "smollm2", "prompt": "Once upon a time", **LONG}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server}/v1/completions", json=body, headers=AUTH, timeout=1.5)
    # 2,000 tokens take well over a minute here, so idle within 10 s means the request was aborted;
    # a tighter bound failed once in CI with the machine loaded by the rest of the suite
    assert _wait_idle(server, within=10.0) == 0


def test_an_over_long_prompt_is_400_with_the_numbers(server: str) -> None:
    body = {"model": "smollm2", "prompt": "hello " * 9000, "max_tokens": 10}
    response = httpx.post(f"{server}/v1/completions", json=body, headers=AUTH, timeout=60)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded" and "8192" in error["message"]


def test_wrong_or_missing_keys_get_401_and_health_stays_open(server: str) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}):
        for path in ("/v1/models", "/metrics", "/ready", "/api/ps", "/openapi.json"):
            assert httpx.get(f"{server}{path}", headers=headers).status_code == 401, path
    assert httpx.get(f"{server}/health").status_code == 200
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server}/v1", api_key="nope", max_retries=0).models.list()
    models = openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0).models.list()
    assert "smollm2-135m-instruct" in [m.id for m in models.data]


def test_a_public_address_without_keys_is_refused(real_home: Path, tmp_path: Path) -> None:
    proc, _ = start_server(real_home, "--host", "0.0.0.0", log_dir=tmp_path)
    assert proc.wait(timeout=60) == 2
    err = proc.output()
    assert "--api-key" in err and "--insecure" in err


def test_sigterm_while_loading_exits_zero(real_home: Path, tmp_path: Path) -> None:
    ensure_pulled(real_home, "gemma3-270m")  # a second model keeps the server loading a while
    proc, url = start_server(real_home, "--model", "smollm2", "--model", "gemma3", log_dir=tmp_path)
    try:
        wait_healthy(url, proc, path="/health")
        assert httpx.get(f"{url}/ready").status_code == 503  # still loading the models
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        stop(proc)


def test_sigterm_drains_an_in_flight_stream_then_exits_zero(real_home: Path, tmp_path: Path) -> None:
    proc, url = start_server(real_home, "--model", "smollm2", log_dir=tmp_path)
    try:
        wait_healthy(url, proc)
        body = {"model": "smollm2", "prompt": "Once upon a time", "stream": True, **LONG, "max_tokens": 48}
        chunks: list[str] = []
        with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=60) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    chunks.append(line)
                    if len(chunks) == 2:
                        proc.send_signal(signal.SIGTERM)
        assert chunks[-1] == "data: [DONE]"
        assert '"finish_reason": "length"' in chunks[-2]
        assert proc.wait(timeout=60) == 0
    finally:
        stop(proc)
