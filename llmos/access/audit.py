"""The audit log: one row per administrative action — keys made, rotated or revoked, models pulled,
tagged, copied or deleted, jobs cancelled — with who did it (a key id, or the login name at the
CLI), what, on what, and the request id when it came over HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from llmos.store import Store
from llmos.store.access import AuditRow
from llmos.store.audit import as_utc, utcnow


@dataclass(slots=True)
class AuditEntry:
    time: datetime
    actor: str
    action: str
    target: str
    request_id: str | None
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "request_id": self.request_id,
            "details": self.details,
        }


class AuditLog:
    def __init__(self, store: Store):
        self.store = store

    def record(
        self,
        actor: str,
        action: str,
        target: str,
        details: dict[str, Any] | None = None,
        request_id: str | None = None,
    ) -> None:
        with self.store.session() as session:
            session.add(
                AuditRow(
                    created_at=utcnow(),
                    actor=actor[:128],
                    action=action,
                    target=target[:256],
                    request_id=request_id,
                    details=details or {},
                )
            )

    def list(
        self, *, since: datetime | None = None, action: str | None = None, limit: int = 1000
    ) -> list[AuditEntry]:
        """Newest first."""
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if since is not None:
            query = query.where(AuditRow.created_at >= since)
        if action is not None:
            query = query.where(AuditRow.action.startswith(action))
        with self.store.session() as session:
            return [
                AuditEntry(as_utc(r.created_at), r.actor, r.action, r.target, r.request_id, dict(r.details))
                for r in session.scalars(query)
            ]


def record_local(database_url: str, action: str, target: str, details: dict[str, Any] | None = None) -> None:
    """Record an action done at this machine's CLI, by the login name (``llmos rm``, ``pull``, ``tag``)."""
    from llmos.store.audit import current_user

    store = Store(database_url)
    try:
        AuditLog(store).record(current_user(), action, target, details)
    finally:
        store.close()
