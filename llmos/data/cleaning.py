"""The cleaning pipeline: drop too-short rows, rows in other languages, exact and near duplicates,
then mask PII in what is kept — and report exactly how many rows each step removed and why.

Each removed row is counted once, under the first step that removes it, in that order. Dedup runs
across all splits (train first), so a test row repeating a train row is removed too.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa

from llmos.data.dedup import ExactDedup, NearDedup
from llmos.data.pii import PII_KINDS, mask_pii
from llmos.data.schemas import Schema, row_text
from llmos.errors import InvalidRequest

DEDUP_KINDS = ("exact", "near")
REMOVAL_REASONS = ("too_short", "language", "exact_duplicate", "near_duplicate")
MAX_EXAMPLES = 3
EXAMPLE_CHARS = 160


@dataclass(slots=True)
class CleanOptions:
    """What ``clean`` does; the defaults do nothing but exact dedup."""

    dedup: tuple[str, ...] = ("exact",)
    near_threshold: float = 0.8
    shingle_size: int = 1
    pii: str | None = None  # "mask"
    languages: tuple[str, ...] = ()  # ISO 639-1 codes to keep; empty keeps all
    min_chars: int = 0

    def __post_init__(self) -> None:
        unknown = [d for d in self.dedup if d not in DEDUP_KINDS]
        if unknown:
            raise InvalidRequest(f"unknown dedup kind {unknown[0]!r}: use exact, near or both", param="dedup")
        if not 0.0 < self.near_threshold <= 1.0:
            raise InvalidRequest(f"near threshold {self.near_threshold} must be in (0, 1]", param="threshold")
        if self.shingle_size < 1:
            raise InvalidRequest("shingle size must be at least 1", param="shingle_size")
        if self.pii not in (None, "mask"):
            raise InvalidRequest(f"unknown --pii {self.pii!r}: use mask", param="pii")
        if any(not (len(code) == 2 and code.isalpha()) for code in self.languages):
            raise InvalidRequest("languages are two-letter ISO 639-1 codes such as en, fr", param="lang")
        if self.min_chars < 0:
            raise InvalidRequest("--min-chars cannot be negative", param="min_chars")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _language(text: str) -> str:
    import langid  # loads its model on first use (~1 s), so only when a language filter is asked for

    return str(langid.classify(text)[0])


def _mask_row(schema: Schema, row: dict[str, Any], counts: Counter[str]) -> dict[str, Any]:
    for column in (*schema.required, *schema.optional):
        if column == "messages":
            for message in row["messages"]:
                message["content"], found = mask_pii(message["content"])
                counts.update(found)
        elif column != "label" and row.get(column):
            row[column], found = mask_pii(row[column])
            counts.update(found)
    return row


class Cleaner:
    """One pass over a version's rows; ``clean`` returns the kept tables and the report."""

    def __init__(self, schema: Schema, options: CleanOptions) -> None:
        self.schema = schema
        self.options = options
        self.exact = ExactDedup() if "exact" in options.dedup else None
        self.near = (
            NearDedup(options.near_threshold, options.shingle_size) if "near" in options.dedup else None
        )
        self.removed: Counter[str] = Counter({reason: 0 for reason in REMOVAL_REASONS})
        self.masked: Counter[str] = Counter({kind: 0 for kind in PII_KINDS}) if options.pii else Counter()
        self.examples: dict[str, list[dict[str, Any]]] = {}

    def clean(self, tables: dict[str, pa.Table]) -> tuple[dict[str, pa.Table], dict[str, Any]]:
        rows_in = sum(t.num_rows for t in tables.values())
        kept = {split: [r for r in table.to_pylist() if self._keep(r)] for split, table in tables.items()}
        if self.options.pii:
            kept = {
                split: [_mask_row(self.schema, r, self.masked) for r in rows] for split, rows in kept.items()
            }
        arrow_schema = self.schema.arrow_schema()
        out = {split: pa.Table.from_pylist(rows, schema=arrow_schema) for split, rows in kept.items()}
        report: dict[str, Any] = {
            "rows_in": rows_in,
            "rows_out": sum(t.num_rows for t in out.values()),
            "removed": dict(self.removed),
            "examples": self.examples,
        }
        if self.options.pii:
            report["masked"] = dict(self.masked)
        return out, report

    def _keep(self, row: dict[str, Any]) -> bool:
        text = row_text(self.schema, row)
        if self.options.min_chars and len(text.strip()) < self.options.min_chars:
            return self._drop("too_short", row, text, chars=len(text.strip()))
        if self.options.languages:
            lang = _language(text)
            if lang not in self.options.languages:
                return self._drop("language", row, text, lang=lang)
        if self.exact is not None and (first := self.exact.check(row["id"], text)) is not None:
            return self._drop("exact_duplicate", row, text, duplicate_of=first)
        if self.near is not None and (first := self.near.check(row["id"], text)) is not None:
            return self._drop("near_duplicate", row, text, duplicate_of=first)
        return True

    def _drop(self, reason: str, row: dict[str, Any], text: str, **detail: Any) -> bool:
        self.removed[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < MAX_EXAMPLES:
            masked = mask_pii(text)[0] if self.options.pii else text  # the report must not leak PII
            shown.append({"id": row["id"], "text": masked[:EXAMPLE_CHARS], **detail})
        return False
