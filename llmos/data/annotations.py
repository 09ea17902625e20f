"""The annotation log: labels on dataset rows, one committed row per (version, row, annotator).

Each label is committed the moment it is given, so an annotation session can stop anywhere and
resume where it left off; a changed label goes back to ``pending`` review.
"""

from __future__ import annotations

import builtins
from collections import Counter

import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from llmos.data.schemas import Schema
from llmos.data.version import STATUSES, Annotation, DatasetVersion
from llmos.errors import DatasetNotFound, InvalidRequest
from llmos.store import Store
from llmos.store.audit import as_utc
from llmos.store.datasets import AnnotationRow
from llmos.store.tables import utcnow

MAX_LABEL_LEN = 256
MAX_ANNOTATOR_LEN = 128


def _check_text(value: object, what: str, max_len: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > max_len or not value.isprintable():
        raise InvalidRequest(
            f"invalid {what} {str(value)[:80]!r}: use 1 to {max_len} printable characters", param=what
        )
    return value.strip()


def validate_label(label: object, label_set: list[str] | None = None) -> str:
    """``label`` stripped; raise ``InvalidRequest`` if empty, too long, or outside ``label_set``."""
    label = _check_text(label, "label", MAX_LABEL_LEN)
    if label_set and label not in label_set:
        raise InvalidRequest(f"label {label!r} is not in the label set {', '.join(label_set)}", param="label")
    return label


def validate_annotator(annotator: object) -> str:
    """``annotator`` stripped; raise ``InvalidRequest`` if empty or too long."""
    return _check_text(annotator, "annotator", MAX_ANNOTATOR_LEN)


def _to_annotation(ref: str, row: AnnotationRow) -> Annotation:
    return Annotation(
        ref=ref,
        row_id=row.row_id,
        label=row.label,
        annotator=row.annotator,
        status=row.status,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )


class AnnotationLog:
    """Labels of every dataset version in one store (the caller checks that the row exists)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, version: DatasetVersion, row_id: int, label: str, annotator: str) -> Annotation:
        """Record (or change) ``annotator``'s label for ``row_id``, committed before returning."""
        try:
            return self._upsert(version, row_id, label, annotator)
        except IntegrityError:  # another writer inserted the same key between our read and write
            return self._upsert(version, row_id, label, annotator)

    def _upsert(self, version: DatasetVersion, row_id: int, label: str, annotator: str) -> Annotation:
        with self.store.session() as session:
            row = session.scalar(self._query(version, annotator).where(AnnotationRow.row_id == row_id))
            now = utcnow()
            if row is None:
                row = AnnotationRow(
                    dataset=version.name,
                    version=version.version,
                    row_id=row_id,
                    annotator=annotator,
                    created_at=now,
                )
                session.add(row)
            elif row.label != label:
                row.status = "pending"  # a new label needs a new review
            row.label = label
            row.updated_at = now
            session.flush()
            return _to_annotation(version.ref, row)

    def list(self, version: DatasetVersion, annotator: str | None = None) -> builtins.list[Annotation]:
        """The labels on ``version`` (of one annotator, if given), by row then annotator."""
        query = select(AnnotationRow).where(
            AnnotationRow.dataset == version.name, AnnotationRow.version == version.version
        )
        if annotator is not None:
            query = query.where(AnnotationRow.annotator == annotator)
        with self.store.session() as session:
            rows = session.scalars(query.order_by(AnnotationRow.row_id, AnnotationRow.annotator))
            return [_to_annotation(version.ref, row) for row in rows]

    def labelled_ids(self, version: DatasetVersion, annotator: str) -> set[int]:
        """Row ids ``annotator`` has labelled on ``version`` (what a resumed session skips)."""
        return {a.row_id for a in self.list(version, annotator)}

    def review(self, version: DatasetVersion, row_id: int, annotator: str, status: str) -> Annotation:
        """Set the review status of ``annotator``'s label on ``row_id``. Raises DatasetNotFound."""
        if status not in STATUSES:
            raise InvalidRequest(
                f"invalid status {status!r}: use one of {', '.join(STATUSES)}", param="status"
            )
        with self.store.session() as session:
            row = session.scalar(self._query(version, annotator).where(AnnotationRow.row_id == row_id))
            if row is None:
                raise DatasetNotFound(f"{annotator} has not labelled row {row_id} of {version.ref}")
            row.status = status
            row.updated_at = utcnow()
            session.flush()
            return _to_annotation(version.ref, row)

    def remove(self, version: DatasetVersion, row_id: int, annotator: str) -> Annotation:
        """Take back ``annotator``'s label on ``row_id`` (an undo); the removed label is returned.
        Raises DatasetNotFound when there is none."""
        with self.store.session() as session:
            row = session.scalar(self._query(version, annotator).where(AnnotationRow.row_id == row_id))
            if row is None:
                raise DatasetNotFound(f"{annotator} has not labelled row {row_id} of {version.ref}")
            removed = _to_annotation(version.ref, row)
            session.delete(row)
            return removed

    @staticmethod
    def _query(version: DatasetVersion, annotator: str):  # noqa: ANN205 - a SQLAlchemy Select
        return select(AnnotationRow).where(
            AnnotationRow.dataset == version.name,
            AnnotationRow.version == version.version,
            AnnotationRow.annotator == annotator,
        )


def resolve_labels(
    annotations: builtins.list[Annotation], annotator: str | None = None
) -> tuple[dict[int, str], int]:
    """``({row_id: label}, number of tied rows)`` from the labels: rejected ones never count,
    accepted ones outrank pending ones, then the majority wins; a tie leaves the row unlabelled."""
    by_row: dict[int, builtins.list[Annotation]] = {}
    for a in annotations:
        if a.status != "rejected" and (annotator is None or a.annotator == annotator):
            by_row.setdefault(a.row_id, []).append(a)
    labels: dict[int, str] = {}
    ties = 0
    for row_id, given in by_row.items():
        pool = [a for a in given if a.status == "accepted"] or given
        ranked = Counter(a.label for a in pool).most_common()
        if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
            ties += 1
            continue
        labels[row_id] = ranked[0][0]
    return labels, ties


def apply_labels(
    tables: dict[str, pa.Table], labels: dict[int, str], schema: Schema
) -> tuple[dict[str, pa.Table], dict[str, int]]:
    """``tables`` with each row's label taken from ``labels`` (else its own; rows with neither are
    dropped), as ``schema`` (classification), and the counts for the report."""
    out: dict[str, pa.Table] = {}
    changed = dropped = 0
    for split, table in tables.items():
        kept = []
        for row in table.to_pylist():
            old = row.get("label")
            label = labels.get(row["id"], old)
            if label is None:
                dropped += 1
                continue
            changed += old is not None and label != old
            kept.append({**row, "label": label})
        out[split] = pa.Table.from_pylist(kept, schema=schema.arrow_schema())
    return out, {"labelled": len(labels), "changed": changed, "unlabelled_dropped": dropped}
