"""Garbage collection of the file store: blobs no version references, snapshot folders no row
lists, and work folders of processes that died. ``Registry.gc`` (``llmos gc``) and the recovery run
before every write use it, under the store lock, with the references read from the database.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmos.store.blobs import BlobStore

log = logging.getLogger(__name__)


@dataclass(slots=True)
class GcReport:
    """What was (or, in a dry run, would be) removed, and the bytes that frees."""

    blobs: list[str] = field(default_factory=list)  # sha256 hex digests
    snapshots: list[str] = field(default_factory=list)  # relative to models_dir
    tmp: list[str] = field(default_factory=list)  # names under models/tmp
    num_bytes: int = 0
    is_dry_run: bool = False
    skipped: str | None = None  # why unreferenced blobs were kept, if they were

    @property
    def num_removed(self) -> int:
        return len(self.blobs) + len(self.snapshots) + len(self.tmp)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.is_dry_run,
            "blobs": self.blobs,
            "snapshots": self.snapshots,
            "tmp": self.tmp,
            "num_removed": self.num_removed,
            "num_bytes": self.num_bytes,
            "skipped": self.skipped,
        }


def _unique_bytes(path: Path) -> int:
    """Bytes a tree holds that no hard link elsewhere shares (what deleting it frees)."""
    if path.is_file() or path.is_symlink():
        st = path.lstat()
        return st.st_size if st.st_nlink == 1 else 0
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            total += st.st_size if st.st_nlink == 1 else 0
    return total


def collect(blobs: BlobStore, paths: set[str], used: set[str], *, dry_run: bool) -> GcReport:
    """Remove what neither ``paths`` (registered snapshots) nor ``used`` (blobs) reference.

    Call under ``blobs.lock()`` with ``paths``/``used`` read under the same lock. Blobs are kept
    while another process has an import in flight: its blobs are written before its row exists.
    """
    report = GcReport(is_dry_run=dry_run)
    orphan_blobs = sorted(blobs.all_blobs() - used)  # listed before the in-flight check: see above
    stale, has_live = blobs.tmp_entries()
    for entry in stale:
        report.tmp.append(entry.name)
        report.num_bytes += _unique_bytes(entry)
        if not dry_run:
            blobs.remove_tmp(entry)
    for snapshot in sorted(blobs.all_snapshots() - paths):  # published only under the lock: crash debris
        report.snapshots.append(snapshot)
        report.num_bytes += _unique_bytes(blobs.root / snapshot)
        if not dry_run:
            log.warning("removing unregistered snapshot %s", snapshot)
            blobs.remove_snapshot(snapshot)
    if has_live:
        report.skipped = "an import is in progress; unreferenced blobs are kept until it finishes"
        return report
    for hex_digest in orphan_blobs:
        report.blobs.append(hex_digest)
        report.num_bytes += blobs.blob_path(hex_digest).stat().st_size
    if orphan_blobs and not dry_run:
        log.info("removing %d unreferenced blob(s)", len(orphan_blobs))
        blobs.remove_blobs(set(orphan_blobs))
    return report
