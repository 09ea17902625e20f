"""Native kernels: C sources in this package compiled once with the system C compiler and loaded
with ctypes (which lets go of the GIL during a call).

A library is built into ``$LLMOS_KERNEL_DIR`` (default ``~/.cache/llmos/kernels``), named by the
digest of its source and flags, through a temporary file renamed into place, so concurrent
processes never load a half-written file. ``LLMOS_NATIVE_KERNELS=0`` turns every native kernel off;
without a compiler, or on a CPU a kernel was not written for, callers keep torch's kernels.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from functools import cache
from pathlib import Path

logger = logging.getLogger(__name__)

DISABLE_ENV = "LLMOS_NATIVE_KERNELS"
DIR_ENV = "LLMOS_KERNEL_DIR"


@cache
def cpu_flags() -> frozenset[str]:
    """The x86 feature flags of this CPU (empty elsewhere)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return frozenset()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def enabled() -> bool:
    return os.environ.get(DISABLE_ENV, "1") != "0"


def kernel_dir() -> Path:
    return Path(os.environ.get(DIR_ENV) or Path.home() / ".cache" / "llmos" / "kernels")


def build(name: str, source: Path, flags: tuple[str, ...]) -> Path | None:
    """The compiled library's path (built now if missing), or None when it cannot be built here."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        logger.info("no C compiler: the native %s kernel is off (torch's kernels run instead)", name)
        return None
    digest = hashlib.sha256(source.read_bytes() + " ".join(flags).encode()).hexdigest()[:16]
    target = kernel_dir() / f"{name}-{digest}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}-", suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        done = subprocess.run(
            [compiler, *flags, "-o", tmp, str(source), "-lm"], capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            logger.warning("could not build the native %s kernel: %s", name, done.stderr.strip()[-500:])
            return None
        os.replace(tmp, target)  # another process may have won the race: the same bytes
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def load(name: str, source: Path, flags: tuple[str, ...]) -> ctypes.CDLL | None:
    """Build (if needed) and load a kernel library, or None (logged) when that fails."""
    try:
        path = build(name, source, flags)
        return None if path is None else ctypes.CDLL(str(path))
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("native %s kernel unavailable: %s", name, exc)
        return None


class Library:
    """One kernel library, built and loaded on first use: ``get()`` is the loaded library, or None
    where it cannot run (switched off, ``flags()`` None for this CPU, no compiler, a failed build).
    ``declare`` sets the argument types of its functions once loaded."""

    def __init__(
        self,
        name: str,
        source: Path,
        flags: Callable[[], tuple[str, ...] | None],
        declare: Callable[[ctypes.CDLL], None],
    ):
        self.name, self.source, self.flags, self.declare = name, source, flags, declare
        self.library: ctypes.CDLL | None = None
        self._tried = False
        self._lock = threading.Lock()

    def get(self) -> ctypes.CDLL | None:
        with self._lock:
            if not self._tried:
                self._tried = True
                flags = self.flags() if enabled() else None
                library = None if flags is None else load(self.name, self.source, flags)
                if library is not None:
                    self.declare(library)
                self.library = library
            return self.library
