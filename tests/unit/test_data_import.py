"""Dataset import: every format and schema, bad rows with their line numbers, --skip-bad, content
addressing, and crash safety (a failure mid-write or a kill -9 leaves no version and no litter)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from data_samples import LABELLED, write_csv, write_jsonl, write_parquet

from llmos import data
from llmos.config import Settings
from llmos.data.dataset_store import DatasetStore
from llmos.errors import CorruptArtifact, DatasetNotFound, InvalidDataset

SCHEMA_RECORDS = {
    "text": [{"text": "hello world"}, {"text": "a second line"}],
    "instruction": [
        {"instruction": "Translate to French", "input": "cat", "output": "chat"},
        {"instruction": "Say hi", "output": "hi"},
    ],
    "chat": [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
        {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2?"}]},
    ],
    "classification": [{"text": "great", "label": "pos"}, {"text": "awful", "label": 0}],
    "pairs": [{"source": "cat", "target": "chat"}, {"source": "dog", "target": "chien"}],
}


@pytest.mark.parametrize("schema", list(SCHEMA_RECORDS))
def test_import_jsonl_of_each_schema_keeps_rows_with_line_ids(schema: str, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", SCHEMA_RECORDS[schema])
    version = data.import_file(path, "d", schema)
    assert version.ref == "d:1" and version.schema == schema and version.is_new
    assert version.splits["train"]["rows"] == 2
    rows = data.rows("d", limit=10)
    assert [r["id"] for r in rows] == [1, 2]
    if schema == "instruction":
        assert rows[1]["input"] == ""  # optional, filled in
    if schema == "classification":
        assert rows[1]["label"] == "0"  # integer class ids become string labels
    assert version.parents[0]["relation"] == "imported_from"
    assert len(version.parents[0]["sha256"]) == 64


def test_import_csv_parquet_and_txt(tmp_path: Path) -> None:
    csv_version = data.import_file(write_csv(tmp_path / "r.csv", LABELLED), "csvset", "classification")
    parquet_version = data.import_file(
        write_parquet(tmp_path / "r.parquet", LABELLED), "pq", "classification"
    )
    (tmp_path / "notes.txt").write_text("first note\n\nsecond note\n")
    assert data.import_file(tmp_path / "notes.txt", "notes").report["format"] == "txt"
    assert csv_version.num_rows == parquet_version.num_rows == len(LABELLED)
    assert data.rows("csvset", limit=1)[0] == {"id": 2, **LABELLED[0]}  # CSV line 2: after the header
    assert data.rows("pq", limit=1)[0]["id"] == 1
    assert [(r["id"], r["text"]) for r in data.rows("notes")] == [(1, "first note"), (3, "second note")]


def test_chat_in_csv_reads_the_messages_cell_as_json(tmp_path: Path) -> None:
    records = [{"messages": '[{"role": "user", "content": "hi"}]'}]
    version = data.import_file(write_csv(tmp_path / "c.csv", records), "chatcsv", "chat")
    assert data.rows(version.ref)[0]["messages"] == [{"role": "user", "content": "hi"}]


BAD_LINES = [
    {"text": "fine", "label": "pos"},
    '{"text": "broken json", ',
    {"text": "no label"},
    {"text": 42, "label": "pos"},
    {"text": "fine too", "label": "neg"},
]


def test_bad_rows_fail_the_import_naming_their_lines(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", BAD_LINES)
    with pytest.raises(InvalidDataset) as exc:
        data.import_file(path, "bad", "classification")
    message = exc.value.message
    assert "3 bad lines" in message and "--skip-bad" in message
    assert "line 2: malformed JSON" in message
    assert "line 3: missing required field 'label'" in message
    assert "line 4: field 'text' must be a string, not int" in message
    assert data.list() == []  # nothing half-written


def test_skip_bad_imports_the_rest_and_reports_what_it_skipped(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", BAD_LINES)
    version = data.import_file(path, "bad", "classification", skip_bad=True)
    assert [r["id"] for r in data.rows("bad")] == [1, 5]
    assert version.report["num_bad"] == 3
    assert [s["line"] for s in version.report["skipped"]] == [2, 3, 4]


def test_chat_roles_are_validated(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [{"messages": [{"role": "robot", "content": "beep"}]}])
    with pytest.raises(InvalidDataset, match=r"line 1: messages\[0\]\.role is 'robot'"):
        data.import_file(path, "c", "chat")


def test_unknown_schema_format_and_bad_names_are_clear_errors(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", SCHEMA_RECORDS["text"])
    with pytest.raises(InvalidDataset, match="unknown schema 'poems'"):
        data.import_file(path, "d", "poems")
    with pytest.raises(InvalidDataset, match="cannot tell the format"):
        data.import_file(path.rename(tmp_path / "d.xml"), "d")
    with pytest.raises(InvalidDataset, match="invalid dataset reference"):
        data.import_file(write_jsonl(tmp_path / "e.jsonl", SCHEMA_RECORDS["text"]), "../etc")
    (tmp_path / "t.txt").write_text("x\n")
    with pytest.raises(InvalidDataset, match="--schema text"):
        data.import_file(tmp_path / "t.txt", "t", "classification")
    with pytest.raises(DatasetNotFound, match="no dataset named 'ghost'"):
        data.show("ghost")


def test_versions_are_content_addressed(tmp_path: Path) -> None:
    first = data.import_file(write_jsonl(tmp_path / "a.jsonl", LABELLED), "r", "classification")
    again = data.import_file(write_jsonl(tmp_path / "copy.jsonl", LABELLED), "r", "classification")
    assert again.ref == "r:1" and not again.is_new and again.digest == first.digest
    elsewhere = data.import_file(tmp_path / "a.jsonl", "other", "classification")
    assert elsewhere.digest == first.digest  # same content, same digest, whatever the name
    changed = data.import_file(write_jsonl(tmp_path / "b.jsonl", LABELLED[:-1]), "r", "classification")
    assert changed.ref == "r:2" and changed.digest != first.digest
    assert data.show("r:1").digest == first.digest and data.show("r").ref == "r:2"


def _blob_names(home: Path) -> set[str]:
    return {p.name for p in (home / "datasets" / "blobs").iterdir()}


@pytest.mark.parametrize("target", ["write_parquet", "version_digest"])
def test_a_failure_mid_write_leaves_no_version(
    target: str, tmp_path: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data.import_file(write_jsonl(tmp_path / "a.jsonl", LABELLED), "r", "classification")
    blobs_before = _blob_names(isolated_home)
    import llmos.data.dataset_store as dataset_store

    real = getattr(dataset_store, target)
    calls: list[int] = []

    def fail_late(*args: object) -> object:
        calls.append(1)
        if len(calls) == 2 or target == "version_digest":  # after the train split is stored
            raise OSError("disk full")
        return real(*args)

    with monkeypatch.context() as patch, pytest.raises(OSError, match="disk full"):
        patch.setattr(dataset_store, target, fail_late)
        data.split("r", test=0.5, seed=0, stratify=False)
    assert [v.ref for v in data.list()] == ["r:1"]
    assert _blob_names(isolated_home) > blobs_before  # a split's blob was stored before the failure
    DatasetStore(Settings.from_env()).close()  # opening removes nothing
    assert _blob_names(isolated_home) > blobs_before
    data.import_file(tmp_path / "a.jsonl", "r", "classification")  # the next write clears it first
    assert [v.ref for v in data.list()] == ["r:1"] and _blob_names(isolated_home) == blobs_before
    assert list((isolated_home / "datasets" / "tmp").iterdir()) == []


def test_kill_9_between_blob_write_and_rename_leaves_no_version(tmp_path: Path, isolated_home: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", LABELLED)
    code = f"from llmos import data; data.import_file({str(path)!r}, 'r', 'classification')"
    env = {**os.environ, "LLMOS_HOME": str(isolated_home), "LLMOS_CRASH_POINT": "blob_after_tmp_write"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=120)
    assert result.returncode == 137, result.stderr
    assert data.list() == []
    data.import_file(path, "r", "classification")  # the next writer clears the dead one's temp folder
    assert list((isolated_home / "datasets" / "tmp").iterdir()) == []
    assert [v.ref for v in data.list()] == ["r:1"]


def test_a_tampered_split_file_is_refused_on_load(tmp_path: Path) -> None:
    version = data.import_file(write_jsonl(tmp_path / "a.jsonl", LABELLED), "r", "classification")
    blob = version.split_path("train")
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes()[:-8] + b"tampered")
    with pytest.raises(CorruptArtifact, match="does not match its digest"):
        data.load("r")
