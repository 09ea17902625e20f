"""``llmos serve --ray``: connect to (or start) Ray and load each model as a Serve deployment."""

from __future__ import annotations

from collections.abc import Callable

from llmos.config import Settings
from llmos.errors import InvalidRequest
from llmos.runtime.model_runtime import ModelRuntime
from llmos.scaleout.routing import POLICIES, Decision
from llmos.server.model_pool import ModelPool


def ray_loader(
    address: str,
    pool: ModelPool,
    num_replicas: int,
    min_replicas: int | None,
    max_replicas: int | None,
    policy: str,
    num_cpus: float,
    target_requests: float = 4.0,
) -> Callable[[str, Settings], ModelRuntime]:
    """The pool's loader for Ray: ``address`` is a cluster's GCS address (HOST:6379, or "auto"),
    or "local" to start a Ray in this process (dashboard off, a small object store). Raises
    InvalidRequest for a Ray Client address, an unknown policy or inconsistent replica counts."""
    import ray

    from llmos.scaleout.ray_serve import ScaleConfig, load_ray_runtime

    if policy not in POLICIES:
        raise InvalidRequest(f"--route {policy!r}: use one of {', '.join(POLICIES)}")
    if (min_replicas is None) != (max_replicas is None) or (max_replicas or 1) < (min_replicas or 1):
        raise InvalidRequest("give --min-replicas and --max-replicas together, min <= max")
    if address.startswith("ray://"):
        # Ray Client runs the driver (and so the request router and its ledger) on the head, not here
        raise InvalidRequest(
            f"--ray {address}: Ray Client addresses are not supported; run `llmos serve` on a node "
            "of the cluster and give the head's GCS address (--ray HEAD:6379)"
        )
    if address == "local":
        ray.init(include_dashboard=False, object_store_memory=100 << 20, log_to_driver=False)
    else:
        ray.init(address=address, log_to_driver=False)
    if target_requests <= 0:
        raise InvalidRequest(f"--target-requests {target_requests:g}: give a number above 0")
    scale = ScaleConfig(num_replicas, min_replicas, max_replicas, policy, num_cpus, target_requests)

    def count(decision: Decision) -> None:
        if pool.metrics is not None:
            pool.metrics.route.labels(decision.policy, decision.reason).inc()

    def load(ref: str, settings: Settings) -> ModelRuntime:
        return load_ray_runtime(ref, settings, scale, on_route=count)

    return load
