"""Named crash points for the kill -9 tests of the write paths: blobs, registry, training (RELIABILITY E2).

When ``LLMOS_CRASH_POINT`` names a point, the process dies there with ``os._exit(137)`` — as
abruptly as SIGKILL, no cleanup, no flush — so tests can prove every point leaves a consistent store.
"""

from __future__ import annotations

import os

CRASH_POINT_ENV = "LLMOS_CRASH_POINT"
CRASH_POINTS = (
    "blob_after_tmp_write",  # a blob's temp file is written and fsynced, not yet renamed
    "blob_after_rename_before_db",  # every blob is in place; no snapshot, no row
    "snapshot_after_rename",  # the snapshot folder is published; the row is not committed
    "db_after_commit",  # the row is committed; the work folder is not cleaned up
)


def crash_point(name: str) -> None:
    """Die here, like kill -9, if the environment asks for this crash point (tests only)."""
    if os.environ.get(CRASH_POINT_ENV) == name:
        os._exit(137)
