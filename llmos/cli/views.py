"""How a model version reads in the CLI: its JSON summary (``list --json``, ``history --json``) and
its lineage as one line. Shared by the model verbs (``cli/models.py``) and ``cli/lineage.py``."""

from __future__ import annotations

from typing import Any

from llmos.registry import ModelVersion


def summary(mv: ModelVersion) -> dict[str, Any]:
    """One version as a JSON object."""
    m = mv.manifest
    return {
        "name": mv.name,
        "version": mv.version,
        "ref": mv.ref,
        "aliases": list(mv.aliases),
        "digest": mv.digest,
        "architecture": m.architecture,
        "parameters": m.parameters,
        "size": m.size,
        "kind": m.kind,
        "parents": [p.to_dict() for p in mv.parents],
        "imported_at": mv.created_at.isoformat(),
        "path": str(mv.path),
    }


def parents_text(mv: ModelVersion) -> str:
    """``copied_from smollm2:1, …`` (``-`` for none)."""
    return ", ".join(f"{p.relation} {p.ref}" for p in mv.parents) or "-"


def short_digest(digest: str) -> str:
    """The first 12 hex digits, as ``list`` and ``history`` show a digest."""
    return digest.removeprefix("sha256:")[:12]
