"""The operations tables: API keys (only a hash of each secret), one usage row per request with
daily rollups, and the audit log of administrative actions.

``llmos.access`` reads and writes them. Usage rows carry their UTC ``day`` so retention drops whole
days; the rollups (``usage_daily``) are updated in the same transaction as the rows they sum.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from llmos.store.tables import Base, utcnow


class ApiKeyRow(Base):
    """One API key: its public id, an HMAC of its secret, what it may do and how much."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the public part: llmos-<id>.<secret>
    name: Mapped[str] = mapped_column(String(64), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64))  # hex HMAC-SHA256(server secret, secret)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    models: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)  # None: every model
    limits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # Limits.to_dict()
    model_limits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # model -> Limits.to_dict()
    budget: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # Budget.to_dict()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128))
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class UsageRow(Base):
    """One finished HTTP request: who, which model, tokens, timings, outcome. Append-only."""

    __tablename__ = "usage_records"
    __table_args__ = (Index("ix_usage_records_key_day", "key_id", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    day: Mapped[str] = mapped_column(String(10), index=True)  # UTC YYYY-MM-DD of created_at
    request_id: Mapped[str] = mapped_column(String(128), index=True)
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    route: Mapped[str] = mapped_column(String(128))
    model: Mapped[str | None] = mapped_column(String(256), nullable=True)
    status: Mapped[int] = mapped_column(Integer)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    queue_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    ttft_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    e2e_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    finish_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)


class UsageDailyRow(Base):
    """The sum of one day's usage rows for one key and model ("" for none)."""

    __tablename__ = "usage_daily"
    __table_args__ = (UniqueConstraint("day", "key_id", "model", name="uq_usage_daily"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[str] = mapped_column(String(10), index=True)
    key_id: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(256))
    requests: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)


class AuditRow(Base):
    """One administrative action: who (a key id or a login name), what, on what, when."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(256))
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
