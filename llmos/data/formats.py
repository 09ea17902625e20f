"""File formats in and out: read JSON Lines, JSON, CSV, Parquet and plain text as numbered records,
and export a split as Parquet, JSON Lines or CSV (chosen by the file extension).

Records are numbered by their line (JSONL, text, CSV) or row (JSON, Parquet) so a bad one can be
reported where the user will find it; that number becomes the row's stable ``id``.
"""

from __future__ import annotations

import csv
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from llmos.data.schemas import RowError
from llmos.errors import InvalidDataset

FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".txt": "txt",
}
EXPORT_FORMATS = ("parquet", "jsonl", "csv")

Record = tuple[int, object]  # (line or row number, the parsed record or a RowError)


def detect_format(path: Path, fmt: str | None = None) -> str:
    """The input format named by ``fmt`` or by the file's extension; raise ``InvalidDataset``."""
    fmt = fmt or FORMATS.get(path.suffix.lower())
    if fmt is None or fmt not in FORMATS.values():
        raise InvalidDataset(
            f"cannot tell the format of {path.name}: use a .jsonl, .json, .csv, .parquet or .txt file "
            "(or pass --format)",
            param="format",
        )
    return fmt


def read_records(path: Path, fmt: str) -> Iterator[Record]:
    """Yield ``(number, record)`` for each record of the file; a malformed one yields a ``RowError``."""
    readers = {"jsonl": _jsonl, "json": _json, "csv": _csv, "parquet": _parquet, "txt": _txt}
    return readers[fmt](path)


def _decode(raw: bytes) -> str | RowError:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RowError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})")


def _jsonl(path: Path) -> Iterator[Record]:
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            line = _decode(raw)
            if isinstance(line, RowError):
                yield number, line
            elif line.strip():
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as exc:
                    yield number, RowError(f"malformed JSON: {exc.msg} (column {exc.colno})")


def _json(path: Path) -> Iterator[Record]:
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidDataset(f"{path.name} is not valid JSON: {exc}") from None
    if not isinstance(records, list):
        raise InvalidDataset(f"{path.name} must hold a JSON array of records (or use JSON Lines)")
    yield from enumerate(records, start=1)


def _csv(path: Path) -> Iterator[Record]:
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            for row in reader:
                yield reader.line_num, _csv_record(row)
    except UnicodeDecodeError as exc:
        raise InvalidDataset(f"{path.name} is not valid UTF-8: {exc}") from None
    except csv.Error as exc:
        raise InvalidDataset(f"{path.name} is not valid CSV: {exc}") from None


def _csv_record(row: dict[str | Any, Any]) -> object:
    if None in row:  # more cells than header columns
        return RowError(f"{len(row[None])} more cells than the header has columns")
    if isinstance(row.get("messages"), str):  # chat in CSV: the messages cell holds JSON
        try:
            return {**row, "messages": json.loads(row["messages"])}
        except json.JSONDecodeError as exc:
            return RowError(f"malformed JSON in the messages cell: {exc.msg}")
    return row


def _parquet(path: Path) -> Iterator[Record]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InvalidDataset(f"{path.name} is not a readable Parquet file: {exc}") from None
    number = 0
    for batch in parquet.iter_batches(batch_size=4096):
        for record in batch.to_pylist():
            number += 1
            yield number, record


def _txt(path: Path) -> Iterator[Record]:
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            line = _decode(raw)
            if isinstance(line, RowError):
                yield number, line
            elif line.strip():
                yield number, {"text": line.rstrip("\r\n")}


def write_export(table: pa.Table, dest: Path) -> Path:
    """Write ``table`` to ``dest`` in the format its extension names, atomically (temp + rename)."""
    fmt = FORMATS.get(dest.suffix.lower())
    if fmt not in EXPORT_FORMATS:
        raise InvalidDataset(f"cannot export to {dest.name}: use a .parquet, .jsonl or .csv file name")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        if fmt == "parquet":
            pq.write_table(table, tmp)
        elif fmt == "jsonl":
            with open(tmp, "w", encoding="utf-8") as f:
                for row in table.to_pylist():
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            _write_csv(table, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _write_csv(table: pa.Table, tmp: Path) -> None:
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=table.column_names)
        writer.writeheader()
        for row in table.to_pylist():
            if "messages" in row:  # nested: one JSON cell, as import reads it back
                row["messages"] = json.dumps(row["messages"], ensure_ascii=False)
            writer.writerow(row)
