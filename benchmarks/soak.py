"""Soak: many concurrent clients against one live server for a long time, watching for leaks.

    python benchmarks/soak.py                          # starts `llmos serve` (current LLMOS_HOME), 10 min
    python benchmarks/soak.py --seconds 60 --streams 8 --out benchmarks/results/soak.json
    python benchmarks/soak.py --url http://127.0.0.1:8000 --seconds 600

Each stream loops over a seeded mix of chat (streamed and not), completions, embeddings,
cancellations (the client closes a stream mid-way) and bad inputs that must be 4xx. Every few
seconds it samples the server's RSS and the engines' committed KV cache bytes; at the end it
reports JSON: requests and errors by kind (expected vs unexpected), the RSS slope after warm-up
(least squares over the samples after the first 20%), the same for RSS minus committed KV (the
cache is reserved whole but committed as it fills, which is growth but not a leak), and whether
running requests and KV usage return to zero once the load stops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from llmos.bench.throughput import _cpu_flags, _cpu_model

WARMUP_FRACTION = 0.2
DRAIN_SECONDS = 10.0
# kind -> weight in the mix
MIX = {
    "chat_stream": 30,
    "chat": 15,
    "completion": 10,
    "completion_stream": 5,
    "embedding": 12,
    "cancel": 10,
    "bad_json": 6,
    "unknown_model": 6,
    "too_long": 6,
}
WORDS = "the model serves many clients at once while the soak watches its memory for slow leaks".split()


@dataclass
class Tally:
    requests: Counter = field(default_factory=Counter)
    expected_errors: Counter = field(default_factory=Counter)  # the 4xx a bad input must get
    unexpected_errors: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)  # the first unexpected errors, for the report
    num_output_tokens: int = 0

    def unexpected(self, kind: str, what: str) -> None:
        self.unexpected_errors[kind] += 1
        if len(self.examples) < 10:
            self.examples.append(f"{kind}: {what[:300]}")


@dataclass
class Soak:
    url: str
    model: str
    embedding_model: str
    headers: dict[str, str]
    tally: Tally = field(default_factory=Tally)

    # --- one request of each kind; each returns normally or records an error --------------
    async def run_one(self, client: httpx.AsyncClient, kind: str, rng: random.Random) -> None:
        self.tally.requests[kind] += 1
        try:
            await getattr(self, kind)(client, rng)
        except (httpx.HTTPError, ValueError, KeyError) as exc:  # timeouts, resets, bad JSON bodies
            self.tally.unexpected(kind, f"{type(exc).__name__}: {exc}")

    def _messages(self, rng: random.Random) -> list[dict[str, str]]:
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 150)))
        return [{"role": "user", "content": f"Summarise in one line: {words}"}]

    def _check(self, kind: str, response: httpx.Response, status: int = 200) -> bool:
        if response.status_code == status:
            return True
        self.tally.unexpected(kind, f"HTTP {response.status_code}: {response.text}")
        return False

    async def chat(self, client: httpx.AsyncClient, rng: random.Random) -> None:
        body = {"model": self.model, "messages": self._messages(rng), "max_tokens": rng.randint(16, 64)}
        response = await client.post("/v1/chat/completions", json=body)
        if self._check("chat", response):
            data = response.json()
            if data["choices"][0]["finish_reason"] not in ("stop", "length"):
                self.tally.unexpected("chat", f"finish_reason {data['choices'][0]['finish_reason']}")
            self.tally.num_output_tokens += data["usage"]["completion_tokens"]

    async def completion(self, client: httpx.AsyncClient, rng: random.Random) -> None:
        prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 100)))
        body = {"model": self.model, "prompt": prompt, "max_tokens": rng.randint(16, 48)}
        response = await client.post("/v1/completions", json=body)
        if self._check("completion", response):
            self.tally.num_output_tokens += response.json()["usage"]["completion_tokens"]

    async def embedding(self, client: httpx.AsyncClient, rng: random.Random) -> None:
        texts = [
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 40))) for _ in range(rng.randint(1, 4))
        ]
        response = await client.post("/v1/embeddings", json={"model": self.embedding_model, "input": texts})
        if self._check("embedding", response) and len(response.json()["data"]) != len(texts):
            self.tally.unexpected("embedding", "wrong number of vectors")

    async def chat_stream(self, client: httpx.AsyncClient, rng: random.Random) -> None:
        body = {"model": self.model, "messages": self._messages(rng), "max_tokens": rng.randint(16, 64)}
        await self._stream("chat_stream", client, "/v1/chat/completions", body)

    async def completion_stream(self, client: httpx.AsyncClient, rng: random.Random) -> None:
        prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 100)))
        body = {"model": self.model, "prompt": prompt, "max_tokens": rng.randint(16, 48)}
        await self._stream("completion_stream", client, "/v1/completions", body)

    async def cancel(self, client: httpx.AsyncClient, rng: random.Random) -> None:
        body = {"model": self.model, "messages": self._messages(rng), "max_tokens": 200}
        await self._stream("cancel", client, "/v1/chat/completions", body, stop_after=rng.randint(1, 6))

    async def _stream(
        self, kind: str, client: httpx.AsyncClient, path: str, body: dict[str, Any], stop_after: int = 0
    ) -> None:
        """Read an SSE stream: exactly one chunk with a finish_reason, then [DONE], no error event.
        ``stop_after``: close the stream after that many chunks (a client that goes away)."""
        async with client.stream("POST", path, json={**body, "stream": True}) as response:
            if not self._check(kind, response):
                await response.aread()
                return
            num_chunks, finishes, done = 0, 0, False
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line.removeprefix("data: ")
                if data == "[DONE]":
                    done = True
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    self.tally.unexpected(kind, f"error event: {chunk['error']}")
                    return
                num_chunks += 1
                finishes += sum(c.get("finish_reason") is not None for c in chunk["choices"])
                if stop_after and num_chunks >= stop_after:
                    return  # closing the response mid-stream: the server must abort the request
            self.tally.num_output_tokens += num_chunks
            if not done or finishes != 1:
                self.tally.unexpected(kind, f"malformed stream: done={done}, finish chunks={finishes}")

    async def bad_json(self, client: httpx.AsyncClient, rng: random.Random) -> None:
        headers = {"Content-Type": "application/json"}
        response = await client.post(
            "/v1/chat/completions", content=b'{"model": "x", "messages": [', headers=headers
        )
        self._expect_error("bad_json", response, 400)

    async def unknown_model(self, client: httpx.AsyncClient, rng: random.Random) -> None:
        body = {"model": f"no-such-model-{rng.randint(0, 99)}", "messages": self._messages(rng)}
        self._expect_error("unknown_model", await client.post("/v1/chat/completions", json=body), 404)

    async def too_long(self, client: httpx.AsyncClient, rng: random.Random) -> None:
        body = {"model": self.model, "messages": self._messages(rng), "max_tokens": 10_000_000}
        self._expect_error("too_long", await client.post("/v1/chat/completions", json=body), 400)

    def _expect_error(self, kind: str, response: httpx.Response, status: int) -> None:
        if response.status_code == status and "error" in response.json():
            self.tally.expected_errors[kind] += 1
        else:
            self.tally.unexpected(kind, f"wanted {status}, got HTTP {response.status_code}: {response.text}")

    # --- the load, the sampler and the drain -------------------------------------------------
    async def stream_loop(self, index: int, deadline: float, seed: int, mix: dict[str, int]) -> None:
        rng = random.Random(seed * 1000 + index)
        kinds, weights = list(mix), list(mix.values())
        async with httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=120) as client:
            while time.monotonic() < deadline:
                await self.run_one(client, rng.choices(kinds, weights)[0], rng)

    async def metrics(self, client: httpx.AsyncClient) -> dict[str, float]:
        """The engine gauges summed over models: running, KV usage and committed KV bytes."""
        text = (await client.get("/metrics")).text
        wanted = {
            "llmos:num_requests_running": "running",
            "llmos:kv_cache_usage_perc": "kv_usage",
            "llmos:kv_cache_committed_bytes": "kv_committed_bytes",
        }
        totals = dict.fromkeys(wanted.values(), 0.0)
        for line in text.splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in wanted:
                totals[wanted[name]] += float(line.rsplit(" ", 1)[1])
        return totals

    async def sample_loop(
        self, process: psutil.Process | None, every: float, stop: asyncio.Event
    ) -> list[dict]:
        samples: list[dict] = []
        start = time.monotonic()
        async with httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=30) as client:
            while not stop.is_set():
                try:
                    gauges = await self.metrics(client)
                except httpx.HTTPError as exc:  # a slow scrape under load: skip this sample
                    self.tally.unexpected("metrics", f"{type(exc).__name__}: {exc}")
                else:
                    rss = process.memory_info().rss if process is not None else None
                    samples.append({"t": round(time.monotonic() - start, 2), "rss_bytes": rss, **gauges})
                try:
                    await asyncio.wait_for(stop.wait(), every)
                except TimeoutError:
                    pass
        return samples

    async def drain(self) -> dict[str, Any]:
        """Poll until nothing runs and no KV block is in use (up to DRAIN_SECONDS)."""
        start = time.monotonic()
        async with httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=30) as client:
            while True:
                gauges = await self.metrics(client)
                is_idle = gauges["running"] == 0 and gauges["kv_usage"] == 0
                if is_idle or time.monotonic() - start > DRAIN_SECONDS:
                    return {
                        "returned_to_zero": is_idle,
                        "seconds": round(time.monotonic() - start, 2),
                        **gauges,
                    }
                await asyncio.sleep(0.25)


def slope_per_minute(samples: list[dict], value: str, duration: float) -> float | None:
    """Least-squares slope (MiB/min) of ``value`` over the samples after the warm-up."""
    points = [(s["t"] / 60, s[value] / 2**20) for s in samples if s["t"] >= WARMUP_FRACTION * duration]
    points = [(t, v) for t, v in points if v is not None]
    if len(points) < 3:
        return None
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    var = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / var if var else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: argparse.Namespace, log: Path) -> tuple[subprocess.Popen, str]:
    """``llmos serve`` with both models preloaded (see ``launch``)."""
    return launch([args.model, args.embedding_model], log)


def launch(models: list[str], log: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """``llmos serve`` on a free loopback port with ``models`` preloaded, logging to ``log`` (a
    file, not a pipe nobody reads, which would block the server once full); waits until ready."""
    port = free_port()
    cmd = [sys.executable, "-m", "llmos.cli.main", "serve", "--port", str(port)]
    for model in models:
        cmd += ["--model", model]
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llmos serve exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise TimeoutError("llmos serve was not ready within 300 s")


def server_process(url: str) -> psutil.Process | None:
    """The process listening on ``url``'s port (None when it cannot be seen, e.g. remote)."""
    port = httpx.URL(url).port
    for conn in psutil.net_connections(kind="inet"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            return psutil.Process(conn.pid)
    return None


def process_info(process: psutil.Process | None) -> dict[str, Any]:
    if process is None:
        return {}
    with process.oneshot():
        return {
            "rss_bytes": process.memory_info().rss,
            "num_threads": process.num_threads(),
            "num_fds": process.num_fds(),
        }


async def soak(args: argparse.Namespace, url: str, process: psutil.Process | None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    runner = Soak(url, args.model, args.embedding_model, headers)
    before = process_info(process)
    stop = asyncio.Event()
    sampler = asyncio.create_task(runner.sample_loop(process, args.sample_every, stop))
    start = time.monotonic()
    mix = {k: w for k, w in MIX.items() if not args.kinds or k in args.kinds.split(",")}
    loops = (runner.stream_loop(i, start + args.seconds, args.seed, mix) for i in range(args.streams))
    await asyncio.gather(*loops)
    load_seconds = time.monotonic() - start
    stop.set()
    samples = await sampler
    for s in samples:
        s["rss_minus_kv_bytes"] = None if s["rss_bytes"] is None else s["rss_bytes"] - s["kv_committed_bytes"]
    drained = await runner.drain()
    after = process_info(process)
    tally = runner.tally
    return {
        "benchmark": "soak",
        "config": {
            **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "api_key"},
            "url": url,
            "mix": mix,
        },
        "machine": {"cpu_model": _cpu_model(), "cpu_flags": _cpu_flags(), "cpu_count": os.cpu_count()},
        "load_seconds": round(load_seconds, 1),
        "requests": dict(sorted(tally.requests.items())),
        "num_requests": sum(tally.requests.values()),
        "num_output_tokens": tally.num_output_tokens,
        "errors": {
            "expected": dict(sorted(tally.expected_errors.items())),
            "unexpected": dict(sorted(tally.unexpected_errors.items())),
            "num_unexpected": sum(tally.unexpected_errors.values()),
            "unexpected_examples": tally.examples,
        },
        "server": {"start": before, "end": after},
        "rss_start_mib": _mib(samples[0]["rss_bytes"]) if samples else None,
        "rss_end_mib": _mib(samples[-1]["rss_bytes"]) if samples else None,
        "kv_committed_end_mib": _mib(samples[-1]["kv_committed_bytes"]) if samples else None,
        "rss_slope_mib_per_min": _round(slope_per_minute(samples, "rss_bytes", load_seconds)),
        "rss_minus_kv_slope_mib_per_min": _round(
            slope_per_minute(samples, "rss_minus_kv_bytes", load_seconds)
        ),
        # the same slope over each fifth of the run: a leak keeps it level, a cache settling lowers it
        "rss_minus_kv_slope_by_fifth": [
            _round(
                slope_per_minute(
                    _between(samples, i * load_seconds / 5, (i + 1) * load_seconds / 5),
                    "rss_minus_kv_bytes",
                    0,
                )
            )
            for i in range(5)
        ],
        "drain": drained,
        "samples": samples,
    }


def _between(samples: list[dict], start: float, end: float) -> list[dict]:
    return [s for s in samples if start <= s["t"] <= end]


def _mib(n: float | None) -> float | None:
    return None if n is None else round(n / 2**20, 1)


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="A running server (default: start `llmos serve` on a free port).")
    parser.add_argument("--seconds", type=float, default=600, help="How long to keep the load on.")
    parser.add_argument("--streams", type=int, default=8, help="Concurrent client streams.")
    parser.add_argument("--model", default="smollm2", help="The generation model.")
    parser.add_argument("--embedding-model", default="all-minilm-l6-v2", help="The embedding model.")
    parser.add_argument("--sample-every", type=float, default=5.0, help="Seconds between samples.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", help=f"Only these request kinds, comma-separated (of {', '.join(MIX)}).")
    parser.add_argument(
        "--api-key", default=os.environ.get("LLMOS_API_KEY"), help="A key, if the server needs one."
    )
    parser.add_argument("--out", type=Path, help="Also write the JSON report here.")
    return parser.parse_args(argv)


def main(argv: list[str]) -> dict[str, Any]:
    args = parse_args(argv)
    proc = None
    url = args.url
    if url is None:
        log = Path(tempfile.gettempdir()) / f"llmos-soak-server-{os.getpid()}.log"
        print(f"starting llmos serve (log: {log})", file=sys.stderr)
        proc, url = start_server(args, log)
    try:
        process = psutil.Process(proc.pid) if proc is not None else server_process(url)
        report = asyncio.run(soak(args, url, process))
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    return report


if __name__ == "__main__":
    result = main(sys.argv[1:])
    text = json.dumps(result, indent=2)
    print(text)
    out = result["config"]["out"]
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
