"""Serving benchmark: workload W streamed through ``llmos serve`` over loopback HTTP, against the same
engine in-process, at the same concurrency, in one run.

    python benchmarks/serving.py                  # W: 64 requests, 32 concurrent streams
    python benchmarks/serving.py --quick          # 8 short requests (a smoke test)

Each phase runs in its own subprocess (``--phase in-process|http``) so the two never share the CPU;
the HTTP phase starts the server itself on a free port with the same dtype and ``max_num_seqs``.
Prints the report as JSON and keeps a copy in ``benchmarks/results/serving-<date>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from llmos.bench.throughput import BenchmarkOptions, PhaseResult, RequestTiming, Workload, normal_token_ids
from llmos.config import Settings
from llmos.engine.config import resolve_device, resolve_dtype
from llmos.engine.sampling_params import SamplingParams

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PHASES = ("in-process", "http")
TARGET = 0.85  # HTTP tokens/s over in-process tokens/s
TimedRequest = Callable[[list[int], int], Awaitable[RequestTiming]]


async def replay(workload: Workload, concurrency: int, send: TimedRequest) -> tuple[list[Any], float]:
    """Every request of ``workload`` through ``send``, at most ``concurrency`` at a time.

    Returns each request's ``RequestTiming`` or the exception it raised, in order, and the wall time.
    """
    limit = asyncio.Semaphore(concurrency)

    async def one(prompt: list[int], max_tokens: int) -> RequestTiming:
        async with limit:
            return await send(prompt, max_tokens)

    start = time.perf_counter()
    pairs = zip(workload.prompts, workload.output_lens, strict=True)
    results = await asyncio.gather(*(one(p, n) for p, n in pairs), return_exceptions=True)
    return list(results), time.perf_counter() - start


def summarize(system: str, results: list[Any], wall_s: float, load_s: float) -> dict[str, Any]:
    """``PhaseResult``'s figures for the requests that succeeded, plus e2e p50 and the failures."""
    timings = [r for r in results if isinstance(r, RequestTiming)]
    failures = [repr(r) for r in results if not isinstance(r, RequestTiming)]
    summary: dict[str, Any] = {"system": system, "wall_s": wall_s}
    if timings:
        summary |= dataclasses.asdict(PhaseResult.from_timings(system, timings, wall_s, load_s))
        summary["e2e_p50_s"] = float(np.percentile([t.finish for t in timings], 50))
    summary |= {"requests_ok": len(timings), "requests_failed": len(failures), "errors": failures[:3]}
    return summary


# --- in-process: the AsyncEngine itself ------------------------------------------------------


def run_in_process(model_dir: Path, workload: Workload, settings: Settings, concurrency: int) -> dict:
    from llmos.runtime.model_runtime import load_runtime

    runtime = load_runtime(model_dir, settings)

    async def send(prompt: list[int], max_tokens: int) -> RequestTiming:
        start, first, num_tokens = time.perf_counter(), None, 0
        params = SamplingParams(max_tokens, temperature=0.0, ignore_eos=True)
        async for out in runtime.engine.generate(prompt, params):
            if out.error:
                raise RuntimeError(out.error)
            if out.token_ids and first is None:
                first = time.perf_counter()
            num_tokens = out.num_output_tokens
        end = time.perf_counter()
        return RequestTiming(num_tokens, (first or end) - start, end - start)

    try:
        asyncio.run(send([100 + i for i in range(16)], 4))  # warm-up
        results, wall = asyncio.run(replay(workload, concurrency, send))
    finally:
        runtime.close()
    return summarize("in-process", results, wall, runtime.load_seconds)


# --- HTTP: `llmos serve` in a subprocess, streamed /v1/completions ----------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model: str, settings: Settings, log: Any) -> tuple[subprocess.Popen, str]:
    """``llmos serve`` on a free loopback port with ``model`` loaded; waits until /ready."""
    port = free_port()
    env = {**os.environ, "LLMOS_HOME": str(settings.home), "LLMOS_DTYPE": settings.dtype}
    env |= {"LLMOS_DEVICE": settings.device, "LLMOS_MAX_NUM_SEQS": str(settings.max_num_seqs)}
    env |= {"LLMOS_KEEP_ALIVE": "-1"}
    cmd = [sys.executable, "-m", "llmos.cli.main", "serve", "--port", str(port), "--model", model]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url, start = f"http://127.0.0.1:{port}", time.perf_counter()
    while time.perf_counter() - start < 600:
        if proc.poll() is not None:
            raise RuntimeError(f"llmos serve exited with {proc.returncode}; see {log.name}")
        try:
            if httpx.get(f"{url}/ready", timeout=2.0).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise TimeoutError(f"llmos serve was not ready after 600 s; see {log.name}")


async def stream_completion(
    http: httpx.AsyncClient, model: str, prompt: list[int], max_tokens: int
) -> RequestTiming:
    """One streamed request; TTFT at the first chunk carrying a choice, tokens from the usage chunk."""
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    first = last = None
    num_tokens = 0
    async with http.stream("POST", "/v1/completions", json=body) as response:
        if response.is_error:
            raise RuntimeError(f"HTTP {response.status_code}: {(await response.aread()).decode()[:200]}")
        async for line in response.aiter_lines():
            data = line.removeprefix("data:").strip()
            if not line.startswith("data:") or data == "[DONE]":
                continue
            event = json.loads(data)
            if "error" in event:
                raise RuntimeError(event["error"].get("message"))
            if event.get("choices"):
                last = time.perf_counter()
                first = first or last
            if event.get("usage"):
                num_tokens = event["usage"]["completion_tokens"]
    end = time.perf_counter()
    return RequestTiming(num_tokens, (first or end) - start, (last or end) - start)


def run_http(model: str, workload: Workload, settings: Settings, concurrency: int) -> dict:
    load_start = time.perf_counter()
    with tempfile.NamedTemporaryFile("w", prefix="llmos-serve-", suffix=".log", delete=False) as log:
        proc, url = start_server(model, settings, log)
    load_s = time.perf_counter() - load_start

    async def drive() -> tuple[list[Any], float]:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, timeout=None, limits=limits) as http:
            await stream_completion(http, model, [100 + i for i in range(16)], 4)  # warm-up

            async def send(prompt: list[int], max_tokens: int) -> RequestTiming:
                return await stream_completion(http, model, prompt, max_tokens)

            return await replay(workload, concurrency, send)

    try:
        results, wall = asyncio.run(drive())
        server_rss = psutil.Process(proc.pid).memory_info().rss
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    os.unlink(log.name)
    summary = summarize("http", results, wall, load_s)
    # This process only drives the requests: the memory that matters is the server's.
    return summary | {"peak_rss_bytes": None, "server_rss_bytes": server_rss}


# --- the parent: both phases, then the ratio ---------------------------------------------------


def run_phase(phase: str, args: argparse.Namespace, options: BenchmarkOptions) -> dict:
    settings = Settings.from_env(dtype=args.dtype, device=args.device, max_num_seqs=args.max_num_seqs)
    workload = Workload.build(options, normal_token_ids(Path(args.model_dir)))
    if phase == "in-process":
        return run_in_process(Path(args.model_dir), workload, settings, args.concurrency)
    return run_http(args.model, workload, settings, args.concurrency)


def run_child(phase: str, argv: Sequence[str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, *argv, "--phase", phase], stdout=subprocess.PIPE, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"the {phase} phase failed (exit status {proc.returncode}); see above")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def run_benchmark(args: argparse.Namespace, options: BenchmarkOptions, argv: Sequence[str]) -> dict[str, Any]:
    """Resolve the model, dtype and device once, run each phase in its own process, compare."""
    from llmos.runtime.model_runtime import resolve_model_dir

    settings = Settings.from_env()
    args.model = args.model or settings.default_model
    name, model_dir, _ = resolve_model_dir(args.model, settings)
    device = resolve_device(args.device or settings.device)
    dtype = str(resolve_dtype(args.dtype or settings.dtype, device)).removeprefix("torch.")
    max_num_seqs = args.max_num_seqs or settings.max_num_seqs
    child_argv = [*argv, "--model", args.model, "--model-dir", str(model_dir), "--dtype", dtype]
    child_argv += ["--device", str(device), "--max-num-seqs", str(max_num_seqs)]
    results = {phase: run_child(phase, child_argv) for phase in PHASES}
    base, http = results["in-process"].get("tokens_per_s"), results["http"].get("tokens_per_s")
    value = http / base if base and http else 0.0
    return {
        "model": name,
        "dtype": dtype,
        "device": str(device),
        "concurrency": args.concurrency,
        "max_num_seqs": max_num_seqs,
        "workload": {
            **{k: getattr(options, k) for k in ("num_requests", "prompt_len", "output_len", "seed")},
            "ignore_eos": True,
        },
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
        "results": results,
        "ratio": {
            "metric": "tokens_per_s",
            "http_vs_in_process": round(value, 3),
            "target": TARGET,
            "met": value >= TARGET,
        },
    }


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, BenchmarkOptions]:
    p = argparse.ArgumentParser(prog="benchmarks/serving.py", description=__doc__.splitlines()[0])
    p.add_argument("--model", help="registry reference or folder (default: the default model)")
    p.add_argument("--num-requests", type=int, help="requests in the workload (default 64; --quick 8)")
    p.add_argument("--concurrency", type=int, default=32, help="requests in flight at once (default 32)")
    p.add_argument("--quick", action="store_true", help="8 short requests: a smoke test")
    p.add_argument("--dtype", help="auto, float32, bfloat16, float16 (default: the settings')")
    p.add_argument("--device", help="auto, cpu, cuda (default: the settings')")
    p.add_argument("--max-num-seqs", type=int, help="the engine's batch limit in both phases")
    p.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)  # internal: run one phase here
    p.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    return args, BenchmarkOptions.create(args.quick, num_requests=args.num_requests)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, options = parse_args(argv)
    if args.phase:
        print(json.dumps(run_phase(args.phase, args, options)))
        return
    report = run_benchmark(args, options, argv)
    print(json.dumps(report, indent=2))
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"serving-{time.strftime('%Y-%m-%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
