"""`llmos train --launcher ray`: the same training in 2 Ray Train workers on a local Ray instance
matches one process on the same global batches, and its result and curve land in the store."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from tiny_models import build_tiny_chat_folder

from llmos.config import Settings
from llmos.registry import Registry
from llmos.train.config import TrainConfig
from llmos.train.jobs import FINISHED, JobStore, start_job

pytestmark = pytest.mark.slow

QA = [("the capital of france", "is paris"), ("hello", "world"), ("paris is", "the capital of france")]


def test_a_ray_job_with_two_workers_matches_one_process(isolated_home: Path, tmp_path: Path) -> None:
    settings = Settings(home=isolated_home)
    registry = Registry(settings)
    registry.import_path(build_tiny_chat_folder(tmp_path / "model"), "tiny", check=False)
    registry.close()
    data = tmp_path / "qa.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in QA * 4
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = dict(base="tiny", data=str(data), lr=5e-2, batch_size=2, max_steps=4, checkpoint_every=100)
    jobs = JobStore(settings)
    single = jobs.create(TrainConfig.build(**common, grad_accum=2, register_result=False))
    start_job(jobs, single)
    on_ray = jobs.create(TrainConfig.build(**common, launcher="ray", name="tiny-ray"), nproc=2)
    start_job(jobs, on_ray)
    for job in (single, on_ray):
        deadline = time.monotonic() + 240
        while (done := jobs.get(job.id)).status not in FINISHED:
            assert time.monotonic() < deadline, (jobs.job_dir(job.id) / "train.log").read_text()[-3000:]
            time.sleep(0.5)
        assert done.status == "succeeded", (jobs.job_dir(job.id) / "train.log").read_text()[-3000:]
    assert [loss for _, loss in jobs.losses(on_ray.id)] == pytest.approx(
        [loss for _, loss in jobs.losses(single.id)], rel=1e-4
    )
    assert jobs.get(on_ray.id).result["version"] == "tiny-ray:1"
