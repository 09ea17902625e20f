"""Batch jobs on a live `llmos serve` with the real default model, driven by the real `openai`
client (`files.create`, `batches.create`, polling, `files.content`) and by `llmos batch`: a
200-line batch answers as the same requests sent one by one, and survives a SIGKILL of the server
in the middle, finishing after the restart without redoing a line that was done."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import ServerProcess, start_server, wait_healthy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "smollm2"
NUM_LINES = 200
PARAMS = {"max_tokens": 6, "temperature": 0}


@pytest.fixture
def home(real_home: Path, tmp_path: Path) -> Path:
    """A home of its own (a batch left behind must not be resumed by another test's server) with
    the real models: the blobs hard-linked, the database copied."""
    dest = tmp_path / "home"
    shutil.copytree(real_home / "models", dest / "models", copy_function=os.link)
    with sqlite3.connect(real_home / "llmos.db") as source, sqlite3.connect(dest / "llmos.db") as copy:
        source.backup(copy)
        copy.execute("DELETE FROM batches")  # whatever benchmarks ran on the shared store
        copy.execute("DELETE FROM files")
    return dest


def _serve(home: Path, log_dir: Path) -> tuple[ServerProcess, str]:
    # fp32: batched and single-request greedy decoding then pick the same tokens
    env = {"LLMOS_DTYPE": "float32", "LLMOS_BATCH_CONCURRENCY": "16"}  # 16 lines share each engine step
    proc, url = start_server(home, "--model", MODEL, log_dir=log_dir, env=env)
    wait_healthy(url, proc)
    return proc, url


def _requests() -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"q{i}",
            "method": "POST",
            "url": "/v1/completions",
            "body": {"model": MODEL, "prompt": f"Fact number {i} about the sea:", **PARAMS},
        }
        for i in range(NUM_LINES)
    ]


def _wait(client: openai.OpenAI, batch_id: str, until: Any, timeout: float = 600) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = client.batches.retrieve(batch_id)
        if until(batch):
            return batch
        time.sleep(0.3)
    raise AssertionError(f"batch {batch_id} stuck: {batch}")


def _batch_lines_logged(proc: ServerProcess, batch_id: str) -> list[str]:
    """Request ids of the batch's lines in a server's JSON access log."""
    ids = []
    for line in proc.log.read_text(errors="replace").splitlines():
        if line.startswith("{") and batch_id in line:
            ids.append(json.loads(line)["request_id"])
    return ids


def test_a_200_line_batch_through_the_openai_client_survives_sigkill_and_matches_one_by_one(
    home: Path, tmp_path: Path
) -> None:
    requests_file = tmp_path / "requests.jsonl"
    requests_file.write_text("".join(json.dumps(r) + "\n" for r in _requests()))
    first, url = _serve(home, tmp_path)
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        with open(requests_file, "rb") as f:
            uploaded = client.files.create(file=f, purpose="batch")
        assert uploaded.bytes == requests_file.stat().st_size and uploaded.purpose == "batch"
        batch = client.batches.create(
            input_file_id=uploaded.id,
            endpoint="/v1/completions",
            completion_window="24h",
            metadata={"run": "t"},
        )
        assert batch.status == "validating" and batch.metadata == {"run": "t"}
        midway = _wait(client, batch.id, lambda b: b.request_counts and b.request_counts.completed >= 40)
        assert midway.status == "in_progress" and midway.request_counts.total == NUM_LINES
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    progress = home / "batches" / batch.id / "progress.jsonl"
    before = {}
    for raw in progress.read_bytes().splitlines(keepends=True):
        if raw.endswith(b"\n"):
            item = json.loads(raw)
            before[item["custom_id"]] = item["response"]["body"]["id"]
    assert 40 <= len(before) < NUM_LINES

    second, url = _serve(home, tmp_path)
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        done = _wait(client, batch.id, lambda b: b.status in ("completed", "failed", "cancelled", "expired"))
        assert done.status == "completed", done
        assert done.request_counts.completed == NUM_LINES and done.request_counts.failed == 0
        assert done.error_file_id is None
        output = [json.loads(line) for line in client.files.content(done.output_file_id).text.splitlines()]
        assert [o["custom_id"] for o in output] == [f"q{i}" for i in range(NUM_LINES)]

        # finished lines were not redone: same answers (ids) as before the kill, and the second
        # server's access log has only the lines that were not finished
        by_id = {o["custom_id"]: o for o in output}
        assert {cid: by_id[cid]["response"]["body"]["id"] for cid in before} == before
        redone = set(_batch_lines_logged(second, batch.id))
        assert len(redone) == NUM_LINES - len(before)
        assert not redone & {f"{batch.id}-{int(cid[1:]) + 1}" for cid in before}

        # the answers are what the same requests get on their own (every 5th line: 40 requests)
        for i, request in list(enumerate(_requests()))[::5]:
            alone = client.completions.create(**request["body"])
            body = by_id[f"q{i}"]["response"]["body"]
            assert body["choices"][0]["text"] == alone.choices[0].text, i
            assert body["usage"]["completion_tokens"] == alone.usage.completion_tokens

        listed = client.batches.list()
        assert [b.id for b in listed.data] == [batch.id]

        # the CLI sees the same batch and writes its results
        env = {**os.environ, "LLMOS_HOME": str(home), "LLMOS_PORT": url.rsplit(":", 1)[1]}
        cli = [sys.executable, "-m", "llmos.cli.main", "batch"]
        shown = subprocess.run([*cli, "show", batch.id, "--json"], env=env, capture_output=True, text=True)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["request_counts"]["completed"] == NUM_LINES
        out = tmp_path / "out.jsonl"
        written = subprocess.run(
            [*cli, "results", batch.id, "-o", str(out)], env=env, capture_output=True, text=True
        )
        assert written.returncode == 0, written.stderr
        assert out.read_text().splitlines() == client.files.content(done.output_file_id).text.splitlines()
        _cli_submit_wait_list_cancel(cli, {**env, "COLUMNS": "200"}, tmp_path)
    finally:
        second.terminate()
        second.wait(timeout=60)


def _cli_submit_wait_list_cancel(cli: list[str], env: dict[str, str], tmp_path: Path) -> None:
    """`llmos batch submit --wait`, `list`, and the errors a person gets for a wrong move."""
    lines = tmp_path / "chat.jsonl"  # no method/url/model: --model and the endpoint fill them in
    lines.write_text(
        "".join(
            json.dumps(
                {
                    "custom_id": f"c{i}",
                    "body": {"messages": [{"role": "user", "content": f"Hi {i}"}], **PARAMS},
                }
            )
            + "\n"
            for i in range(3)
        )
    )
    submitted = subprocess.run(
        [*cli, "submit", str(lines), "--model", MODEL, "--wait", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert submitted.returncode == 0, submitted.stderr
    batch = json.loads(submitted.stdout)
    assert batch["status"] == "completed" and batch["request_counts"]["completed"] == 3
    assert batch["endpoint"] == "/v1/chat/completions"

    listed = subprocess.run([*cli, "list"], env=env, capture_output=True, text=True)
    assert batch["id"] in listed.stdout and "completed" in listed.stdout and "3/3" in listed.stdout

    again = subprocess.run([*cli, "cancel", batch["id"]], env=env, capture_output=True, text=True)
    assert again.returncode == 1 and "already completed" in again.stderr and "Traceback" not in again.stderr
    missing = subprocess.run([*cli, "results", "batch_nope"], env=env, capture_output=True, text=True)
    assert missing.returncode == 1 and "No batch 'batch_nope'" in missing.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n")
    refused = subprocess.run([*cli, "submit", str(bad)], env=env, capture_output=True, text=True)
    assert refused.returncode == 1 and "line 1 is not JSON" in refused.stderr
