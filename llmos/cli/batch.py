"""``llmos batch``: hand a running ``llmos serve`` a file of requests and collect the answers later
(the OpenAI Batch API: ``submit`` uploads the file and starts the batch; ``list``, ``show``,
``cancel``; ``results`` writes the output — or with ``--errors`` the error — file).

The input is OpenAI's batch format, one ``{"custom_id", "method", "url", "body"}`` per line; with
``--model`` a line's body without a model gets that one, and a line without ``method``/``url`` gets
``POST`` and the endpoint. The server runs the batch behind interactive requests and keeps going
across restarts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

from llmos.cli.console import (
    Column,
    console,
    err_console,
    handles_errors,
    print_fields,
    print_json,
    print_rows,
)
from llmos.cli.context import settings_of
from llmos.cli.remote import connect_to
from llmos.errors import InvalidRequest

URL_HELP = "The server (default http://LLMOS_HOST:LLMOS_PORT)."
FINAL = ("completed", "failed", "expired", "cancelled")

batch_app = typer.Typer(
    help="Run a file of requests in the background on the server (the OpenAI Batch API).",
    no_args_is_help=True,
)


def _counts(batch: dict[str, Any]) -> str:
    c = batch["request_counts"]
    failed = f", {c['failed']} failed" if c["failed"] else ""
    return f"{c['completed'] + c['failed']}/{c['total']}{failed}"


def _when(seconds: int | None) -> str | None:
    return None if seconds is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


BATCH_COLUMNS = (
    Column("ID", "id"),
    Column("STATUS", "status"),
    Column("ENDPOINT", "endpoint"),
    Column("DONE", _counts, justify="right"),
    Column("CREATED", lambda b: _when(b["created_at"])),
)


def prepare(text: str, model: str | None, endpoint: str | None) -> tuple[bytes, str]:
    """The input file as it is sent, and its endpoint (``endpoint``, else the first line's url,
    else chat completions); raises InvalidRequest naming a line that is not a JSON object."""
    out: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"line {number} is not JSON: {exc.msg}") from None
        if not isinstance(item, dict):
            raise InvalidRequest(f"line {number} is not a JSON object")
        endpoint = endpoint or item.get("url") or "/v1/chat/completions"
        item.setdefault("method", "POST")
        item.setdefault("url", endpoint)
        if model and isinstance(item.get("body"), dict):
            item["body"].setdefault("model", model)
        out.append(json.dumps(item, ensure_ascii=False))
    if not out:
        raise InvalidRequest("the input file has no requests")
    return ("\n".join(out) + "\n").encode(), endpoint or "/v1/chat/completions"


def _show(batch: dict[str, Any]) -> None:
    rows = [
        ("id", batch["id"]),
        ("status", batch["status"]),
        ("endpoint", batch["endpoint"]),
        ("requests", _counts(batch)),
        ("input file", batch["input_file_id"]),
        ("output file", batch["output_file_id"] or "-"),
        ("error file", batch["error_file_id"] or "-"),
        ("created", _when(batch["created_at"]) or "-"),
    ]
    for stamp in ("in_progress", "completed", "failed", "cancelled", "expired"):
        if batch.get(f"{stamp}_at"):
            rows.append((stamp.replace("_", " "), _when(batch[f"{stamp}_at"]) or "-"))
    if batch.get("metadata"):
        rows.append(("metadata", ", ".join(f"{k}={v}" for k, v in batch["metadata"].items())))
    print_fields(rows)
    for error in (batch.get("errors") or {}).get("data", []):
        where = f"line {error['line']}: " if error.get("line") else ""
        err_console.print(f"[red]{where}{error['message']}[/red]")


def _follow(client: Any, batch: dict[str, Any]) -> dict[str, Any]:
    """Poll until the batch is final, with a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task(batch["status"], total=None)
        while batch["status"] not in FINAL:
            time.sleep(0.5)
            batch = client.batch(batch["id"])
            c = batch["request_counts"]
            bar.update(
                task,
                description=batch["status"],
                total=c["total"] or None,
                completed=c["completed"] + c["failed"],
            )
    return batch


@batch_app.command("submit")
@handles_errors
def submit(
    ctx: typer.Context,
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="A JSONL file of requests."),
    model: str = typer.Option(None, "--model", "-m", help="The model for lines whose body names none."),
    endpoint: str = typer.Option(
        None, "--endpoint", help="/v1/chat/completions, /v1/completions, /v1/embeddings or /v1/tasks/<task>."
    ),
    metadata: list[str] = typer.Option([], "--metadata", help="KEY=VALUE, kept with the batch (repeatable)."),
    wait: bool = typer.Option(False, "--wait", help="Follow the batch to its end with a progress bar."),
    url: str = typer.Option(None, "--url", help=URL_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the batch object as JSON."),
) -> None:
    """Upload a file of requests and start a batch on the server."""
    pairs = [m.partition("=") for m in metadata]
    if any(not key or not sep for key, sep, _ in pairs):
        raise InvalidRequest("--metadata takes KEY=VALUE")
    data, endpoint = prepare(path.read_text(encoding="utf-8"), model, endpoint)
    with connect_to(settings_of(ctx), url) as client:
        file = client.upload_file(data, path.name)
        batch = client.create_batch(file["id"], endpoint, {k: v for k, _, v in pairs} or None)
        if wait:
            batch = _follow(client, batch)
    if as_json:
        print_json(batch)
        return
    if wait:
        _show(batch)
        if batch["status"] == "completed":
            console.print(f"[dim]llmos batch results {batch['id']} -o out.jsonl[/dim]")
        return
    console.print(
        f"submitted {batch['id']} ({batch['endpoint']}); follow it with `llmos batch show {batch['id']}`"
    )


@batch_app.command("list")
@handles_errors
def list_batches(
    ctx: typer.Context,
    url: str = typer.Option(None, "--url", help=URL_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """The batches of your key (everyone's with the admin scope), newest first."""
    with connect_to(settings_of(ctx), url) as client:
        rows = client.batches()
    print_rows(
        rows,
        BATCH_COLUMNS,
        as_json=as_json,
        empty="[dim]No batches. Start one: `llmos batch submit FILE`.[/dim]",
    )


@batch_app.command("show")
@handles_errors
def show(
    ctx: typer.Context,
    batch_id: str = typer.Argument(..., help="The batch id (batch_...)."),
    url: str = typer.Option(None, "--url", help=URL_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the batch object as JSON."),
) -> None:
    """One batch: status, counts, files, times, and why validation failed."""
    with connect_to(settings_of(ctx), url) as client:
        batch = client.batch(batch_id)
    print_json(batch) if as_json else _show(batch)


@batch_app.command("cancel")
@handles_errors
def cancel(
    ctx: typer.Context,
    batch_id: str = typer.Argument(..., help="The batch id (batch_...)."),
    url: str = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """Stop a batch: lines in flight finish, what is done is kept in its output file."""
    with connect_to(settings_of(ctx), url) as client:
        batch = client.cancel_batch(batch_id)
    console.print(f"{batch['id']}: {batch['status']} ({_counts(batch)} done)")


@batch_app.command("results")
@handles_errors
def results(
    ctx: typer.Context,
    batch_id: str = typer.Argument(..., help="The batch id (batch_...)."),
    output: Path = typer.Option(None, "--output", "-o", help="Write here (atomically) instead of stdout."),
    errors: bool = typer.Option(False, "--errors", help="The error file instead of the output file."),
    url: str = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """A finished batch's output lines (or with --errors its failed lines), in input order."""
    with connect_to(settings_of(ctx), url) as client:
        batch = client.batch(batch_id)
        file_id = batch["error_file_id" if errors else "output_file_id"]
        if file_id is None:
            what = "error" if errors else "output"
            state = (
                "is still " + batch["status"] if batch["status"] not in FINAL else "has no " + what + " file"
            )
            raise InvalidRequest(f"batch {batch_id} {state} ({_counts(batch)} done).")
        chunks = client.file_content(file_id)
        if output is None:
            for chunk in chunks:
                typer.echo(chunk.decode("utf-8"), nl=False)
            return
        from llmos.store.blobs import write_chunks_atomic

        written = write_chunks_atomic(output, chunks)
    console.print(f"wrote {written} bytes to {output}")


def register(app: typer.Typer) -> None:
    """Add ``batch`` to ``app``."""
    app.add_typer(batch_app, name="batch")
