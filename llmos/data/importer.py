"""Reading a data file into one validated Arrow table: every record checked against the schema,
bad ones collected with their line (or row) numbers, then either skipped or the import refused.

Nothing is stored here; ``sdk.import_file`` hands the table to the store only if this succeeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from llmos.data.formats import detect_format, read_records
from llmos.data.schemas import RowError, Schema, validate_record
from llmos.errors import InvalidDataset

MAX_REPORTED = 100  # bad rows listed in the stored report
MAX_NAMED = 5  # bad rows named in the error message


def _where(fmt: str) -> str:
    return "row" if fmt in ("json", "parquet") else "line"


def _as_id(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19:
        return int(value)  # CSV cells are text
    return None


def _keep_given_ids(rows: list[dict[str, Any]], given: list[object]) -> str:
    """Use the file's own ``id`` column when it holds unique non-negative integers (an exported
    dataset read back keeps its ids); otherwise rows keep their line numbers. Says which."""
    ids = [_as_id(value) for value in given]
    if not ids or None in ids or len(set(ids)) != len(ids):
        return "line numbers"
    for row, row_id in zip(rows, ids):
        row["id"] = row_id
    return "the id column"


def read_file(
    path: Path, schema: Schema, *, fmt: str | None = None, skip_bad: bool = False
) -> tuple[pa.Table, dict[str, Any]]:
    """The file's good rows (``id``: the file's own unique integer ids, else line or row numbers) and
    the import report.

    Raises ``InvalidDataset`` when there are bad rows and not ``skip_bad`` (naming the first few),
    when no row is good, or when the file cannot be read at all.
    """
    if not path.is_file():
        raise InvalidDataset(f"no such file: {path}", param="path")
    fmt = detect_format(path, fmt)
    if fmt == "txt" and schema.name != "text":
        raise InvalidDataset("a .txt file holds one text per line: import it with --schema text")
    rows: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    extra: set[str] = set()
    given_ids: list[object] = []
    try:
        for number, record in read_records(path, fmt):
            try:
                if isinstance(record, RowError):
                    raise record
                rows.append({"id": number, **validate_record(schema, record)})
                assert isinstance(record, dict)  # validate_record checked it
                given_ids.append(record.get("id"))
                extra.update(str(k) for k in record if k not in schema.columns)
            except RowError as exc:
                bad.append({_where(fmt): number, "error": str(exc)})
    except OSError as exc:
        raise InvalidDataset(f"cannot read {path}: {exc}") from exc
    if bad and not skip_bad:
        named = "; ".join(f"{_where(fmt)} {b[_where(fmt)]}: {b['error']}" for b in bad[:MAX_NAMED])
        more = f" (and {len(bad) - MAX_NAMED} more)" if len(bad) > MAX_NAMED else ""
        raise InvalidDataset(
            f"{len(bad)} bad {_where(fmt)}s in {path.name} for schema {schema.name}: {named}{more}. "
            "Fix them, or pass --skip-bad to import the rest; nothing was imported."
        )
    if not rows:
        raise InvalidDataset(f"{path.name} has no rows that fit schema {schema.name}; nothing was imported")
    ids_from = _keep_given_ids(rows, given_ids)
    report = {
        "source": str(path),
        "ids": ids_from,
        "format": fmt,
        "rows": len(rows),
        "num_bad": len(bad),
        "skipped": bad[:MAX_REPORTED],
        "ignored_columns": sorted(extra),
    }
    return pa.Table.from_pylist(rows, schema=schema.arrow_schema()), report
