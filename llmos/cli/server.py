"""CLI verbs that talk to a running ``llmos serve``: ``ps`` (what is loaded) and ``stop`` (unload).

They reach the server through the remote SDK (``llmos.connect``) at ``--url`` (default: the
configured host and port), sending the first of ``LLMOS_API_KEYS`` when keys are set.
"""

from __future__ import annotations

import json

import typer
from rich.table import Table

from llmos.cli.console import console, format_bytes, handles_errors
from llmos.config import Settings

URL_HELP = "The server (default http://LLMOS_HOST:LLMOS_PORT)."


def _client(url: str | None):  # noqa: ANN202
    from llmos.client import connect

    settings = Settings.from_env()
    keys = settings.api_key_list
    return connect(url or f"http://{settings.host}:{settings.port}", api_key=keys[0] if keys else None)


def _expires(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 90:
        return f"in {seconds:.0f} s"
    return f"in {seconds / 60:.0f} min"


@handles_errors
def ps(
    url: str = typer.Option(None, "--url", help=URL_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """List the models the server has loaded: memory, activity, keep-alive."""
    with _client(url) as client:
        rows = client.ps()
    if as_json:
        console.print_json(json.dumps(rows))
        return
    if not rows:
        console.print("[dim]No models loaded. A request loads one; or `llmos serve --model NAME`.[/dim]")
        return
    table = Table("KIND", "MEMORY", "RUN", "WAIT", "IDLE", "UNLOADS")
    table.add_column("NAME", no_wrap=True)
    table.columns.insert(0, table.columns.pop())
    for r in rows:
        idle = "busy" if r["active"] else f"{r['idle_seconds']:.0f} s"
        table.add_row(
            r["name"],
            r["kind"],
            format_bytes(r["memory_bytes"]),
            str(r.get("running", "-")),
            str(r.get("waiting", "-")),
            idle,
            "pinned" if r["pinned"] else _expires(r["expires_in"]),
        )
    console.print(table)


@handles_errors
def stop(
    model: str = typer.Argument(..., help="The loaded model to unload (name or name:version)."),
    url: str = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """Unload a model from the running server now (its requests in flight are aborted)."""
    with _client(url) as client:
        result = client.unload(model)
    console.print(f"unloaded {result['model']}")


def register(app: typer.Typer) -> None:
    app.command()(ps)
    app.command()(stop)
