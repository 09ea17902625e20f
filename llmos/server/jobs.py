"""Training jobs over HTTP (``/api/jobs``): start, list, show with the loss curve, stream the curve
as it grows (server-sent events), follow the log from an offset, cancel and resume. Jobs run in
their own processes; these routes only read and write the job store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, StreamingResponse

from llmos.server.access import audit
from llmos.server.auth import requires
from llmos.train.config import TrainConfig
from llmos.train.jobs import FINISHED, JobStore, cancel_job, start_job

router = APIRouter(prefix="/api/jobs", tags=["training"])

EVENTS_POLL_SECONDS = 0.5  # how often a stream looks for new steps (jobs write them from elsewhere)
HEARTBEAT_SECONDS = 15.0  # a comment line this often keeps idle proxies from closing the stream
EVENT_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _jobs(request: Request) -> JobStore:
    return JobStore(request.app.state.settings)


@router.get("", **requires("training"))
async def list_jobs(request: Request) -> dict[str, Any]:
    jobs = await asyncio.to_thread(lambda: _jobs(request).all())
    return {"jobs": [j.to_dict() for j in jobs]}


@router.post("", **requires("training"))
async def create_job(body: dict[str, Any], request: Request) -> dict[str, Any]:
    """Start a job from TrainConfig fields (``nproc`` too); 400 names a bad field."""
    nproc = int(body.pop("nproc", 1) or 1)
    config = TrainConfig.build(**body)
    store = _jobs(request)
    job = await asyncio.to_thread(store.create, config, nproc)
    await asyncio.to_thread(start_job, store, job)
    return store.get(job.id).to_dict()


@router.get("/schema", **requires("training"))
async def config_schema() -> dict[str, Any]:
    """The JSON schema of a job's settings (TrainConfig): the console builds its form from it."""
    return TrainConfig.model_json_schema()


@router.get("/{job_id}", **requires("training"))
async def show_job(job_id: str, request: Request, after: int = Query(0, ge=0)) -> dict[str, Any]:
    """The job with its curve: ``losses`` as [step, loss] and ``curve`` with the learning rate and
    seconds too; ``?after=N`` keeps only the steps after N (for a page following a run)."""
    store = _jobs(request)
    job = await asyncio.to_thread(store.get, job_id)
    curve = await asyncio.to_thread(store.curve, job_id, after)
    return {
        **job.to_dict(),
        "losses": [(p.step, p.loss) for p in curve],
        "curve": [p.to_dict() for p in curve],
    }


def _event(name: str, data: dict[str, Any], event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@router.get("/{job_id}/events", response_class=StreamingResponse, **requires("training"))
async def job_events(job_id: str, request: Request, after: int = Query(0, ge=0)) -> StreamingResponse:
    """The job's curve as server-sent events while it grows: ``step`` (a ``curve`` point, with
    ``tokens_per_second``; its id is the step) for every step after ``after`` (or the
    ``Last-Event-ID`` a reconnecting client sends), ``status`` (the job) when it changes, ``reset``
    when a resumed run redoes steps already sent (the client drops its points after ``step``), and
    ``end`` once the job is finished, after its last step. 404 for an unknown job."""
    store = _jobs(request)
    await asyncio.to_thread(store.get, job_id)  # JobNotFound before the stream starts
    resume_from = request.headers.get("last-event-id", "")
    after = int(resume_from) if resume_from.isdigit() else after
    pool = getattr(request.app.state, "pool", None)

    async def events() -> AsyncIterator[str]:
        status: str | None = None
        since: datetime | None = None
        last = 0  # the newest step sent
        quiet = 0.0
        first = True
        while True:
            job = await asyncio.to_thread(store.get, job_id)  # before the steps: a finished job's are all in
            changed = await asyncio.to_thread(store.changes, job_id, since)
            for written, point in changed:
                if written is not None and (since is None or written > since):
                    since = written
                if first:
                    if point.step <= after:  # the client has these
                        last = max(last, point.step)
                        continue
                elif point.step <= last:  # a resumed run redoes steps already sent
                    yield _event("reset", {"step": point.step - 1})
                yield _event("step", point.to_dict(), point.step)
                last = point.step
            first = False
            if job.status != status:
                status = job.status
                yield _event("status", job.to_dict())
            if job.status in FINISHED:
                yield _event("end", {"status": job.status, "step": last})
                return
            if getattr(pool, "is_draining", False):  # the server is stopping: the client reconnects
                return
            quiet = 0.0 if changed else quiet + EVENTS_POLL_SECONDS
            if quiet >= HEARTBEAT_SECONDS:
                quiet = 0.0
                yield ": still running\n\n"
            await asyncio.sleep(EVENTS_POLL_SECONDS)

    return StreamingResponse(events(), media_type="text/event-stream", headers=EVENT_HEADERS)


@router.get("/{job_id}/logs", **requires("training"))
async def job_logs(job_id: str, request: Request, offset: int = Query(0, ge=0)) -> PlainTextResponse:
    """The log from byte ``offset``; the ``X-Next-Offset`` header says where to continue."""
    store = _jobs(request)
    store.get(job_id)
    path = store.job_dir(job_id) / "train.log"
    text, end = "", offset
    if path.exists():
        with open(path, "rb") as fh:
            fh.seek(offset)
            chunk = fh.read(1 << 20)
        text, end = chunk.decode("utf-8", errors="replace"), offset + len(chunk)
    return PlainTextResponse(text, headers={"X-Next-Offset": str(end)})


@router.post("/{job_id}/cancel", **requires("training"))
async def cancel(job_id: str, request: Request) -> dict[str, Any]:
    job = await asyncio.to_thread(cancel_job, _jobs(request), job_id)
    audit(request, "job.cancelled", job_id)
    return job.to_dict()


@router.post("/{job_id}/resume", **requires("training"))
async def resume(job_id: str, request: Request) -> dict[str, Any]:
    store = _jobs(request)
    await asyncio.to_thread(start_job, store, store.get(job_id), resume=True)
    return store.get(job_id).to_dict()
