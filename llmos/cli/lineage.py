"""Verbs about names and lineage: ``tag`` (move an alias), ``cp`` (a new name sharing the same
files) and ``history`` (versions, parents and every logged change, oldest first like shell history).
"""

from __future__ import annotations

from typing import Any

import typer

from llmos.access.audit import record_local
from llmos.cli.console import Column, console, format_time, handles_errors, print_json, print_rows
from llmos.cli.context import open_registry, settings_of
from llmos.cli.views import parents_text, short_digest, summary
from llmos.registry import History, ModelEvent

VERSION_COLUMNS = (
    Column("version", "ref"),
    Column("aliases", lambda mv: ",".join(mv.aliases) or "-"),
    Column("digest", lambda mv: short_digest(mv.digest)),
    Column("imported at", lambda mv: format_time(mv.created_at)),
    Column("parents", parents_text, no_wrap=False),
)


@handles_errors
def tag(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="The version: name:N, name@alias or name (its latest)."),
    alias: str = typer.Argument(..., help="The alias to point at it (e.g. prod); moved if it exists."),
) -> None:
    """Point NAME@ALIAS at a version (``latest`` too: pins it until the next import). Logged."""
    registry = open_registry(ctx)
    mv = registry.resolve(ref)
    before = registry.resolve(f"{mv.name}@{alias}").ref if registry.exists(f"{mv.name}@{alias}") else None
    mv = registry.tag(ref, alias)
    record_local(settings_of(ctx).database_url, "model.tagged", mv.ref, {"alias": alias})
    moved = f" (was {before})" if before and before != mv.ref else ""
    console.print(f"[green]tagged[/green] {mv.name}@{alias} -> {mv.ref}{moved}")


@handles_errors
def cp(
    ctx: typer.Context,
    src: str = typer.Argument(..., help="The version to copy: name, name:N or name@alias."),
    dst: str = typer.Argument(..., help="The name to register it under (a new version of it)."),
) -> None:
    """Register a version under another name, sharing its files (nothing is copied on disk)."""
    mv = open_registry(ctx).copy(src, dst)
    console.print(
        f"[green]copied[/green] {mv.parents[0].ref} -> {mv.ref} ({len(mv.manifest.files)} files shared)"
    )


def _event_text(event: ModelEvent) -> str:
    details, version = event.details, f":{event.version}" if event.version is not None else ""
    if event.action in ("tagged", "untagged"):
        before = f":{details['from']}" if details.get("from") is not None else "(none)"
        after = f":{details['to']}" if details.get("to") is not None else "(removed)"
        return f"@{event.alias} {before} -> {after}"
    if event.action == "copied" and "to" in details:
        return f"copied {event.model}{version} to {details['to']}"
    parents = details.get("parents") or []
    return f"{event.action} {event.model}{version}" + (f" from {', '.join(parents)}" if parents else "")


EVENT_COLUMNS = (
    Column("when", lambda e: format_time(e.created_at)),
    Column("who", "actor"),
    Column("what", _event_text, no_wrap=False),
)


def _history_json(found: History) -> dict[str, Any]:
    return {
        "name": found.name,
        "versions": [summary(mv) for mv in found.versions],
        "events": [event.to_dict() for event in found.events],
    }


@handles_errors
def history(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A model name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a model's versions with their parents and aliases, then its log (oldest first)."""
    found = open_registry(ctx).history(name)
    if as_json:
        print_json(_history_json(found))
        return
    print_rows(found.versions, VERSION_COLUMNS, empty=f"{found.name} has no versions now")
    console.print()
    print_rows(found.events, EVENT_COLUMNS)


def register(app: typer.Typer) -> None:
    """Add ``tag``, ``cp`` and ``history`` to ``app``."""
    app.command("tag")(tag)
    app.command("cp")(cp)
    app.command("history")(history)
