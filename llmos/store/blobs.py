"""The content-addressed file store under ``models/``: blobs, snapshots and temp work folders.

``blobs/sha256-<hex>`` hold the bytes (read-only); ``snapshots/<name>/<version>/`` are plain
Hugging Face folders of hard links to them (copies where links are impossible); ``tmp/<pid>-*``
hold work in flight. Every write is temp file + fsync + ``os.replace`` + directory fsync.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from llmos.errors import CorruptArtifact
from llmos.store.digests import CHUNK_SIZE, is_hex_digest, sha256_file
from llmos.store.faults import crash_point

try:
    import fcntl
except ImportError:  # Windows: no cross-process lock; single-process use only
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)
READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside ``path`` durable (no-op where directories can't be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(dest: Path, text: str) -> Path:
    """Write ``text`` to ``dest`` so a reader sees the old file or the whole new one, never a part
    (a temporary file beside it, fsynced, renamed over it)."""
    write_chunks_atomic(dest, [text.encode("utf-8")])
    return dest


def write_chunks_atomic(dest: Path, chunks: Iterable[bytes]) -> int:
    """``write_text_atomic`` for bytes that arrive in chunks (a download); returns the size."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp"
    size = 0
    try:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
                size += len(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return size


def copy_hashed(src: Path, dest: Path) -> str:
    """Copy ``src`` to ``dest`` (fsynced), hashing the bytes on the way; returns the sha256 hex."""
    digest = hashlib.sha256()
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        while chunk := fin.read(CHUNK_SIZE):
            digest.update(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return digest.hexdigest()


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (owned by anyone): a temp folder's or a job's writer."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class BlobStore:
    """Blobs, snapshots and work folders under one ``models_dir``."""

    def __init__(self, models_dir: Path) -> None:
        self.root = models_dir
        self.blobs_dir = models_dir / "blobs"
        self.snapshots_dir = models_dir / "snapshots"
        self.tmp_dir = models_dir / "tmp"
        for d in (self.blobs_dir, self.snapshots_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)

    def blob_path(self, hex_digest: str) -> Path:
        """The path of a blob; raise ``CorruptArtifact`` for anything but 64 hex characters."""
        if not is_hex_digest(hex_digest):
            raise CorruptArtifact(f"invalid blob digest {hex_digest!r}")
        return self.blobs_dir / f"sha256-{hex_digest}"

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the store's cross-process lock (version numbering, publish, remove, GC)."""
        with open(self.root / ".lock", "a+b") as f:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    @contextmanager
    def work_dir(self) -> Iterator[Path]:
        """A fresh temp folder named after this process; removed when the block exits."""
        path = self.tmp_dir / f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        path.mkdir()
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def put(self, src: Path, work: Path, *, move: bool = False) -> tuple[str, int]:
        """Store ``src`` as a blob and return ``(hex digest, size)``.

        ``move=True`` renames ``src`` (a file already inside a work folder) instead of copying it.
        """
        if move:
            hex_digest, tmp = sha256_file(src), src
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        else:
            hex_digest, tmp = self._copy_hashed(src, work / f"blob-{uuid.uuid4().hex}")
        crash_point("blob_after_tmp_write")
        size = tmp.stat().st_size
        dest = self.blob_path(hex_digest)
        if dest.exists() and dest.stat().st_size == size:
            tmp.unlink()  # same bytes already stored: share the blob
        else:
            os.chmod(tmp, READ_ONLY)
            os.replace(tmp, dest)
            fsync_dir(self.blobs_dir)
        return hex_digest, size

    @staticmethod
    def _copy_hashed(src: Path, tmp: Path) -> tuple[str, Path]:
        return copy_hashed(src, tmp), tmp

    def materialize(self, files: dict[str, str], work: Path) -> Path:
        """Build a snapshot folder of links to the blobs (``filename -> hex``) inside ``work``."""
        snap = work / "snapshot"
        snap.mkdir()
        for filename, hex_digest in files.items():
            dest = snap / filename
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(self.blob_path(hex_digest), dest)
            except OSError:  # e.g. a filesystem without hard links
                shutil.copyfile(self.blob_path(hex_digest), dest)
        for d in sorted({(snap / f).parent for f in files}, key=lambda p: len(p.parts), reverse=True):
            fsync_dir(d)
        return snap

    def publish(self, snap: Path, name: str, version: int) -> Path:
        """Move a built snapshot to ``snapshots/<name>/<version>`` (call under ``lock()``)."""
        final = self.snapshots_dir / name / str(version)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():  # left by a crash before the row was committed
            shutil.rmtree(final)
        os.replace(snap, final)
        fsync_dir(final.parent)
        return final

    def remove_snapshot(self, relpath: str) -> None:
        """Delete a snapshot folder and, if empty, its name folder."""
        path = self.root / relpath
        shutil.rmtree(path, ignore_errors=True)
        try:
            path.parent.rmdir()
        except OSError:
            pass

    def remove_blobs(self, hex_digests: set[str]) -> int:
        """Delete the given blobs; return the bytes freed."""
        freed = 0
        for hex_digest in hex_digests:
            path = self.blob_path(hex_digest)
            try:
                freed += path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
        fsync_dir(self.blobs_dir)
        return freed

    def tmp_entries(self) -> tuple[list[Path], bool]:
        """Work folders of dead processes (stale), and whether live ones (imports in flight) exist."""
        stale, has_live = [], False
        for entry in sorted(self.tmp_dir.iterdir()):
            pid = entry.name.split("-", 1)[0]
            if pid.isdigit() and (int(pid) == os.getpid() or pid_alive(int(pid))):
                has_live = True
            else:
                stale.append(entry)
        return stale, has_live

    def remove_tmp(self, entry: Path) -> None:
        """Delete one stale work folder (or stray file) under ``tmp/``."""
        log.info("removing stale temp %s", entry)
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)

    def all_blobs(self) -> set[str]:
        """Hex digests of every stored blob (stray files with other names are not blobs)."""
        names = (p.name.removeprefix("sha256-") for p in self.blobs_dir.glob("sha256-*"))
        return {name for name in names if is_hex_digest(name)}

    def all_snapshots(self) -> set[str]:
        """Every snapshot folder, as ``snapshots/<name>/<version>`` relative to ``models_dir``."""
        return {str(p.relative_to(self.root)) for p in self.snapshots_dir.glob("*/*") if p.is_dir()}
