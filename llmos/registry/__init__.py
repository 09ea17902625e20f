"""Model registry: what models exist, their versions, digests and snapshot folders.

``Registry(settings)`` is the entry point; ``ensure_pulled`` is the one-liner tests and ``make run``
use. No torch at import time: conversion imports it lazily.
"""

from __future__ import annotations

from pathlib import Path

from llmos.config import Settings
from llmos.registry.catalog import CatalogEntry, find_entry, load_catalog
from llmos.registry.registry import ModelVersion, Registry


def ensure_pulled(home: Path, name: str, progress: bool = False) -> ModelVersion:
    """The latest version of catalog model ``name`` in ``home``, pulling it first if missing."""
    registry = Registry(Settings(home=Path(home)))
    try:
        if registry.exists(name):
            return registry.resolve(name)
        return registry.pull(name, progress=progress)
    finally:
        registry.close()


__all__ = ["CatalogEntry", "ModelVersion", "Registry", "ensure_pulled", "find_entry", "load_catalog"]
