"""The server's model pool: admission (429), LRU eviction, pinning and keep-alive, on tiny models."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from llmos.config import Settings
from llmos.engine.sampling_params import SamplingParams
from llmos.errors import InvalidRequest, ModelNotFound, ServerBusy, ServiceUnavailable
from llmos.registry import Registry
from llmos.server.model_pool import ModelPool


@pytest.fixture(scope="module")
def tiny_folder(tiny_chat_folder: Path) -> Path:
    return tiny_chat_folder


@pytest.fixture
def settings(isolated_home: Path, tiny_folder: Path) -> Settings:
    settings = Settings(home=isolated_home, dtype="float32", max_num_seqs=2, max_waiting_requests=1)
    registry = Registry(settings)
    for name in ("tiny-a", "tiny-b"):
        registry.import_path(tiny_folder, name)
    registry.close()
    return settings


def run(coro):  # noqa: ANN001, ANN201
    return asyncio.run(coro)


def test_lease_admits_up_to_running_plus_waiting_then_refuses(settings: Settings) -> None:
    pool = ModelPool(settings)
    try:
        first = run(pool.acquire("tiny-a", 3))  # capacity: 2 running + 1 waiting
        with pytest.raises(ServerBusy) as refused:
            run(pool.acquire("tiny-a", 1))
        assert refused.value.status_code == 429 and refused.value.retry_after >= 1
        first.release()
        first.release()  # releasing twice must not free capacity twice
        assert pool.find("tiny-a").num_active == 0
        run(pool.acquire("tiny-a", 3)).release()
    finally:
        pool.close()


def test_a_request_for_an_unloaded_model_loads_it_once_under_every_name(settings: Settings) -> None:
    pool = ModelPool(settings)
    try:
        runtimes = run(_many_gets(pool, ["tiny-a", "tiny-a:1", "tiny-a", "tiny-a:1"]))
        assert len({id(r) for r in runtimes}) == 1
        assert list(pool.entries) == ["tiny-a:1"]
        with pytest.raises(ModelNotFound):
            run(pool.acquire("no-such-model"))
        with pytest.raises(InvalidRequest, match="text generation model"):
            run(pool.acquire("tiny-a", 1, kind="embedding"))
    finally:
        pool.close()


async def _many_gets(pool: ModelPool, refs: list[str]) -> list[object]:
    return list(await asyncio.gather(*(pool.get(r) for r in refs)))


def test_least_recently_used_idle_model_is_evicted_for_a_new_one(settings: Settings) -> None:
    settings.max_loaded_models = 1
    pool = ModelPool(settings)
    try:
        run(pool.get("tiny-a"))
        run(pool.get("tiny-b"))
        assert list(pool.entries) == ["tiny-b:1"]
        assert pool.find("tiny-a") is None
    finally:
        pool.close()


def test_pinned_or_busy_models_are_never_evicted(settings: Settings) -> None:
    settings.max_loaded_models = 1
    pool = ModelPool(settings)
    try:
        run(pool.load("tiny-a", pin=True))
        with pytest.raises(ServiceUnavailable, match="busy or pinned"):
            run(pool.get("tiny-b"))
        run(pool.load("tiny-a"))  # no pin given: it stays pinned
        assert pool.find("tiny-a").is_pinned
        run(pool.load("tiny-a", pin=False))  # unpinned, it is evicted for the next one
        run(pool.get("tiny-b"))
        assert list(pool.entries) == ["tiny-b:1"]
        pool.unload("tiny-b")
        busy = run(pool.acquire("tiny-b", 1))
        with pytest.raises(ServiceUnavailable):
            run(pool.get("tiny-a"))
        busy.release()
        run(pool.get("tiny-a"))
        assert list(pool.entries) == ["tiny-a:1"]
    finally:
        pool.close()


def test_keep_alive_unloads_idle_models_but_not_busy_or_forever_ones(settings: Settings) -> None:
    settings.keep_alive = 30
    pool = ModelPool(settings)
    try:
        run(pool.get("tiny-a"))
        run(pool.load("tiny-b", keep_alive=-1))  # negative: stays until stopped
        entry = pool.find("tiny-a")
        assert pool.expire(entry.last_used + 10) == []
        lease = run(pool.acquire("tiny-a", 1))
        assert pool.expire(entry.last_used + 3600) == []  # in use: never expires
        lease.release()
        assert pool.expire(entry.last_used + 31) == ["tiny-a:1"]
        assert [row["name"] for row in pool.ps()] == ["tiny-b:1"]
        assert pool.ps()[0]["expires_in"] is None
    finally:
        pool.close()


def test_a_name_follows_latest_after_a_new_version(settings: Settings, tiny_folder: Path) -> None:
    pool = ModelPool(settings)
    try:
        assert run(pool.get("tiny-a")).name == "tiny-a:1"
        registry = Registry(settings)
        registry.import_path(tiny_folder, "tiny-a", check=False)  # tiny-a:2 becomes latest
        registry.close()
        assert pool.refresh_names() == ["tiny-a"]
        assert run(pool.get("tiny-a")).name == "tiny-a:2"
        assert run(pool.get("tiny-a:1")).name == "tiny-a:1"  # the exact version still answers
        assert pool.refresh_names() == []
    finally:
        pool.close()


def test_ps_shows_reserved_and_committed_memory_and_the_budget_counts_committed(
    settings: Settings,
) -> None:
    settings.max_num_seqs = 64  # a KV cache of 64 full-length sequences: about 8 MiB reserved
    settings.memory_budget_mb = 2  # room for two tiny models' weights, not for one's whole cache
    pool = ModelPool(settings)
    try:
        runtime = run(pool.get("tiny-a"))
        [row] = pool.ps()
        weights = row["memory_bytes"] - row["kv_reserved_bytes"]
        assert row["memory_bytes"] > 2 << 20 > 2 * weights
        assert 0 < row["kv_committed_bytes"] < row["kv_reserved_bytes"]
        assert row["memory_committed_bytes"] == weights + row["kv_committed_bytes"]
        runtime.engine.generate_batch([[5, 6, 7]] * 2, [SamplingParams(max_tokens=8)] * 2)
        assert pool.ps()[0]["kv_committed_bytes"] > row["kv_committed_bytes"]
        run(pool.get("tiny-b"))  # fits by what tiny-a has committed, not by what it reserved
        assert sorted(pool.entries) == ["tiny-a:1", "tiny-b:1"]
    finally:
        pool.close()
