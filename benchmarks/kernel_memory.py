"""Memory that a bf16 CPU engine keeps per step shape, end to end: SmolLM2 in bf16 serves rounds of
random-length batches (prompts of 5-600 tokens, 1-8 at a time, greedy, 4 new tokens each), and the
RSS minus the committed KV cache is read after each round. Three modes, each in a fresh process
(torch's kernel caches are process- and thread-wide):

- ``exact``: prefill attention at the prompts' own lengths, no warm-up (llmos before 2026-12-04);
- ``padded``: prefill attention padded to the row buckets (``layers.attention``), no warm-up;
- ``warmed``: padded, and the idle shape warm-up (``ModelRunner.shape_warmup``) run after load.

A cache that keeps filling shows as growth after the first round; a bounded set of shapes, built
early, as a flat line.

    LLMOS_HOME=~/.cache/llmos-test python benchmarks/kernel_memory.py --out results/kernel_memory.json
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MODES = ("exact", "padded", "warmed")


def run(mode: str, model: str, rounds: int, batches: int) -> dict[str, Any]:
    import psutil
    import torch

    from llmos.config import Settings
    from llmos.engine.config import EngineConfig
    from llmos.engine.engine import Engine
    from llmos.engine.sampling_params import SamplingParams
    from llmos.layers import attention
    from llmos.registry import Registry

    if mode == "exact":
        attention.pads_prefill = lambda x: False  # type: ignore[assignment]
    torch.set_num_threads(2)
    registry = Registry(Settings.from_env())
    path = registry.resolve(model).path
    registry.close()
    process = psutil.Process()

    def mib() -> float:
        return process.memory_info().rss / 2**20

    config = EngineConfig(
        max_model_len=2048, dtype=torch.bfloat16, kv_cache_bytes=256 << 20, warm_shapes=mode == "warmed"
    )
    engine = Engine.from_model_dir(path, config)
    loaded = mib()
    start, calls = time.perf_counter(), 0
    while engine.idle_work():
        calls += 1
    warmup_seconds, warmed = time.perf_counter() - start, mib()
    rng = random.Random(0)
    params = SamplingParams(temperature=0.0, max_tokens=4, ignore_eos=True)
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(batches):
            prompts = [
                [rng.randint(10, 40000) for _ in range(rng.randint(5, 600))] for _ in range(rng.randint(1, 8))
            ]
            engine.generate(prompts, params)
        kv = engine.stats().kv_cache_committed_bytes / 2**20
        rss = mib()
        samples.append(
            {
                "seconds": round(time.perf_counter() - start, 2),
                "rss_mib": round(rss, 1),
                "kv_committed_mib": round(kv, 1),
                "rss_minus_kv_mib": round(rss - kv, 1),
            }
        )
    net = [s["rss_minus_kv_mib"] for s in samples]
    return {
        "loaded_rss_mib": round(loaded, 1),
        "warmup_calls": calls,
        "warmup_seconds": round(warmup_seconds, 2),
        "after_warmup_rss_mib": round(warmed, 1),
        "rounds": samples,
        "growth_after_first_round_mib": round(net[-1] - net[0], 1),
        "round_seconds_mean": round(sum(s["seconds"] for s in samples) / len(samples), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--batches", type=int, default=20, help="batches per round")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(run(args.mode, args.model, args.rounds, args.batches)))
        return
    from llmos.bench.throughput import _cpu_flags, _cpu_model

    result: dict[str, Any] = {
        "benchmark": "kernel_memory",
        "machine": {"cpu_model": _cpu_model(), "cpu_flags": _cpu_flags()},
        "model": args.model,
        "rounds": args.rounds,
        "batches_per_round": args.batches,
    }
    for mode in MODES:
        cmd = [sys.executable, __file__, "--mode", mode, "--model", args.model]
        cmd += ["--rounds", str(args.rounds), "--batches", str(args.batches)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        result[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
