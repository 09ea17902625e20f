"""Store upkeep on tiny self-built models: ``verify_all`` names every bad file; ``gc`` removes
unreferenced blobs, orphan snapshots and stale temp files, and keeps what is in use."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llmos.config import Settings
from llmos.errors import ModelNotFound
from llmos.registry import ModelVersion, Registry


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(Settings(home=tmp_path / "home"))


@pytest.fixture
def imported(registry: Registry, tiny_chat_folder: Path) -> ModelVersion:
    return registry.import_path(tiny_chat_folder, "tiny", check=False)


def _flip_byte(path: Path) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _dead_pid() -> int:
    """The pid of a process that has exited (for a stale temp folder's name)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_verify_all_is_clean_on_a_fresh_store(registry: Registry, imported: ModelVersion) -> None:
    registry.copy("tiny", "other")
    report = registry.verify_all()
    assert report.is_ok and report.refs == ["other:1", "tiny:1"]
    assert report.num_files == 2 * len(imported.manifest.files) and report.num_bytes > 0
    assert registry.verify_all("other").refs == ["other:1"]
    with pytest.raises(ModelNotFound):
        registry.verify_all("missing")


def test_verify_all_names_each_flipped_or_missing_file(registry: Registry, tiny_chat_folder: Path) -> None:
    mv = registry.import_path(tiny_chat_folder, "tiny", check=False)
    copied = Path(shutil.copytree(tiny_chat_folder, registry.settings.home.parent / "other-src"))
    (copied / "README.md").write_text("different bytes, different blob")
    other = registry.import_path(copied, "other", check=False)
    _flip_byte(other.path / "README.md")
    (mv.path / "tokenizer.json").unlink()
    report = registry.verify_all()
    found = {(p.ref, p.filename, p.problem) for p in report.problems}
    assert found == {("tiny:1", "tokenizer.json", "missing"), ("other:1", "README.md", "mismatch")}
    assert not report.is_ok and report.to_dict()["ok"] is False
    assert all(p.ref in p.message and p.filename in p.message for p in report.problems)


def test_verify_all_notices_a_missing_blob_behind_an_intact_snapshot(
    registry: Registry, imported: ModelVersion
) -> None:
    blob = imported.manifest.files["config.json"].blob
    registry.blobs.blob_path(blob).unlink()
    problems = registry.verify_all().problems
    assert [(p.filename, p.problem) for p in problems] == [("config.json", "blob_missing")]
    registry.verify(imported)  # loading only needs the snapshot


def test_gc_removes_orphans_and_stale_temp_and_keeps_what_is_used(
    registry: Registry, imported: ModelVersion
) -> None:
    orphan_bytes = b"nobody references me"
    orphan = hashlib.sha256(orphan_bytes).hexdigest()
    registry.blobs.blob_path(orphan).write_bytes(orphan_bytes)
    ghost = registry.blobs.snapshots_dir / "ghost" / "1"
    ghost.mkdir(parents=True)
    (ghost / "config.json").write_text("{}")
    stale = registry.blobs.tmp_dir / f"{_dead_pid()}-abc"
    stale.mkdir()
    (stale / "blob-partial").write_bytes(b"x" * 1000)
    used = registry.blobs.all_blobs() - {orphan}

    preview = registry.gc(dry_run=True)
    assert preview.blobs == [orphan] and preview.snapshots == ["snapshots/ghost/1"]
    assert preview.tmp == [stale.name] and preview.is_dry_run
    assert preview.num_bytes == len(orphan_bytes) + 2 + 1000
    assert registry.blobs.blob_path(orphan).exists() and ghost.exists() and stale.exists()

    report = registry.gc()
    assert report.to_dict() == {**preview.to_dict(), "dry_run": False}
    assert registry.blobs.all_blobs() == used and not ghost.exists() and not stale.exists()
    assert registry.verify_all().is_ok
    assert registry.gc().num_removed == 0


def test_gc_keeps_unreferenced_blobs_while_an_import_is_in_flight(
    registry: Registry, imported: ModelVersion
) -> None:
    orphan_bytes = b"written by an import that has not committed yet"
    orphan = hashlib.sha256(orphan_bytes).hexdigest()
    registry.blobs.blob_path(orphan).write_bytes(orphan_bytes)
    with registry.blobs.work_dir():  # a live work folder: this process is importing
        report = registry.gc()
    assert report.blobs == [] and report.skipped and registry.blobs.blob_path(orphan).exists()
    assert registry.gc().blobs == [orphan]


def test_opening_the_registry_removes_nothing_the_next_write_recovers(
    registry: Registry, imported: ModelVersion, tiny_chat_folder: Path
) -> None:
    orphan_bytes = b"left by a crash"
    orphan = hashlib.sha256(orphan_bytes).hexdigest()
    registry.blobs.blob_path(orphan).write_bytes(orphan_bytes)
    stray = registry.blobs.blobs_dir / "sha256-not-a-digest"
    stray.write_bytes(b"?")  # not a blob name: ignored, never a crash
    reader = Registry(registry.settings)
    assert orphan in reader.blobs.all_blobs() and reader.gc(dry_run=True).blobs == [orphan]
    Registry(registry.settings, recover=False).import_path(tiny_chat_folder, "other", check=False)
    assert orphan in registry.blobs.all_blobs()  # a writer opened with recover=False leaves it
    Registry(registry.settings).copy("tiny", "copy")
    assert orphan not in registry.blobs.all_blobs() and stray.exists()
