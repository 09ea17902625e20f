"""How a version becomes visible, and stops being: the registry's write path.

``register`` scans a folder, records what its files say, runs the capability check, stores the
blobs; ``publish`` numbers the version, moves its snapshot into place and commits its row, event
and ``latest`` move in one transaction under the store lock; ``unpublish`` is the reverse.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from llmos.errors import CorruptArtifact
from llmos.registry.importing import manifest as facts
from llmos.registry.importing.folders import scan_folder
from llmos.registry.manifest import Capabilities, Manifest
from llmos.registry.model_version import ModelVersion
from llmos.registry.versions import aliases, events
from llmos.store import ModelFileRow, ModelRow, ModelVersionRow
from llmos.store.audit import utcnow
from llmos.store.faults import crash_point
from llmos.store.names import LATEST

if TYPE_CHECKING:
    from llmos.registry.registry import Registry

log = logging.getLogger(__name__)

CapabilityProbe = Callable[[Path, str], dict[str, Any]]
"""``probe(folder, kind)`` -> a report with at least ``ok``; never raises (``runtime.capability.check``)."""


def register(
    registry: Registry, folder: Path, name: str, work: Path, origin: facts.Origin, *, move: bool, check: bool
) -> ModelVersion:
    """Store ``folder``'s files as blobs and publish them as the next version of ``name``.

    ``move`` renames the files (a folder inside ``work``) instead of copying them. Raises
    ``InvalidModelFile`` for an unsafe or malformed folder (before anything is written).
    """
    settings = registry.settings
    files = scan_folder(
        folder, allow_pickle=settings.allow_pickle, trust_remote_code=settings.trust_remote_code
    )
    found = facts.read_facts(files)  # before the blobs: a move empties the folder
    kind = origin.extra.get("kind") or origin.kind or facts.infer_kind(found)
    capabilities = check_capabilities(registry, folder, kind) if check else None
    stored = {rel: registry.blobs.put(path, work, move=move) for rel, path in files.items()}
    crash_point("blob_after_rename_before_db")
    manifest = facts.build_manifest(name, found, stored, origin, capabilities)
    return publish(registry, name, stored, manifest, work, origin.action)


def check_capabilities(registry: Registry, folder: Path, kind: str) -> Capabilities | None:
    """The registry's probe's report on a folder about to be registered (None without a probe)."""
    if registry.probe is None:
        return None
    report = Capabilities.from_dict(registry.probe(folder, kind))
    if not report.ok:
        log.warning("capability check failed for %s: %s", folder, report.error)
    return report


def _next_version(session: Session, model: ModelRow) -> tuple[int | None, int]:
    """The current highest version and the next number (never one a removed version had)."""
    last = session.scalar(
        select(func.max(ModelVersionRow.version)).where(ModelVersionRow.model_id == model.id)
    )
    return last, max(last or 0, events.highest_version_ever(session, model.name)) + 1


def publish(
    registry: Registry,
    name: str,
    stored: dict[str, tuple[str, int]],
    manifest: Manifest,
    work: Path,
    action: str,
    copied_from: ModelVersion | None = None,
) -> ModelVersion:
    """Number the version, move its snapshot into place, commit its row, log it and move ``latest``
    to it, under the lock. Raises ``CorruptArtifact`` if a blob vanished (a racing ``gc``)."""
    blobs, actor = registry.blobs, registry.actor
    with blobs.lock():
        with registry.store.session() as session:
            if missing := [h for h, _ in stored.values() if not blobs.blob_path(h).is_file()]:
                raise CorruptArtifact(
                    f"blob sha256:{missing[0]} vanished before {name} was registered; retry"
                )
            model = session.scalar(select(ModelRow).where(ModelRow.name == name)) or ModelRow(name=name)
            session.add(model)
            session.flush()
            last, version = _next_version(session, model)
            now = utcnow()
            manifest = dataclasses.replace(manifest, version=version, imported_at=now.isoformat())
            snap = blobs.publish(
                blobs.materialize({r: h for r, (h, _) in stored.items()}, work), name, version
            )
            crash_point("snapshot_after_rename")
            row = ModelVersionRow(
                model=model,
                version=version,
                digest=manifest.digest,
                path=str(snap.relative_to(blobs.root)),
                manifest=manifest.to_dict(),
                created_at=now,
            )
            row.files = [ModelFileRow(filename=r, blob=h, size=s) for r, (h, s) in stored.items()]
            session.add(row)
            source = manifest.source.to_dict() if manifest.source else None
            parents = [p.ref for p in manifest.parents]
            details = {"digest": manifest.digest, "parents": parents, "source": source}
            events.record(session, action, name, actor, version=version, details=details)
            if copied_from is not None:  # the source's history shows where its copies went
                to = {"to": f"{name}:{version}"}
                events.record(
                    session, "copied", copied_from.name, actor, version=copied_from.version, details=to
                )
            aliases.move_alias(session, model, LATEST, version, actor, was=last)
            session.flush()
            mv = registry.versions_of(session, [row])[0]
        crash_point("db_after_commit")
    log.info("registered %s (%s)", mv.ref, mv.digest[:19])
    return mv


def unpublish(registry: Registry, session: Session, rows: list[ModelVersionRow]) -> set[str]:
    """Delete version rows of one model (logged), the aliases on them, and the model once empty;
    move ``latest`` to the highest remaining version. Returns the blobs they referenced.

    Call under the store lock; the caller removes snapshots and unused blobs after the commit.
    """
    model, gone, actor = rows[0].model, {r.version for r in rows}, registry.actor
    latest = aliases.alias_version(session, model, LATEST)
    candidates = {f.blob for r in rows for f in r.files}
    for row in rows:
        events.record(
            session, "removed", model.name, actor, version=row.version, details={"digest": row.digest}
        )
        session.delete(row)
    session.flush()
    remaining = session.scalar(
        select(func.max(ModelVersionRow.version)).where(ModelVersionRow.model_id == model.id)
    )
    if remaining is not None and latest in gone:
        aliases.move_alias(session, model, LATEST, remaining, actor, was=latest)
    aliases.drop_aliases(session, model, gone, actor)
    if remaining is None:
        session.flush()
        session.delete(model)
    return candidates
