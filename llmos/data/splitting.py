"""Train/test splitting: a seeded shuffle of row ids, stratified by label for classification so each
label keeps its share in both splits. The same rows and seed always give the same split.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llmos.errors import InvalidRequest


def choose_test_ids(ids: list[int], labels: list[str] | None, test: float, seed: int) -> set[int]:
    """The ids that go to the test split: ``round(test * n)`` of each label group (or of all rows)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, row_id in enumerate(ids):
        groups[labels[i] if labels is not None else ""].append(row_id)
    rng = np.random.default_rng(seed)
    chosen: set[int] = set()
    for label in sorted(groups):
        group = sorted(groups[label])
        order = rng.permutation(len(group))
        chosen.update(group[j] for j in order[: round(test * len(group))])
    return chosen


def split_table(table: pa.Table, test: float, seed: int, *, stratify: bool) -> dict[str, pa.Table]:
    """``{"train": …, "test": …}`` of ``table``, each sorted by id. Raises InvalidRequest."""
    if not 0.0 < test < 1.0:
        raise InvalidRequest(f"--test {test} must be a fraction between 0 and 1, e.g. 0.1", param="test")
    ids = table.column("id").to_pylist()
    labels = table.column("label").to_pylist() if stratify else None
    chosen = choose_test_ids(ids, labels, test, seed)
    if not chosen or len(chosen) == len(ids):
        raise InvalidRequest(
            f"--test {test} of {len(ids)} rows leaves a split empty: use a fraction that puts at least "
            "one row on each side",
            param="test",
        )
    table = table.sort_by("id")
    is_test = pa.array([row_id in chosen for row_id in table.column("id").to_pylist()])
    return {"train": table.filter(pc.invert(is_test)), "test": table.filter(is_test)}


def concat_splits(tables: dict[str, pa.Table]) -> pa.Table:
    """Every split's rows in one table, in split order."""
    return pa.concat_tables(tables.values())
