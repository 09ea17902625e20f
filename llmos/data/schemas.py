"""The five dataset schemas (text, instruction, chat, classification, pairs): their columns, the
validation of one incoming record, and the text a row is judged by when cleaning or counting tokens.

Every stored row also has an integer ``id`` (the record's line or row number in the imported file),
which stays with the row through clean, split and annotate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from llmos.errors import InvalidDataset

ROLES = ("system", "user", "assistant", "tool")
MESSAGE_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


class RowError(ValueError):
    """One record does not fit the schema; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class Schema:
    """A schema's name, its required and optional string columns (``messages`` for chat)."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        return ("id", *self.required, *self.optional)

    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema of a stored split: ``id`` then the schema's columns."""
        fields = [pa.field("id", pa.int64(), nullable=False)]
        for column in (*self.required, *self.optional):
            fields.append(pa.field(column, MESSAGE_TYPE if column == "messages" else pa.string()))
        return pa.schema(fields)


SCHEMAS: dict[str, Schema] = {
    "text": Schema("text", ("text",)),
    "instruction": Schema("instruction", ("instruction", "output"), ("input",)),
    "chat": Schema("chat", ("messages",)),
    "classification": Schema("classification", ("text", "label")),
    "pairs": Schema("pairs", ("source", "target")),
}


def get_schema(name: str) -> Schema:
    """The schema called ``name``; raise ``InvalidDataset`` naming the known ones otherwise."""
    try:
        return SCHEMAS[name]
    except KeyError:
        raise InvalidDataset(
            f"unknown schema {name!r}: use one of {', '.join(SCHEMAS)}", param="schema"
        ) from None


def _string(record: dict[str, Any], field: str, *, required: bool) -> str:
    value = record.get(field)
    if value is None:
        if required:
            raise RowError(f"missing required field {field!r}")
        return ""
    if field == "label" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # numeric class ids are labels too
    if not isinstance(value, str):
        raise RowError(f"field {field!r} must be a string, not {type(value).__name__}")
    if required and not value.strip():
        raise RowError(f"field {field!r} is empty")
    return value


def _messages(record: dict[str, Any]) -> list[dict[str, str]]:
    value = record.get("messages")
    if value is None:
        raise RowError("missing required field 'messages'")
    if not isinstance(value, list) or not value:
        raise RowError("field 'messages' must be a non-empty list of {role, content} objects")
    messages = []
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            raise RowError(f"messages[{i}] must be an object with role and content")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise RowError(f"messages[{i}].role is {role!r}: use one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise RowError(f"messages[{i}].content must be a string, not {type(content).__name__}")
        messages.append({"role": role, "content": content})
    return messages


def validate_record(schema: Schema, record: object) -> dict[str, Any]:
    """The stored form of one incoming record (without ``id``); raise ``RowError`` if it does not fit.

    Extra fields are ignored; ``label`` may be an integer (stored as its string).
    """
    if not isinstance(record, dict):
        raise RowError(f"expected an object, got {type(record).__name__}")
    row: dict[str, Any] = {}
    for field in schema.required:
        row[field] = _messages(record) if field == "messages" else _string(record, field, required=True)
    for field in schema.optional:
        row[field] = _string(record, field, required=False)
    return row


def row_text(schema: Schema, row: dict[str, Any]) -> str:
    """The text a row is judged by (dedup, language, length, token counts): its string fields joined."""
    if schema.name == "chat":
        return "\n".join(m["content"] for m in row["messages"])
    fields = [f for f in (*schema.required, *schema.optional) if f != "label"]
    return "\n".join(row[f] for f in fields if row.get(f))
