"""A batch input file built from a dataset version: one ``/v1/tasks/{task}`` line per row (the
console Tasks page's "run on a dataset", ``POST /api/datasets/{name}/task-batch``).

Each line's input is the task's fixed options (``labels``, ``to``…) with the row's ``column`` as
the task's main field (``text``; ``question`` for qa, ``task`` for code); its ``custom_id`` is
``row-<id>``, so each output line finds its row again. The first row's input is checked against
the task's input model before anything is stored, so a bad option is one 400, not a file of
failed lines.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from llmos import data
from llmos.config import Settings
from llmos.data.version import DatasetVersion
from llmos.errors import InvalidRequest
from llmos.tasks import TASKS
from llmos.tasks.spec import main_field

PAGE_ROWS = 1000  # rows read from the store at a time
NO_MODEL_TASKS = ("tokenize",)  # answered by the tokenizer alone: nothing to batch


@dataclass(frozen=True, slots=True)
class DatasetTaskBatch:
    """``task`` with ``model`` over ``column`` of ``dataset``'s rows (one split, or all in order)."""

    dataset: str
    task: str
    model: str
    column: str | None = None  # default: the task's main field
    split: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # the task's other input fields
    temperature: float = 0.0
    max_tokens: int | None = None
    limit: int | None = None  # only the first rows

    @property
    def endpoint(self) -> str:
        return f"/v1/tasks/{self.task}"

    def item(self, row: dict[str, Any], column: str) -> dict[str, Any]:
        return {**self.options, main_field(self.task): row[column]}

    def line(self, row: dict[str, Any], column: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "input": self.item(row, column),
            "temperature": self.temperature,
        }
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        return {"custom_id": f"row-{row['id']}", "method": "POST", "url": self.endpoint, "body": body}


@dataclass(frozen=True, slots=True)
class Planned:
    """A checked ``DatasetTaskBatch``: the exact version, the column and how many rows it covers."""

    spec: DatasetTaskBatch
    version: DatasetVersion
    column: str
    num_rows: int

    @property
    def filename(self) -> str:
        split = f"-{self.spec.split}" if self.spec.split else ""
        return f"{self.version.name}-{self.version.version}{split}-{self.spec.task}.jsonl"

    def metadata(self) -> dict[str, str]:
        """The batch's metadata: where its lines came from."""
        return {
            "dataset": self.version.ref,
            "split": self.spec.split or "all",
            "task": self.spec.task,
            "column": self.column,
        }


def plan(spec: DatasetTaskBatch, settings: Settings) -> Planned:
    """Check ``spec`` against the task and the version; raises ``InvalidRequest`` for an unknown
    task or column, a column that holds no text, or options the task refuses (and the data SDK's
    errors for an unknown dataset or split)."""
    if spec.task not in TASKS:
        raise InvalidRequest(f"unknown task {spec.task!r}; use one of: {', '.join(TASKS)}", param="task")
    if spec.task in NO_MODEL_TASKS:
        raise InvalidRequest(
            f"{spec.task} runs no model; send the texts to POST /v1/tasks/{spec.task}", param="task"
        )
    version = data.show(spec.dataset, settings)
    column = spec.column or main_field(spec.task)
    if column not in version.columns:
        raise InvalidRequest(
            f"{version.ref} has no column {column!r}; its columns are {', '.join(version.columns)}",
            param="column",
        )
    if spec.split is not None and spec.split not in version.splits:
        raise InvalidRequest(
            f"{version.ref} has no split {spec.split!r}; its splits are {', '.join(version.splits)}",
            param="split",
        )
    total = version.splits[spec.split]["rows"] if spec.split is not None else version.num_rows
    num_rows = min(total, spec.limit) if spec.limit is not None else total
    if num_rows == 0:
        raise InvalidRequest(f"{version.ref} has no rows to run", param="split")
    (first,) = data.rows(version.ref, limit=1, split=spec.split, settings=settings)
    if not isinstance(first[column], str):
        raise InvalidRequest(
            f"column {column!r} of {version.ref} holds {type(first[column]).__name__}, not text: "
            "pick a text column",
            param="column",
        )
    try:
        TASKS[spec.task].input_model.model_validate(spec.item(first, column))
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"]) or "input"
        raise InvalidRequest(
            f"{spec.task} input {where}: {problem['msg']}", param=f"options.{where}"
        ) from None
    return Planned(spec, version, column, num_rows)


def input_lines(planned: Planned, settings: Settings) -> Iterator[bytes]:
    """The batch input file, one JSON line per row, read from the store a page at a time."""
    spec = planned.spec
    for offset in range(0, planned.num_rows, PAGE_ROWS):
        limit = min(PAGE_ROWS, planned.num_rows - offset)
        rows = data.rows(planned.version.ref, offset=offset, limit=limit, split=spec.split, settings=settings)
        yield "".join(
            json.dumps(spec.line(r, planned.column), ensure_ascii=False) + "\n" for r in rows
        ).encode()
