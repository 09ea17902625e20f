"""Verbs that look after the store: ``verify`` (re-hash every file, report each problem, exit 1 on
any) and ``gc`` (remove unreferenced blobs, orphan snapshot folders and stale temp files).
"""

from __future__ import annotations

import typer

from llmos.cli.console import console, err_console, format_bytes, handles_errors, print_json
from llmos.cli.context import open_registry


@handles_errors
def verify(
    ctx: typer.Context,
    name: str = typer.Argument(None, help="Only this model (name, name:N or name@alias); default: all."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Re-hash the files of every version (or of NAME) against their recorded sha256."""
    report = open_registry(ctx).verify_all(name)
    if as_json:
        print_json(report.to_dict())
    else:
        for problem in report.problems:
            console.print(f"[red]{problem.problem}[/red] {problem.ref} {problem.filename}: {problem.message}")
        checked = f"{len(report.refs)} version(s), {report.num_files} files, {format_bytes(report.num_bytes)}"
        if report.is_ok:
            console.print(f"[green]ok[/green] {checked}")
        else:
            err_console.print(f"[bold red]error:[/bold red] {len(report.problems)} problem(s) in {checked}")
    if not report.is_ok:
        raise typer.Exit(1)


@handles_errors
def gc(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would be removed."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Remove blobs no version uses, orphan snapshot folders and temp files of dead processes."""
    report = open_registry(ctx, recover=False).gc(dry_run=dry_run)
    if as_json:
        print_json(report.to_dict())
        return
    verb = "would free" if dry_run else "freed"
    console.print(
        f"{verb} {format_bytes(report.num_bytes)}: {len(report.blobs)} blob(s), "
        f"{len(report.snapshots)} snapshot folder(s), {len(report.tmp)} temp item(s)"
    )
    if report.skipped:
        console.print(f"[yellow]note:[/yellow] {report.skipped}")


def register(app: typer.Typer) -> None:
    """Add ``verify`` and ``gc`` to ``app``."""
    app.command("verify")(verify)
    app.command("gc")(gc)
