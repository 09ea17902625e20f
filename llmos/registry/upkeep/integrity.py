"""Checking stored bytes against manifests: re-hash each file of a version and name what is wrong.

Used when a version is loaded (``Registry.verify``: first problem raises) and by ``llmos verify``
(every problem of every version reported). Files shared through hard links are hashed once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmos.registry.model_version import ModelVersion
from llmos.store.blobs import BlobStore
from llmos.store.digests import sha256_file


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
    """sha256 of files, remembered per inode so hard-linked copies are read once per run."""

    def __init__(self) -> None:
        self._known: dict[tuple[int, int, int, int], str] = {}

    def sha256(self, path: Path) -> str:
        st = os.stat(path)
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if key not in self._known:
            self._known[key] = sha256_file(path)
        return self._known[key]


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
