"""Engine replicas on Ray Serve: throughput with 1 vs 2 replicas, and the prefix-cache hit rate
with prefix-affinity routing vs least-loaded.

    LLMOS_HOME=~/.cache/llmos-test python benchmarks/scaleout.py --model smollm2
    python benchmarks/scaleout.py --model tiny --requests 32 --out benchmarks/results/scaleout.json

Both phases drive the deployment through ``RayEngineClient`` (what ``llmos serve --ray`` uses),
on a local Ray with one CPU reserved per replica.
1. **throughput**: the same ``--requests`` greedy requests (``--max-tokens`` each, ``--concurrency``
   at a time) on 1 replica, then on 2; output tokens/s for each and the speedup. On a machine
   with fewer cores than replicas x torch threads the replicas share the CPUs, so the speedup
   there is a lower bound; per-replica tokens/s is what a replica on its own cores delivers.
2. **routing**: requests made of one of ``--system-prompts`` shared prefixes plus a distinct
   question, on 2 fresh replicas per policy; the fraction of prompt tokens served from the
   prefix cache (``num_cached_tokens``), per policy.
Prints JSON with the CPU and its flags.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import ray
from ray import serve

from llmos.bench.throughput import _cpu_flags, _cpu_model
from llmos.config import Settings
from llmos.engine.sampling_params import SamplingParams
from llmos.scaleout.ray_serve import RayEngineClient, ScaleConfig, load_ray_runtime


async def drive(
    client: RayEngineClient, prompts: list[list[int]], max_tokens: int, concurrency: int
) -> dict[str, Any]:
    """Send every prompt (``concurrency`` at a time); output tokens, cached and prompt tokens."""
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    gate = asyncio.Semaphore(concurrency)
    totals = {"output_tokens": 0, "prompt_tokens": 0, "cached_tokens": 0, "errors": 0}

    async def one(prompt: list[int]) -> None:
        async with gate:
            async for out in client.generate(prompt, params):
                totals["output_tokens"] += len(out.token_ids)
                if out.finished:
                    totals["prompt_tokens"] += out.num_prompt_tokens
                    totals["cached_tokens"] += out.num_cached_tokens
                    totals["errors"] += out.finish_reason == "error"

    start = time.perf_counter()
    await asyncio.gather(*(one(p) for p in prompts))
    totals["seconds"] = round(time.perf_counter() - start, 3)
    return totals


def run_on(
    model: str, settings: Settings, scale: ScaleConfig, prompts: list[list[int]], args: Any
) -> dict[str, Any]:
    reasons: Counter[str] = Counter()
    runtime = load_ray_runtime(model, settings, scale, on_route=lambda d: reasons.update([d.reason]))
    client = runtime.engine
    assert isinstance(client, RayEngineClient)
    try:
        asyncio.run(drive(client, prompts[:2], 2, 2))  # warm up (first forward passes)
        result = asyncio.run(drive(client, prompts, args.max_tokens, args.concurrency))
    finally:
        client.shutdown()
        time.sleep(2)  # the replicas leave before the next phase reserves CPUs
    result["tokens_per_second"] = round(result["output_tokens"] / result["seconds"], 1)
    result["route_reasons"] = dict(reasons)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--system-prompts", type=int, default=4)
    parser.add_argument("--system-tokens", type=int, default=192, help="Tokens in each shared prefix.")
    parser.add_argument("--routing-only", action="store_true", help="Skip the 1 vs 2 replica phase.")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    settings = Settings.from_env()
    rng = random.Random(0)
    cores = os.cpu_count() or 2
    ray.init(
        num_cpus=max(2, cores), include_dashboard=False, object_store_memory=100 << 20, log_to_driver=False
    )
    serve.start(proxy_location="Disabled")

    distinct = [[rng.randrange(100, 5000) for _ in range(48)] for _ in range(args.requests)]
    throughput, speedup = {}, None
    if not args.routing_only:
        for n in (1, 2):
            scale = ScaleConfig(num_replicas=n, app=f"bench-{n}")
            throughput[str(n)] = run_on(args.model, settings, scale, distinct, args)
        speedup = round(throughput["2"]["tokens_per_second"] / throughput["1"]["tokens_per_second"], 2)

    systems = [
        [rng.randrange(100, 5000) for _ in range(args.system_tokens)] for _ in range(args.system_prompts)
    ]
    shared = [
        rng.choice(systems) + [rng.randrange(100, 5000) for _ in range(16)] for _ in range(args.requests)
    ]
    routing = {}
    for policy in ("least_loaded", "prefix"):
        scale = ScaleConfig(num_replicas=2, policy=policy, app=f"bench-{policy}")
        result = run_on(args.model, settings, scale, shared, args)
        result["prefix_cache_hit_rate"] = round(result["cached_tokens"] / max(1, result["prompt_tokens"]), 3)
        routing[policy] = result

    report = {
        "benchmark": "scaleout",
        "model": args.model,
        "workload": {k: v for k, v in vars(args).items() if k != "out"},
        "throughput": throughput,
        "speedup_2_vs_1": speedup,
        "routing": routing,
        "machine": {"cpu": _cpu_model(), "flags": _cpu_flags(), "cores": cores},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    ray.shutdown()


if __name__ == "__main__":
    main()
