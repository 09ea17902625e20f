"""The metadata tables: models, their numbered versions, the blobs each version references, the
aliases that point at versions, and the event log (history) of everything done to a model.

A version row exists only once all of its blobs and its snapshot folder are on disk, so a row
is the proof that the artifact is complete. Blob reference counts come from ``model_files``.
The schema changes only through the migrations in ``llmos/store/migrations`` (``store.migrate``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from llmos.store.audit import utcnow


class Base(DeclarativeBase):
    """Declarative base of every llmos table."""


class ModelRow(Base):
    """A model name; its versions hang off it."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    versions: Mapped[list[ModelVersionRow]] = relationship(
        back_populates="model", cascade="all, delete-orphan", order_by="ModelVersionRow.version"
    )
    aliases: Mapped[list[AliasRow]] = relationship(cascade="all, delete-orphan", order_by="AliasRow.alias")


class ModelVersionRow(Base):
    """One immutable version of a model: its digest, manifest and snapshot folder."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version", name="uq_model_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(71), index=True)  # "sha256:" + 64 hex
    path: Mapped[str] = mapped_column(String(512))  # snapshot folder, relative to models_dir
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    model: Mapped[ModelRow] = relationship(back_populates="versions")
    files: Mapped[list[ModelFileRow]] = relationship(back_populates="version", cascade="all, delete-orphan")


class ModelFileRow(Base):
    """One file of a version: its relative name and the blob that holds its bytes."""

    __tablename__ = "model_files"
    __table_args__ = (UniqueConstraint("version_id", "filename", name="uq_version_file"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(512))
    blob: Mapped[str] = mapped_column(String(64), index=True)  # sha256 hex
    size: Mapped[int] = mapped_column(Integer)

    version: Mapped[ModelVersionRow] = relationship(back_populates="files")


class AliasRow(Base):
    """A movable name for one version of a model (``name@prod``); ``latest`` is one too."""

    __tablename__ = "model_aliases"
    __table_args__ = (UniqueConstraint("model_id", "alias", name="uq_model_alias"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    alias: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)  # a version number of the same model
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EventRow(Base):
    """One thing that happened to a model: imported, pulled, copied, merged, tagged, untagged, removed.

    Keyed by model name rather than by row id so the history outlives the versions it describes.
    """

    __tablename__ = "model_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    alias: Mapped[str | None] = mapped_column(String(64), nullable=True)
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
