"""The batch tables: uploaded files (OpenAI's ``/v1/files``: their bytes live under
``$LLMOS_HOME/files``, the row holds size and digest) and batch jobs (``/v1/batches``: the input
file, the endpoint, the status with its timestamps, the counts, the output and error files).

``llmos.batch`` reads and writes them. A batch's finished lines are kept in a progress file beside
its files until the batch is final, so a restart resumes where it stopped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from llmos.store.tables import Base, utcnow


class FileRow(Base):
    """One stored file: a batch's input, output or error file."""

    __tablename__ = "files"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # file-<hex>
    purpose: Mapped[str] = mapped_column(String(32), index=True)  # batch | batch_output
    filename: Mapped[str] = mapped_column(String(256))
    bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)  # the owner
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class BatchRow(Base):
    """One batch job, in OpenAI's terms (``status``: validating, failed, in_progress, finalizing,
    completed, expired, cancelling, cancelled)."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # batch_<hex>
    status: Mapped[str] = mapped_column(String(16), index=True)
    endpoint: Mapped[str] = mapped_column(String(64))
    input_file_id: Mapped[str] = mapped_column(String(40))
    completion_window: Mapped[str] = mapped_column(String(16))
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)  # the submitter
    batch_metadata: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    total: Mapped[int] = mapped_column(Integer, default=0)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    output_file_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    error_file_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    errors: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)  # why validation failed
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # one timestamp per status reached: {"in_progress_at": ..., "completed_at": ...} (epoch seconds)
    times: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
