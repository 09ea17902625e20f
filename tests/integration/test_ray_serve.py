"""`llmos serve --ray`: two engine replicas of a tiny model on a local Ray, behind one endpoint.

One Ray for the module (2 CPUs, no dashboard, a small object store) and one server attached to it
(`--ray ADDRESS --replicas 2 --route prefix`, half a CPU per replica). The test process talks to
the same Serve deployment through its own handle (so it sees which replica answered) and through
the server over HTTP with the real `openai` client.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import openai
import pytest
import ray
from ray import serve

from llmos.config import Settings
from llmos.engine.sampling_params import SamplingParams
from llmos.registry import Registry
from llmos.scaleout import ledger
from llmos.scaleout.ray_serve import RayEngineClient
from tests.conftest import start_server, wait_healthy
from tests.unit.tiny_models import build_tiny_chat_folder

pytestmark = pytest.mark.integration

APP = "llmos-tiny"
LONG_PREFIX = list(range(3, 3 + 96))  # six full blocks: what the prefix policy keys on


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("ray-home")
    registry = Registry(Settings(home=home))
    registry.import_path(build_tiny_chat_folder(tmp_path_factory.mktemp("tiny") / "model"), "tiny")
    registry.close()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 << 20, log_to_driver=False)
    address = ray.get_runtime_context().gcs_address
    env = {"LLMOS_MAX_NUM_SEQS": "2", "LLMOS_KV_CACHE_MEMORY_MB": "16"}
    args = ("--ray", address, "--replicas", "2", "--route", "prefix", "--replica-cpus", "0.5")
    proc, url = start_server(home, "-m", "tiny", *args, env=env, log_dir=home)
    try:
        wait_healthy(url, proc, timeout=120)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
        ray.shutdown()  # the Serve controller and replicas go with it


def _generate(prompt: list[int], max_tokens: int = 4) -> list[dict]:
    handle = serve.get_deployment_handle("EngineReplica", app_name=APP)
    params = {"max_tokens": max_tokens, "temperature": 0.0, "ignore_eos": True}
    stream = handle.options(stream=True).generate.remote(
        prompt_token_ids=prompt, params=params, request_id=f"t-{time.monotonic_ns()}"
    )
    return list(stream)


def test_concurrent_requests_reach_both_replicas(cluster: str) -> None:
    prompts = [[5 + i, 9, 11 + i] for i in range(8)]  # no shared prefix: routed by load

    async def all_of_them() -> list[str]:
        handle = serve.get_deployment_handle("EngineReplica", app_name=APP)
        params = {"max_tokens": 16, "temperature": 0.0, "ignore_eos": True}

        async def one(i: int, prompt: list[int]) -> str:
            stream = handle.options(stream=True).generate.remote(
                prompt_token_ids=prompt, params=params, request_id=f"spread-{i}"
            )
            outs = [out async for out in stream]
            assert outs[-1]["finish_reason"] == "length"
            return outs[-1]["replica_id"]

        return await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))

    replicas = asyncio.run(all_of_them())
    assert len(set(replicas)) == 2, replicas


def test_repeated_long_prefix_lands_on_one_replica(cluster: str) -> None:
    served = {_generate(LONG_PREFIX + [40 + i])[-1]["replica_id"] for i in range(5)}
    assert len(served) == 1, served


def test_openai_client_against_the_ray_backed_server(cluster: str) -> None:
    client = openai.OpenAI(base_url=f"{cluster}/v1", api_key="none")
    chat = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=5, temperature=0
    )
    assert chat.choices[0].finish_reason in ("length", "stop")
    assert chat.usage is not None and chat.usage.completion_tokens >= 1
    chunks = list(
        client.completions.create(model="tiny", prompt="hello", max_tokens=6, temperature=0, stream=True)
    )
    assert any(c.choices and c.choices[0].text for c in chunks)
    metrics = httpx.get(f"{cluster}/metrics").text
    assert 'llmos:route_total{policy="prefix"' in metrics
    assert "llmos:replica_num_requests{" in metrics
    assert httpx.get(f"{cluster}/ready").status_code == 200


def test_killing_a_replica_loses_no_request_that_had_not_started(cluster: str) -> None:
    handle = serve.get_deployment_handle("EngineReplica", app_name=APP)
    started_on: dict[str, str] = {}  # request id -> replica, for the requests that streamed
    client = RayEngineClient(handle, APP, max_model_len=512)
    params = SamplingParams(max_tokens=400, temperature=0.0, ignore_eos=True)
    ids = [f"kill-{time.monotonic_ns()}-{i}" for i in range(8)]
    first_token = asyncio.Event()

    async def one(i: int) -> tuple[bool, str | None]:
        """(whether a token came before the end, the finish reason)."""
        had_tokens, finish = False, None
        async for out in client.generate([5 + i, *LONG_PREFIX], params, request_id=ids[i]):
            if out.token_ids and out.finish_reason != "error":
                had_tokens = True
                first_token.set()
            finish = out.finish_reason
        return had_tokens, finish

    def routed_to() -> Counter[str]:
        decisions = [ledger.LEDGER.get(i) for i in ids]
        return Counter(d.replica_id for d in decisions if d is not None) + Counter(started_on.values())

    actors = {replica: ray.get_actor(n, namespace="serve") for n, replica in _replica_actors()}

    async def run() -> list[tuple[bool, str | None]]:
        # 8 requests over 2 replicas running 2 each: the busier replica holds >= 2 waiting ones
        tasks = [asyncio.create_task(one(i)) for i in range(8)]
        await asyncio.wait_for(first_token.wait(), 60)
        victim = routed_to().most_common(1)[0][0]
        ray.kill(actors[victim], no_restart=True)  # the actors were looked up before: no delay here
        return await asyncio.wait_for(asyncio.gather(*tasks), 90)

    client.on_route = lambda decision: None
    original = client._count_route

    def remember(request_id: str) -> None:  # the decision leaves the ledger when a stream starts
        decision = ledger.LEDGER.get(request_id)
        if decision is not None:
            started_on[request_id] = decision.replica_id
        original(request_id)

    client._count_route = remember  # type: ignore[method-assign]
    results = asyncio.run(run())
    # a request that had not streamed was retried on the other replica and finished; only a
    # stream already under way may fail, and then with a clear error
    assert client.num_retries >= 1, results
    for had_tokens, finish in results:
        assert finish == "length" or (finish == "error" and had_tokens), results


def _replica_actors() -> list[tuple[str, str]]:
    """(actor name, replica id) of the deployment's live replicas."""
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if APP in a["name"]]
    return [(n, n.rsplit("#", 1)[-1]) for n in names if "EngineReplica" in n]
