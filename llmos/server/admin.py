"""Keys, usage and the audit log over HTTP: ``/api/keys`` (admin), ``/api/usage`` (a key's own usage
with any scope, everyone's with admin), ``/api/audit`` (admin), ``/api/whoami``.

The secret of a new or rotated key is in that one response and nowhere else.
"""

from __future__ import annotations

import asyncio
import csv
import io
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from llmos.access.limits import Budget, Limits
from llmos.access.usage import parse_since
from llmos.errors import Forbidden
from llmos.monitor.requests import current_request
from llmos.server.access import AccessControl, current_principal
from llmos.server.auth import requires

router = APIRouter(prefix="/api", tags=["operations"])


def _control(request: Request) -> AccessControl:
    return request.app.state.access


def _actor() -> str:
    principal = current_principal()
    return principal.key_id or "local"


def _request_id() -> str | None:
    record = current_request()
    return None if record is None else record.request_id


class KeyCreate(BaseModel):
    """Body of POST /api/keys; limits and budget as the CLI writes them (``rpm=60,tpm=20000``,
    ``1000000/month``) or as objects."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    scopes: list[str] = Field(min_length=1)
    models: list[str] | None = None
    limits: str | dict[str, int] | None = None
    model_limits: dict[str, str | dict[str, int]] | None = None
    budget: str | dict[str, Any] | None = None


def _limits(value: str | dict[str, int] | None) -> Limits | None:
    if value is None:
        return None
    return Limits.parse(value) if isinstance(value, str) else Limits.from_dict(value)


@router.post("/keys", **requires("admin"))
async def create_key(body: KeyCreate, request: Request) -> dict[str, Any]:
    """Make a key; the answer carries its secret (``key``), shown this once."""
    control = _control(request)
    budget = None
    if body.budget is not None:
        budget = Budget.parse(body.budget) if isinstance(body.budget, str) else Budget.from_dict(body.budget)
    model_limits = {m: v for m, v in ((m, _limits(v)) for m, v in (body.model_limits or {}).items()) if v}
    key, token = await asyncio.to_thread(
        control.keys.create,
        body.name,
        body.scopes,
        models=body.models,
        limits=_limits(body.limits),
        model_limits=model_limits,
        budget=budget,
        actor=_actor(),
        request_id=_request_id(),
    )
    return {**key.to_dict(), "key": token}


@router.get("/keys", **requires("admin"))
async def list_keys(request: Request, include_revoked: bool = False) -> dict[str, Any]:
    keys = await asyncio.to_thread(_control(request).keys.list, include_revoked=include_revoked)
    return {"keys": [k.to_dict() for k in keys]}


@router.get("/keys/{key_id}", **requires("admin"))
async def show_key(key_id: str, request: Request) -> dict[str, Any]:
    return (await asyncio.to_thread(_control(request).keys.get, key_id)).to_dict()


@router.post("/keys/{key_id}/revoke", **requires("admin"))
async def revoke_key(key_id: str, request: Request) -> dict[str, Any]:
    control = _control(request)
    key = await asyncio.to_thread(control.keys.revoke, key_id, actor=_actor(), request_id=_request_id())
    control.limiter.forget(key_id)
    return key.to_dict()


@router.post("/keys/{key_id}/rotate", **requires("admin"))
async def rotate_key(key_id: str, request: Request) -> dict[str, Any]:
    """A new secret for the key (the old one stops working now); the answer carries it once."""
    control = _control(request)
    key, token = await asyncio.to_thread(
        control.keys.rotate, key_id, actor=_actor(), request_id=_request_id()
    )
    return {**key.to_dict(), "key": token}


@router.get("/whoami", **requires("any"))
async def whoami() -> dict[str, Any]:
    """The key this request was sent with: its id, name, scopes and models."""
    p = current_principal()
    return {
        "key_id": p.key_id,
        "name": p.name,
        "scopes": sorted(p.scopes),
        "models": None if p.models is None else list(p.models),
        "auth": "open" if p.key_id is None else "key",
    }


def _usage_key(key: str | None) -> str | None:
    """The key whose usage a request may read: its own unless it has the admin scope."""
    principal = current_principal()
    if principal.allows("admin"):
        return key
    if key is not None and key != principal.key_id:
        raise Forbidden("Only a key with the admin scope may read another key's usage.")
    return principal.key_id


@router.get("/usage", response_model=None, **requires("any"))
async def usage(
    request: Request,
    key: str | None = None,
    model: str | None = None,
    since: str | None = None,
    by: Literal["day", "model", "key"] = "day",
    format: Literal["json", "csv"] = "json",
) -> Any:
    """Totals by day, model or key (``?since=7d``); CSV with ``format=csv``."""
    control = _control(request)
    key = _usage_key(key)
    rows = await asyncio.to_thread(
        control.usage.summary, by=by, key_id=key, model=model, since=parse_since(since)
    )
    if format == "csv":
        return PlainTextResponse(to_csv(rows), media_type="text/csv")
    return {"by": by, "key": key, "model": model, "since": since, "data": rows}


@router.get("/usage/records", **requires("any"))
async def usage_records(
    request: Request,
    request_id: str | None = None,
    key: str | None = None,
    model: str | None = None,
    since: str | None = None,
    limit: int = Query(100, ge=1, le=10000),
) -> dict[str, Any]:
    """Single requests, newest first: find one by its ``X-Request-Id``."""
    control = _control(request)
    key = _usage_key(key)
    rows = await asyncio.to_thread(
        control.usage.records,
        request_id=request_id,
        key_id=key,
        model=model,
        since=parse_since(since),
        limit=limit,
    )
    return {"data": rows}


@router.get("/audit", **requires("admin"))
async def audit(
    request: Request,
    since: str | None = None,
    action: str | None = None,
    limit: int = Query(200, ge=1, le=10000),
) -> dict[str, Any]:
    entries = await asyncio.to_thread(
        _control(request).audit.list, since=parse_since(since), action=action, limit=limit
    )
    return {"data": [e.to_dict() for e in entries]}


def to_csv(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
