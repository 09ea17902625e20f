"""Usage accounting: one append-only row per finished request, daily rollups per key and model kept
in the same transaction, and retention by dropping whole days of rows (the rollups stay).

The server hands finished requests to a ``UsageWriter``, which writes them from its own thread in
batches (one transaction, one fsync, for everything that finished since the last write), so
accounting never sits on a request's path. ``UsageLog`` answers the queries: totals by day, model
or key (from the rollups), single rows by request id, and a key's spend since a time (budgets).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from llmos.errors import InvalidRequest
from llmos.monitor.requests import RequestRecord
from llmos.store import Store
from llmos.store.access import UsageDailyRow, UsageRow
from llmos.store.audit import as_utc

log = logging.getLogger(__name__)

GROUPS = ("day", "model", "key")


def day_of(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d")


def parse_since(text: str | None, now: datetime | None = None) -> datetime | None:
    """``7d``, ``12h``, ``30m``, ``2w`` or an ISO date/time, as a UTC datetime (None for None)."""
    if not text:
        return None
    now = now or datetime.now(UTC)
    units = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    number, unit = text[:-1], text[-1:].lower()
    if unit in units and number.isdigit():
        return now - timedelta(**{units[unit]: int(number)})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(
            f"--since {text!r}: use a span like 7d, 12h, 30m, 2w or a date like 2026-12-01.", param="since"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def row_of(record: RequestRecord) -> dict[str, Any]:
    """The usage row of a finished request."""
    return {
        "created_at": record.started_at,
        "day": day_of(record.started_at),
        "request_id": record.request_id,
        "key_id": record.key_id,
        "route": (record.route or record.path)[:128],
        "model": record.model,
        "status": record.status or 0,
        "error_code": record.error_code,
        "prompt_tokens": record.prompt_tokens,
        "cached_tokens": record.cached_tokens,
        "completion_tokens": record.completion_tokens,
        "queue_ms": record.queue_ms,
        "ttft_ms": record.ttft_ms,
        "e2e_ms": record.e2e_ms,
        "finish_reason": record.finish_reason,
    }


class UsageLog:
    def __init__(self, store: Store):
        self.store = store

    def write(self, rows: Iterable[dict[str, Any]]) -> int:
        """Append ``rows`` and add them to their days' rollups, all in one transaction."""
        rows = list(rows)
        if not rows:
            return 0
        sums: dict[tuple[str, str, str], list[int]] = {}
        for r in rows:
            s = sums.setdefault((r["day"], r["key_id"] or "", r["model"] or ""), [0, 0, 0, 0, 0])
            s[0] += 1
            s[1] += r["status"] >= 400
            s[2] += r["prompt_tokens"]
            s[3] += r["cached_tokens"]
            s[4] += r["completion_tokens"]
        with self.store.session() as session:
            session.add_all(UsageRow(**r) for r in rows)
            for (day, key_id, model), s in sums.items():
                _add_to_rollup(session, day, key_id, model, s)
        return len(rows)

    def records(
        self,
        *,
        request_id: str | None = None,
        key_id: str | None = None,
        model: str | None = None,
        since: datetime | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Single rows, newest first."""
        query = select(UsageRow).order_by(UsageRow.id.desc()).limit(limit)
        if request_id is not None:
            query = query.where(UsageRow.request_id == request_id)
        if key_id is not None:
            query = query.where(UsageRow.key_id == key_id)
        if model is not None:
            query = query.where(UsageRow.model == model)
        if since is not None:
            query = query.where(UsageRow.created_at >= since)
        columns = [c.name for c in UsageRow.__table__.columns if c.name not in ("id", "day")]
        with self.store.session() as session:
            out = []
            for row in session.scalars(query):
                item = {c: getattr(row, c) for c in columns}
                item["created_at"] = as_utc(row.created_at).isoformat()
                out.append(item)
            return out

    def summary(
        self,
        *,
        by: str = "day",
        key_id: str | None = None,
        model: str | None = None,
        since: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Totals per day, model or key from the rollups (``since`` counts from its whole day)."""
        if by not in GROUPS:
            raise InvalidRequest(f"--by {by!r}: use one of {', '.join(GROUPS)}.", param="by")
        column = {"day": UsageDailyRow.day, "model": UsageDailyRow.model, "key": UsageDailyRow.key_id}[by]
        d = UsageDailyRow
        query = select(
            column,
            func.sum(d.requests),
            func.sum(d.errors),
            func.sum(d.prompt_tokens),
            func.sum(d.cached_tokens),
            func.sum(d.completion_tokens),
        ).group_by(column)
        query = query.order_by(column)
        if key_id is not None:
            query = query.where(d.key_id == key_id)
        if model is not None:
            query = query.where(d.model == model)
        if since is not None:
            query = query.where(d.day >= day_of(since))
        with self.store.session() as session:
            return [
                {
                    by: group or None,
                    "requests": int(requests or 0),
                    "errors": int(errors or 0),
                    "prompt_tokens": int(prompt or 0),
                    "cached_tokens": int(cached or 0),
                    "completion_tokens": int(completion or 0),
                    "total_tokens": int((prompt or 0) + (completion or 0)),
                }
                for group, requests, errors, prompt, cached, completion in session.execute(query)
            ]

    def tokens_since(self, key_id: str, start: datetime) -> int:
        """Prompt plus completion tokens ``key_id`` used from ``start`` (a UTC midnight) on."""
        d = UsageDailyRow
        query = select(func.sum(d.prompt_tokens + d.completion_tokens)).where(
            d.key_id == key_id, d.day >= day_of(start)
        )
        with self.store.session() as session:
            return int(session.scalar(query) or 0)

    def drop_before(self, day: str) -> int:
        """Delete the rows of every day before ``day`` (YYYY-MM-DD); the rollups stay."""
        with self.store.session() as session:
            result = session.execute(delete(UsageRow).where(UsageRow.day < day))
            return int(getattr(result, "rowcount", 0) or 0)


def _add_to_rollup(session: Session, day: str, key_id: str, model: str, s: list[int]) -> None:
    """Add to one rollup row, made if missing (an upsert, so two writers never collide)."""
    values = {
        "day": day,
        "key_id": key_id,
        "model": model,
        "requests": s[0],
        "errors": s[1],
        "prompt_tokens": s[2],
        "cached_tokens": s[3],
        "completion_tokens": s[4],
    }
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = session.get_bind().dialect.name
    insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    d: Any = UsageDailyRow.__table__
    statement = insert(d).values(**values)
    counted = ("requests", "errors", "prompt_tokens", "cached_tokens", "completion_tokens")
    statement = statement.on_conflict_do_update(
        index_elements=["day", "key_id", "model"],
        set_={c: d.c[c] + statement.excluded[c] for c in counted},
    )
    session.execute(statement)


class UsageWriter:
    """Writes usage rows from a background thread in batches; ``flush()`` waits until every row
    handed over so far is committed (tests, shutdown)."""

    def __init__(self, usage: UsageLog, interval: float = 0.25):
        self.usage = usage
        self.interval = interval
        self._queue: queue.SimpleQueue[dict[str, Any] | threading.Event | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="llmos-usage", daemon=True)
        self._thread.start()

    def submit(self, row: dict[str, Any]) -> None:
        self._queue.put(row)

    def flush(self, timeout: float = 30.0) -> None:
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        stop = False
        while not stop:
            batch: list[dict[str, Any]] = []
            waiters: list[threading.Event] = []
            item = self._queue.get()
            while True:
                if item is None:
                    stop = True
                elif isinstance(item, threading.Event):
                    waiters.append(item)
                else:
                    batch.append(item)
                try:
                    item = self._queue.get(timeout=self.interval if batch and not waiters else 0.0)
                except queue.Empty:
                    break
            try:
                self.usage.write(batch)
            except Exception:  # accounting must not take the server down; the log says what was lost
                log.exception("could not write %d usage rows", len(batch))
            for waiter in waiters:
                waiter.set()
