"""Where dataset versions live: Parquet blobs under ``<home>/datasets/blobs`` and rows in the store.

A version is written as one Parquet file per split, each moved into place as a content-addressed
blob (temp + fsync + rename, the registry's ``BlobStore``); only then is its row committed, under
the store lock, so a crash leaves no version; the next write (or ``recover()``) removes what it
left behind. Opening a store has no side effects.
"""

from __future__ import annotations

import builtins
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from llmos.config import Settings
from llmos.data.annotations import AnnotationLog
from llmos.data.schemas import Schema
from llmos.data.version import DatasetVersion
from llmos.errors import CorruptArtifact, DatasetNotFound, InvalidDataset, InvalidModelName
from llmos.store import Store
from llmos.store.audit import as_utc, current_user
from llmos.store.blobs import BlobStore
from llmos.store.datasets import DatasetRow, DatasetVersionRow
from llmos.store.digests import sha256_file, version_digest
from llmos.store.names import LATEST, parse_ref

log = logging.getLogger(__name__)
SPLIT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def parse_dataset_ref(ref: str) -> tuple[str, int | None]:
    """``(name, version or None for the latest)`` of ``name``, ``name:N`` or ``name:latest``."""
    try:
        parsed = parse_ref(ref)
    except InvalidModelName:
        parsed = None
    if parsed is None or parsed.alias not in (None, LATEST):
        raise InvalidDataset(
            f"invalid dataset reference {str(ref)[:120]!r}: use name or name:N, where a name is lowercase "
            "letters, digits, '.', '-' or '_' (at most 64 characters, starting with a letter or digit)",
            param="name",
        )
    return parsed.name, parsed.version


def _is_repeat(
    latest: DatasetVersionRow, digest: str, parents: list[dict[str, Any]], operation: dict[str, Any]
) -> bool:
    if latest.digest != digest:
        return False
    if operation.get("name") == "import":  # the same rows from any file: nothing new to record
        return True
    as_stored = json.loads(json.dumps([parents, operation]))  # tuples read back as lists
    return [latest.manifest.get("parents"), latest.manifest.get("operation")] == as_stored


def write_parquet(table: pa.Table, path: Path) -> None:
    """One split as a Parquet file; the same table always gives the same bytes (content addressing)."""
    pq.write_table(table, path, compression="zstd")


class DatasetStore:
    """Dataset versions and annotations of one ``Settings.home``.

    Opening removes nothing. With ``recover`` (the default) each write first clears what crashed
    writers left, under the lock (``recover()``); readers pass ``recover=False``.
    """

    def __init__(self, settings: Settings, *, recover: bool = True) -> None:
        self.settings = settings
        self.store = Store(settings.database_url)
        self.files = BlobStore(Path(settings.home).expanduser() / "datasets")
        self.annotations = AnnotationLog(self.store)
        self.actor = current_user()
        self.recovers_on_write = recover

    def close(self) -> None:
        """Release the database handle (others in the process keep theirs)."""
        self.store.close()

    def __enter__(self) -> DatasetStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- reading -------------------------------------------------------------------------------

    def resolve(self, ref: str) -> DatasetVersion:
        """The version ``ref`` names (a bare name: the newest). Raises InvalidDataset, DatasetNotFound."""
        name, number = parse_dataset_ref(ref)
        with self.store.session() as session:
            dataset = self._dataset(session, name)
            if dataset is None or not dataset.versions:
                raise DatasetNotFound(
                    f"no dataset named {name!r}: `llmos data list` shows them, "
                    f"`llmos data import FILE --name {name}` adds one",
                    param="name",
                )
            if number is None:
                return self._to_version(dataset.name, dataset.versions[-1])
            for row in dataset.versions:
                if row.version == number:
                    return self._to_version(dataset.name, row)
            known = ", ".join(str(v.version) for v in dataset.versions)
            raise DatasetNotFound(f"{name} has no version {number} (its versions: {known})", param="name")

    def list(self) -> builtins.list[DatasetVersion]:
        """Every version of every dataset, by name then version."""
        with self.store.session() as session:
            rows = session.scalars(
                select(DatasetRow).options(selectinload(DatasetRow.versions)).order_by(DatasetRow.name)
            )
            return [self._to_version(d.name, v) for d in rows for v in d.versions]

    def read_table(
        self, version: DatasetVersion, split: str, *, columns: builtins.list[str] | None = None
    ) -> pa.Table:
        """One split as an Arrow table, checked against its recorded digest. Raises CorruptArtifact."""
        if split not in version.splits:
            raise InvalidDataset(
                f"{version.ref} has no split {split!r} (its splits: {', '.join(version.splits)})",
                param="split",
            )
        path = version.split_path(split)
        expected = version.splits[split]["blob"]
        try:
            if columns is None and sha256_file(path) != expected:
                raise CorruptArtifact(f"{version.ref} split {split}: {path.name} does not match its digest")
            return pq.read_table(path, columns=columns)
        except (OSError, pa.ArrowException) as exc:
            raise CorruptArtifact(f"{version.ref} split {split}: cannot read {path.name}: {exc}") from exc

    def read_all(self, version: DatasetVersion) -> dict[str, pa.Table]:
        """Every split of ``version``, in stored order."""
        return {split: self.read_table(version, split) for split in version.splits}

    def row_ids(self, version: DatasetVersion) -> set[int]:
        """The ids of every row of ``version``."""
        return {
            i
            for split in version.splits
            for i in self.read_table(version, split, columns=["id"])["id"].to_pylist()
        }

    def rows(
        self, version: DatasetVersion, offset: int, limit: int, split: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        """Rows ``offset`` to ``offset + limit`` of ``split``, or of every split in order."""
        found: builtins.list[dict[str, Any]] = []
        for name in [split] if split else builtins.list(version.splits):
            size = version.splits[name]["rows"] if name in version.splits else 0
            if offset >= size and split is None:
                offset -= size
                continue
            table = self.read_table(version, name)
            found += table.slice(offset, limit - len(found)).to_pylist()
            offset = 0
            if len(found) >= limit:
                break
        return found

    # ---- writing -------------------------------------------------------------------------------

    def add(
        self,
        name: str,
        tables: dict[str, pa.Table],
        schema: Schema,
        *,
        parents: builtins.list[dict[str, Any]],
        operation: dict[str, Any],
        report: dict[str, Any],
    ) -> DatasetVersion:
        """Store ``tables`` (split -> rows) as the next version of ``name`` (``is_new``).

        Repeating the newest version returns it unchanged (``is_new`` false): an import of the same
        content, or the same operation on the same parent giving the same content.
        """
        name, _ = parse_dataset_ref(name)
        if sum(t.num_rows for t in tables.values()) == 0:
            raise InvalidDataset(f"this would leave {name} with no rows; nothing was written")
        bad = [s for s in tables if not SPLIT_RE.fullmatch(s)]
        if bad:
            raise InvalidDataset(f"invalid split name {bad[0]!r}: use lowercase letters, digits, '_', '-'")
        with self._writing() as work:
            splits: dict[str, dict[str, Any]] = {}
            for split, table in tables.items():
                path = work / f"{split}.parquet"
                write_parquet(table.select(list(schema.columns)).cast(schema.arrow_schema()), path)
                blob, size = self.files.put(path, work, move=True)
                splits[split] = {"blob": blob, "rows": table.num_rows, "size": size}
            digest = version_digest((f"{split}.parquet", s["blob"]) for split, s in splits.items())
            with self.store.session() as session:
                dataset = self._dataset(session, name)
                if dataset is None:
                    dataset = DatasetRow(name=name)
                    session.add(dataset)
                latest = dataset.versions[-1] if dataset.versions else None
                if latest is not None and _is_repeat(latest, digest, parents, operation):
                    return self._to_version(name, latest)
                number = latest.version + 1 if latest is not None else 1
                manifest = {
                    "name": name,
                    "version": number,
                    "digest": digest,
                    "schema": schema.name,
                    "columns": list(schema.columns),
                    "splits": splits,
                    "parents": parents,
                    "operation": operation,
                    "report": report,
                    "created_by": self.actor,
                }
                row = DatasetVersionRow(version=number, digest=digest, schema=schema.name, manifest=manifest)
                dataset.versions.append(row)
                session.flush()
                return replace(self._to_version(name, row), is_new=True)

    @contextmanager
    def _writing(self) -> Iterator[Path]:
        """Hold the lock, clear what crashed writers left (unless opened with ``recover=False``)
        and yield a fresh work folder."""
        with self.files.lock():
            if self.recovers_on_write:
                self._remove_leftovers()
            with self.files.work_dir() as work:
                yield work

    def recover(self) -> None:
        """Remove work folders of dead writers and blobs no committed version references."""
        with self.files.lock():
            self._remove_leftovers()

    def _remove_leftovers(self) -> None:
        """``recover()``'s work; call under the lock."""
        stale, has_live = self.files.tmp_entries()
        for entry in stale:
            self.files.remove_tmp(entry)
        if has_live:  # a writer in flight holds blobs it has not committed yet
            return
        referenced = {s["blob"] for v in self.list() for s in v.splits.values()}
        orphans = self.files.all_blobs() - referenced
        if orphans:
            log.info("removing %d dataset blobs no version references", len(orphans))
            self.files.remove_blobs(orphans)

    # ---- rows to values ------------------------------------------------------------------------

    @staticmethod
    def _dataset(session: Session, name: str) -> DatasetRow | None:
        return session.scalar(
            select(DatasetRow).where(DatasetRow.name == name).options(selectinload(DatasetRow.versions))
        )

    def _to_version(self, name: str, row: DatasetVersionRow) -> DatasetVersion:
        return DatasetVersion(
            name=name,
            version=row.version,
            digest=row.digest,
            schema=row.schema,
            manifest=dict(row.manifest),
            created_at=as_utc(row.created_at),
            blobs_dir=self.files.blobs_dir,
        )
