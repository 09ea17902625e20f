"""Training jobs in their own processes: progress in the store, and a job killed (like kill -9)
after a checkpoint resumes to the same final loss as an uninterrupted job."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from tiny_models import build_tiny_chat_folder

from llmos.config import Settings
from llmos.registry import Registry
from llmos.train.config import TrainConfig
from llmos.train.jobs import FINISHED, Job, JobStore, cancel_job, start_job

QA = [("the capital of france", "is paris"), ("hello", "world"), ("paris is", "the capital of france")]


@pytest.fixture
def setup(isolated_home: Path, tmp_path: Path) -> tuple[Settings, Path]:
    settings = Settings(home=isolated_home)
    registry = Registry(settings)
    registry.import_path(build_tiny_chat_folder(tmp_path / "model"), "tiny")
    registry.close()
    data = tmp_path / "qa.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in QA * 4
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return settings, data


def _config(data: Path, **overrides: object) -> TrainConfig:
    values = dict(base="tiny", data=str(data), lr=5e-2, batch_size=2, max_steps=6, checkpoint_every=2)
    return TrainConfig.build(**{**values, "register_result": False, **overrides})


def _wait(jobs: JobStore, job: Job, timeout: float = 120) -> Job:
    deadline = time.monotonic() + timeout
    while (current := jobs.get(job.id)).status not in FINISHED:
        assert time.monotonic() < deadline, current
        time.sleep(0.2)
    return current


def test_a_job_runs_in_its_own_process_and_records_its_curve(
    setup: tuple[Settings, Path], tmp_path: Path
) -> None:
    settings, _ = setup
    # one pair repeated: every step sees the same batch, so the first and last losses compare
    # like for like (on the mixed file they differ by which pairs a step drew)
    q, a = QA[0]
    data = tmp_path / "one.jsonl"
    row = {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
    data.write_text((json.dumps(row) + "\n") * 12)
    jobs = JobStore(settings)
    job = jobs.create(_config(data))
    pid = start_job(jobs, job)
    done = _wait(jobs, job)
    assert done.status == "succeeded", (done.error, (jobs.job_dir(job.id) / "train.log").read_text()[-2000:])
    assert pid != 0 and done.step == done.total_steps == 6
    assert [s for s, _ in jobs.losses(job.id)] == [1, 2, 3, 4, 5, 6]
    losses = [loss for _, loss in jobs.losses(job.id)]
    assert losses[-1] < losses[0] and done.result["metrics"]["eval_loss_after"] is not None
    assert "step 6/6" in (jobs.job_dir(job.id) / "train.log").read_text()


def test_a_killed_job_resumes_to_the_uninterrupted_final_loss(
    setup: tuple[Settings, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, data = setup
    jobs = JobStore(settings)
    straight = jobs.create(_config(data))
    start_job(jobs, straight)
    assert _wait(jobs, straight).status == "succeeded"

    monkeypatch.setenv("LLMOS_CRASH_POINT", "train_after_step_3")  # dies like kill -9 after step 3
    killed = jobs.create(_config(data))
    start_job(jobs, killed)
    crashed = _wait(jobs, killed)
    assert crashed.status == "failed" and crashed.step == 3 and "resume" in crashed.error
    monkeypatch.delenv("LLMOS_CRASH_POINT")
    start_job(jobs, crashed, resume=True)
    resumed = _wait(jobs, killed)
    assert resumed.status == "succeeded" and resumed.step == 6
    final = dict(jobs.losses(killed.id))[6]
    assert final == pytest.approx(dict(jobs.losses(straight.id))[6], rel=1e-4)


def test_cancel_stops_a_running_job(setup: tuple[Settings, Path]) -> None:
    settings, data = setup
    jobs = JobStore(settings)
    job = jobs.create(_config(data, max_steps=100_000, checkpoint_every=1000))
    start_job(jobs, job)
    deadline = time.monotonic() + 60
    while jobs.get(job.id).step < 1:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert cancel_job(jobs, job.id).status == "cancelled"


def test_cli_trains_follows_and_lists(setup: tuple[Settings, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from llmos.cli.main import app

    _, data = setup
    config = tmp_path / "train.yaml"
    config.write_text(
        f"base: tiny\ndata: {data}\nmax_steps: 4\nlr: 0.05\nbatch_size: 2\nregister_result: false\n"
    )
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "done" in result.output and "held-out loss" in result.output
    listed = json.loads(runner.invoke(app, ["jobs", "list", "--json"]).output)
    assert listed[0]["status"] == "succeeded" and listed[0]["step"] == 4
    shown = json.loads(runner.invoke(app, ["jobs", "show", listed[0]["id"], "--json"]).output)
    assert [step for step, _ in shown["losses"]] == [1, 2, 3, 4]
    assert "step 4/4" in runner.invoke(app, ["jobs", "logs", listed[0]["id"]]).output
    bad = runner.invoke(app, ["train", "--base", "tiny", "--data", str(data), "--lr", "-1"])
    assert bad.exit_code == 1 and "lr" in bad.output
    missing = runner.invoke(app, ["jobs", "show", "nope"])
    assert missing.exit_code == 1 and "llmos jobs list" in missing.output


def test_a_two_process_torchrun_job_matches_one_process(setup: tuple[Settings, Path]) -> None:
    settings, data = setup
    jobs = JobStore(settings)
    single = jobs.create(_config(data, grad_accum=2, checkpoint_every=100))
    start_job(jobs, single)
    ddp = jobs.create(_config(data, grad_accum=1, checkpoint_every=100), nproc=2)
    start_job(jobs, ddp)
    for job in (single, ddp):
        done = _wait(jobs, job, timeout=180)
        assert done.status == "succeeded", (jobs.job_dir(job.id) / "train.log").read_text()[-3000:]
    # the same arithmetic in another order (an all-reduce of two halves vs accumulating them, with
    # whatever thread counts the two jobs get while they share 2 cores), so the rounding differences
    # compound step by step: CI drifted 1.5e-3 by step 6. The first updates match within 0.1%, every
    # step within 0.5% — a rank that trained on its half alone is off by far more from step 2 on
    # (test_trainer's DDP test holds the in-process version to 1e-4)
    ddp_losses = [loss for _, loss in jobs.losses(ddp.id)]
    single_losses = [loss for _, loss in jobs.losses(single.id)]
    assert len(ddp_losses) == len(single_losses) == 6
    assert ddp_losses[:3] == pytest.approx(single_losses[:3], rel=1e-3)
    assert ddp_losses == pytest.approx(single_losses, rel=5e-3)


def test_a_dataset_version_trains_into_a_registered_adapter(setup: tuple[Settings, Path]) -> None:
    from llmos import data

    settings, path = setup
    dataset = data.import_file(path, "qa", "chat", settings=settings)
    data.split(dataset.ref, test=0.25, seed=0, settings=settings)
    jobs = JobStore(settings)
    config = _config(path).model_copy(update={"data": "qa", "register_result": True, "name": "tiny-qa"})
    job = jobs.create(config)
    start_job(jobs, job)
    done = _wait(jobs, job)
    assert done.status == "succeeded", (jobs.job_dir(job.id) / "train.log").read_text()[-3000:]
    assert done.result["version"] == "tiny-qa:1" and done.result["data"] == "qa:2"
    registry = Registry(settings)
    try:
        adapter = registry.resolve("tiny-qa")
    finally:
        registry.close()
    manifest = adapter.manifest.to_dict()
    assert manifest["kind"] == "adapter" and manifest["base"] == "tiny:1"
    assert manifest["datasets"] == ["qa:2"] and manifest["training_run"]["metrics"]["steps"] == 6
    assert manifest["training_run"]["config"]["lr"] == 5e-2


def test_jobs_over_http_start_show_and_follow(setup: tuple[Settings, Path]) -> None:
    from fastapi.testclient import TestClient

    from llmos.server.app import create_app

    settings, data = setup
    with TestClient(create_app(settings)) as client:
        bad = client.post("/api/jobs", json={"base": "tiny", "data": str(data), "lr": -1})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "lr"
        body = {"base": "tiny", "data": str(data), "max_steps": 3, "batch_size": 2, "register_result": False}
        started = client.post("/api/jobs", json=body).json()
        assert started["status"] == "running"
        deadline = time.monotonic() + 120
        while (shown := client.get(f"/api/jobs/{started['id']}").json())["status"] not in FINISHED:
            assert time.monotonic() < deadline
            time.sleep(0.3)
        assert shown["status"] == "succeeded" and [s for s, _ in shown["losses"]] == [1, 2, 3]
        # each step counts the input tokens of its batch of 2 examples, and their rate
        for point in shown["curve"]:
            assert point["tokens"] > 2 and point["tokens_per_second"] == round(
                point["tokens"] / point["seconds"], 1
            )
        # a finished job's event stream sends its whole curve, its status, then the end
        events = _events(client, f"/api/jobs/{started['id']}/events")
        assert [name for name, _ in events] == ["step", "step", "step", "status", "end"]
        assert [data for name, data in events if name == "step"] == shown["curve"]
        assert events[3][1]["status"] == "succeeded" and events[4][1] == {"status": "succeeded", "step": 3}
        logs = client.get(f"/api/jobs/{started['id']}/logs")
        assert "step 3/3" in logs.text and int(logs.headers["X-Next-Offset"]) == len(logs.content)
        assert client.get(f"/api/jobs/{started['id']}/logs", params={"offset": len(logs.content)}).text == ""
        assert [j["id"] for j in client.get("/api/jobs").json()["jobs"]] == [started["id"]]
        assert client.post(f"/api/jobs/{started['id']}/cancel").status_code == 400
        assert client.get("/api/jobs/nope").status_code == 404


def test_jobs_over_http_show_the_lr_curve_after_a_step_and_the_config_schema(
    setup: tuple[Settings, Path],
) -> None:
    from fastapi.testclient import TestClient

    from llmos.server.app import create_app

    settings, data = setup
    jobs = JobStore(settings)
    job = jobs.create(_config(data))
    for step in (1, 2, 3):
        jobs.record_step(job.id, step, 3, loss=2.0 / step, lr=1e-3 * step, seconds=0.5 * step)
    with TestClient(create_app(settings)) as client:
        shown = client.get(f"/api/jobs/{job.id}").json()
        assert shown["losses"] == [[1, 2.0], [2, 1.0], [3, 2.0 / 3]]
        assert shown["curve"][1] == {
            "step": 2, "loss": 1.0, "lr": 2e-3, "seconds": 1.0, "tokens": None, "tokens_per_second": None
        }  # fmt: skip
        later = client.get(f"/api/jobs/{job.id}", params={"after": 2}).json()
        assert [p["step"] for p in later["curve"]] == [3] and later["losses"] == [[3, 2.0 / 3]]
        schema = client.get("/api/jobs/schema").json()
        assert schema["required"] == ["base", "data"]
        assert schema["properties"]["lora_r"]["default"] == 8


def _events(client: object, path: str, **kwargs: object) -> list[tuple[str, dict]]:
    """(event, data) of a server-sent event stream, read to its end."""
    found = []
    with client.stream("GET", path, **kwargs) as response:  # type: ignore[attr-defined]
        assert response.status_code == 200 and response.headers["content-type"].startswith(
            "text/event-stream"
        )
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                found.append((name, json.loads(line.removeprefix("data: "))))
    return found


def test_a_running_jobs_event_stream_sends_each_step_as_it_lands_and_a_reset_when_steps_are_redone(
    setup: tuple[Settings, Path],
) -> None:
    import os
    import threading

    from fastapi.testclient import TestClient

    from llmos.server.app import create_app

    settings, data = setup
    jobs = JobStore(settings)
    job = jobs.create(_config(data))
    jobs.update(job.id, status="running", pid=os.getpid())  # alive: the stream follows it
    jobs.record_step(job.id, 1, 4, loss=4.0, lr=1e-3, seconds=0.5, tokens=100)

    def train_elsewhere() -> None:  # what a job process does meanwhile, a step at a time
        for step, loss in ((2, 3.0), (3, 2.0), (2, 2.5), (3, 1.5), (4, 1.0)):  # 2 and 3 redone (a resume)
            time.sleep(0.7)
            jobs.record_step(job.id, step, 4, loss=loss, lr=1e-3, seconds=0.5, tokens=100)
        time.sleep(0.7)
        jobs.update(job.id, status="succeeded")

    writer = threading.Thread(target=train_elsewhere)
    with TestClient(create_app(settings)) as client:
        writer.start()
        events = _events(client, f"/api/jobs/{job.id}/events")
        writer.join()
        steps = [(d["step"], d["loss"]) for name, d in events if name == "step"]
        assert steps == [(1, 4.0), (2, 3.0), (3, 2.0), (2, 2.5), (3, 1.5), (4, 1.0)]
        names = [name for name, _ in events]
        assert names == ["step", "status", "step", "step", "reset", "step", "step", "step", "status", "end"]
        assert events[4] == ("reset", {"step": 1})  # the client drops what it has after step 1
        assert events[1][1]["status"] == "running" and events[8][1]["status"] == "succeeded"
        assert events[-1] == ("end", {"status": "succeeded", "step": 4})
        assert all(d["tokens_per_second"] == 200.0 for name, d in events if name == "step")
        # a client reconnecting after step 3 gets only what came after it
        again = _events(client, f"/api/jobs/{job.id}/events", headers={"Last-Event-ID": "3"})
        assert [d["step"] for name, d in again if name == "step"] == [4]
        assert client.get("/api/jobs/nope/events").status_code == 404
