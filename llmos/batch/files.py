"""Stored files, as the OpenAI Files API has them: a batch's input uploaded by a client, and the
output and error files a batch writes.

The bytes live in ``$LLMOS_HOME/files/<file id>``, written to a temporary name (hashed on the way,
fsynced, renamed), and only then get their row, so a row always names a whole file. A file left
without a row by a crash, or a temporary one whose writer is gone, is swept when the store opens.
Each file belongs to the key that made it; ``owner=None`` (an admin) sees every file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sqlalchemy import select
from typing_extensions import TypeIs

from llmos.config import Settings
from llmos.errors import FileNotFound, InvalidRequest, PayloadTooLarge
from llmos.store import Store
from llmos.store.batches import BatchRow, FileRow
from llmos.store.blobs import fsync_dir, pid_alive
from llmos.store.tables import utcnow

logger = logging.getLogger(__name__)

UPLOAD_PURPOSES = ("batch",)  # what a client may upload; a batch's own files are "batch_output"
OUTPUT_PURPOSE = "batch_output"
TMP_PREFIX = ".tmp-"
R = TypeVar("R", FileRow, BatchRow)  # a row with an owner (key_id)
Item = TypeVar("Item", bound="_HasId")


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


def epoch(when: datetime | None) -> int | None:
    """Unix seconds, as the OpenAI objects carry times (SQLite hands datetimes back naive, in UTC)."""
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


def owned(row: R | None, owner: str | None) -> TypeIs[R]:
    """Whether ``row`` exists and ``owner`` may see it (``None``: an admin, who sees every row)."""
    return row is not None and (owner is None or row.key_id == owner)


def page_after(items: list[Item], after: str | None, limit: int) -> tuple[list[Item], bool]:
    """OpenAI's cursor paging over ``items`` (newest first): up to ``limit`` of those after the one
    whose id is ``after``, and whether more follow."""
    if after is not None:
        ids = [item.id for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    return items[:limit], len(items) > limit


@dataclass(frozen=True, slots=True)
class FileInfo:
    id: str
    purpose: str
    filename: str
    bytes: int
    sha256: str
    key_id: str | None
    created_at: datetime
    expires_at: datetime | None

    @classmethod
    def from_row(cls, row: FileRow) -> FileInfo:
        return cls(
            row.id,
            row.purpose,
            row.filename,
            row.bytes,
            row.sha256,
            row.key_id,
            row.created_at,
            row.expires_at,
        )

    def to_openai(self) -> dict[str, Any]:
        """OpenAI's ``FileObject``."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": epoch(self.created_at),
            "expires_at": epoch(self.expires_at),
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }


class FileStore:
    def __init__(self, settings: Settings, store: Store | None = None):
        self.root = settings.home / "files"
        self.max_bytes = settings.max_file_bytes
        self.store = store or Store(settings.database_url)
        self._owns_store = store is None
        self.root.mkdir(parents=True, exist_ok=True)
        self._sweep()

    def close(self) -> None:
        if self._owns_store:
            self.store.close()

    def path(self, file_id: str) -> Path:
        return self.root / file_id

    # --- writing ---------------------------------------------------------------------------
    def put(
        self,
        chunks: Iterable[bytes],
        *,
        filename: str,
        purpose: str,
        key_id: str | None,
        expires_at: datetime | None = None,
        limit: int | None = None,
    ) -> FileInfo:
        """Store ``chunks`` as a new file; raises PayloadTooLarge past ``limit`` bytes (default
        ``LLMOS_MAX_FILE_BYTES``; nothing is kept) and InvalidRequest for an empty file."""
        limit = self.max_bytes if limit is None else limit
        file_id = f"file-{secrets.token_hex(12)}"
        tmp = self.root / f"{TMP_PREFIX}{os.getpid()}-{file_id}"
        digest, size = hashlib.sha256(), 0
        try:
            with open(tmp, "wb") as out:
                for chunk in chunks:
                    size += len(chunk)
                    if size > limit:
                        raise PayloadTooLarge(
                            f"The file is larger than {limit} bytes (LLMOS_MAX_FILE_BYTES).", param="file"
                        )
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if size == 0:
                raise InvalidRequest("The file is empty.", param="file")
            os.replace(tmp, self.path(file_id))
            fsync_dir(self.root)
        finally:
            tmp.unlink(missing_ok=True)
        row = FileRow(
            id=file_id,
            purpose=purpose,
            filename=Path(filename).name[:256] or "upload.jsonl",
            bytes=size,
            sha256=digest.hexdigest(),
            key_id=key_id,
            created_at=utcnow(),
            expires_at=expires_at,
        )
        try:
            with self.store.session() as session:
                session.add(row)
        except BaseException:
            self.path(file_id).unlink(missing_ok=True)
            raise
        return FileInfo.from_row(row)

    # --- reading ---------------------------------------------------------------------------
    def get(self, file_id: str, owner: str | None = None) -> FileInfo:
        """The file ``file_id``; 404 when there is none or it belongs to another key than ``owner``."""
        with self.store.session() as session:
            row = session.get(FileRow, file_id)
            if not owned(row, owner):
                raise FileNotFound(f"No file {file_id!r}.", param="file_id")
            return FileInfo.from_row(row)

    def read(self, file_id: str, owner: str | None = None) -> Iterator[bytes]:
        """The file's bytes in chunks (after the ownership check)."""
        self.get(file_id, owner)
        return _chunks(self.path(file_id))

    def page(
        self, owner: str | None = None, purpose: str | None = None, limit: int = 100, after: str | None = None
    ) -> tuple[list[FileInfo], bool]:
        """Newest first, ``limit`` of them after the file ``after``; and whether there are more."""
        with self.store.session() as session:
            query = select(FileRow).order_by(FileRow.created_at.desc(), FileRow.id.desc())
            if owner is not None:
                query = query.where(FileRow.key_id == owner)
            if purpose:
                query = query.where(FileRow.purpose == purpose)
            rows = [FileInfo.from_row(r) for r in session.scalars(query)]
        return page_after(rows, after, limit)

    # --- deleting --------------------------------------------------------------------------
    def delete(self, file_id: str, owner: str | None = None) -> FileInfo:
        with self.store.session() as session:
            row = session.get(FileRow, file_id)
            if not owned(row, owner):
                raise FileNotFound(f"No file {file_id!r}.", param="file_id")
            info = FileInfo.from_row(row)
            session.delete(row)
        self.path(file_id).unlink(missing_ok=True)
        return info

    def expire_later(self, file_id: str, expires_at: datetime) -> None:
        """Give a file without an expiry one (a finished batch's input goes with its outputs)."""
        with self.store.session() as session:
            row = session.get(FileRow, file_id)
            if row is not None and row.expires_at is None:
                row.expires_at = expires_at

    def expire(self, now: datetime | None = None) -> list[str]:
        """Delete every file whose ``expires_at`` has passed; their ids."""
        now = now or utcnow()
        with self.store.session() as session:
            rows = session.scalars(select(FileRow).where(FileRow.expires_at.is_not(None))).all()
            gone = [r.id for r in rows if epoch(r.expires_at) <= epoch(now)]  # type: ignore[operator]
        for file_id in gone:
            self.delete(file_id)
        return gone

    def _sweep(self) -> None:
        """Remove temporary files of writers that are gone, and files that never got their row."""
        with self.store.session() as session:
            known = set(session.scalars(select(FileRow.id)))
        for entry in self.root.iterdir():
            name = entry.name
            if name.startswith(TMP_PREFIX):
                pid = name[len(TMP_PREFIX) :].split("-", 1)[0]
                if pid.isdigit() and pid_alive(int(pid)):
                    continue
            elif name in known or not name.startswith("file-") or _is_recent(entry):
                continue  # a recent one may be another process's, between its rename and its row
            logger.info("removing %s, left by an interrupted write", entry)
            entry.unlink(missing_ok=True)


def _is_recent(path: Path, seconds: float = 60.0) -> bool:
    import time

    try:
        return time.time() - path.stat().st_mtime < seconds
    except OSError:
        return True


def _chunks(path: Path, size: int = 1 << 16) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(size):
            yield chunk
