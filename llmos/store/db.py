"""Opening the metadata database: one engine per URL per process, migrated on first open.

``Store(url)`` is a handle on the process's shared engine for ``url``: the first handle creates
the engine and runs the migrations (``store.migrate``), later ones reuse both. ``close()`` releases
the handle; a database no handle uses keeps its pooled connections for the next open, but only the
few most recently used do (a test run opens hundreds of homes), and a forked child starts with no
inherited connections. SQLite runs in WAL mode with ``synchronous=FULL`` so a committed
row survives kill -9 and power loss; any other SQLAlchemy URL (PostgreSQL) works unchanged.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from llmos.store import migrate

WAL_ATTEMPTS = 50  # ~5 s of retries for the switch to WAL while other processes open a new store


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Busy timeout first, so every statement after it (the WAL switch included) waits for other
    processes' locks; the switch itself can still answer SQLITE_BUSY at once while another process
    opens or recovers the same new file (seen with four processes opening a new store at once), so
    it is retried."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    for attempt in range(WAL_ATTEMPTS):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            is_busy = "locked" in str(exc) or "busy" in str(exc)
            if not is_busy or attempt == WAL_ATTEMPTS - 1:
                raise
            time.sleep(0.1)
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@dataclass(slots=True)
class Database:
    """The process's engine and session factory for one URL, and how many handles use it."""

    url: str
    engine: Engine
    sessions: sessionmaker[Session]
    num_users: int = 0


MAX_NUM_IDLE = 4  # databases without handles that keep their pooled connections

_lock = threading.RLock()  # re-entrant: a handle's finalizer may run while this thread holds it
_databases: dict[str, Database] = {}
_idle: OrderedDict[str, Database] = OrderedDict()  # least recently released first


def _create(url: str) -> Database:
    parsed = make_url(url)
    is_sqlite = parsed.get_backend_name() == "sqlite"
    if is_sqlite and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    if is_sqlite:
        event.listen(engine, "connect", _set_sqlite_pragmas)
    try:
        if not migrate.is_current(engine):
            migrate.upgrade(engine)
    except BaseException:
        engine.dispose()
        raise
    return Database(url, engine, sessionmaker(engine, expire_on_commit=False))


def _acquire(url: str) -> Database:
    with _lock:
        database = _databases.get(url)
        if database is None:
            database = _databases[url] = _create(url)
        database.num_users += 1
        _idle.pop(url, None)
        return database


def _release(database: Database) -> None:
    """Drop one handle; past ``MAX_NUM_IDLE`` unused databases, close the oldest one's connections
    (its engine and migrated state stay for the next open)."""
    with _lock:
        database.num_users -= 1
        if database.num_users > 0 or _databases.get(database.url) is not database:
            return
        _idle[database.url] = database
        while len(_idle) > MAX_NUM_IDLE:
            _, oldest = _idle.popitem(last=False)
            oldest.engine.dispose()


def _forget_after_fork() -> None:
    """In a forked child: drop the parent's pooled connections (SQLite's must not cross a fork)."""
    global _lock
    _lock = threading.RLock()
    for database in _databases.values():
        database.engine.dispose(close=False)
    _databases.clear()
    _idle.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


class Store:
    """A handle on the metadata database at ``url``, shared by every handle in the process."""

    def __init__(self, url: str) -> None:
        self._database = _acquire(url)
        self._finalizer = weakref.finalize(self, _release, self._database)

    @property
    def engine(self) -> Engine:
        """The process's engine for this URL."""
        return self._database.engine

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One unit of work: committed when the block exits cleanly, rolled back otherwise."""
        with self._database.sessions() as session, session.begin():
            yield session

    def close(self) -> None:
        """Release this handle (again: a no-op); other handles on the same database keep working."""
        self._finalizer()
