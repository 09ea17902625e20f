"""Reading JSONL input files (gold sets, batch inputs, evaluation pairs) with errors that name the
file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmos.errors import InvalidRequest


def read_jsonl(path: Path) -> list[tuple[int, Any]]:
    """``(line number, value)`` for every non-blank line of ``path``; raises ``InvalidRequest`` for
    a missing file or a line that is not JSON (saying which)."""
    if not path.is_file():
        raise InvalidRequest(f"no such data file: {path}")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"{path}:{number} is not JSON: {exc.msg}") from None
    return rows
