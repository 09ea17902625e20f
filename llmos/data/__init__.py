"""Versioned datasets: import, inspect, clean, split, annotate and export, stored content-addressed
as Parquet with lineage (``llmos data ...`` on the CLI, ``/api/datasets`` over HTTP).

``llmos.data.load("reviews:2")`` returns a Hugging Face ``datasets.Dataset`` for training. The
functions live in ``llmos.data.sdk`` and are imported on first use, so ``llmos --help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "CleanOptions",
    "agreement",
    "annotate",
    "apply_annotations",
    "clean",
    "export",
    "import_file",
    "labels",
    "list",
    "load",
    "remove_label",
    "review",
    "rows",
    "show",
    "split",
    "stats",
]

if TYPE_CHECKING:
    from llmos.data.cleaning import CleanOptions
    from llmos.data.sdk import (
        agreement,
        annotate,
        apply_annotations,
        clean,
        export,
        import_file,
        labels,
        list,
        load,
        remove_label,
        review,
        rows,
        show,
        split,
        stats,
    )


def __getattr__(name: str) -> Any:
    if name == "CleanOptions":
        from llmos.data.cleaning import CleanOptions

        return CleanOptions
    if name in __all__:
        from llmos.data import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'llmos.data' has no attribute {name!r}")
