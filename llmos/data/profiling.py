"""Dataset statistics for ``llmos data stats``: rows per split, columns, a token length histogram
(whitespace tokens, or a model's tokenizer) and the label balance of a classification dataset.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from llmos.data.schemas import Schema, row_text


def whitespace_tokens(text: str) -> int:
    """The number of whitespace-separated words: the tokenizer used without ``--model``."""
    return len(text.split())


def histogram(lengths: list[int], num_bins: int) -> list[dict[str, int]]:
    """Equal-width integer bins ``[lo, hi]`` covering ``min..max`` of ``lengths``, with their counts."""
    if not lengths:
        return []
    low, high = min(lengths), max(lengths)
    width = max(1, -(-(high - low + 1) // num_bins))  # ceiling division
    counts = np.bincount((np.asarray(lengths) - low) // width)
    return [
        {"lo": low + i * width, "hi": low + (i + 1) * width - 1, "count": int(count)}
        for i, count in enumerate(counts)
    ]


def token_stats(lengths: list[int], num_bins: int) -> dict[str, Any]:
    """Summary numbers and a histogram of per-row token counts."""
    if not lengths:
        return {"rows": 0, "total": 0, "histogram": []}
    values = np.asarray(lengths)
    return {
        "rows": len(lengths),
        "total": int(values.sum()),
        "min": int(values.min()),
        "mean": round(float(values.mean()), 2),
        "p50": int(np.percentile(values, 50)),
        "p90": int(np.percentile(values, 90)),
        "p99": int(np.percentile(values, 99)),
        "max": int(values.max()),
        "histogram": histogram(lengths, num_bins),
    }


def profile(
    tables: dict[str, pa.Table],
    schema: Schema,
    count_tokens: Callable[[str], int],
    tokenizer: str,
    num_bins: int = 10,
) -> dict[str, Any]:
    """Rows per split, columns, token lengths over every split, and label counts (classification)."""
    lengths: list[int] = []
    labels: dict[str, Counter[str]] = {}
    for split, table in tables.items():
        for row in table.to_pylist():
            lengths.append(count_tokens(row_text(schema, row)))
        if "label" in table.column_names:
            labels[split] = Counter(table.column("label").to_pylist())
    stats: dict[str, Any] = {
        "schema": schema.name,
        "splits": {split: table.num_rows for split, table in tables.items()},
        "columns": list(schema.columns),
        "tokens": {"tokenizer": tokenizer, **token_stats(lengths, num_bins)},
    }
    if labels:
        total = sum(labels.values(), Counter())
        stats["labels"] = dict(sorted(total.items()))
        stats["labels_by_split"] = {split: dict(sorted(c.items())) for split, c in labels.items()}
    return stats
