"""The OpenAI Files and Batch APIs (``/v1/files``, ``/v1/batches``) and the runner that works
through batches inside the server.

Each line of a batch is sent through this same app in-process, as an HTTP request of its own, so it
meets everything an interactive request meets — validation, the key's scopes, model allow-list,
limits and budget, guardrails, metrics, the access log and a usage row under the submitting key —
with two differences set in the ASGI scope, which no client can reach: the principal is the
submitter's (looked up again for every line, so a revoked key stops its batch), and the engine
priority is ``BATCH_PRIORITY``, so interactive requests are admitted first. A line answered 429
(a limit) or 503 (loading, draining) is retried after ``Retry-After``; other answers are final and
land in the output file (2xx) or the error file. Files and batches belong to the key that made
them; a key with the admin scope sees all of them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from contextlib import suppress
from datetime import datetime
from typing import Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from llmos.access.scopes import Principal
from llmos.batch import BatchInfo, BatchLine, BatchStore, Progress, parse_input, result_line
from llmos.batch.files import UPLOAD_PURPOSES, epoch
from llmos.batch.from_dataset import DatasetTaskBatch, input_lines, plan
from llmos.batch.jobs import MAX_ERRORS_SHOWN
from llmos.config import Settings
from llmos.engine.request import BATCH_PRIORITY
from llmos.errors import Forbidden, InvalidRequest, LLMOSError
from llmos.server.access import AccessControl, audit, current_principal
from llmos.server.auth import check_model, requires
from llmos.server.middleware import INTERNAL_BATCH, INTERNAL_PRINCIPAL, INTERNAL_PRIORITY
from llmos.store.tables import utcnow

logger = logging.getLogger(__name__)

router = APIRouter(tags=["batch"])

POLL_SECONDS = 5.0  # how often the runner looks for work it was not told about
EXPIRE_EVERY_SECONDS = 3600.0  # how often expired files are deleted
MAX_ATTEMPTS = 30  # a line refused with 429/503 is retried this often before it counts as failed
MAX_RETRY_WAIT_SECONDS = 30.0
UPLOAD_CHUNK = 1 << 20
COUNT_EVERY_SECONDS = 0.5  # request_counts are written at most this often while a batch runs


def _batches(request: Request) -> BatchStore:
    return request.app.state.batches


def _owner() -> str | None:
    """Whose files and batches a request may see: its own key's, or everyone's with admin scope."""
    principal = current_principal()
    return None if principal.allows("admin") else principal.key_id


def _page(items: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": has_more,
    }


# --- files ---------------------------------------------------------------------------------------
@router.post("/v1/files", **requires("inference"))
async def upload_file(
    request: Request, file: UploadFile = File(...), purpose: str = Form(...)
) -> dict[str, Any]:
    """Store a batch input file (multipart ``file`` and ``purpose=batch``); 413 past the size limit."""
    if purpose not in UPLOAD_PURPOSES:
        raise InvalidRequest(
            f"Unsupported purpose {purpose!r}; use {', '.join(UPLOAD_PURPOSES)}.", param="purpose"
        )
    files = _batches(request).files

    def chunks() -> Any:
        while chunk := file.file.read(UPLOAD_CHUNK):
            yield chunk

    info = await asyncio.to_thread(
        files.put,
        chunks(),
        filename=file.filename or "upload.jsonl",
        purpose=purpose,
        key_id=current_principal().key_id,
    )
    return info.to_openai()


@router.get("/v1/files", **requires("inference"))
async def list_files(
    request: Request,
    purpose: str | None = None,
    limit: int = Query(100, ge=1, le=10_000),
    after: str | None = None,
) -> dict[str, Any]:
    files, more = await asyncio.to_thread(_batches(request).files.page, _owner(), purpose, limit, after)
    return _page([f.to_openai() for f in files], more)


@router.get("/v1/files/{file_id}", **requires("inference"))
async def show_file(file_id: str, request: Request) -> dict[str, Any]:
    info = await asyncio.to_thread(_batches(request).files.get, file_id, _owner())
    return info.to_openai()


@router.get("/v1/files/{file_id}/content", response_model=None, **requires("inference"))
async def file_content(file_id: str, request: Request) -> StreamingResponse:
    files = _batches(request).files
    info = await asyncio.to_thread(files.get, file_id, _owner())
    headers = {
        "Content-Disposition": f'attachment; filename="{info.filename}"',
        "Content-Length": str(info.bytes),
    }
    return StreamingResponse(files.read(file_id), media_type="application/octet-stream", headers=headers)


@router.delete("/v1/files/{file_id}", **requires("inference"))
async def delete_file(file_id: str, request: Request) -> dict[str, Any]:
    info = await asyncio.to_thread(_batches(request).files.delete, file_id, _owner())
    audit(request, "file.deleted", file_id, {"filename": info.filename, "purpose": info.purpose})
    return {"id": file_id, "object": "file", "deleted": True}


# --- batches -------------------------------------------------------------------------------------
class BatchCreate(BaseModel):
    input_file_id: str
    endpoint: str
    completion_window: str = "24h"
    metadata: dict[str, str] | None = Field(default=None)


@router.post("/v1/batches", **requires("inference"))
async def create_batch(body: BatchCreate, request: Request) -> dict[str, Any]:
    """A batch over an uploaded input file; it starts at once, behind interactive requests."""
    batch = await asyncio.to_thread(
        _batches(request).create,
        body.input_file_id,
        body.endpoint,
        body.completion_window,
        body.metadata,
        current_principal().key_id,
        _owner(),
    )
    request.app.state.batch_runner.wake()
    return batch.to_openai()


class DatasetBatchCreate(BaseModel):
    """Body of POST /api/datasets/{name}/task-batch: run one NLP task over a dataset version."""

    task: str = Field(min_length=1, max_length=32, description="translate, summarize, qa, classify, …")
    model: str = Field(min_length=1, max_length=256)
    column: str | None = Field(
        None, min_length=1, max_length=128, description="default: the task's main field"
    )
    split: str | None = Field(None, min_length=1, max_length=32, description="default: every split in order")
    options: dict[str, Any] = Field(default_factory=dict, description="the task's other input fields")
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int | None = Field(None, ge=1, le=32768)
    limit: int | None = Field(None, ge=1, le=1_000_000, description="only the first rows")


@router.post("/api/datasets/{name}/task-batch", **requires("datasets"))
async def dataset_task_batch(name: str, body: DatasetBatchCreate, request: Request) -> dict[str, Any]:
    """A batch of ``/v1/tasks/{task}`` requests, one per row of the version (``custom_id``
    ``row-<id>``): its input file is written from the store and it starts at once, as an uploaded
    one would (the key needs the inference scope too, and may use the model)."""
    principal = current_principal()
    if not principal.allows("inference"):
        raise Forbidden(f"This key ({principal.key_id}) lacks the 'inference' scope a task batch runs under.")
    check_model(request, body.model)
    settings = request.app.state.settings
    spec = DatasetTaskBatch(name, **body.model_dump())
    planned = await asyncio.to_thread(plan, spec, settings)
    batches = _batches(request)
    source = await asyncio.to_thread(
        batches.files.put,
        input_lines(planned, settings),
        filename=planned.filename,
        purpose="batch",
        key_id=principal.key_id,
    )
    batch = await asyncio.to_thread(
        batches.create, source.id, spec.endpoint, "24h", planned.metadata(), principal.key_id, _owner()
    )
    request.app.state.batch_runner.wake()
    return {**batch.to_openai(), "num_rows": planned.num_rows}


@router.get("/v1/batches", **requires("inference"))
async def list_batches(
    request: Request, limit: int = Query(20, ge=1, le=100), after: str | None = None
) -> dict[str, Any]:
    batches, more = await asyncio.to_thread(_batches(request).page, _owner(), limit, after)
    return _page([b.to_openai() for b in batches], more)


@router.get("/v1/batches/{batch_id}", **requires("inference"))
async def show_batch(batch_id: str, request: Request) -> dict[str, Any]:
    batch = await asyncio.to_thread(_batches(request).get, batch_id, _owner())
    return batch.to_openai()


@router.post("/v1/batches/{batch_id}/cancel", **requires("inference"))
async def cancel_batch(batch_id: str, request: Request) -> dict[str, Any]:
    """Stop a batch: the lines in flight finish, what is done is written, then ``cancelled``."""
    batch = await asyncio.to_thread(_batches(request).cancel, batch_id, _owner())
    audit(request, "batch.cancelled", batch_id)
    request.app.state.batch_runner.wake()
    return batch.to_openai()


# --- the runner ----------------------------------------------------------------------------------
class BatchRunner:
    """Works through unfinished batches, oldest first, ``LLMOS_BATCH_CONCURRENCY`` lines at a time;
    started with the app (picking up what a previous run left) and cancelled at shutdown."""

    def __init__(self, app: Any, settings: Settings, batches: BatchStore, control: AccessControl):
        self.app = app
        self.settings = settings
        self.batches = batches
        self.control = control
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.lines_sent = 0  # every in-process request made, retries included (tests, metrics)
        self._counted_at = 0.0  # when request_counts were last written

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name="llmos-batch-runner")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _loop(self) -> None:
        assert self._wake is not None
        next_expiry = 0.0
        while True:
            self._wake.clear()
            try:
                for batch in await asyncio.to_thread(self.batches.unfinished):
                    await self._run(batch)
                if time.monotonic() >= next_expiry:
                    next_expiry = time.monotonic() + EXPIRE_EVERY_SECONDS
                    gone = await asyncio.to_thread(self.batches.files.expire)
                    if gone:
                        logger.info("deleted %d expired batch files", len(gone))
            except asyncio.CancelledError:
                raise
            except Exception:  # the runner must keep running; the batch is retried on the next scan
                logger.exception("running batches failed")
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)

    async def _run(self, batch: BatchInfo) -> None:
        try:
            lines, errors = await asyncio.to_thread(
                parse_input, self.batches.input_path(batch), batch.endpoint, self.settings.max_batch_lines
            )
        except OSError as exc:  # the input file was deleted under the batch
            lines, errors = [], [{"code": "file_not_found", "message": str(exc), "line": None, "param": None}]
        if batch.status == "validating":
            if errors:
                await asyncio.to_thread(
                    self.batches.update,
                    batch.id,
                    "failed",
                    errors=errors[:MAX_ERRORS_SHOWN],
                    total=len(lines),
                )
                return
            batch = await asyncio.to_thread(self.batches.update, batch.id, "in_progress", total=len(lines))
        progress = await asyncio.to_thread(self.batches.progress, batch.id)
        try:
            status = (
                "cancelled" if batch.status == "cancelling" else await self._dispatch(batch, lines, progress)
            )
        except BaseException:
            progress.close()
            raise
        await asyncio.to_thread(self.batches.finish, batch, lines, progress, status)
        logger.info("batch %s %s: %d lines", batch.id, status, len(progress.done))

    async def _dispatch(self, batch: BatchInfo, lines: list[BatchLine], progress: Progress) -> str:
        """Send the lines not done yet; the batch's final status (completed, cancelled, expired)."""
        todo = [line for line in lines if line.custom_id not in progress.done]
        slots = asyncio.Semaphore(max(1, self.settings.batch_concurrency))
        running: set[asyncio.Task[None]] = set()
        outcome = "completed"
        try:
            for line in todo:
                await slots.acquire()
                stop = await self._should_stop(batch)
                if stop:
                    slots.release()
                    outcome = stop
                    break
                task = asyncio.create_task(self._line(batch, line, progress, slots))
                running.add(task)
                task.add_done_callback(running.discard)
            if running:
                await asyncio.gather(*running)
        except BaseException:
            for task in running:
                task.cancel()
            raise
        if outcome == "completed":
            outcome = await self._should_stop(batch) or "completed"
            outcome = "completed" if outcome == "expired" and len(progress.done) == len(lines) else outcome
        return outcome

    async def _should_stop(self, batch: BatchInfo) -> str | None:
        current = await asyncio.to_thread(self.batches.get, batch.id)
        if current.status == "cancelling":
            return "cancelled"
        if current.expires_at is not None and _after(utcnow(), current.expires_at):
            return "expired"
        return None

    async def _line(
        self, batch: BatchInfo, line: BatchLine, progress: Progress, slots: asyncio.Semaphore
    ) -> None:
        try:
            request_id = f"{batch.id}-{line.number}"
            status, body = await self._call(batch, line, request_id)
            item = result_line(line, status, body, request_id)
            await asyncio.to_thread(progress.add, item)
            self.control.metrics.batch_requests.labels(
                "completed" if Progress.is_ok(item) else "failed"
            ).inc()
            now = time.monotonic()
            if now - self._counted_at >= COUNT_EVERY_SECONDS:  # the final counts come with finish()
                self._counted_at = now
                await asyncio.to_thread(
                    self.batches.update, batch.id, completed=progress.num_ok, failed=progress.num_failed
                )
        finally:
            slots.release()

    async def _call(self, batch: BatchInfo, line: BatchLine, request_id: str) -> tuple[int, Any]:
        """The line's final answer (status, JSON body), retrying 429s and 503s that may pass."""
        if line.body.get("stream"):
            error = InvalidRequest(
                "Streaming is not available inside a batch; drop `stream`.", param="stream"
            )
            return error.status_code, error.to_openai()
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                principal = await asyncio.to_thread(self.control.principal_for, batch.key_id)
            except LLMOSError as exc:  # the submitting key was revoked: the rest of its lines fail
                return exc.status_code, exc.to_openai()
            status, headers, body = await self._send(principal, batch, line, request_id)
            code = (body.get("error") or {}).get("code") if isinstance(body, dict) else None
            retryable = status == 503 or (status == 429 and code != "insufficient_quota")
            if not retryable or attempt == MAX_ATTEMPTS:
                return status, body
            try:
                wait = float(headers.get("retry-after", "1"))
            except ValueError:
                wait = 1.0
            await asyncio.sleep(min(max(wait, 0.1), MAX_RETRY_WAIT_SECONDS))
        raise AssertionError("unreachable")

    async def _send(
        self, principal: Principal, batch: BatchInfo, line: BatchLine, request_id: str
    ) -> tuple[int, dict[str, str], Any]:
        """One in-process HTTP request through the whole app (middleware included)."""
        self.lines_sent += 1
        payload = json.dumps(line.body).encode()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": line.url,
            "raw_path": line.url.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [
                (b"host", b"llmos-batch"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"x-request-id", request_id.encode()),
            ],
            "client": ("batch", 0),
            "server": ("llmos-batch", 0),
            INTERNAL_PRINCIPAL: principal,
            INTERNAL_PRIORITY: BATCH_PRIORITY,
            INTERNAL_BATCH: batch.id,
        }
        done = asyncio.Event()
        sent_body = False
        status, headers, chunks = 500, {}, []

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": payload, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = {
                    k.decode("latin-1").lower(): v.decode("latin-1") for k, v in message.get("headers", [])
                }
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    done.set()

        try:
            await self.app(scope, receive, send)
        finally:
            done.set()
        raw = b"".join(chunks)
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = {"error": {"message": raw.decode("utf-8", "replace")[:500], "type": "server_error"}}
        return status, headers, body


def _after(now: datetime, then: datetime) -> bool:
    return (epoch(now) or 0) > (epoch(then) or 0)
