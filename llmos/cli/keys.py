"""``llmos keys``, ``llmos usage`` and ``llmos audit``: API keys with scopes, limits and budgets, the
usage they ran up, and the log of administrative actions — on this machine's store, which a running
``llmos serve`` reads on every request (a revoked key is refused on its next request).

The secret of a key is printed once, by ``create`` and ``rotate``; the store keeps only its HMAC.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable
from typing import Any, TypeVar

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
from llmos.store.audit import current_user

T = TypeVar("T")

keys_app = typer.Typer(
    help="Make, list, revoke and rotate API keys (scopes, model allow-list, limits, budgets).",
    no_args_is_help=True,
)

SCOPES_HELP = (
    "Comma-separated scopes: inference, models:read, models:write, datasets, training, eval, metrics, admin."
)


def _on_keys(ctx: typer.Context, work: Callable[[Any], T]) -> T:
    """``work(store)`` on this home's key store, closed afterwards."""
    from llmos.access.keys import KeyStore

    store = KeyStore(settings_of(ctx))
    try:
        return work(store)
    finally:
        store.close()


def _on_store(ctx: typer.Context, work: Callable[[Any], T]) -> T:
    """``work(store)`` on this home's metadata store, closed afterwards."""
    from llmos.store import Store

    store = Store(settings_of(ctx).database_url)
    try:
        return work(store)
    finally:
        store.close()


def _split(text: str | None) -> list[str] | None:
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


def _limits_text(key: dict[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in key["limits"].items()]
    parts += [f"{m}:{k}={v}" for m, lim in key["model_limits"].items() for k, v in lim.items()]
    return ",".join(parts) or "-"


def _budget_text(key: dict[str, Any]) -> str:
    budget = key["budget"]
    return "-" if not budget else f"{budget['tokens']}/{budget['period']}"


def _show(key: dict[str, Any], token: str | None = None) -> None:
    rows = [
        ("id", key["id"]),
        ("name", key["name"]),
        ("status", key["status"]),
        ("scopes", ", ".join(key["scopes"])),
        ("models", ", ".join(key["models"]) if key["models"] else "every model"),
        ("limits", _limits_text(key)),
        ("budget", _budget_text(key)),
        ("created", f"{key['created_at']} by {key['created_by']}"),
    ]
    if key["rotated_at"]:
        rows.append(("rotated", key["rotated_at"]))
    if key["revoked_at"]:
        rows.append(("revoked", key["revoked_at"]))
    print_fields(rows)
    if token:
        console.print(f"\n[bold]key[/bold]  {token}")
        err_console.print(
            "[yellow]This is the only time the key is shown; store it now. "
            "Send it as `Authorization: Bearer <key>` (or set LLMOS_API_KEY for the CLI).[/yellow]"
        )


@keys_app.command("create")
@handles_errors
def create(
    ctx: typer.Context,
    name: str = typer.Option(..., "--name", help="A name people recognise (app1, alice, prometheus)."),
    scopes: str = typer.Option("inference,models:read", "--scopes", help=SCOPES_HELP),
    models: str | None = typer.Option(
        None, "--models", help="Comma-separated models it may use (default: all)."
    ),
    rpm: int | None = typer.Option(None, "--rpm", help="Requests per minute."),
    rpd: int | None = typer.Option(None, "--rpd", help="Requests per day."),
    tpm: int | None = typer.Option(None, "--tpm", help="Tokens (prompt + completion) per minute."),
    tpd: int | None = typer.Option(None, "--tpd", help="Tokens per day."),
    prompt_tpm: int | None = typer.Option(None, "--prompt-tpm", help="Prompt tokens per minute."),
    completion_tpm: int | None = typer.Option(None, "--completion-tpm", help="Completion tokens per minute."),
    max_parallel: int | None = typer.Option(None, "--max-parallel", help="Requests running at once."),
    model_limit: list[str] = typer.Option(
        [], "--model-limit", help="Limits for one model, e.g. qwen:rpm=10,tpm=5000 (repeatable)."
    ),
    budget: str | None = typer.Option(None, "--budget", help="Tokens per period: 1000000/month, 50000/day."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (with the key) instead of a summary."),
) -> None:
    """Make a key and print it (once)."""
    from llmos.access.limits import Budget, Limits
    from llmos.errors import InvalidRequest

    given = {
        "rpm": rpm, "rpd": rpd, "tpm": tpm, "tpd": tpd, "prompt_tpm": prompt_tpm,
        "completion_tpm": completion_tpm, "max_parallel": max_parallel,
    }  # fmt: skip
    limits = Limits.from_dict({k: v for k, v in given.items() if v is not None})
    per_model = {}
    for spec in model_limit:
        model, sep, text = spec.partition(":")
        if not sep or not model or not text:
            raise InvalidRequest(f"--model-limit {spec!r}: write MODEL:rpm=10,tpm=5000.")
        per_model[model] = Limits.parse(text)
    key, token = _on_keys(
        ctx,
        lambda store: store.create(
            name,
            _split(scopes) or [],
            models=_split(models),
            limits=limits,
            model_limits=per_model,
            budget=None if budget is None else Budget.parse(budget),
            actor=current_user(),
        ),
    )
    if as_json:
        print_json({**key.to_dict(), "key": token})
        return
    _show(key.to_dict(), token)


@keys_app.command("list")
@handles_errors
def list_keys(
    ctx: typer.Context,
    all_keys: bool = typer.Option(False, "--all", help="Include revoked keys."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List keys (never their secrets)."""
    keys = [k.to_dict() for k in _on_keys(ctx, lambda store: store.list(include_revoked=all_keys))]
    columns = [
        Column("ID", "id"),
        Column("NAME", "name"),
        Column("SCOPES", lambda k: ",".join(k["scopes"]), no_wrap=False),
        Column("MODELS", lambda k: ",".join(k["models"]) if k["models"] else "all"),
        Column("LIMITS", _limits_text, no_wrap=False),
        Column("BUDGET", _budget_text),
        Column("STATUS", "status"),
    ]
    print_rows(
        keys, columns, as_json=as_json, empty="No keys. Make one with `llmos keys create --name NAME`."
    )


@keys_app.command("show")
@handles_errors
def show(
    ctx: typer.Context,
    key_id: str = typer.Argument(..., help="The key's id (the part after `llmos-`, before the dot)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one key's scopes, models, limits and budget."""
    key = _on_keys(ctx, lambda store: store.get(key_id)).to_dict()
    print_json(key) if as_json else _show(key)


@keys_app.command("revoke")
@handles_errors
def revoke(
    ctx: typer.Context,
    key_id: str = typer.Argument(..., help="The key's id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Revoke a key: a running server refuses it from its next request."""
    key = _on_keys(ctx, lambda store: store.revoke(key_id, actor=current_user())).to_dict()
    print_json(key) if as_json else console.print(f"revoked {key['id']} ({key['name']})")


@keys_app.command("rotate")
@handles_errors
def rotate(
    ctx: typer.Context,
    key_id: str = typer.Argument(..., help="The key's id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (with the new key)."),
) -> None:
    """Give a key a new secret (same id, scopes, limits and usage); the old secret stops working."""
    key, token = _on_keys(ctx, lambda store: store.rotate(key_id, actor=current_user()))
    if as_json:
        print_json({**key.to_dict(), "key": token})
        return
    _show(key.to_dict(), token)


@handles_errors
def usage(
    ctx: typer.Context,
    key: str | None = typer.Option(None, "--key", help="Only this key id."),
    model: str | None = typer.Option(None, "--model", help="Only this model."),
    since: str | None = typer.Option(None, "--since", help="7d, 12h, 2w or a date (counts whole days)."),
    by: str = typer.Option("day", "--by", help="Group by day, model or key."),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Requests and tokens per day, model or key, from the store's usage rollups."""
    from llmos.access.usage import UsageLog, parse_since

    rows = _on_store(
        ctx, lambda store: UsageLog(store).summary(by=by, key_id=key, model=model, since=parse_since(since))
    )
    if as_csv:
        if rows:
            writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return
    columns = [
        Column(by.upper(), by),
        Column("REQUESTS", "requests", justify="right"),
        Column("ERRORS", "errors", justify="right"),
        Column("PROMPT", "prompt_tokens", justify="right"),
        Column("CACHED", "cached_tokens", justify="right"),
        Column("COMPLETION", "completion_tokens", justify="right"),
        Column("TOTAL", "total_tokens", justify="right"),
    ]
    print_rows(rows, columns, as_json=as_json, empty="No usage recorded yet.")


@handles_errors
def audit(
    ctx: typer.Context,
    since: str | None = typer.Option(None, "--since", help="7d, 12h, 2w or a date."),
    action: str | None = typer.Option(
        None, "--action", help="Only actions starting with this (key., model.)."
    ),
    limit: int = typer.Option(50, "--limit", help="At most this many entries, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Administrative actions: keys made, rotated and revoked, models pulled and deleted, jobs
    cancelled, guardrail blocks and budget thresholds — who, when, what."""
    from llmos.access.audit import AuditLog
    from llmos.access.usage import parse_since

    found = _on_store(
        ctx, lambda store: AuditLog(store).list(since=parse_since(since), action=action, limit=limit)
    )
    entries = [e.to_dict() for e in found]
    columns = [
        Column("TIME", lambda e: e["time"][:19]),
        Column("ACTOR", "actor"),
        Column("ACTION", "action"),
        Column("TARGET", "target"),
        Column("REQUEST", "request_id"),
    ]
    print_rows(entries, columns, as_json=as_json, empty="Nothing in the audit log yet.")


def register(app: typer.Typer) -> None:
    """Add ``keys``, ``usage`` and ``audit`` to ``app``."""
    app.add_typer(keys_app, name="keys")
    app.command("usage")(usage)
    app.command("audit")(audit)
