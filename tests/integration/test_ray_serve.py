"""`llmos serve --ray`: two engine replicas of a tiny model on a local Ray, behind one endpoint.

One Ray for the module (2 CPUs, no dashboard, a small object store) and one server attached to it
(`--ray ADDRESS --replicas 2 --route prefix`, half a CPU per replica). The test process talks to
the same Serve deployment through its own handle (so it sees which replica answered) and through
the server over HTTP with the real `openai` client.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
import ray
from ray import serve

from llmos.config import Settings
from llmos.engine.sampling_params import SamplingParams
from llmos.registry import Registry
from llmos.scaleout import ledger
from llmos.scaleout.ray_serve import RayEngineClient, ScaleConfig, deploy
from tests.conftest import start_server, wait_healthy
from tests.unit.tiny_models import build_tiny_chat_folder

pytestmark = pytest.mark.integration

APP = "llmos-tiny"
LONG_PREFIX = list(range(3, 3 + 96))  # six full blocks: what the prefix policy keys on
REASONS = {"least_loaded", "prefix_hit", "prefix_overloaded", "no_prefix", "p2c", "only_replica"}


@dataclass(frozen=True)
class Server:
    url: str
    home: Path
    log: Path  # its stdout and stderr: the JSON access-log lines go there

    def access_line(self, request_id: str) -> dict:
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{") and f'"request_id": "{request_id}"' in line:
                return json.loads(line)
        raise AssertionError(f"no access-log line for {request_id}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
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
        yield Server(url, home, proc.log)
    finally:
        proc.terminate()
        proc.wait(30)
        # This process's Serve handles run routers on a thread of their own that pushes metrics
        # every half second; left running past ray.shutdown() it logs a traceback each time for the
        # rest of the session, and CPython 3.11's traceback carets (ast.parse) racing other
        # threads' parsing broke a later test. serve.shutdown() stops the cached handles first.
        serve.shutdown()
        ray.shutdown()


def _generate(prompt: list[int], max_tokens: int = 4) -> list[dict]:
    handle = serve.get_deployment_handle("EngineReplica", app_name=APP)
    params = {"max_tokens": max_tokens, "temperature": 0.0, "ignore_eos": True}
    stream = handle.options(stream=True).generate.remote(
        prompt_token_ids=prompt, params=params, request_id=f"t-{time.monotonic_ns()}"
    )
    return list(stream)


def test_concurrent_requests_reach_both_replicas(cluster: Server) -> None:
    prompts = [[5 + i, 9, 11 + i] for i in range(8)]  # no shared prefix: routed by load
    _generate([3, 4, 5])  # builds this process's router, which then hears of the replicas
    _eventually(lambda: _assert_equal(len(ledger.LEDGER.replicas.get(APP, {})), 2), timeout=30)

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


def test_repeated_long_prefix_lands_on_one_replica(cluster: Server) -> None:
    served = {_generate(LONG_PREFIX + [40 + i])[-1]["replica_id"] for i in range(5)}
    assert len(served) == 1, served


def test_openai_client_against_the_ray_backed_server(cluster: Server) -> None:
    client = openai.OpenAI(base_url=f"{cluster.url}/v1", api_key="none")
    request_id = f"ray-chat-{time.monotonic_ns()}"
    chat = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=5,
        temperature=0,
        extra_headers={"X-Request-Id": request_id},
    )
    assert chat.choices[0].finish_reason in ("length", "stop")
    assert chat.usage is not None and chat.usage.completion_tokens >= 1
    # the request log names the replica that served it and why the router chose it
    line = _eventually(lambda: cluster.access_line(request_id))
    assert line["status"] == 200 and line["route_reason"] in REASONS
    assert line["replica"] in {replica for _, replica in _replica_actors()}
    chunks = list(
        client.completions.create(model="tiny", prompt="hello", max_tokens=6, temperature=0, stream=True)
    )
    # the stream carries what the same greedy request gets whole, and ends with a finish reason
    plain = client.completions.create(model="tiny", prompt="hello", max_tokens=6, temperature=0)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == plain.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("length", "stop")
    metrics = httpx.get(f"{cluster.url}/metrics").text
    assert 'llmos:route_total{policy="prefix"' in metrics
    assert "llmos:replica_num_requests{" in metrics
    assert httpx.get(f"{cluster.url}/ready").status_code == 200


def test_killing_a_replica_loses_no_request_that_had_not_started(cluster: Server) -> None:
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
    # beside them, non-streamed chats through the server (its own router): one that was answering
    # on the killed replica must come back 503 replica_failed, with the replica in its log line
    http_ids = [f"kill-http-{time.monotonic_ns()}-{i}" for i in range(3)]

    def chat(request_id: str) -> httpx.Response:
        body = {"model": "tiny", "messages": [{"role": "user", "content": "go"}], "max_tokens": 400}
        body |= {"temperature": 0, "ignore_eos": True}
        headers = {"X-Request-Id": request_id}
        return httpx.post(f"{cluster.url}/v1/chat/completions", json=body, headers=headers, timeout=120)

    pool = ThreadPoolExecutor(len(http_ids))
    http = [pool.submit(chat, request_id) for request_id in http_ids]

    waiting: list[str] = []
    killed: list[str] = []

    def _routed(request_id: str) -> str | None:
        decision = ledger.LEDGER.get(request_id)
        return decision.replica_id if decision is not None else None

    async def run() -> list[tuple[bool, str | None]]:
        # 8 requests over 2 replicas running 2 each: the busier replica holds >= 2 waiting ones
        tasks = [asyncio.create_task(one(i)) for i in range(8)]
        await asyncio.wait_for(first_token.wait(), 60)
        victim = routed_to().most_common(1)[0][0]
        # the requests routed to it that have not started: the ones the kill must not lose
        waiting.extend(i for i in ids if i not in started_on and _routed(i) == victim)
        ray.kill(actors[victim], no_restart=True)  # the actors were looked up before: no delay here
        killed.append(victim)
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
    for had_tokens, finish in results:
        assert finish == "length" or (finish == "error" and had_tokens), results
    # the killed replica held requests that had not started; each finished on the other replica,
    # whether our client sent it again (num_retries) or Ray's router re-routed it before sending
    # (one may have started on it in the moment before the kill landed: then it may fail, above)
    moved = [i for i in waiting if results[ids.index(i)][1] == "length" and started_on.get(i) != killed[0]]
    assert moved, (waiting, results, started_on, client.num_retries)
    live = {replica for _, replica in _replica_actors()}
    for request_id, future in zip(http_ids, http, strict=True):
        response = future.result(timeout=120)
        line = _eventually(lambda rid=request_id: cluster.access_line(rid))
        if response.status_code == 200:  # served (or retried before its first token) elsewhere
            assert response.json()["choices"][0]["finish_reason"] == "length"
        else:  # cut off mid-answer: a clear, retryable error naming no internals
            error = response.json()["error"]
            assert response.status_code == 503 and error["code"] == "replica_failed", response.text
            assert response.headers["retry-after"] == "1" and error["request_id"] == request_id
            assert line["replica"] not in live and line["status"] == 503
    pool.shutdown()


def test_autoscaling_adds_a_replica_under_load_and_drops_it_when_idle(cluster: Server) -> None:
    # Ray Serve's autoscaler on our config: one replica, a second once more than one request per
    # replica is in flight, back to one when idle (delays shortened from Ray's 30 s / 600 s)
    quick = {"upscale_delay_s": 0.0, "downscale_delay_s": 1.0, "look_back_period_s": 1.0}
    scale = ScaleConfig(
        min_replicas=1,
        max_replicas=2,
        num_cpus=0.25,
        target_ongoing_requests=1,
        metrics_interval_s=0.5,
        app="llmos-auto",
        **quick,
    )
    settings = Settings(home=cluster.home, max_num_seqs=2, kv_cache_memory_mb=16)
    handle = deploy("tiny", settings, scale)
    try:
        assert _replicas("llmos-auto") == {"RUNNING": 1}
        params = SamplingParams(max_tokens=300, temperature=0.0, ignore_eos=True)
        client = RayEngineClient(handle, "llmos-auto", max_model_len=512)
        counts: list[int] = []

        async def load() -> list[str | None]:
            async def one(i: int) -> str | None:
                finish = None
                async for out in client.generate([7 + i, 9, 11], params, request_id=f"auto-{i}"):
                    finish = out.finish_reason
                return finish

            tasks = [asyncio.create_task(one(i)) for i in range(8)]  # ~10 s on one replica
            while not all(t.done() for t in tasks):
                counts.append(sum(_replicas("llmos-auto").values()))
                await asyncio.sleep(0.5)
            return await asyncio.gather(*tasks)

        assert asyncio.run(asyncio.wait_for(load(), 120)) == ["length"] * 8
        # a second replica was started while they were in flight (on 2 busy cores it takes ~20 s
        # to import torch and load, often longer than the load lasts) ...
        assert max(counts) == 2, counts
        # ... and once idle the deployment is back to one replica
        _eventually(lambda: _assert_equal(_replicas("llmos-auto"), {"RUNNING": 1}), timeout=90)
    finally:
        serve.delete("llmos-auto")


def _replicas(app: str) -> dict[str, int]:
    """The deployment's replicas by state (STARTING, RUNNING, STOPPING, ...)."""
    deployment = serve.status().applications[app].deployments["EngineReplica"]
    return {state: n for state, n in deployment.replica_states.items() if n}


def _assert_equal(a: object, b: object) -> None:
    assert a == b, (a, b)


def _replica_actors() -> list[tuple[str, str]]:
    """(actor name, replica id) of the deployment's live replicas."""
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if APP in a["name"]]
    return [(n, n.rsplit("#", 1)[-1]) for n in names if "EngineReplica" in n]


def _eventually(check, timeout: float = 10.0):  # the access log is written by a background thread
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
