"""Schema migrations, applied when a process first opens a database: Alembic driven from code.

``upgrade(engine)`` brings the database to the newest revision under a cross-process lock (a file
next to a SQLite database, an advisory lock on PostgreSQL). A store made by llmos 0.1.0's
``create_all`` (tables but no ``alembic_version``) is checked against the first revision and
stamped at it first. An up-to-date database costs one query and never imports Alembic.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, inspect, text

from llmos.errors import CorruptArtifact

try:
    import fcntl
except ImportError:  # Windows: no cross-process lock; single-process use only
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
BASELINE = "0001"  # the schema of llmos 0.1.0, made by create_all before migrations existed
HEAD = "0005"  # the newest revision (a test checks it against the scripts)
VERSION_TABLE = "alembic_version"
_PG_LOCK_KEY = 0x6C6C6D6F73  # "llmos": the advisory lock id migrations hold on PostgreSQL


def current_revision(conn: Connection) -> str | None:
    """The revision the database is at; None when it has no version table (new, or 0.1.0)."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def is_current(engine: Engine) -> bool:
    """Whether the database is already at ``HEAD`` (nothing to do)."""
    with engine.connect() as conn:
        return current_revision(conn) == HEAD


def upgrade(engine: Engine) -> None:
    """Migrate the database to ``HEAD``, adopting a 0.1.0 store first; one process at a time.

    Raises ``CorruptArtifact`` when a table an old release made differs from that release's schema.
    """
    with _lock(engine), engine.begin() as conn:
        if engine.dialect.name == "sqlite":  # pysqlite leaves DDL outside transactions; make it atomic
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        revision = current_revision(conn)
        if revision == HEAD:  # another process migrated while this one waited for the lock
            return
        from alembic import command  # only when there is work to do: it costs start-up time

        config = alembic_config(conn)
        if revision is None and (legacy := _legacy_tables(conn)):
            if _adopt(conn, legacy):  # every baseline table is there: nothing of BASELINE to run
                command.stamp(config, BASELINE)
        command.upgrade(config, "head")
        log.info("migrated %s from %s to %s", engine.url.render_as_string(), revision, HEAD)


def alembic_config(conn: Connection) -> Config:
    """An Alembic ``Config`` for the package's migrations, running on ``conn`` (no alembic.ini)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    return config


def schema_of(conn: Connection) -> dict[str, dict[str, list[Any]]]:
    """What a database's llmos tables are, comparable across backends: per table its columns
    (name, nullable), indexes, unique constraints and foreign keys (with ``ondelete``)."""
    insp = inspect(conn)
    found: dict[str, dict[str, list[Any]]] = {}
    for name in insp.get_table_names():
        if name == VERSION_TABLE:
            continue
        found[name] = {
            "columns": sorted((c["name"], bool(c["nullable"])) for c in insp.get_columns(name)),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(name)
            ),
            "unique": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(name)),
            "foreign_keys": sorted(
                (
                    tuple(f["constrained_columns"]),
                    f["referred_table"],
                    tuple(f["referred_columns"]),
                    (f.get("options") or {}).get("ondelete"),
                )
                for f in insp.get_foreign_keys(name)
            ),
        }
    return found


def _baseline_schema() -> dict[str, dict[str, list[Any]]]:
    """The tables ``BASELINE`` makes, read from a scratch in-memory database migrated to it."""
    from alembic import command

    scratch = create_engine("sqlite://")
    try:
        with scratch.begin() as conn:
            command.upgrade(alembic_config(conn), BASELINE)
            return schema_of(conn)
    finally:
        scratch.dispose()


def _legacy_tables(conn: Connection) -> set[str]:
    """The baseline tables a database without a version table already has (a 0.1.0 store)."""
    from llmos.store.schema import metadata

    return set(inspect(conn).get_table_names()) & set(metadata.tables)


def _adopt(conn: Connection, names: set[str]) -> bool:
    """Check a 0.1.0 store's tables against ``BASELINE``; return whether it has all of them (else
    ``BASELINE`` creates the missing ones: 0.1.0 made a table only when a command used it)."""
    expected, found = _baseline_schema(), schema_of(conn)
    differ = sorted(n for n in names if found[n] != expected.get(n))
    if differ:
        raise CorruptArtifact(
            f"{conn.engine.url.render_as_string()}: table(s) {', '.join(differ)} differ from the schema "
            "llmos 0.1.0 made, so the store cannot be upgraded; back it up and compare it with a new one"
        )
    log.info("adopting a store made before migrations (%d of %d tables)", len(names), len(expected))
    return names == set(expected)


@contextmanager
def _lock(engine: Engine) -> Iterator[None]:
    """A file lock next to a SQLite database (other backends lock inside the transaction)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:" or fcntl is None:
        yield
        return
    with open(f"{Path(database).expanduser()}.lock", "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
