"""The registry's event log: every import, pull, copy, merge, alias move and removal, who and when.

Events are written in the same transaction as the change they describe, so the log never claims
something that did not happen. ``llmos history`` reads them back, oldest first (like shell history).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from llmos.registry.model_version import ModelVersion
from llmos.store import EventRow
from llmos.store.audit import as_utc, utcnow

ACTIONS = ("imported", "pulled", "copied", "merged", "tagged", "untagged", "removed")


@dataclass(frozen=True, slots=True)
class ModelEvent:
    """One logged change to a model; ``details`` holds action-specific facts (``from``/``to``…)."""

    action: str
    model: str
    version: int | None
    alias: str | None
    actor: str
    created_at: datetime
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``created_at`` in ISO 8601)."""
        return {
            "action": self.action,
            "model": self.model,
            "version": self.version,
            "alias": self.alias,
            "actor": self.actor,
            "created_at": self.created_at.isoformat(),
            "details": self.details,
        }


@dataclass(frozen=True, slots=True)
class History:
    """A model's lineage: its current versions (with parents and aliases) and its event log."""

    name: str
    versions: list[ModelVersion]
    events: list[ModelEvent] = field(default_factory=list)


def record(
    session: Session,
    action: str,
    model: str,
    actor: str,
    *,
    version: int | None = None,
    alias: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Add one event to the log (committed with the caller's transaction)."""
    assert action in ACTIONS, action
    session.add(
        EventRow(
            model=model,
            version=version,
            alias=alias,
            action=action,
            actor=actor,
            created_at=utcnow(),
            details=details or {},
        )
    )


def events_for(session: Session, name: str) -> list[ModelEvent]:
    """Every event of model ``name``, oldest first."""
    query = select(EventRow).where(EventRow.model == name).order_by(EventRow.created_at, EventRow.id)
    rows = session.scalars(query)
    return [
        ModelEvent(
            action=row.action,
            model=row.model,
            version=row.version,
            alias=row.alias,
            actor=row.actor,
            created_at=as_utc(row.created_at),
            details=row.details,
        )
        for row in rows
    ]


def highest_version_ever(session: Session, name: str) -> int:
    """The highest version number ``name`` has had (0 if none): numbers are never reused."""
    return session.scalar(select(func.max(EventRow.version)).where(EventRow.model == name)) or 0
