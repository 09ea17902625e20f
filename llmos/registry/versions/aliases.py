"""Aliases: movable names for one version of a model (``smollm2@prod``), every move logged.

``latest`` is an alias like any other, except that registering a version moves it there and
removing the version it points to moves it back to the highest remaining one. A model without a
``latest`` row (a store from before aliases) reads as "the highest version".
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from llmos.errors import AlreadyExists
from llmos.registry.model_version import ModelVersion
from llmos.registry.versions import events
from llmos.store import AliasRow, ModelRow, ModelVersionRow
from llmos.store.names import LATEST


def aliases_by_version(session: Session, model_ids: set[int]) -> dict[tuple[int, int], tuple[str, ...]]:
    """``(model id, version) -> sorted aliases`` for the given models, implicit ``latest`` included."""
    found: dict[tuple[int, int], list[str]] = {}
    query = select(AliasRow).where(AliasRow.model_id.in_(model_ids)).order_by(AliasRow.alias)
    for row in session.scalars(query):
        found.setdefault((row.model_id, row.version), []).append(row.alias)
    with_latest = {model_id for (model_id, _), names in found.items() if LATEST in names}
    if without := model_ids - with_latest:
        top = select(ModelVersionRow.model_id, func.max(ModelVersionRow.version))
        for model_id, version in session.execute(
            top.where(ModelVersionRow.model_id.in_(without)).group_by(ModelVersionRow.model_id)
        ):
            found.setdefault((model_id, version), []).append(LATEST)
    return {key: tuple(sorted(names)) for key, names in found.items()}


def alias_version(session: Session, model: ModelRow, alias: str) -> int | None:
    """The version ``alias`` of ``model`` points to (``latest``: else the highest version), or None."""
    query = select(AliasRow.version).where(AliasRow.model_id == model.id, AliasRow.alias == alias)
    version = session.scalar(query)
    if version is None and alias == LATEST:
        query = select(func.max(ModelVersionRow.version)).where(ModelVersionRow.model_id == model.id)
        version = session.scalar(query)
    return version


def move_alias(
    session: Session, model: ModelRow, alias: str, version: int, actor: str, *, was: int | None = None
) -> int | None:
    """Point ``alias`` at ``version`` (creating it) and log the move; return the previous version.

    ``was`` is where the alias pointed without a row of its own (the implicit ``latest``).
    """
    row = session.scalar(select(AliasRow).where(AliasRow.model_id == model.id, AliasRow.alias == alias))
    previous = row.version if row else was
    if row is None:
        row = AliasRow(model_id=model.id, alias=alias, version=version)
        session.add(row)
    if previous == version:
        return previous
    row.version, row.updated_at = version, datetime.now(UTC)
    details = {"from": previous, "to": version}
    events.record(session, "tagged", model.name, actor, version=version, alias=alias, details=details)
    return previous


def drop_aliases(session: Session, model: ModelRow, versions: set[int], actor: str) -> None:
    """Delete the aliases that point at ``versions``, logging each as ``untagged``."""
    query = select(AliasRow).where(AliasRow.model_id == model.id, AliasRow.version.in_(versions))
    for row in session.scalars(query):
        details = {"from": row.version, "to": None}
        events.record(
            session, "untagged", model.name, actor, version=row.version, alias=row.alias, details=details
        )
        session.delete(row)


def check_removable(versions: list[ModelVersion], *, force: bool) -> None:
    """Raise ``AlreadyExists`` (409) when an alias other than ``latest`` points at one of ``versions``."""
    blocked = [(mv, [a for a in mv.aliases if a != LATEST]) for mv in versions]
    blocked = [(mv, names) for mv, names in blocked if names]
    if blocked and not force:
        held = "; ".join(f"{mv.ref} is {', '.join(f'@{a}' for a in names)}" for mv, names in blocked)
        mv, names = blocked[0]
        raise AlreadyExists(
            f"refusing to remove: {held}. Move the alias first (`llmos tag {mv.name}:N {names[0]}`) "
            "or pass --force to remove the alias too",
            param="name",
        )
