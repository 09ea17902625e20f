"""The evaluation tables: one row per (model version, suite or task) result, never recomputed, and
the per-example rows behind a result (input, prediction, reference and the example's own score).

Manifests are immutable, so results live here keyed by the exact ref and digest they were computed
on; ``llmos.evaluate.results.ResultStore`` reads and writes them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from llmos.store.tables import Base, utcnow


class EvalResultRow(Base):
    """The metrics of one task of one evaluation run, with what was evaluated and how."""

    __tablename__ = "eval_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_ref: Mapped[str] = mapped_column(String(256), index=True)  # exact "name:N" (or a folder)
    model_digest: Mapped[str | None] = mapped_column(String(71), nullable=True)
    suite: Mapped[str] = mapped_column(String(128))  # suite name, or "-" for a single --task run
    content_hash: Mapped[str] = mapped_column(String(71))  # sha256 of the suite file or data file
    task: Mapped[str] = mapped_column(String(128))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EvalExampleRow(Base):
    """One example of a result: what the model was given, what it answered, the gold answer and
    the result's headline metric on this example alone (``None`` where a task has none)."""

    __tablename__ = "eval_examples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("eval_results.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)  # the example's place in the evaluated data
    input: Mapped[Any] = mapped_column(JSON)
    prediction: Mapped[Any] = mapped_column(JSON)
    reference: Mapped[Any] = mapped_column(JSON)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
