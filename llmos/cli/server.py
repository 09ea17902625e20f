"""CLI verbs that talk to a running ``llmos serve``: ``ps`` (what is loaded) and ``stop`` (unload).

They reach the server through the remote SDK (``llmos.connect``) at ``--url`` (default: the
configured host and port), sending the first of ``LLMOS_API_KEYS`` when keys are set.
"""

from __future__ import annotations

from typing import Any

import typer

from llmos.cli.console import Column, console, format_bytes, handles_errors, print_rows
from llmos.cli.context import settings_of
from llmos.cli.remote import connect_to

URL_HELP = "The server (default http://LLMOS_HOST:LLMOS_PORT)."


def _expires(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 90:
        return f"in {seconds:.0f} s"
    return f"in {seconds / 60:.0f} min"


def _unloads(row: dict[str, Any]) -> str:
    return "pinned" if row["pinned"] else _expires(row["expires_in"])


PS_COLUMNS = (
    Column("NAME", "name"),
    Column("KIND", "kind"),
    # in use (weights + the KV blocks touched so far), then what the model reserved
    Column(
        "MEMORY", lambda r: format_bytes(r.get("memory_committed_bytes", r["memory_bytes"])), justify="right"
    ),
    Column("RESERVED", lambda r: format_bytes(r["memory_bytes"]), justify="right"),
    Column("DTYPE", lambda r: r.get("dtype")),
    Column("QUANT", lambda r: r.get("quantization")),
    Column("RUN", lambda r: r.get("running"), justify="right"),
    Column("WAIT", lambda r: r.get("waiting"), justify="right"),
    Column("IDLE", lambda r: "busy" if r["active"] else f"{r['idle_seconds']:.0f} s", justify="right"),
    Column("UNLOADS", _unloads),
)


@handles_errors
def ps(
    ctx: typer.Context,
    url: str = typer.Option(None, "--url", help=URL_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """List the models the server has loaded: memory (in use and reserved), activity, keep-alive."""
    with connect_to(settings_of(ctx), url) as client:
        rows = client.ps()
    empty = "[dim]No models loaded. A request loads one; or `llmos serve --model NAME`.[/dim]"
    print_rows(rows, PS_COLUMNS, as_json=as_json, empty=empty)


@handles_errors
def stop(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="The loaded model to unload (name or name:version)."),
    url: str = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """Unload a model from the running server now (its requests in flight are aborted)."""
    with connect_to(settings_of(ctx), url) as client:
        result = client.unload(model)
    console.print(f"unloaded {result['model']}")


def register(app: typer.Typer) -> None:
    """Add ``ps`` and ``stop`` to ``app``."""
    app.command()(ps)
    app.command()(stop)
