"""Batch jobs, as the OpenAI Batch API has them: an input file of requests, one endpoint, a status
that moves validating → in_progress → finalizing → completed (or failed, cancelling → cancelled,
expired), counts, and an output file and an error file at the end.

Each finished line is appended (fsynced) to ``$LLMOS_HOME/batches/<id>/progress.jsonl`` as soon as
its answer is in, so a batch interrupted by a crash or a restart resumes without redoing a line; a
line torn by the crash is simply not there. At the end the output and error files are written in
input order as stored files (temp + fsync + rename), then the batch row names them, then the
progress folder goes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from llmos.batch.files import OUTPUT_PURPOSE, FileInfo, FileStore, epoch, owned, page_after
from llmos.config import Settings
from llmos.errors import BatchNotFound, InvalidRequest
from llmos.store import Store
from llmos.store.batches import BatchRow
from llmos.store.tables import utcnow

logger = logging.getLogger(__name__)

ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
TASK_ENDPOINT_PREFIX = "/v1/tasks/"
TASK_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
COMPLETION_WINDOWS = {"24h": timedelta(hours=24)}
FINAL = frozenset({"completed", "failed", "expired", "cancelled"})
UNFINISHED = ("validating", "in_progress", "finalizing", "cancelling")
MAX_ERRORS_SHOWN = 20  # a failed validation names at most this many bad lines


def check_endpoint(endpoint: str) -> str:
    task = endpoint.removeprefix(TASK_ENDPOINT_PREFIX)
    if endpoint in ENDPOINTS or (task != endpoint and TASK_NAME.fullmatch(task)):
        return endpoint
    raise InvalidRequest(
        f"Unsupported batch endpoint {endpoint!r}; use one of {', '.join(ENDPOINTS)} or /v1/tasks/<task>.",
        param="endpoint",
    )


@dataclass(frozen=True, slots=True)
class BatchLine:
    """One request of an input file: its 1-based line number, id, and what to send."""

    number: int
    custom_id: str
    url: str
    body: dict[str, Any]


def parse_input(path: Path, endpoint: str, max_lines: int) -> tuple[list[BatchLine], list[dict[str, Any]]]:
    """The lines of a batch input file, and OpenAI-style errors (``code``, ``message``, ``line``,
    ``param``) for every line that breaks the format: not JSON, no ``custom_id`` or a repeated one,
    a method other than POST, a url other than the batch's endpoint, a body that is not an object."""
    lines: list[BatchLine] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()

    def bad(number: int, code: str, message: str, param: str | None = None) -> None:
        errors.append({"code": code, "message": message, "line": number, "param": param})

    with open(path, encoding="utf-8", errors="replace") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                item = json.loads(raw)
            except json.JSONDecodeError as exc:
                bad(number, "invalid_json_line", f"Line {number} is not JSON: {exc.msg}.")
                continue
            if not isinstance(item, dict):
                bad(number, "invalid_json_line", f"Line {number} is not a JSON object.")
                continue
            custom_id = item.get("custom_id")
            if not isinstance(custom_id, str) or not custom_id:
                bad(number, "missing_required_parameter", f"Line {number} has no custom_id.", "custom_id")
                continue
            if custom_id in seen:
                bad(number, "duplicate_custom_id", f"custom_id {custom_id!r} is used twice.", "custom_id")
                continue
            seen.add(custom_id)
            if str(item.get("method", "")).upper() != "POST":
                bad(number, "invalid_method", f"Line {number}: method must be POST.", "method")
                continue
            if item.get("url") != endpoint:
                bad(
                    number,
                    "mismatched_endpoint",
                    f"Line {number}: url {item.get('url')!r} is not the batch's endpoint {endpoint}.",
                    "url",
                )
                continue
            body = item.get("body")
            if not isinstance(body, dict):
                bad(number, "invalid_body", f"Line {number}: body must be a JSON object.", "body")
                continue
            lines.append(BatchLine(number, custom_id, endpoint, body))
    if not lines and not errors:
        errors.append(
            {"code": "empty_file", "message": "The input file has no requests.", "line": None, "param": None}
        )
    if len(lines) > max_lines:
        errors.append(
            {
                "code": "too_many_requests",
                "message": f"The input file has {len(lines)} requests; "
                f"at most {max_lines} (LLMOS_MAX_BATCH_LINES).",
                "line": None,
                "param": None,
            }
        )
    return lines, errors


@dataclass(slots=True)
class BatchInfo:
    id: str
    status: str
    endpoint: str
    input_file_id: str
    completion_window: str
    key_id: str | None
    metadata: dict[str, Any] | None
    total: int
    completed: int
    failed: int
    output_file_id: str | None
    error_file_id: str | None
    errors: list[dict[str, Any]] | None
    created_at: datetime
    expires_at: datetime | None
    times: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: BatchRow) -> BatchInfo:
        return cls(
            row.id,
            row.status,
            row.endpoint,
            row.input_file_id,
            row.completion_window,
            row.key_id,
            row.batch_metadata,
            row.total,
            row.completed,
            row.failed,
            row.output_file_id,
            row.error_file_id,
            row.errors,
            row.created_at,
            row.expires_at,
            dict(row.times or {}),
        )

    @property
    def is_final(self) -> bool:
        return self.status in FINAL

    def to_openai(self) -> dict[str, Any]:
        """OpenAI's ``Batch`` object."""
        stamps = ("in_progress", "finalizing", "completed", "failed", "expired", "cancelling", "cancelled")
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": None if not self.errors else {"object": "list", "data": self.errors},
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": epoch(self.created_at),
            "expires_at": epoch(self.expires_at),
            **{f"{s}_at": self.times.get(f"{s}_at") for s in stamps},
            "request_counts": {"total": self.total, "completed": self.completed, "failed": self.failed},
            "metadata": self.metadata,
        }


def result_line(line: BatchLine, status: int, body: Any, request_id: str) -> dict[str, Any]:
    """One line of the output (2xx) or error file, in OpenAI's shape."""
    return {
        "id": f"batch_req_{secrets.token_hex(12)}",
        "custom_id": line.custom_id,
        "response": {"status_code": status, "request_id": request_id, "body": body},
        "error": None,
    }


class Progress:
    """A batch's finished lines so far: read back on resume, appended (and fsynced) per line."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.done: dict[str, dict[str, Any]] = {}
        self.num_ok = 0
        self._lock = threading.Lock()  # lines finish on several worker threads
        if path.exists():
            self._load()
        self._file = open(path, "a", encoding="utf-8")

    @property
    def num_failed(self) -> int:
        return len(self.done) - self.num_ok

    def _keep(self, item: dict[str, Any]) -> None:
        previous = self.done.get(item["custom_id"])
        self.num_ok += Progress.is_ok(item) - (previous is not None and Progress.is_ok(previous))
        self.done[item["custom_id"]] = item

    def _load(self) -> None:
        good = 0  # bytes of whole lines; a torn tail (a crash mid-write) is cut off
        with open(self.path, "rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    break
                try:
                    item = json.loads(raw)
                except json.JSONDecodeError:
                    break
                self._keep(item)
                good += len(raw)
        if good != self.path.stat().st_size:
            with open(self.path, "r+b") as f:
                f.truncate(good)
                os.fsync(f.fileno())

    def add(self, item: dict[str, Any]) -> None:
        line = json.dumps(item, ensure_ascii=False) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())
            self._keep(item)

    def close(self) -> None:
        self._file.close()

    @staticmethod
    def is_ok(item: dict[str, Any]) -> bool:
        response = item.get("response") or {}
        return item.get("error") is None and 200 <= int(response.get("status_code", 0)) < 300


class BatchStore:
    def __init__(self, settings: Settings, files: FileStore | None = None):
        self.settings = settings
        self.root = settings.home / "batches"
        self.store = Store(settings.database_url)
        self.files = files or FileStore(settings, self.store)
        self._owns_files = files is None

    def close(self) -> None:
        if self._owns_files:
            self.files.close()
        self.store.close()

    # --- the API's side ----------------------------------------------------------------------
    def create(
        self,
        input_file_id: str,
        endpoint: str,
        completion_window: str = "24h",
        metadata: dict[str, Any] | None = None,
        key_id: str | None = None,
        owner: str | None = None,
    ) -> BatchInfo:
        """A new batch (status ``validating``: the runner checks its lines); raises for an unknown
        endpoint or window, or an input file that is not ``owner``'s or not a batch input."""
        check_endpoint(endpoint)
        window = COMPLETION_WINDOWS.get(completion_window)
        if window is None:
            raise InvalidRequest(
                f"Unsupported completion_window {completion_window!r}; use {', '.join(COMPLETION_WINDOWS)}.",
                param="completion_window",
            )
        if metadata is not None and (
            len(metadata) > 16
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
        ):
            raise InvalidRequest("metadata: at most 16 string keys with string values.", param="metadata")
        source = self.files.get(input_file_id, owner)
        if source.purpose != "batch":
            raise InvalidRequest(
                f"File {input_file_id} has purpose {source.purpose!r}; "
                "upload the input with purpose 'batch'.",
                param="input_file_id",
            )
        now = utcnow()
        row = BatchRow(
            id=f"batch_{secrets.token_hex(12)}",
            status="validating",
            endpoint=endpoint,
            input_file_id=input_file_id,
            completion_window=completion_window,
            key_id=key_id,
            batch_metadata=metadata,
            total=0,
            completed=0,
            failed=0,
            created_at=now,
            expires_at=now + window,
            times={},
        )
        with self.store.session() as session:
            session.add(row)
        return BatchInfo.from_row(row)

    def get(self, batch_id: str, owner: str | None = None) -> BatchInfo:
        with self.store.session() as session:
            row = session.get(BatchRow, batch_id)
            if not owned(row, owner):
                raise BatchNotFound(f"No batch {batch_id!r}.", param="batch_id")
            return BatchInfo.from_row(row)

    def page(
        self, owner: str | None = None, limit: int = 20, after: str | None = None
    ) -> tuple[list[BatchInfo], bool]:
        """Newest first; ``limit`` of them after the batch ``after``, and whether there are more."""
        with self.store.session() as session:
            query = select(BatchRow).order_by(BatchRow.created_at.desc(), BatchRow.id.desc())
            if owner is not None:
                query = query.where(BatchRow.key_id == owner)
            rows = [BatchInfo.from_row(r) for r in session.scalars(query)]
        return page_after(rows, after, limit)

    def cancel(self, batch_id: str, owner: str | None = None) -> BatchInfo:
        """Ask the runner to stop (``cancelling``; it finishes the lines in flight, then writes what
        is done and turns ``cancelled``). A final batch cannot be cancelled (400)."""
        with self.store.session() as session:
            row = session.get(BatchRow, batch_id)
            if not owned(row, owner):
                raise BatchNotFound(f"No batch {batch_id!r}.", param="batch_id")
            if row.status in FINAL:
                raise InvalidRequest(f"Batch {batch_id} is already {row.status}; it cannot be cancelled.")
            if row.status != "cancelling":
                row.status = "cancelling"
                row.times = {**(row.times or {}), "cancelling_at": epoch(utcnow()) or 0}
            return BatchInfo.from_row(row)

    # --- the runner's side -------------------------------------------------------------------
    def unfinished(self) -> list[BatchInfo]:
        """Batches still to run or to finish, oldest first (a restart picks them up)."""
        with self.store.session() as session:
            query = select(BatchRow).where(BatchRow.status.in_(UNFINISHED)).order_by(BatchRow.created_at)
            return [BatchInfo.from_row(r) for r in session.scalars(query)]

    def update(self, batch_id: str, status: str | None = None, **values: Any) -> BatchInfo:
        """Set ``values`` (and move to ``status``, stamping ``<status>_at``) — unless the batch is
        being cancelled, which only ``cancelled`` may follow."""
        with self.store.session() as session:
            row = session.get(BatchRow, batch_id)
            if row is None:
                raise BatchNotFound(f"No batch {batch_id!r}.", param="batch_id")
            for name, value in values.items():
                setattr(row, name, value)
            if status is not None and status != row.status:
                if row.status != "cancelling" or status == "cancelled":
                    row.status = status
                    row.times = {**(row.times or {}), f"{status}_at": epoch(utcnow()) or 0}
            return BatchInfo.from_row(row)

    def input_path(self, batch: BatchInfo) -> Path:
        return self.files.path(batch.input_file_id)

    def progress(self, batch_id: str) -> Progress:
        return Progress(self.root / batch_id / "progress.jsonl")

    def finish(self, batch: BatchInfo, lines: list[BatchLine], progress: Progress, status: str) -> BatchInfo:
        """Write the output and error files from ``progress`` in input order, name them in the
        batch row with its final counts and ``status``, then drop the progress folder."""
        ok = [progress.done[ln.custom_id] for ln in lines if ln.custom_id in progress.done]
        good = [item for item in ok if Progress.is_ok(item)]
        bad = [item for item in ok if not Progress.is_ok(item)]
        retention = self.settings.batch_retention_days
        expires = utcnow() + timedelta(days=retention) if retention > 0 else None
        self.update(batch.id, "finalizing")
        output = self._store_lines(good, f"{batch.id}_output.jsonl", batch.key_id, expires)
        errors = self._store_lines(bad, f"{batch.id}_error.jsonl", batch.key_id, expires)
        if expires is not None:
            self.files.expire_later(batch.input_file_id, expires)
        progress.close()
        info = self.update(
            batch.id,
            status,
            output_file_id=output.id if output else None,
            error_file_id=errors.id if errors else None,
            completed=len(good),
            failed=len(bad),
        )
        shutil.rmtree(self.root / batch.id, ignore_errors=True)
        return info

    def _store_lines(
        self, items: list[dict[str, Any]], filename: str, key_id: str | None, expires: datetime | None
    ) -> FileInfo | None:
        if not items:
            return None

        def chunks() -> Iterator[bytes]:
            for item in items:
                yield (json.dumps(item, ensure_ascii=False) + "\n").encode()

        return self.files.put(
            chunks(),
            filename=filename,
            purpose=OUTPUT_PURPOSE,
            key_id=key_id,
            expires_at=expires,
            limit=1 << 62,
        )
