"""Opening the metadata database: engine, pragmas, schema creation and sessions.

SQLite runs in WAL mode with ``synchronous=FULL`` so a committed row survives kill -9 and power
loss; any other SQLAlchemy URL (PostgreSQL) works unchanged for shared deployments.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from llmos.store.tables import Base


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _create_tables(engine: Engine, attempts: int = 5) -> None:
    """Create missing tables. Two processes opening a new store at once both see a table missing
    and both create it; the loser's "already exists" means the winner did it, so look again."""
    for attempt in range(attempts):
        try:
            Base.metadata.create_all(engine)
            return
        except OperationalError as exc:
            if "already exists" not in str(exc) or attempt == attempts - 1:
                raise


class Store:
    """The metadata database; created (tables included) on first use."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        is_sqlite = parsed.get_backend_name() == "sqlite"
        if is_sqlite and parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url, future=True)
        if is_sqlite:
            event.listen(self.engine, "connect", _set_sqlite_pragmas)
        _create_tables(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One unit of work: committed when the block exits cleanly, rolled back otherwise."""
        with self._sessions() as session, session.begin():
            yield session

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()
