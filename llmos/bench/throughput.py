"""Throughput benchmark: llmos against transformers ``generate`` and llama.cpp on one workload.

The parent resolves the model and dtype once, then runs each system in its own subprocess
(``python -m llmos.bench.throughput --phase SYSTEM --json``) so every peak RSS is that system's alone;
each child rebuilds the same seeded ``Workload`` and prints one ``PhaseResult`` as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmos.bench.llamacpp import SkippedPhase, locate_gguf, run_llamacpp
from llmos.config import Settings
from llmos.engine.config import resolve_device, resolve_dtype
from llmos.engine.sampling_params import SamplingParams
from llmos.errors import InvalidRequest, LLMOSError

logger = logging.getLogger(__name__)

# llama.cpp (llama-cpp-python on the original GGUF) is skipped, with the reason, where it cannot run.
SYSTEMS = ("llmos", "hf-static", "hf-serial", "llmos-serial", "llmos-plain-serial", "llama.cpp")
# Opt-in one-at-a-time variants (``--systems``): the same engine in float32 whatever the run's dtype,
# and with int8 weight-only projections (``EngineConfig.quantization``) on the run's dtype.
EXTRA_SYSTEMS = ("llmos-fp32-serial", "llmos-int8-serial")
ALL_SYSTEMS = SYSTEMS + EXTRA_SYSTEMS
# (name, numerator system, denominator system, the rate compared, target) — from the issue.
TARGETS: tuple[tuple[str, str, str, str | tuple[str, str], float], ...] = (
    ("llmos_vs_hf_static", "llmos", "hf-static", "tokens_per_s", 1.5),
    ("llmos_vs_hf_serial", "llmos", "hf-serial", "tokens_per_s", 8.0),
    ("llmos_serial_vs_hf_serial", "llmos-serial", "hf-serial", "decode_tokens_per_s", 1.2),
    ("llmos_serial_vs_llamacpp", "llmos-serial", "llama.cpp", "decode_tokens_per_s", 1.5),
    # the same without speculative decoding: what a stream whose text never repeats gets
    ("llmos_plain_serial_vs_llamacpp", "llmos-plain-serial", "llama.cpp", "decode_tokens_per_s", 1.5),
    # llmos's batched aggregate tok/s against llama.cpp's one-at-a-time decode tok/s
    ("llmos_vs_llamacpp_serial", "llmos", "llama.cpp", ("tokens_per_s", "decode_tokens_per_s"), 6.5),
)
# ``--quick``: a small workload for smoke tests (seconds on a tiny model).
QUICK: dict[str, Any] = {
    "num_requests": 8,
    "prompt_len": (16, 64),
    "output_len": (8, 16),
    "subset": 2,
    "batch_size": 4,
}


@dataclass(slots=True)
class BenchmarkOptions:
    model: str | None = None  # registry reference or folder; None: the settings' default model
    dtype: str = "auto"
    device: str = "auto"
    num_requests: int = 64
    prompt_len: tuple[int, int] = (32, 512)
    output_len: tuple[int, int] = (32, 256)
    batch_size: int = 16
    subset: int = 8
    seed: int = 0
    threads: int = 0  # torch intra-op threads in every system; 0: torch's default (one per core)
    systems: tuple[str, ...] = SYSTEMS
    gguf: str | None = None  # the llama.cpp system's model file; None: the pulled version's GGUF

    @classmethod
    def create(cls, quick: bool = False, **given: Any) -> BenchmarkOptions:
        """Options from the values a user gave (``None`` = not given), on top of ``QUICK`` if asked."""
        return cls(**{**(QUICK if quick else {}), **{k: v for k, v in given.items() if v is not None}})

    def __post_init__(self) -> None:
        unknown = [s for s in self.systems if s not in ALL_SYSTEMS]
        if unknown:
            raise InvalidRequest(
                f"Unknown systems {unknown}: choose from {', '.join(ALL_SYSTEMS)}.", param="systems"
            )
        for name in ("prompt_len", "output_len"):
            lo, hi = getattr(self, name)
            if not 1 <= lo <= hi:
                raise InvalidRequest(f"{name}={lo}:{hi} is invalid: need 1 <= MIN <= MAX.", param=name)
        if self.gguf and not Path(self.gguf).is_file():
            raise InvalidRequest(f"--gguf {self.gguf} is not a file: pass a GGUF model file.", param="gguf")
        if min(self.num_requests, self.batch_size, self.subset) < 1:
            raise InvalidRequest(
                "num_requests, batch_size and subset must be at least 1.", param="num_requests"
            )


@dataclass(slots=True)
class Workload:
    """Seeded requests: random real token ids as prompts, and how many tokens each must generate."""

    prompts: list[list[int]]
    output_lens: list[int]

    @classmethod
    def build(cls, options: BenchmarkOptions, token_ids: Sequence[int]) -> Workload:
        """Draw ``options.num_requests`` requests from ``token_ids`` (the vocab without special ids)."""
        rng = random.Random(options.seed)
        prompts, output_lens = [], []
        for _ in range(options.num_requests):
            prompts.append(rng.choices(token_ids, k=rng.randint(*options.prompt_len)))
            output_lens.append(rng.randint(*options.output_len))
        return cls(prompts, output_lens)

    def subset(self, n: int) -> Workload:
        return Workload(self.prompts[:n], self.output_lens[:n])

    @property
    def num_output_tokens(self) -> int:
        return sum(self.output_lens)


def normal_token_ids(model_dir: Path) -> list[int]:
    """The model's token ids minus the tokenizer's special and added tokens."""
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    vocab_size = min(len(tokenizer), AutoConfig.from_pretrained(str(model_dir)).vocab_size)
    special = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
    return [i for i in range(vocab_size) if i not in special]


@dataclass(slots=True)
class RequestTiming:
    num_output_tokens: int
    ttft: float  # first output token arrival − submission
    finish: float  # last output token arrival − submission
    num_prompt_tokens: int = 0

    @property
    def tpot(self) -> float | None:
        n = self.num_output_tokens
        return (self.finish - self.ttft) / (n - 1) if n > 1 else None


@dataclass(slots=True)
class PhaseResult:
    system: str
    num_requests: int
    num_generated_tokens: int  # useful tokens: what the requests asked for
    num_computed_tokens: int  # tokens the system generated (a static batch also pads to its longest)
    wall_s: float
    tokens_per_s: float
    computed_tokens_per_s: float
    decode_tokens_per_s: float  # per request: sum(n_out - 1) / sum(finish - first token)
    prefill_tokens_per_s: float  # per request: sum(prompt tokens) / sum(TTFT); serial systems' is exact
    ttft_p50_s: float
    ttft_p95_s: float
    tpot_p50_s: float
    tpot_p95_s: float
    peak_rss_bytes: int
    load_s: float
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_timings(
        cls,
        system: str,
        timings: list[RequestTiming],
        wall_s: float,
        load_s: float,
        num_computed_tokens: int | None = None,
    ) -> PhaseResult:
        generated = sum(t.num_output_tokens for t in timings)
        computed = generated if num_computed_tokens is None else num_computed_tokens
        tpots = [t.tpot for t in timings if t.tpot is not None]
        decode_time = sum(t.finish - t.ttft for t in timings)
        ttfts = [t.ttft for t in timings]
        prompt_time = sum(ttfts)
        return cls(
            system=system,
            num_requests=len(timings),
            num_generated_tokens=generated,
            num_computed_tokens=computed,
            wall_s=wall_s,
            tokens_per_s=generated / wall_s,
            computed_tokens_per_s=computed / wall_s,
            decode_tokens_per_s=sum(t.num_output_tokens - 1 for t in timings) / decode_time
            if decode_time
            else 0.0,
            prefill_tokens_per_s=sum(t.num_prompt_tokens for t in timings) / prompt_time
            if prompt_time
            else 0.0,
            ttft_p50_s=float(np.percentile(ttfts, 50)),
            ttft_p95_s=float(np.percentile(ttfts, 95)),
            tpot_p50_s=float(np.percentile(tpots, 50)) if tpots else 0.0,
            tpot_p95_s=float(np.percentile(tpots, 95)) if tpots else 0.0,
            peak_rss_bytes=peak_rss_bytes(),
            load_s=load_s,
        )


def peak_rss_bytes() -> int:
    """This process's peak resident set size (the high-water mark, not the current RSS)."""
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    except ImportError:  # Windows: psutil's peak working set
        import psutil

        return int(getattr(psutil.Process().memory_info(), "peak_wset", psutil.Process().memory_info().rss))


# --- llmos ----------------------------------------------------------------------------------


async def _timed_request(engine: Any, prompt: list[int], max_tokens: int) -> RequestTiming:
    start = time.perf_counter()
    first: float | None = None
    num_tokens = 0
    async for out in engine.generate(prompt, SamplingParams(max_tokens, temperature=0.0, ignore_eos=True)):
        if out.token_ids and first is None:
            first = time.perf_counter()
        num_tokens = out.num_output_tokens
        if out.error:
            raise RuntimeError(f"llmos request failed: {out.error}")
    end = time.perf_counter()
    return RequestTiming(num_tokens, (first or end) - start, end - start, len(prompt))


def _load_llmos(
    model_dir: Path, dtype: str, device: str, quantization: str | None = None, speculative: bool = True
) -> tuple[Any, float]:
    from llmos.runtime.model_runtime import load_runtime

    settings = Settings.from_env(
        dtype=dtype,
        device=device,
        quantization=quantization or "none",
        speculative_tokens=None if speculative else 0,  # None: the environment's (or the default)
    )
    runtime = load_runtime(model_dir, settings)
    asyncio.run(_timed_request(runtime.engine, [100 + i for i in range(16)], 4))  # warm-up
    return runtime, runtime.load_seconds


def run_llmos(model_dir: Path, workload: Workload, dtype: str, device: str = "auto") -> PhaseResult:
    """Submit the whole workload at once to the real ``AsyncEngine`` and time every request."""
    runtime, load_s = _load_llmos(model_dir, dtype, device)

    async def submit_all() -> list[RequestTiming]:
        tasks = [
            _timed_request(runtime.engine, p, n)
            for p, n in zip(workload.prompts, workload.output_lens, strict=True)
        ]
        return list(await asyncio.gather(*tasks))

    try:
        start = time.perf_counter()
        timings = asyncio.run(submit_all())
        wall = time.perf_counter() - start
        stats = runtime.engine.stats()
    finally:
        runtime.close()
    result = PhaseResult.from_timings("llmos", timings, wall, load_s)
    result.notes.append(f"preemptions={stats.num_preemptions}")
    return result


def run_llmos_serial(
    model_dir: Path,
    workload: Workload,
    dtype: str,
    device: str = "auto",
    quantization: str | None = None,
    system: str = "llmos-serial",
    speculative: bool = True,
) -> PhaseResult:
    """One request at a time through the same ``AsyncEngine`` (``speculative=False``: without
    prompt-lookup drafts, whatever ``LLMOS_SPECULATIVE_TOKENS`` says)."""
    runtime, load_s = _load_llmos(model_dir, dtype, device, quantization, speculative)
    try:
        start = time.perf_counter()
        timings = [
            asyncio.run(_timed_request(runtime.engine, p, n))
            for p, n in zip(workload.prompts, workload.output_lens, strict=True)
        ]
        wall = time.perf_counter() - start
        stats = runtime.engine.stats()
    finally:
        runtime.close()
    result = PhaseResult.from_timings(system, timings, wall, load_s)
    result.notes.append(f"dtype={dtype} quantization={quantization}")
    result.notes.append(f"speculative drafts={stats.num_draft_tokens} accepted={stats.num_accepted_tokens}")
    return result


# --- transformers ---------------------------------------------------------------------------


class _TokenClock:
    """A ``generate`` streamer that only records when each decoding step's tokens arrive."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._seen_prompt = False

    def put(self, value: torch.Tensor) -> None:
        if self._seen_prompt:  # the first put is the prompt itself
            self.times.append(time.perf_counter())
        self._seen_prompt = True

    def end(self) -> None:
        pass


def _load_hf(model_dir: Path, dtype: str, device: str) -> tuple[Any, int, float]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    dev = resolve_device(device)
    model: Any = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=resolve_dtype(dtype, dev))
    model.to(dev).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id or 0
    load_s = time.perf_counter() - start
    _hf_generate(model, [[100 + i for i in range(16)]], 4, pad_id)  # warm-up
    return model, pad_id, load_s


def _hf_generate(model: Any, prompts: list[list[int]], max_new_tokens: int, pad_id: int) -> list[float]:
    """Greedy, left-padded, exactly ``max_new_tokens`` for every row; returns each step's arrival time."""
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], device=model.device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=model.device)
    clock = _TokenClock()
    with torch.inference_mode():
        model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=False,
            max_new_tokens=max_new_tokens,
            min_new_tokens=max_new_tokens,
            pad_token_id=pad_id,
            streamer=clock,
        )
    assert len(clock.times) == max_new_tokens, (len(clock.times), max_new_tokens)
    return clock.times


def run_hf_static(
    model_dir: Path, workload: Workload, dtype: str, device: str = "auto", batch_size: int = 16
) -> PhaseResult:
    """``generate`` in static batches, all requests waiting from the start.

    A batch runs until its longest member is done; only each request's own tokens count as useful.
    """
    model, pad_id, load_s = _load_hf(model_dir, dtype, device)
    timings: list[RequestTiming] = []
    computed = 0
    start = time.perf_counter()
    for i in range(0, len(workload.prompts), batch_size):
        lens, prompts = workload.output_lens[i : i + batch_size], workload.prompts[i : i + batch_size]
        times = _hf_generate(model, prompts, max(lens), pad_id)
        computed += len(lens) * max(lens)
        timings += [
            RequestTiming(n, times[0] - start, times[n - 1] - start, len(p)) for n, p in zip(lens, prompts)
        ]
    wall = time.perf_counter() - start
    result = PhaseResult.from_timings("hf-static", timings, wall, load_s, computed)
    result.notes.append(f"batch_size={batch_size}, left padding; attn={model.config._attn_implementation}")
    return result


def run_hf_serial(model_dir: Path, workload: Workload, dtype: str, device: str = "auto") -> PhaseResult:
    """``generate`` one request at a time (TTFT from that request's own start)."""
    model, pad_id, load_s = _load_hf(model_dir, dtype, device)
    timings: list[RequestTiming] = []
    start = time.perf_counter()
    for prompt, n in zip(workload.prompts, workload.output_lens, strict=True):
        begin = time.perf_counter()
        times = _hf_generate(model, [prompt], n, pad_id)
        timings.append(RequestTiming(n, times[0] - begin, times[-1] - begin, len(prompt)))
    wall = time.perf_counter() - start
    return PhaseResult.from_timings("hf-serial", timings, wall, load_s)


def run_phase(system: str, model_dir: Path, options: BenchmarkOptions) -> PhaseResult | SkippedPhase:
    """Run one system in this process on the workload ``options`` describes (llama.cpp: skipped
    when llama-cpp-python is not installed)."""
    if options.threads:
        torch.set_num_threads(options.threads)
    workload = Workload.build(options, normal_token_ids(model_dir))
    subset = workload.subset(options.subset)
    if system == "llmos":
        return run_llmos(model_dir, workload, options.dtype, options.device)
    if system == "hf-static":
        return run_hf_static(model_dir, workload, options.dtype, options.device, options.batch_size)
    if system == "hf-serial":
        return run_hf_serial(model_dir, subset, options.dtype, options.device)
    if system == "llmos-serial":
        return run_llmos_serial(model_dir, subset, options.dtype, options.device)
    if system == "llmos-plain-serial":
        return run_llmos_serial(
            model_dir, subset, options.dtype, options.device, system=system, speculative=False
        )
    if system == "llmos-fp32-serial":
        return run_llmos_serial(model_dir, subset, "float32", options.device, system=system)
    if system == "llmos-int8-serial":
        return run_llmos_serial(model_dir, subset, options.dtype, options.device, "int8", system)
    if system == "llama.cpp":
        if not options.gguf:
            return SkippedPhase(system, "no GGUF given: pass --gguf PATH")
        n_ctx = options.prompt_len[1] + options.output_len[1] + 16  # the longest request, with room
        return run_llamacpp(Path(options.gguf), subset, options.threads or torch.get_num_threads(), n_ctx)
    raise InvalidRequest(f"Unknown system {system!r}.", param="systems")


# --- the parent: one subprocess per system, then the ratios ---------------------------------


def _phase_argv(system: str, model_dir: Path, options: BenchmarkOptions) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "llmos.bench.throughput",
        "--phase",
        system,
        "--json",
        "--model",
        str(model_dir),
    ]
    for key in ("dtype", "device", "num_requests", "seed", "batch_size", "subset", "threads"):
        argv += [f"--{key.replace('_', '-')}", str(getattr(options, key))]
    for key in ("prompt_len", "output_len"):
        argv += [f"--{key.replace('_', '-')}", "{}:{}".format(*getattr(options, key))]
    if options.gguf:
        argv += ["--gguf", options.gguf]
    return argv


def _run_subprocess(system: str, model_dir: Path, options: BenchmarkOptions) -> dict[str, Any]:
    logger.info("running %s", system)
    proc = subprocess.run(_phase_argv(system, model_dir, options), stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise LLMOSError(f"The {system} benchmark phase failed (exit status {proc.returncode}); see above.")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def compare(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The issue's ratios for the systems that ran (not skipped), each marked met or missed against
    its target. A ratio's metric is one rate of both systems, or (numerator's, denominator's)."""
    ran = {system: r for system, r in results.items() if "skipped" not in r}
    ratios: dict[str, dict[str, Any]] = {}
    for name, num, den, metric, target in TARGETS:
        num_metric, den_metric = (metric, metric) if isinstance(metric, str) else metric
        if num in ran and den in ran and ran[den][den_metric]:
            value = ran[num][num_metric] / ran[den][den_metric]
            ratios[name] = {
                "value": round(value, 3),
                "target": target,
                "metric": metric if isinstance(metric, str) else "/".join(metric),
                "met": value >= target,
            }
    return ratios


def run_benchmark(options: BenchmarkOptions, settings: Settings | None = None) -> dict[str, Any]:
    """Resolve the model, run each system in its own subprocess, and return the report."""
    from llmos.runtime.model_runtime import resolve_model_dir

    settings = settings or Settings.from_env()
    name, model_dir, manifest = resolve_model_dir(options.model or settings.default_model, settings)
    device = resolve_device(options.device if options.device != "auto" else settings.device)
    dtype = resolve_dtype(options.dtype if options.dtype != "auto" else settings.dtype, device)
    # Children get concrete names, so every system runs the same dtype on the same device.
    resolved = dataclasses.replace(options, dtype=str(dtype).removeprefix("torch."), device=str(device))
    skipped: dict[str, dict[str, Any]] = {}
    if "llama.cpp" in resolved.systems and not resolved.gguf:
        gguf = locate_gguf(manifest, settings)
        if isinstance(gguf, SkippedPhase):
            skipped["llama.cpp"] = dataclasses.asdict(gguf)
        else:
            resolved = dataclasses.replace(resolved, gguf=str(gguf))
    workload = Workload.build(resolved, normal_token_ids(model_dir))
    results = {
        system: skipped.get(system) or _run_subprocess(system, model_dir, resolved)
        for system in resolved.systems
    }
    for system, result in results.items():
        if "skipped" in result:
            logger.warning("%s skipped: %s", system, result["skipped"])
    import transformers

    return {
        "model": name,
        "model_dir": str(model_dir),
        "dtype": resolved.dtype,
        "device": resolved.device,
        "workload": {
            "num_requests": resolved.num_requests,
            "prompt_len": list(resolved.prompt_len),
            "output_len": list(resolved.output_len),
            "seed": resolved.seed,
            "batch_size": resolved.batch_size,
            "subset": resolved.subset,
            "num_prompt_tokens": sum(len(p) for p in workload.prompts),
            "num_output_tokens": workload.num_output_tokens,
            "subset_num_output_tokens": workload.subset(resolved.subset).num_output_tokens,
        },
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": resolved.threads or torch.get_num_threads(),
            "cpu_model": _cpu_model(),
            "cpu_flags": _cpu_flags(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "results": results,
        "ratios": compare(results),
    }


def _cpu_info() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def _cpu_model() -> str:
    for line in _cpu_info().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    """The CPU flags that pick matmul kernels (AVX-512, bf16, VNNI, AMX)."""
    for line in _cpu_info().splitlines():
        if line.startswith("flags"):
            flags = line.partition(":")[2].split()
            return sorted(f for f in flags if f.startswith(("avx", "amx")) or f == "fma")
    return []


def parse_span(text: str) -> tuple[int, int]:
    """``"32:512"`` -> ``(32, 512)``; ``"64"`` -> ``(64, 64)``. Raises ValueError."""
    lo, _, hi = text.partition(":")
    try:
        return int(lo), int(hi or lo)
    except ValueError:
        raise ValueError(f"{text!r} is not MIN:MAX (for example 32:512)") from None


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, BenchmarkOptions]:
    p = argparse.ArgumentParser(prog="benchmarks/throughput.py", description=__doc__)
    p.add_argument("--model", help="registry reference or model folder (default: the default model)")
    p.add_argument(
        "--dtype", choices=["auto", "float32", "bfloat16", "float16"], help="the same for all systems"
    )
    p.add_argument("--device", help="auto, cpu, cuda")
    p.add_argument("--num-requests", type=int)
    p.add_argument("--prompt-len", type=parse_span, help="MIN:MAX prompt tokens (default 32:512)")
    p.add_argument("--output-len", type=parse_span, help="MIN:MAX output tokens (default 32:256)")
    p.add_argument("--batch-size", type=int, help="static batch size of hf-static (default 16)")
    p.add_argument("--subset", type=int, help="requests in the one-at-a-time runs (default 8)")
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int, help="torch threads in every system (default: one per core)")
    p.add_argument("--systems", help="comma-separated, from " + ",".join(ALL_SYSTEMS))
    p.add_argument("--gguf", help="the llama.cpp system's GGUF (default: the one the model was pulled as)")
    p.add_argument("--quick", action="store_true", help="a small workload for smoke tests")
    p.add_argument("--json", action="store_true", help="one line of JSON instead of indented JSON")
    p.add_argument("--phase", choices=ALL_SYSTEMS, help=argparse.SUPPRESS)  # internal: run one system here
    args = p.parse_args(argv)
    given = {k: v for k, v in vars(args).items() if k not in ("quick", "json", "phase", "systems")}
    systems = tuple(s for s in args.systems.split(",") if s) if args.systems else None
    return args, BenchmarkOptions.create(args.quick, systems=systems, **given)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Entry point for ``python -m llmos.bench.throughput`` and ``benchmarks/throughput.py``; prints JSON."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args, options = parse_args(argv)
    if args.phase:
        if not options.model:
            raise SystemExit("--phase needs --model FOLDER")
        result = dataclasses.asdict(run_phase(args.phase, Path(options.model), options))
        print(json.dumps(result))
        return result
    report = run_benchmark(options)
    print(json.dumps(report, indent=None if args.json else 2))
    return report


if __name__ == "__main__":
    main()
