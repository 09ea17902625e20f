"""The dataset tables: dataset names, their numbered immutable versions, and annotation labels.

A version row is committed only after its Parquet blobs are on disk (the row is the proof the
version is complete); its ``manifest`` holds the splits, schema, lineage and the operation's
report. Each annotation is its own committed row, so a labelling session survives any crash.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from llmos.store.tables import Base, utcnow


class DatasetRow(Base):
    """A dataset name; its versions hang off it."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    versions: Mapped[list[DatasetVersionRow]] = relationship(
        back_populates="dataset", cascade="all, delete-orphan", order_by="DatasetVersionRow.version"
    )


class DatasetVersionRow(Base):
    """One immutable version: its content digest, schema and manifest (splits, parents, report)."""

    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "version", name="uq_dataset_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(71), index=True)  # "sha256:" + 64 hex
    schema: Mapped[str] = mapped_column(String(32))
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    dataset: Mapped[DatasetRow] = relationship(back_populates="versions")


class AnnotationRow(Base):
    """One annotator's label for one row of one dataset version, with its review status.

    Keyed by dataset name and version number (not row ids) so labels outlive nothing they describe
    and can be read without joining; one label per (version, row, annotator), updated in place.
    """

    __tablename__ = "dataset_annotations"
    __table_args__ = (UniqueConstraint("dataset", "version", "row_id", "annotator", name="uq_annotation"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    row_id: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(256))
    annotator: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | accepted | rejected
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
