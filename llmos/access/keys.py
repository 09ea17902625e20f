"""API keys: ``llmos-<id>.<secret>``, of which the store keeps only the id and an HMAC-SHA256 of the
secret under the server's own secret (``<home>/secret.key``, made once, readable by its owner only).

The secret is shown once, when the key is made or rotated. Every request looks its key up in the
store (a primary-key read), so a revoked or rotated key is refused on its very next request, in
this process or any other sharing the store — no cache to outlive a revocation. Admin keys from
``LLMOS_API_KEYS`` / ``--api-key`` keep working: they carry every scope and no limits.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from llmos.access.audit import AuditLog
from llmos.access.limits import Budget, Limits
from llmos.access.scopes import Principal, check_scopes
from llmos.config import Settings
from llmos.errors import InvalidRequest, KeyNotFound, Unauthorized
from llmos.store import Store
from llmos.store.access import ApiKeyRow
from llmos.store.audit import as_utc, utcnow
from llmos.store.blobs import fsync_dir

PREFIX = "llmos-"
SECRET_FILE = "secret.key"


def server_secret(home: Path) -> bytes:
    """The server's HMAC secret, made on first use (32 random bytes; two processes racing to make
    it agree on one, since the file is linked into place only if it does not exist yet)."""
    path = home / SECRET_FILE
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        tmp = home / f".{SECRET_FILE}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_hex(32).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
            fsync_dir(home)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return path.read_bytes().strip()


def split_token(token: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a well-formed ``llmos-<id>.<secret>``, else None."""
    if not token.startswith(PREFIX):
        return None
    key_id, dot, secret = token[len(PREFIX) :].partition(".")
    if not dot or not key_id or not secret or len(key_id) > 32:
        return None
    return key_id, secret


@dataclass(slots=True)
class ApiKey:
    """A stored key as callers see it: everything but the secret."""

    id: str
    name: str
    scopes: list[str]
    models: list[str] | None
    limits: Limits
    model_limits: dict[str, Limits]
    budget: Budget | None
    created_at: datetime
    created_by: str
    rotated_at: datetime | None = None
    revoked_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @classmethod
    def from_row(cls, row: ApiKeyRow) -> ApiKey:
        return cls(
            id=row.id,
            name=row.name,
            scopes=list(row.scopes),
            models=None if row.models is None else list(row.models),
            limits=Limits.from_dict(row.limits or {}),
            model_limits={m: Limits.from_dict(v) for m, v in (row.model_limits or {}).items()},
            budget=None if not row.budget else Budget.from_dict(row.budget),
            created_at=as_utc(row.created_at),
            created_by=row.created_by,
            rotated_at=None if row.rotated_at is None else as_utc(row.rotated_at),
            revoked_at=None if row.revoked_at is None else as_utc(row.revoked_at),
        )

    def principal(self) -> Principal:
        return Principal(
            key_id=self.id,
            name=self.name,
            scopes=frozenset(self.scopes),
            models=None if self.models is None else tuple(self.models),
            limits=self.limits,
            model_limits=dict(self.model_limits),
            budget=self.budget,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "scopes": list(self.scopes),
            "models": self.models,
            "limits": self.limits.to_dict(),
            "model_limits": {m: v.to_dict() for m, v in self.model_limits.items()},
            "budget": None if self.budget is None else self.budget.to_dict(),
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "rotated_at": None if self.rotated_at is None else self.rotated_at.isoformat(),
            "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat(),
            "status": "active" if self.is_active else "revoked",
        }


class KeyStore:
    """The stored keys of one home: make, list, show, revoke, rotate, and check a presented token."""

    def __init__(self, settings: Settings, store: Store | None = None):
        self.settings = settings
        self._own_store = store is None
        self.store = store or Store(settings.database_url)
        self.audit = AuditLog(self.store)
        self._secret: bytes | None = None

    def close(self) -> None:
        if self._own_store:
            self.store.close()

    def _hash(self, secret: str) -> str:
        if self._secret is None:
            self._secret = server_secret(self.settings.home)
        return hmac.new(self._secret, secret.encode(), hashlib.sha256).hexdigest()

    # --- administration ------------------------------------------------------------------------
    def create(
        self,
        name: str,
        scopes: list[str],
        *,
        models: list[str] | None = None,
        limits: Limits | None = None,
        model_limits: dict[str, Limits] | None = None,
        budget: Budget | None = None,
        actor: str,
        request_id: str | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its token (shown once). Raises InvalidRequest for a bad name or scope."""
        name = name.strip()
        if not name or len(name) > 64:
            raise InvalidRequest("A key needs a name of 1 to 64 characters.", param="name")
        scopes = check_scopes(scopes)
        if models is not None:
            models = list(dict.fromkeys(m.strip() for m in models if m.strip()))
            if not models:
                raise InvalidRequest("--models names no model; leave it out to allow every model.")
        key_id, secret = f"k{secrets.token_hex(6)}", secrets.token_urlsafe(32)
        row = ApiKeyRow(
            id=key_id,
            name=name,
            secret_hash=self._hash(secret),
            scopes=scopes,
            models=models,
            limits=(limits or Limits()).to_dict(),
            model_limits={m: v.to_dict() for m, v in (model_limits or {}).items()},
            budget=None if budget is None else budget.to_dict(),
            created_at=utcnow(),
            created_by=actor,
        )
        with self.store.session() as session:
            session.add(row)
        key = ApiKey.from_row(row)
        self.audit.record(actor, "key.created", key_id, {"name": name, "scopes": scopes}, request_id)
        return key, f"{PREFIX}{key_id}.{secret}"

    def list(self, *, include_revoked: bool = False) -> list[ApiKey]:
        with self.store.session() as session:
            query = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id)
            if not include_revoked:
                query = query.where(ApiKeyRow.revoked_at.is_(None))
            return [ApiKey.from_row(r) for r in session.scalars(query)]

    def get(self, key_id: str) -> ApiKey:
        with self.store.session() as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None:
                raise KeyNotFound(f"No key {key_id!r}; see `llmos keys list`.", param="key_id")
            return ApiKey.from_row(row)

    def revoke(self, key_id: str, *, actor: str, request_id: str | None = None) -> ApiKey:
        """Refuse the key from its next request on (revoking twice keeps the first time)."""
        with self.store.session() as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None:
                raise KeyNotFound(f"No key {key_id!r}; see `llmos keys list`.", param="key_id")
            row.revoked_at = row.revoked_at or utcnow()
            key = ApiKey.from_row(row)
        self.audit.record(actor, "key.revoked", key_id, {"name": key.name}, request_id)
        return key

    def rotate(self, key_id: str, *, actor: str, request_id: str | None = None) -> tuple[ApiKey, str]:
        """A new secret for the same key (same id, scopes, limits, usage); the old one stops at once."""
        secret = secrets.token_urlsafe(32)
        with self.store.session() as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None:
                raise KeyNotFound(f"No key {key_id!r}; see `llmos keys list`.", param="key_id")
            if row.revoked_at is not None:
                raise InvalidRequest(f"Key {key_id} is revoked; create a new one instead.", param="key_id")
            row.secret_hash = self._hash(secret)
            row.rotated_at = utcnow()
            key = ApiKey.from_row(row)
        self.audit.record(actor, "key.rotated", key_id, {"name": key.name}, request_id)
        return key, f"{PREFIX}{key_id}.{secret}"

    # --- checking a request's key -------------------------------------------------------------
    def has_active_keys(self) -> bool:
        with self.store.session() as session:
            query = select(ApiKeyRow.id).where(ApiKeyRow.revoked_at.is_(None)).limit(1)
            return session.scalar(query) is not None

    def authenticate(self, token: str) -> ApiKey:
        """The active key ``token`` belongs to; raises Unauthorized (its ``code`` says why)."""
        parts = split_token(token)
        if parts is None:
            raise Unauthorized("Invalid API key: expected `llmos-<id>.<secret>`.")
        key_id, secret = parts
        expected = self._hash(secret)
        with self.store.session() as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None or not hmac.compare_digest(row.secret_hash, expected):
                raise Unauthorized("Invalid API key.")
            if row.revoked_at is not None:
                error = Unauthorized(f"API key {key_id} was revoked; ask for a new one.")
                error.code = "key_revoked"
                raise error
            return ApiKey.from_row(row)
