"""Training jobs: each run is a row in the store and a process of its own.

``JobStore`` records status, progress, the loss curve and the result; ``start_job`` launches
``python -m llmos.train.worker JOB`` (through torchrun when ``nproc > 1``) in a new session with its
output in ``$LLMOS_HOME/jobs/JOB/train.log``. A job whose process died without saying so reads as
``failed`` and can be resumed from its last checkpoint.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from llmos.config import Settings
from llmos.errors import AlreadyExists, InvalidRequest, JobNotFound
from llmos.store import Store
from llmos.store.audit import utcnow
from llmos.store.blobs import pid_alive
from llmos.store.jobs import TrainJobRow, TrainMetricRow
from llmos.train.config import TrainConfig

FINISHED = ("succeeded", "failed", "cancelled")


@dataclass(slots=True)
class Job:
    id: str
    status: str
    config: dict[str, Any]
    nproc: int
    pid: int | None
    step: int
    total_steps: int
    loss: float | None
    result: dict[str, Any] | None
    error: str | None
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]
        data["created_at"], data["updated_at"] = self.created_at.isoformat(), self.updated_at.isoformat()
        return data


@dataclass(frozen=True, slots=True)
class StepMetric:
    """One logged optimizer step: its loss, learning rate, the seconds it took and the input
    tokens it trained on (``None`` for steps logged before releases counted them)."""

    step: int
    loss: float
    lr: float
    seconds: float
    tokens: int | None = None

    @property
    def tokens_per_second(self) -> float | None:
        return round(self.tokens / self.seconds, 1) if self.tokens and self.seconds > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tokens_per_second": self.tokens_per_second}


def _alive(pid: int | None) -> bool:
    if not pid or not pid_alive(pid):
        return False
    try:  # a zombie child of this process is dead too
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


class JobStore:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.store = Store(settings.database_url)

    def close(self) -> None:
        """Release the database handle (others in the process keep theirs)."""
        self.store.close()

    def job_dir(self, job_id: str) -> Path:
        return self.settings.home / "jobs" / job_id

    def create(self, config: TrainConfig, nproc: int = 1) -> Job:
        job_id = uuid.uuid4().hex[:12]
        with self.store.session() as session:
            session.add(TrainJobRow(id=job_id, config=config.model_dump(), nproc=nproc))
        self.job_dir(job_id).mkdir(parents=True, exist_ok=True)
        return self.get(job_id)

    def get(self, job_id: str) -> Job:
        """The job (a dead process still marked running reads as failed); raises ModelNotFound."""
        with self.store.session() as session:
            row = session.get(TrainJobRow, job_id)
            if row is None:
                raise JobNotFound(f"no training job {job_id!r}; see `llmos jobs list`.", param="job")
            if row.status == "running" and not _alive(row.pid):
                row.status, row.error = (
                    "failed",
                    row.error or "the training process died; `llmos train resume`",
                )
            return Job(**{c: getattr(row, c) for c in Job.__slots__})  # type: ignore[attr-defined]

    def all(self) -> list[Job]:
        with self.store.session() as session:
            ids = list(session.scalars(select(TrainJobRow.id).order_by(TrainJobRow.created_at)))
        return [self.get(i) for i in ids]

    def update(self, job_id: str, **fields: Any) -> None:
        with self.store.session() as session:
            row = session.get(TrainJobRow, job_id)
            assert row is not None
            for key, value in fields.items():
                setattr(row, key, value)
            row.updated_at = utcnow()

    def record_step(
        self,
        job_id: str,
        step: int,
        total: int,
        loss: float,
        lr: float,
        seconds: float,
        tokens: int | None = None,
    ) -> None:
        with self.store.session() as session:
            # A resumed run redoes the steps after its checkpoint: keep only the latest curve.
            stale = select(TrainMetricRow).where(TrainMetricRow.job_id == job_id, TrainMetricRow.step >= step)
            for old in session.scalars(stale):
                session.delete(old)
            session.add(
                TrainMetricRow(job_id=job_id, step=step, loss=loss, lr=lr, seconds=seconds, tokens=tokens)
            )
            row = session.get(TrainJobRow, job_id)
            assert row is not None
            row.step, row.total_steps, row.loss, row.updated_at = step, total, loss, utcnow()

    def losses(self, job_id: str) -> list[tuple[int, float]]:
        return [(point.step, point.loss) for point in self.curve(job_id)]

    def curve(self, job_id: str, after_step: int = 0) -> list[StepMetric]:
        """The logged steps after ``after_step``, in step order (a follower asks only for new ones)."""
        columns = (
            TrainMetricRow.step,
            TrainMetricRow.loss,
            TrainMetricRow.lr,
            TrainMetricRow.seconds,
            TrainMetricRow.tokens,
        )
        query = select(*columns).where(TrainMetricRow.job_id == job_id, TrainMetricRow.step > after_step)
        with self.store.session() as session:
            return [StepMetric(*row) for row in session.execute(query.order_by(TrainMetricRow.step))]

    def changes(self, job_id: str, since: datetime | None = None) -> list[tuple[datetime | None, StepMetric]]:
        """``(written at, step)`` of the steps written after ``since``, oldest first — with
        ``since`` None, the whole curve in step order. A resumed run rewrites the steps after its
        checkpoint, so a follower sees a step again when it is redone."""
        columns = (
            TrainMetricRow.recorded_at,
            TrainMetricRow.step,
            TrainMetricRow.loss,
            TrainMetricRow.lr,
            TrainMetricRow.seconds,
            TrainMetricRow.tokens,
        )
        query = select(*columns).where(TrainMetricRow.job_id == job_id)
        if since is None:
            query = query.order_by(TrainMetricRow.step)
        else:
            query = query.where(TrainMetricRow.recorded_at > since).order_by(
                TrainMetricRow.recorded_at, TrainMetricRow.step
            )
        with self.store.session() as session:
            return [(row[0], StepMetric(*row[1:])) for row in session.execute(query)]


def start_job(jobs: JobStore, job: Job, *, resume: bool = False) -> int:
    """Launch the job's process (detached, own session); returns its pid."""
    current = jobs.get(job.id)
    if current.status == "running":
        raise AlreadyExists(f"job {job.id} is already running (pid {current.pid}).", param="job")
    if resume and current.status == "succeeded":
        raise InvalidRequest(f"job {job.id} has already succeeded; nothing to resume.", param="job")
    worker = ["-m", "llmos.train.worker", job.id] + (["--resume"] if resume else [])
    if job.nproc > 1 and job.config.get("launcher", "local") == "local":
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={job.nproc}",
        ]
        command += worker
    else:
        command = [sys.executable, *worker]
    log = open(jobs.job_dir(job.id) / "train.log", "ab")  # noqa: SIM115 - handed to the child
    env = {**os.environ, "LLMOS_HOME": str(jobs.settings.home)}
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    log.close()
    jobs.update(job.id, status="running", pid=proc.pid, error=None)
    return proc.pid


def cancel_job(jobs: JobStore, job_id: str) -> Job:
    """SIGTERM the job's process group; the job keeps its checkpoints (resumable)."""
    job = jobs.get(job_id)
    if job.status != "running":
        raise InvalidRequest(f"job {job_id} is {job.status}, not running.", param="job")
    try:
        os.killpg(job.pid or 0, signal.SIGTERM)
    except ProcessLookupError:
        pass
    jobs.update(job_id, status="cancelled", error="cancelled by the user")
    return jobs.get(job_id)
