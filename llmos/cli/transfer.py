"""Verbs that move weights out of or across versions: ``export`` and ``merge``.

``export`` writes a version as a folder transformers (or PEFT, for an adapter) loads as is;
``merge`` bakes a LoRA adapter into its base as a new full version. ``register(app)`` adds them.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from llmos.cli.console import console, handles_errors
from llmos.cli.context import open_registry


@handles_errors
def export_model(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="name, name:N or alias of the version to export."),
    dest: Path = typer.Argument(..., help="The folder to write (created; must be empty)."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty destination folder."),
    base: str = typer.Option(
        None, "--base", help="For an adapter: the base_model_name_or_path to write (a hub id or folder)."
    ),
) -> None:
    """Write a version as a Hugging Face folder (a PEFT folder for a LoRA adapter)."""
    from llmos.registry.export import export

    start = time.perf_counter()
    out = export(open_registry(ctx), ref, dest, force=force, base_name=base)
    console.print(f"[green]exported[/green] {ref} to {out} in {time.perf_counter() - start:.1f} s")


@handles_errors
def merge(
    ctx: typer.Context,
    base: str = typer.Argument(..., help="The base model the adapter was made for."),
    adapter: str = typer.Argument(..., help="The LoRA adapter version."),
    name: str = typer.Option(..., "--name", "-n", help="Name of the merged model (a new version)."),
) -> None:
    """Merge a LoRA adapter into its base model as a new full version of NAME."""
    from llmos.runtime.merge import merge_adapter

    start = time.perf_counter()
    mv = merge_adapter(open_registry(ctx), base, adapter, name)
    console.print(
        f"[green]merged[/green] {adapter} into {base}: {mv.ref} {mv.digest[:19]} "
        f"in {time.perf_counter() - start:.1f} s"
    )


def register(app: typer.Typer) -> None:
    """Add ``export`` and ``merge`` to ``app``."""
    app.command("export")(export_model)
    app.command("merge")(merge)
