"""Who and when, the same way everywhere a row is written: UTC timestamps and the acting user.

Shared by the registry's event log, datasets and annotations (and anything else that records an
actor), so every table reads its times back timezone-aware.
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def as_utc(when: datetime) -> datetime:
    """``when`` with its timezone (SQLite hands timestamps back naive; they were stored in UTC)."""
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def current_user() -> str:
    """Who is acting: the login name, or ``unknown`` where the OS cannot say (some containers)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER: still record the change
        return "unknown"
