"""`llmos ps` and `llmos stop` against a real server app on loopback (tiny model)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from tiny_models import build_tiny_chat_folder
from typer.testing import CliRunner

from llmos.cli.main import app
from llmos.config import Settings
from llmos.registry import Registry
from llmos.server.app import create_app
from tests.conftest import free_port


@pytest.fixture
def server_url(isolated_home: Path, tmp_path: Path) -> Iterator[str]:
    settings = Settings(home=isolated_home, dtype="float32", port=free_port())
    registry = Registry(settings)
    registry.import_path(build_tiny_chat_folder(tmp_path / "model"), "tiny")
    registry.close()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, preload=["tiny"]), port=settings.port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{settings.port}"
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    yield url
    server.should_exit = True
    thread.join(timeout=30)


def test_ps_lists_then_stop_unloads(server_url: str) -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["ps", "--url", server_url])
    assert shown.exit_code == 0 and "tiny:1" in shown.output and "generate" in shown.output
    rows = json.loads(runner.invoke(app, ["ps", "--url", server_url, "--json"]).output)
    assert rows[0]["name"] == "tiny:1" and rows[0]["memory_bytes"] > 0
    stopped = runner.invoke(app, ["stop", "tiny", "--url", server_url])
    assert stopped.exit_code == 0 and "unloaded tiny:1" in stopped.output
    assert "No models loaded" in runner.invoke(app, ["ps", "--url", server_url]).output
    again = runner.invoke(app, ["stop", "tiny", "--url", server_url])
    assert again.exit_code == 1 and "not loaded" in again.output


def test_ps_without_a_server_says_how_to_start_one() -> None:
    result = CliRunner().invoke(app, ["ps", "--url", f"http://127.0.0.1:{free_port()}"])
    assert result.exit_code == 1 and "llmos serve" in result.output


def test_probe_finds_the_server_and_says_why_not_otherwise(server_url: str) -> None:
    from llmos.cli.remote import probe
    from llmos.cli.remote import server_url as configured

    assert probe(server_url) is None
    nobody = f"http://127.0.0.1:{free_port()}"
    assert probe(nobody) == f"no server at {nobody}"
    assert probe(f"{server_url}/v1") is not None  # something answers, but not an llmos /health
    assert configured(Settings(host="0.0.0.0", port=9)) == "http://127.0.0.1:9"
    assert configured(Settings(host="::1", port=9)) == "http://[::1]:9"
