"""Model registry: what models exist, their versions, aliases, digests, lineage and snapshot folders.

``Registry(settings)`` is the entry point; the verbs (``list``, ``show``, ``tag``, ``cp``, ``rm``,
``history``, ``verify``, ``gc``, ``import_path``) are one-call shortcuts over it for scripts, and
``ensure_pulled`` is the one-liner tests and ``make run`` use. No torch at import time.
"""

from __future__ import annotations

from pathlib import Path

from llmos.config import Settings
from llmos.registry.catalog import CatalogEntry, find_entry, load_catalog
from llmos.registry.events import History, ModelEvent
from llmos.registry.garbage import GcReport
from llmos.registry.integrity import VerifyReport
from llmos.registry.registry import ModelVersion, Registry
from llmos.registry.verbs import cp, gc, history, import_path, list, rm, show, tag, verify


def ensure_pulled(home: Path, name: str, progress: bool = False) -> ModelVersion:
    """The latest version of catalog model ``name`` in ``home``, pulling it first if missing."""
    registry = Registry(Settings(home=Path(home)))
    try:
        if registry.exists(name):
            return registry.resolve(name)
        return registry.pull(name, progress=progress)
    finally:
        registry.close()


__all__ = [
    "CatalogEntry",
    "GcReport",
    "History",
    "ModelEvent",
    "ModelVersion",
    "Registry",
    "VerifyReport",
    "cp",
    "ensure_pulled",
    "find_entry",
    "gc",
    "history",
    "import_path",
    "list",
    "load_catalog",
    "rm",
    "show",
    "tag",
    "verify",
]
