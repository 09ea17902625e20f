"""Durability of the registry against real processes: ``llmos import`` killed with SIGKILL at random
moments leaves a consistent store (verify clean, no partial version, no leftover temp after the next
recovery, and a retry succeeds); two processes importing and tagging at once both land, nothing lost.

Bounded: the model folder is a tiny model plus a 20 MB weight file, so an import takes long enough
for kills to land inside it, and 20 kill runs take well under a minute.
"""

from __future__ import annotations

import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_models import build_tiny_chat_folder

from llmos.config import Settings
from llmos.registry import Registry
from llmos.store.faults import CRASH_POINT_ENV

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
NUM_KILLS = 20
EXTRA_BYTES = 20 << 20
SEED = 20261123


def _write_safetensors(path: Path, num_bytes: int) -> None:
    """A valid one-tensor safetensors file of random bytes (U8), written without torch."""
    header = json.dumps({"extra": {"dtype": "U8", "shape": [num_bytes], "data_offsets": [0, num_bytes]}})
    raw = header.encode() + b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.write(os.urandom(num_bytes))


@pytest.fixture(scope="module")
def big_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = build_tiny_chat_folder(tmp_path_factory.mktemp("big") / "model")
    _write_safetensors(folder / "extra.safetensors", EXTRA_BYTES)
    return folder


def _env(home: Path) -> dict[str, str]:
    env = {**os.environ, "LLMOS_HOME": str(home), "PYTHONPATH": str(REPO_ROOT)}
    env.pop(CRASH_POINT_ENV, None)
    return env


# the CLI's model verbs alone: a quicker start-up than ``llmos.cli.main`` with every command group
CLI = "import typer; from llmos.cli.models import register; app = typer.Typer(); register(app); app()"


def _import_command(folder: Path, name: str) -> list[str]:
    return [sys.executable, "-c", CLI, "import", str(folder), "--name", name, "--no-check"]


def _assert_consistent(home: Path) -> list[str]:
    """Open the store and check what it lists, then recover (what the next write or `llmos gc`
    does) and check nothing else is left; return the listed refs."""
    registry = Registry(Settings(home=home))
    try:
        report = registry.verify_all()
        assert report.is_ok, [p.message for p in report.problems]
        versions = registry.list()
        registry.recover()
        assert list(registry.blobs.tmp_dir.iterdir()) == [], "temp left after recovery"
        listed = {str(mv.path.relative_to(registry.blobs.root)) for mv in versions}
        assert registry.blobs.all_snapshots() == listed, "a snapshot no version lists"
        used = {i.blob for mv in versions for i in mv.manifest.files.values()}
        assert registry.blobs.all_blobs() == used, "a blob no version uses"
        return [mv.ref for mv in versions]
    finally:
        registry.close()


def _wait_for_work_folder(tmp: Path, proc: subprocess.Popen[bytes], deadline: float) -> None:
    """Return once ``tmp`` holds a work folder, the process has ended, or the deadline passed."""
    while time.monotonic() < deadline and proc.poll() is None:
        if tmp.is_dir() and any(tmp.iterdir()):
            return
        time.sleep(0.001)


def _timed(command: list[str], home: Path) -> float:
    start = time.monotonic()
    assert subprocess.run(command, env=_env(home), timeout=60, capture_output=True).returncode == 0
    return time.monotonic() - start


def test_sigkill_at_random_moments_of_an_import_leaves_a_consistent_store(
    big_folder: Path, tmp_path: Path
) -> None:
    # kill anywhere from the end of start-up (when writing can begin) to the end of a whole import
    startup = _timed([sys.executable, "-c", CLI, "--help"], tmp_path / "timing")
    duration = _timed(_import_command(big_folder, "big"), tmp_path / "timing")
    home, rng = tmp_path / "home", random.Random(SEED)
    num_mid_write = 0
    for i in range(NUM_KILLS):
        proc = subprocess.Popen(
            _import_command(big_folder, "big"),
            env=_env(home),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if i % 2:  # anywhere in the run
            time.sleep(rng.uniform(min(startup, duration) * 0.8, duration))
        else:  # inside the write: once the import's work folder exists (the write is a small window)
            _wait_for_work_folder(home / "models" / "tmp", proc, deadline=time.monotonic() + duration)
            time.sleep(rng.uniform(0.0, 0.02))
        proc.send_signal(signal.SIGKILL)  # a no-op when the import already finished
        proc.wait(timeout=60)
        num_mid_write += any((home / "models" / "tmp").iterdir())
        refs = _assert_consistent(home)
        assert refs == [f"big:{n}" for n in range(1, len(refs) + 1)]  # numbers are taken only at commit
    assert num_mid_write > 0, "no kill landed while the import was writing: the folder is too small"
    retry = subprocess.run(
        _import_command(big_folder, "big"), env=_env(home), timeout=60, capture_output=True
    )
    assert retry.returncode == 0, retry.stderr
    assert _assert_consistent(home)[-1].startswith("big:")


def test_two_processes_importing_and_tagging_at_once_both_land(big_folder: Path, tmp_path: Path) -> None:
    code = (
        "import sys; from llmos.config import Settings; from llmos.registry import Registry; "
        "r = Registry(Settings.from_env()); mv = r.import_path(sys.argv[1], 'shared', check=False); "
        "r.tag(mv.ref, sys.argv[2]); print(mv.ref)"
    )
    home = tmp_path / "home"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(big_folder), f"p{i}"],
            env=_env(home),
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    refs = [proc.communicate(timeout=120)[0].strip() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0]
    assert sorted(refs) == ["shared:1", "shared:2"]
    assert _assert_consistent(home) == ["shared:1", "shared:2"]
    registry = Registry(Settings(home=home))
    for i, ref in enumerate(refs):
        assert registry.resolve(f"shared@p{i}").ref == ref
    assert registry.resolve("shared").ref == "shared:2"
    events = registry.history("shared").events
    assert sorted(e.version for e in events if e.action == "imported") == [1, 2]
    assert [(e.details["from"], e.details["to"]) for e in events if e.alias == "latest"] == [
        (None, 1),
        (1, 2),
    ]
    assert {e.alias for e in events if e.action == "tagged"} == {"latest", "p0", "p1"}
