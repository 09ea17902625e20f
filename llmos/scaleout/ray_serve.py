"""Engine replicas on Ray Serve: one deployment per model, each replica one llmos engine.

``EngineReplica`` is the Serve deployment (it speaks token ids and plain dicts, like the engine);
``ray_router.LlmosRequestRouter`` is Ray Serve's request router for it (``Router`` on each
request's prefix hashes and each replica's load); ``RayEngineClient`` is the
``EngineClient`` the HTTP server's model runtime uses, so every route serves through Ray. A request
that fails before its first token is retried once on another replica.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ray import serve
from ray.serve.config import AutoscalingConfig, RequestRouterConfig
from ray.serve.handle import DeploymentHandle

from llmos.config import Settings
from llmos.engine.engine import EngineStats
from llmos.engine.outputs import RequestOutput, TokenLogprob
from llmos.engine.sampling_params import SamplingParams
from llmos.errors import EngineDead, ReplicaFailed
from llmos.monitor.requests import current_request
from llmos.runtime.model_runtime import ModelRuntime, load_runtime
from llmos.scaleout import ledger
from llmos.scaleout.routing import Decision

logger = logging.getLogger(__name__)


# --- the replica -------------------------------------------------------------------------------
class EngineReplica:
    """One llmos engine. ``generate`` streams plain dicts (a ``RequestOutput`` each), tagged with
    the replica's id so callers (and tests) see where a request ran."""

    def __init__(self, model: str, settings: Settings):
        """``settings`` are the server's: the same store (``home``, a shared directory on a
        cluster), engine limits and dtype."""
        self.runtime = load_runtime(model, settings, allow_path=False)
        self.replica_id = serve.get_replica_context().replica_id.unique_id

    async def generate(
        self,
        prompt_token_ids: list[int],
        params: dict[str, Any],
        request_id: str,
        priority: int = 0,
        avoid: tuple[str, ...] = (),
    ) -> AsyncIterator[dict[str, Any]]:
        # ``avoid`` is read by the router only (the replicas a retry must not go back to)
        sampling = SamplingParams(**params)
        async for out in self.runtime.engine.generate(prompt_token_ids, sampling, request_id, priority):
            yield {**dataclasses.asdict(out), "replica_id": self.replica_id}

    def abort(self, request_id: str) -> None:
        self.runtime.engine.abort(request_id)

    def stats(self) -> dict[str, Any]:
        stats = self.runtime.engine.stats()
        return {**dataclasses.asdict(stats), "replica_id": self.replica_id}

    def record_routing_stats(self) -> dict[str, Any]:
        """What Ray Serve's controller passes to the router: this replica's load and cache."""
        return self.stats()

    def check_health(self) -> None:
        if not self.runtime.engine.is_healthy:
            raise RuntimeError(f"the engine of {self.runtime.name} is dead")


def _output(data: dict[str, Any]) -> RequestOutput:
    data = {k: v for k, v in data.items() if k != "replica_id"}
    for key in ("logprobs", "prompt_logprobs"):
        if data.get(key) is not None:
            data[key] = [None if lp is None else TokenLogprob(**lp) for lp in data[key]]
    return RequestOutput(**data)


# --- deploying -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ScaleConfig:
    """How ``llmos serve --ray`` deploys a model: fixed replicas, or autoscaling between
    ``min_replicas`` and ``max_replicas`` on requests in flight per replica."""

    num_replicas: int = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    policy: str = "least_loaded"
    num_cpus: float = 1.0  # per replica
    target_ongoing_requests: float = 4.0
    # how fast autoscaling reacts (Ray Serve's defaults; a test shortens them)
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    look_back_period_s: float = 30.0
    metrics_interval_s: float = 10.0
    # the Serve application (default "llmos-MODEL"); a process keeps one router per application,
    # with the request_router_kwargs it first saw, so a redeploy with another policy needs another
    app: str | None = None

    @property
    def is_autoscaling(self) -> bool:
        return self.max_replicas is not None


def deploy(model: str, settings: Settings, scale: ScaleConfig) -> DeploymentHandle:
    """Deploy ``model`` as its own Serve application (named after it) and wait for its replicas.
    Ray must be initialised (``ray.init``) by the caller."""
    name = _app_name(model, scale)
    router: dict[str, Any] = {
        # by name: Ray imports it in each caller's process (see ray_router)
        "request_router_class": "llmos.scaleout.ray_router.LlmosRequestRouter",
        "request_router_kwargs": {"policy": scale.policy, "deployment": name},
        "request_routing_stats_period_s": 0.5,  # the replicas' loads, twice a second
    }
    options: dict[str, Any] = {
        "name": "EngineReplica",
        "ray_actor_options": {"num_cpus": scale.num_cpus, "runtime_env": {"env_vars": _shared_env()}},
        "max_ongoing_requests": settings.max_num_seqs + settings.max_waiting_requests,
        "health_check_period_s": 1.0,
        "health_check_timeout_s": 10.0,
        "request_router_config": RequestRouterConfig(**router),
    }
    if scale.is_autoscaling:
        options["autoscaling_config"] = AutoscalingConfig(
            min_replicas=scale.min_replicas or 1,
            max_replicas=scale.max_replicas or 1,
            target_ongoing_requests=scale.target_ongoing_requests,
            upscale_delay_s=scale.upscale_delay_s,
            downscale_delay_s=scale.downscale_delay_s,
            look_back_period_s=scale.look_back_period_s,
            metrics_interval_s=scale.metrics_interval_s,
        )
    else:
        options["num_replicas"] = scale.num_replicas
    serve.start(proxy_location="Disabled")  # llmos serves HTTP itself; Serve's proxy would take :8000
    deployment = serve.deployment(EngineReplica).options(**options)  # type: ignore[attr-defined]
    app = deployment.bind(model, settings)
    return serve.run(app, name=name, route_prefix=None)


def _shared_env() -> dict[str, str]:
    """The registry's database URL, which ``Settings`` reads from the environment: replicas on
    other machines must use the same registry as this server."""
    url = os.environ.get("LLMOS_DATABASE_URL")
    return {"LLMOS_DATABASE_URL": url} if url else {}


def _app_name(model: str, scale: ScaleConfig) -> str:
    return scale.app or "llmos-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in model)


def load_ray_runtime(
    ref: str, settings: Settings, scale: ScaleConfig, on_route: Callable[[Decision], None] | None = None
) -> ModelRuntime:
    """A ``ModelRuntime`` whose engine is ``ref``'s Serve deployment: the tokenizer and chat
    template load here (from the shared model directory), the weights in the replicas."""
    handle = deploy(ref, settings, scale)
    _wait_for_router(handle, _app_name(ref, scale))

    def client(max_model_len: int) -> RayEngineClient:
        return RayEngineClient(handle, _app_name(ref, scale), max_model_len, on_route)

    return load_runtime(ref, settings, allow_path=False, remote_engine=client)


def _wait_for_router(handle: DeploymentHandle, deployment: str, timeout: float = 60.0) -> None:
    """Make one call, which builds the deployment's router in this process, and wait until the
    router has heard of the replicas (it reports them to the ledger). Raises TimeoutError."""
    handle.stats.remote().result(timeout_s=timeout)
    deadline = time.monotonic() + timeout
    while not ledger.LEDGER.replicas.get(deployment):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the router of {deployment} saw no replicas within {timeout:g} s")
        time.sleep(0.05)


# --- the client ----------------------------------------------------------------------------------
class RayEngineClient:
    """``EngineClient`` over a Serve deployment of ``EngineReplica``."""

    def __init__(
        self,
        handle: DeploymentHandle,
        deployment: str,
        max_model_len: int,
        on_route: Callable[[Decision], None] | None = None,
    ):
        self.handle = handle
        self.deployment = deployment
        self.max_model_len = max_model_len
        self.on_route = on_route
        self._streams: dict[str, Any] = {}  # request id -> the Serve response generator
        self.num_retries = 0  # requests sent again after their replica failed before a token
        self._closed = False

    @property
    def replicas(self) -> dict[str, dict[str, Any]]:
        """The live replicas (by id) with the stats each reported last."""
        return ledger.LEDGER.replicas.get(self.deployment, {})

    @property
    def is_healthy(self) -> bool:
        return not self._closed and bool(self.replicas)

    def stats(self) -> EngineStats:
        reports = list(self.replicas.values())
        n = max(1, len(reports))
        return EngineStats(
            num_running=sum(r.get("num_running", 0) for r in reports),
            num_waiting=sum(r.get("num_waiting", 0) for r in reports),
            kv_cache_usage=sum(r.get("kv_cache_usage", 0.0) for r in reports) / n,
            prefix_cache_hit_rate=sum(r.get("prefix_cache_hit_rate", 0.0) for r in reports) / n,
            num_preemptions=sum(r.get("num_preemptions", 0) for r in reports),
        )

    def check_request(self, prompt_token_ids: list[int], params: SamplingParams) -> None:
        """The context-length checks at the edge (the replica checks the rest). Raises
        ContextOverflow / InvalidRequest as ``Engine.check_request``."""
        from llmos.engine.engine import check_limits

        check_limits(prompt_token_ids, params, self.max_model_len)

    async def generate(
        self,
        prompt_token_ids: list[int],
        params: SamplingParams,
        request_id: str | None = None,
        priority: int = 0,
    ) -> AsyncIterator[RequestOutput]:
        """Stream one request from a replica. Before its first output a failed replica is left for
        another, once; after that the stream ends with ``finish_reason="error"``."""
        if self._closed:
            raise EngineDead("The Ray deployment has been shut down; load the model again.")
        request_id = request_id or f"req-{uuid.uuid4().hex}"
        sent = {"prompt_token_ids": prompt_token_ids, "params": dataclasses.asdict(params)}
        avoid: tuple[str, ...] = ()
        for attempt in range(2):
            stream = self.handle.options(stream=True).generate.remote(
                **sent, request_id=request_id, priority=priority, avoid=avoid
            )
            self._streams[request_id] = stream
            started = finished = False
            try:
                async for data in stream:  # type: ignore[union-attr]
                    if not started:
                        started = True
                        self._count_route(request_id)
                    out = _output(data)
                    finished = out.finished
                    yield out
                return
            except Exception as exc:  # the replica died or failed: Ray raises it on the stream
                finished = True
                decision = ledger.LEDGER.pop(request_id)
                if not started and attempt == 0:
                    logger.warning(
                        "replica failed before the first token of %s (%s); retrying", request_id, exc
                    )
                    avoid = (decision.replica_id,) if decision else ()
                    self.num_retries += 1
                    continue
                message = f"The replica serving this request failed ({type(exc).__name__}); retry it."
                yield RequestOutput(
                    request_id,
                    "",
                    [],
                    None,
                    "error",
                    None,
                    len(prompt_token_ids),
                    0,
                    error=message,
                    error_code=ReplicaFailed.code,
                )
                return
            finally:
                self._streams.pop(request_id, None)
                if not finished:  # the caller went away: the replica aborts the request
                    stream.cancel()

    def _count_route(self, request_id: str) -> None:
        """The request's first output came: count its routing decision and put it in the log."""
        decision = ledger.LEDGER.pop(request_id)
        if decision is None:
            return
        record = current_request()
        if record is not None:
            record.replica, record.route_reason = decision.replica_id, decision.reason
        if self.on_route is not None:
            self.on_route(decision)

    def stream(self, prompt_token_ids: list[int], params: SamplingParams) -> Iterator[RequestOutput]:
        raise NotImplementedError("a Ray-served model streams through the async generate only")

    def abort(self, request_id: str) -> None:
        stream = self._streams.pop(request_id, None)
        if stream is not None:
            stream.cancel()

    def shutdown(self) -> None:
        """Stop using the deployment and remove it from Ray (the pool unloaded the model)."""
        self._closed = True
        for request_id in list(self._streams):
            self.abort(request_id)
        try:
            serve.delete(self.deployment, _blocking=False)
        except Exception as exc:  # Ray already gone (the server's exit): nothing left to remove
            logger.info("could not delete the Serve app %s: %s", self.deployment, exc)
