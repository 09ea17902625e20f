"""Model leases as one async context manager: the capacity a request takes is given back however
its block ends — returned, raised, refused, cancelled, or an SSE stream closed early or never sent."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from llmos.config import Settings
from llmos.errors import ServerBusy
from llmos.monitor.metrics import ServerMetrics
from llmos.registry import Registry
from llmos.server.model_pool import ModelPool
from llmos.server.protocol import CompletionRequest
from llmos.server.serving import OpenAIServing, start_stream


@pytest.fixture
def pool(isolated_home: Path, tiny_chat_folder: Path) -> Iterator[ModelPool]:
    settings = Settings(home=isolated_home, dtype="float32", max_num_seqs=2, max_waiting_requests=1)
    registry = Registry(settings)
    registry.import_path(tiny_chat_folder, "tiny")
    registry.close()
    pool = ModelPool(settings)
    pool.load_sync("tiny")
    yield pool
    pool.close()


def num_active(pool: ModelPool) -> int:
    entry = pool.find("tiny")
    assert entry is not None
    return entry.num_active


def test_a_lease_is_given_back_when_its_block_returns_raises_or_is_cancelled(pool: ModelPool) -> None:
    async def scenario() -> None:
        async with pool.lease("tiny", 2) as lease:
            assert num_active(pool) == 2 and lease.runtime.name == "tiny:1"
        assert num_active(pool) == 0

        with pytest.raises(ValueError):
            async with pool.lease("tiny", 1):
                raise ValueError("the request failed")
        assert num_active(pool) == 0

        with pytest.raises(ServerBusy):  # capacity is 2 running + 1 waiting
            async with pool.lease("tiny", 4):
                pass
        assert num_active(pool) == 0

        entered = asyncio.Event()

        async def hold() -> None:
            async with pool.lease("tiny", 3):
                entered.set()
                await asyncio.sleep(60)

        task = asyncio.create_task(hold())
        await entered.wait()
        assert num_active(pool) == 3
        task.cancel()  # a client that went away
        with suppress(asyncio.CancelledError):
            await task
        assert num_active(pool) == 0

    asyncio.run(scenario())


def test_a_stream_closed_early_or_never_sent_gives_its_lease_back(pool: ModelPool) -> None:
    serving = OpenAIServing(pool, ServerMetrics(pool.engines), request_timeout=30)
    body = CompletionRequest(model="tiny", prompt="hello", max_tokens=200, ignore_eos=True, stream=True)

    async def scenario() -> None:
        events = serving.complete_stream(body)
        chunks = await start_stream(events)  # the route answers with these
        assert num_active(pool) == 1
        await anext(chunks)
        await anext(chunks)
        await chunks.aclose()  # the client read two chunks and left
        assert num_active(pool) == 0

        events = serving.complete_stream(body)
        await start_stream(events)
        assert num_active(pool) == 1
        await events.aclose()  # the response's background task, when the body never started
        assert num_active(pool) == 0

    asyncio.run(scenario())
    for _ in range(100):  # the aborted engine requests leave the running batch
        if pool.find("tiny").runtime.engine.stats().num_running == 0:  # type: ignore[union-attr]
            break
        asyncio.run(asyncio.sleep(0.02))
    else:
        raise AssertionError("an abandoned stream's request is still running")
