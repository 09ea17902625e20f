"""What callers get back for a dataset version and a label: plain frozen values read from the store.

A ``DatasetVersion`` names its Parquet blobs per split, its lineage (``parents``) and the report of
the operation that made it; an ``Annotation`` is one annotator's label for one row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

# how a version relates to each entry of its manifest's ``parents``
RELATIONS = ("imported_from", "cleaned_from", "split_from", "annotated_from")
STATUSES = ("pending", "accepted", "rejected")


@dataclass(frozen=True, slots=True)
class DatasetVersion:
    """One immutable dataset version; ``blobs_dir`` is where its split files live."""

    name: str
    version: int
    digest: str
    schema: str
    manifest: dict[str, Any]
    created_at: datetime
    blobs_dir: Path
    is_new: bool = field(default=False, compare=False)  # whether the call that returned it stored it

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def splits(self) -> dict[str, dict[str, Any]]:
        """``{split: {"blob": hex, "rows": n, "size": bytes}}`` in stored order (train first)."""
        return dict(self.manifest["splits"])

    @property
    def num_rows(self) -> int:
        return sum(s["rows"] for s in self.splits.values())

    @property
    def columns(self) -> list[str]:
        return list(self.manifest["columns"])

    @property
    def parents(self) -> list[dict[str, Any]]:
        return list(self.manifest.get("parents") or [])

    @property
    def report(self) -> dict[str, Any]:
        return dict(self.manifest.get("report") or {})

    @property
    def operation(self) -> dict[str, Any]:
        return dict(self.manifest.get("operation") or {})

    def split_path(self, split: str) -> Path:
        return self.blobs_dir / f"sha256-{self.splits[split]['blob']}"

    def as_parent(self, relation: str) -> dict[str, Any]:
        """This version as a ``parents`` entry of a version derived from it."""
        assert relation in RELATIONS, relation
        return {"relation": relation, "ref": self.ref, "digest": self.digest}

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (CLI ``--json``, HTTP)."""
        return {
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "digest": self.digest,
            "schema": self.schema,
            "columns": self.columns,
            "rows": self.num_rows,
            "splits": {k: {"rows": v["rows"], "size": v["size"]} for k, v in self.splits.items()},
            "parents": self.parents,
            "operation": self.operation,
            "report": self.report,
            "created_by": self.manifest.get("created_by"),
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Annotation:
    """One label on one row of a dataset version, by one annotator, with its review status."""

    ref: str
    row_id: int
    label: str
    annotator: str
    status: str
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "row_id": self.row_id,
            "label": self.label,
            "annotator": self.annotator,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }
