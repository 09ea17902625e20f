"""Interactive time to first token while a batch job runs, against the same server idle.

    python benchmarks/batch_ttft.py                      # starts `llmos serve` (current LLMOS_HOME)
    python benchmarks/batch_ttft.py --lines 400 --probes 12 --out benchmarks/results/batch_ttft.json

Three phases on one server, each probing interactive TTFT with streamed chat requests sent one
after another (each waits for the previous one):
1. **idle**: nothing else runs;
2. **batch**: a batch of ``--lines`` completions (``/v1/batches``, lower engine priority, the
   server's ``LLMOS_BATCH_CONCURRENCY`` lines at a time) runs underneath;
3. **same load, interactive**: the same requests sent directly, as many at once as the batch runs
   them — what the probes would see if the batch were just more interactive traffic.
It reports TTFT p50/p95 per phase, the ratios to idle (issue target: batch ≤ 1.5), the batch's
lines/s, and the CPU with its flags.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from soak import launch  # noqa: E402

from llmos.bench.throughput import _cpu_flags, _cpu_model  # noqa: E402

PROBE = {"messages": [{"role": "user", "content": "Name one colour."}], "max_tokens": 8, "temperature": 0}


def start_server(model: str, concurrency: int, log: Path) -> tuple[subprocess.Popen, str]:
    return launch([model], log, {"LLMOS_BATCH_CONCURRENCY": str(concurrency)})


async def ttft(client: httpx.AsyncClient, model: str) -> float:
    """Seconds from sending a streamed chat request to its first content chunk."""
    start = time.perf_counter()
    body = {**PROBE, "model": model, "stream": True}
    first = None
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():  # read to the end: the next probe starts after
            if first is None and line.startswith("data: {") and _has_text(line):
                first = time.perf_counter() - start
    if first is None:
        raise RuntimeError("the probe streamed no content")
    return first


def _has_text(line: str) -> bool:
    """Whether an SSE chunk carries generated text (the first one carries only the role)."""
    choices = json.loads(line.removeprefix("data: ")).get("choices") or [{}]
    return bool((choices[0].get("delta") or {}).get("content"))


async def probes(client: httpx.AsyncClient, model: str, n: int, gap: float = 0.2) -> list[float]:
    out = []
    for _ in range(n):
        out.append(await ttft(client, model))
        await asyncio.sleep(gap)
    return out


def requests(model: str, lines: int, max_tokens: int) -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"b{i}",
            "method": "POST",
            "url": "/v1/completions",
            "body": {"model": model, "prompt": f"Write about topic {i} in detail:", "max_tokens": max_tokens,
                     "temperature": 0, "ignore_eos": True},
        }
        for i in range(lines)
    ]  # fmt: skip


async def run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        await probes(client, args.model, 3)  # warm-up
        idle = await probes(client, args.model, args.probes)

        lines = requests(args.model, args.lines, args.max_tokens)
        data = "".join(json.dumps(line) + "\n" for line in lines).encode()
        file = (
            await client.post("/v1/files", files={"file": ("b.jsonl", data)}, data={"purpose": "batch"})
        ).json()
        body = {"input_file_id": file["id"], "endpoint": "/v1/completions", "completion_window": "24h"}
        batch = (await client.post("/v1/batches", json=body)).json()
        started = time.perf_counter()
        while (await client.get(f"/v1/batches/{batch['id']}")).json()["request_counts"]["completed"] < 2:
            await asyncio.sleep(0.2)
        under_batch = await probes(client, args.model, args.probes)
        while (state := (await client.get(f"/v1/batches/{batch['id']}")).json())["status"] not in (
            "completed", "failed", "cancelled", "expired",
        ):  # fmt: skip
            await asyncio.sleep(0.5)
        batch_seconds = time.perf_counter() - started

        # the same load as plain interactive traffic, as many at once as the batch ran
        async def worker(queue: list[dict[str, Any]]) -> None:
            while queue:
                line = queue.pop()
                await client.post("/v1/completions", json=line["body"])

        queue = list(lines)
        workers = [asyncio.create_task(worker(queue)) for _ in range(args.concurrency)]
        await asyncio.sleep(2.0)
        under_load = await probes(client, args.model, args.probes)
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    def summary(xs: list[float]) -> dict[str, float]:
        ordered = sorted(xs)
        return {
            "p50_ms": round(statistics.median(ordered) * 1000, 1),
            "p95_ms": round(ordered[max(0, int(0.95 * len(ordered)) - 1)] * 1000, 1),
            "n": len(xs),
        }

    phases = {
        "idle": summary(idle),
        "batch": summary(under_batch),
        "same_load_interactive": summary(under_load),
    }
    return {
        "config": vars(args) | {"out": str(args.out) if args.out else None},
        "machine": {"cpu": _cpu_model(), "flags": _cpu_flags(), "cores": os.cpu_count()},
        "ttft": phases,
        "ratios": {
            "batch_vs_idle_p50": round(phases["batch"]["p50_ms"] / phases["idle"]["p50_ms"], 2),
            "same_load_interactive_vs_idle_p50": round(
                phases["same_load_interactive"]["p50_ms"] / phases["idle"]["p50_ms"], 2
            ),
            "target_batch_vs_idle": 1.5,
        },
        "batch": {"lines": args.lines, "status": state["status"], "seconds": round(batch_seconds, 1),
                  "lines_per_s": round(args.lines / batch_seconds, 2)},
    }  # fmt: skip


def main(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="A running server (default: start one; it sets the batch concurrency).")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--probes", type=int, default=10)
    parser.add_argument(
        "--concurrency", type=int, default=4, help="LLMOS_BATCH_CONCURRENCY of the started server."
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    proc, url = None, args.url
    if url is None:
        log = Path(tempfile.gettempdir()) / f"llmos-batch-ttft-{os.getpid()}.log"
        proc, url = start_server(args.model, args.concurrency, log)
    try:
        return asyncio.run(run(args, url))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)


if __name__ == "__main__":
    result = main(sys.argv[1:])
    text = json.dumps(result, indent=2)
    print(text)
    if result["config"]["out"]:
        Path(result["config"]["out"]).parent.mkdir(parents=True, exist_ok=True)
        Path(result["config"]["out"]).write_text(text + "\n")
