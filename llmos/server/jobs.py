"""Training jobs over HTTP (``/api/jobs``): start, list, show with the loss curve, follow the log
from an offset, cancel and resume. Jobs run in their own processes; these routes only read and
write the job store."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse

from llmos.server.access import audit
from llmos.server.auth import requires
from llmos.train.config import TrainConfig
from llmos.train.jobs import JobStore, cancel_job, start_job

router = APIRouter(prefix="/api/jobs", tags=["training"])


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
    return {**job.to_dict(), "losses": [(p.step, p.loss) for p in curve], "curve": [asdict(p) for p in curve]}


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
