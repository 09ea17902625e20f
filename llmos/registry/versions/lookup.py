"""Finding version rows for a parsed reference, and the ``ModelNotFound`` that says what exists.

``name`` and ``name@latest`` follow the ``latest`` alias (else the highest version), ``name@alias``
its alias, ``name:N`` the number; a bare ``name`` *covers* every version (``rm``, ``versions``).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from llmos.errors import ModelNotFound
from llmos.registry.model_version import ModelVersion
from llmos.registry.sources.catalog import find_entry
from llmos.registry.versions import aliases
from llmos.store import ModelRow, ModelVersionRow
from llmos.store.names import LATEST, ModelRef


def rows(session: Session, name: str) -> list[ModelVersionRow]:
    """Every version row of ``name``, oldest first."""
    query = select(ModelVersionRow).join(ModelRow).where(ModelRow.name == name)
    return list(session.scalars(query.order_by(ModelVersionRow.version)))


def find(session: Session, ref: ModelRef) -> ModelVersionRow | None:
    """The one row ``ref`` names, or None."""
    model = session.scalar(select(ModelRow).where(ModelRow.name == ref.name))
    if model is None:
        return None
    version = ref.version
    if version is None:
        version = aliases.alias_version(session, model, ref.alias or LATEST)
    if version is None:
        return None
    query = select(ModelVersionRow).where(
        ModelVersionRow.model_id == model.id, ModelVersionRow.version == version
    )
    return session.scalar(query)


def covered(session: Session, ref: ModelRef) -> list[ModelVersionRow]:
    """The rows ``ref`` covers: all of a bare name's, else the one it names (or none)."""
    if ref.is_whole_name:
        return rows(session, ref.name)
    row = find(session, ref)
    return [row] if row is not None else []


def not_found(ref: ModelRef, versions: list[ModelVersion]) -> ModelNotFound:
    """The error for a ``ref`` that names nothing, given the versions its name has."""
    if versions and ref.alias:
        names = sorted({a for mv in versions for a in mv.aliases})
        return ModelNotFound(
            f"{ref.name} has no alias {ref.alias!r} (aliases: {', '.join(names)}); "
            f"set one with `llmos tag {versions[-1].ref} {ref.alias}`",
            param="model",
        )
    if versions:
        shown = ", ".join(mv.ref for mv in versions)
        return ModelNotFound(f"model {str(ref)!r} not found; available versions: {shown}", param="model")
    if find_entry(ref.name) is not None:
        return ModelNotFound(
            f"model {ref.name!r} is not downloaded yet; run `llmos pull {ref.name}`", param="model"
        )
    return ModelNotFound(
        f"model {str(ref)!r} not found; see `llmos list`, or add one with `llmos import PATH --name NAME`",
        param="model",
    )
