"""Checking stored bytes against manifests: re-hash each file of a version and name what is wrong.

Used when a version is loaded (``Registry.verify``: first problem raises) and by ``llmos verify``
(every problem of every version reported). Files shared through hard links are hashed once.

Loading remembers what it hashed, as git's index does: a file whose device, inode, size, mtime and
ctime are those it had when last hashed is not read again (a 2.4 GB snapshot costs seconds to hash
on every load). Any write, rename over, chmod or re-link changes ctime, which no user call can set
back, so a changed file is always re-hashed. ``llmos verify`` never trusts the record.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmos.registry.model_version import ModelVersion
from llmos.store.blobs import BlobStore, write_text_atomic
from llmos.store.digests import sha256_file

REMEMBERED_FILE = "verified.json"  # beside blobs/ and snapshots/ in the models folder
MAX_REMEMBERED = 4096  # files: more than any store's snapshots hold, so the record stays small


@dataclass(frozen=True, slots=True)
class FileProblem:
    """One bad file: ``missing`` (snapshot file gone), ``mismatch`` (bytes changed), ``blob_missing``."""

    ref: str
    filename: str
    problem: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"ref": self.ref, "filename": self.filename, "problem": self.problem, "message": self.message}


@dataclass(slots=True)
class VerifyReport:
    """The outcome of re-hashing many versions; ``is_ok`` when nothing is wrong."""

    refs: list[str] = field(default_factory=list)
    num_files: int = 0
    num_bytes: int = 0
    problems: list[FileProblem] = field(default_factory=list)

    @property
    def is_ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.is_ok,
            "versions": self.refs,
            "num_files": self.num_files,
            "num_bytes": self.num_bytes,
            "problems": [p.to_dict() for p in self.problems],
        }


class FileHasher:
    """sha256 of files, remembered per inode so hard-linked copies are read once per run; given a
    ``record`` file, also across runs (``save`` writes it)."""

    def __init__(self, record: Path | None = None) -> None:
        self._record = record
        self._known: dict[str, str] = _read_record(record) if record is not None else {}
        self._changed = False

    def sha256(self, path: Path) -> str:
        st = os.stat(path)
        key = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
        if key not in self._known:
            self._known[key] = sha256_file(path)
            self._changed = True
        return self._known[key]

    def save(self) -> None:
        """Write the record (the most recent ``MAX_REMEMBERED`` files); a store on a read-only
        disk simply hashes again next time."""
        if self._record is None or not self._changed:
            return
        recent = dict(list(self._known.items())[-MAX_REMEMBERED:])
        try:
            write_text_atomic(self._record, json.dumps(recent))
        except OSError:
            pass


def _read_record(path: Path) -> dict[str, str]:
    """The remembered digests; empty when there are none yet or the file is unreadable."""
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(known, dict):
        return {}
    return {k: v for k, v in known.items() if isinstance(k, str) and isinstance(v, str)}


def check_version(mv: ModelVersion, hasher: FileHasher, blobs: BlobStore | None = None) -> list[FileProblem]:
    """The problems of ``mv``'s snapshot files (and, given ``blobs``, of the blobs behind them)."""
    problems: list[FileProblem] = []
    for filename, info in sorted(mv.manifest.files.items()):
        expected, path = info.blob, mv.path / filename
        if not path.is_file():
            message = f"{mv.ref}: {filename} is missing from {mv.path}; pull or import again"
            problems.append(FileProblem(mv.ref, filename, "missing", message))
            continue
        if hasher.sha256(path) != expected:
            message = (
                f"{mv.ref}: {filename} does not match its recorded digest (the file was changed or "
                f"damaged); run `llmos rm {mv.ref} -y --force` and pull or import it again"
            )
            problems.append(FileProblem(mv.ref, filename, "mismatch", message))
            continue
        if blobs is None:
            continue
        blob = blobs.blob_path(expected)
        if not blob.is_file() or hasher.sha256(blob) != expected:
            message = (
                f"{mv.ref}: the stored blob of {filename} is missing or damaged (the snapshot file is "
                "intact); import the model again to restore it"
            )
            problems.append(FileProblem(mv.ref, filename, "blob_missing", message))
    return problems
