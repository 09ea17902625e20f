"""Engine death on a tiny model: a step that raises outside any one request fails every request
the engine holds (waiting and running) at once and stops it for good; the SDK then says to reload,
and the server's pool drops the dead engine (``/ready`` 503 until then), counts a restart and
reloads the model for the next request. A failure tied to one request fails that request alone."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tiny_models import build_tiny_llama
from transformers import PreTrainedTokenizerFast

import llmos
from llmos.config import Settings
from llmos.engine.async_engine import AsyncEngine
from llmos.engine.config import EngineConfig
from llmos.engine.engine import Engine
from llmos.engine.outputs import RequestOutput
from llmos.engine.sampling_params import SamplingParams
from llmos.errors import EngineDead, GenerationFailed
from llmos.registry import Registry
from llmos.server.app import create_app

FAULT = "simulated device failure"
LONG = SamplingParams(temperature=0.0, max_tokens=200, ignore_eos=True)
CONFIG = {"max_model_len": 256, "block_size": 4, "max_num_batched_tokens": 64, "num_blocks": 256}
TIMEOUT = 30  # seconds: a hang fails the test instead of blocking it


# --- the engine alone ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, byte_tokenizer: PreTrainedTokenizerFast) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), vocab_size=len(byte_tokenizer))


@pytest.fixture
def engine(model_dir: Path, byte_tokenizer: PreTrainedTokenizerFast) -> Iterator[AsyncEngine]:
    config = EngineConfig(**CONFIG, max_num_seqs=2)  # 2 run, the rest wait
    async_engine = AsyncEngine(Engine.from_model_dir(model_dir, config), byte_tokenizer)
    yield async_engine
    async_engine.shutdown()


async def _collect(engine: AsyncEngine, prompt: list[int]) -> list[RequestOutput]:
    return [out async for out in engine.generate(prompt, LONG)]


def test_a_failed_step_fails_waiting_and_running_requests_and_stops_the_engine(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, scheduler = engine.engine.runner, engine.engine.scheduler
    execute = runner.execute
    seen: list[tuple[int, int]] = []

    def execute_then_fail(sched):  # noqa: ANN001, ANN202
        if len(scheduler.requests) == 4 and len(seen) > 2:  # 2 running, 2 waiting, a few steps in
            seen.append((len(scheduler.running), len(scheduler.waiting)))
            raise RuntimeError(FAULT)
        seen.append((0, 0))
        return execute(sched)

    monkeypatch.setattr(runner, "execute", execute_then_fail)

    async def main() -> list[list[RequestOutput]]:
        runs = (_collect(engine, [5 + i, 6, 7]) for i in range(4))
        return await asyncio.wait_for(asyncio.gather(*runs), TIMEOUT)

    results = asyncio.run(main())
    assert seen[-1] == (2, 2)  # the fault hit with requests both running and waiting
    for outputs in results:
        assert outputs[-1].finish_reason == "error"
        assert FAULT in (outputs[-1].error or "") and "engine stopped" in (outputs[-1].error or "")
        assert all(out.finish_reason is None for out in outputs[:-1])
    assert not engine.is_healthy and engine.is_dead
    engine._thread.join(timeout=TIMEOUT)
    assert not engine._thread.is_alive()  # the loop thread exited
    stats = engine.stats()
    assert (stats.num_running, stats.num_waiting, stats.kv_cache_usage) == (0, 0, 0.0)
    with pytest.raises(EngineDead, match="load the model again"):
        asyncio.run(_collect(engine, [5, 6, 7]))
    with pytest.raises(EngineDead):
        engine.generate_batch([[5, 6]], [LONG])


def test_a_failure_tied_to_one_request_fails_only_that_request(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = engine.engine.runner
    execute = runner.execute

    def execute_failing_one(sched):  # noqa: ANN001, ANN202
        out = execute(sched)
        for s in sched.scheduled:  # as a grammar that rejects the sampled token reports it
            if s.request.prompt_token_ids[0] == 9 and s.request.num_output_tokens >= 2:
                out.errors[s.request.request_id] = "structured output failed: rejected"
                out.sampled_token_ids.pop(s.request.request_id, None)
        return out

    monkeypatch.setattr(runner, "execute", execute_failing_one)
    short = SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True)
    bad, good = engine.generate_batch([[9, 5, 6], [5, 6, 7]], [short, short])
    assert bad.finish_reason == "error" and "rejected" in (bad.error or "")
    assert good.finish_reason == "length" and good.num_output_tokens == 8
    assert engine.is_healthy and not engine.is_dead
    assert engine.generate_batch([[5, 6]], [short])[0].finish_reason == "length"


def test_shutdown_answers_every_request_it_holds_with_abort(engine: AsyncEngine) -> None:
    async def main() -> list[list[RequestOutput]]:
        runs = [asyncio.ensure_future(_collect(engine, [5 + i, 6])) for i in range(3)]
        await asyncio.sleep(0.05)
        await asyncio.to_thread(engine.shutdown)
        return await asyncio.wait_for(asyncio.gather(*runs), TIMEOUT)

    for outputs in asyncio.run(main()):
        assert outputs[-1].finish_reason in ("abort", "length")
    assert not engine.is_healthy and not engine.is_dead
    with pytest.raises(EngineDead, match="shut down"):
        engine.generate_batch([[5, 6]], [LONG])


def _break_forward(engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the loaded model's forward raise, as a device fault would."""

    def forward(*args: object, **kwargs: object) -> None:
        raise RuntimeError(FAULT)

    monkeypatch.setattr(engine.engine.runner.model, "forward", forward)


def test_the_sdk_says_to_reload_a_model_whose_engine_died(
    isolated_home: Path, tiny_chat_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with llmos.load_model(str(tiny_chat_folder), dtype="float32") as model:
        assert model.complete("hello", max_tokens=2).finish_reason in ("stop", "length")
        _break_forward(model.runtime.engine, monkeypatch)
        with pytest.raises(GenerationFailed, match=FAULT):
            model.generate_text("hello", max_tokens=2)
        with pytest.raises(EngineDead, match=r"load the model again: llmos.load_model\("):
            model.generate_text("hello", max_tokens=2)
        with pytest.raises(EngineDead):
            list(model.stream("hello", max_tokens=2))


# --- the server ------------------------------------------------------------------------------
@pytest.fixture
def client(isolated_home: Path, tiny_chat_folder: Path) -> Iterator[TestClient]:
    settings = Settings(home=isolated_home, dtype="float32")
    registry = Registry(settings)
    registry.import_path(tiny_chat_folder, "tiny")
    registry.close()
    with TestClient(create_app(settings, preload=["tiny"])) as c:
        _wait_for(lambda: c.get("/ready").status_code == 200)
        yield c


def _wait_for(condition: Any, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _hold_reaper(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Keep the 1-second reaper from dropping dead engines while the returned event is set."""
    pool = client.app.state.pool
    expire, hold = pool.expire, threading.Event()
    hold.set()
    monkeypatch.setattr(pool, "expire", lambda now=None: [] if hold.is_set() else expire(now))
    return hold


def _chat(**extra: object) -> dict[str, object]:
    messages = [{"role": "user", "content": "hello"}]
    return {"model": "tiny", "messages": messages, "max_tokens": 4, **extra}


def _break_when_both_run(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Slow the model down until two requests are in its engine, then fail every forward."""
    engine = client.app.state.pool.find("tiny").runtime.engine
    scheduler, model = engine.engine.scheduler, engine.engine.runner.model
    forward, give_up = model.forward, time.monotonic() + 10

    def slow_then_failing(*args: object, **kwargs: object) -> object:
        if len(scheduler.requests) >= 2 or time.monotonic() > give_up:
            raise RuntimeError(FAULT)
        time.sleep(0.02)
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", slow_then_failing)


def _restarts(client: TestClient) -> str:
    lines = client.get("/metrics").text.splitlines()
    return next((line for line in lines if line.startswith("llmos:engine_restarts_total{")), "")


def test_a_dead_engine_fails_in_flight_requests_then_is_dropped_and_reloaded(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.post("/v1/chat/completions", json=_chat()).status_code == 200
    hold = _hold_reaper(client, monkeypatch)
    _break_when_both_run(client, monkeypatch)
    with ThreadPoolExecutor(2) as pool:
        plain = pool.submit(client.post, "/v1/chat/completions", json=_chat(max_tokens=200))
        time.sleep(0.2)  # the first is running when the second arrives
        streamed = pool.submit(client.post, "/v1/chat/completions", json=_chat(max_tokens=200, stream=True))
        plain_response, stream_response = plain.result(TIMEOUT), streamed.result(TIMEOUT)

    assert plain_response.status_code == 500
    error = plain_response.json()["error"]
    assert error["code"] == "generation_failed" and FAULT in error["message"]
    events = [line.removeprefix("data: ") for line in stream_response.text.splitlines() if line]
    assert json.loads(events[-2])["error"]["code"] == "generation_failed"  # after the 200: an event
    assert events[-1] == "[DONE]"
    assert not any('"finish_reason": "stop"' in e or '"finish_reason":"stop"' in e for e in events)

    ready = client.get("/ready")
    assert ready.status_code == 503 and ready.json()["dead_engines"] == ["tiny:1"]
    assert client.get("/health").status_code == 503

    hold.clear()  # let the reaper notice: it drops the engine within about a second
    _wait_for(lambda: client.get("/ready").status_code == 200)
    assert client.app.state.pool.entries == {}
    assert client.get("/health").status_code == 200
    again = client.post("/v1/chat/completions", json=_chat())
    assert again.status_code == 200 and again.json()["choices"][0]["finish_reason"] in ("stop", "length")
    assert _restarts(client) == 'llmos:engine_restarts_total{model_name="tiny:1"} 1.0'


def test_the_next_request_reloads_a_dead_engine_before_the_reaper_does(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _hold_reaper(client, monkeypatch)
    _break_forward(client.app.state.pool.find("tiny").runtime.engine, monkeypatch)
    failed = client.post("/v1/completions", json={"model": "tiny", "prompt": "hi", "max_tokens": 4})
    assert failed.status_code == 500 and failed.json()["error"]["code"] == "generation_failed"
    assert client.get("/ready").status_code == 503
    again = client.post("/v1/completions", json={"model": "tiny", "prompt": "hi", "max_tokens": 4})
    assert again.status_code == 200
    assert client.get("/ready").status_code == 200
    assert _restarts(client) == 'llmos:engine_restarts_total{model_name="tiny:1"} 1.0'
