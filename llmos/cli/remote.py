"""Reaching a running ``llmos serve`` from the CLI: its address from the settings, a quick health
probe, and a client that sends the first configured API key (``LLMOS_API_KEYS``).

``ps`` and ``stop`` always talk to the server; ``run`` and ``chat`` use it when it answers, as
``ollama run`` talks to its daemon, and load the model in-process when none does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmos.config import Settings

if TYPE_CHECKING:
    from llmos.client import Client

PROBE_TIMEOUT_S = 0.3  # a local server answers /health in a few ms; a dead port refuses at once
WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # a server bound to every address is reached on loopback


def server_url(settings: Settings) -> str:
    """``http://HOST:PORT`` of the configured server."""
    host = "127.0.0.1" if settings.host in WILDCARD_HOSTS else settings.host
    return f"http://[{host}]:{settings.port}" if ":" in host else f"http://{host}:{settings.port}"


def probe(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when an llmos server at ``url`` answers ``GET /health`` with ``ok``, else why not (one
    phrase: nothing listens, no answer in time, or what it answered). /health needs no API key."""
    import httpx

    try:
        response = httpx.get(f"{url}/health", timeout=timeout)
    except httpx.TimeoutException:
        return f"no answer from {url} within {timeout} s"
    except httpx.HTTPError:
        return f"no server at {url}"
    try:
        is_ok = response.status_code == 200 and response.json().get("status") == "ok"
    except (ValueError, AttributeError):
        is_ok = False
    return None if is_ok else f"{url} answered /health with {response.status_code}"


def connect_to(settings: Settings, url: str | None = None) -> Client:
    """A client for ``url`` (default: the configured server) with ``LLMOS_API_KEY``, else the first
    admin key of ``LLMOS_API_KEYS``."""
    from llmos.client import connect

    keys = settings.api_key_list
    key = settings.api_key or (keys[0] if keys else None)
    return connect(url or server_url(settings), api_key=key)
