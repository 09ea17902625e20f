"""Model registry: what models exist, their versions, aliases, digests, lineage and snapshot folders.

``Registry(settings)`` is the entry point; the verbs (``list``, ``show``, ``tag``, ``cp``, ``rm``,
``history``, ``verify``, ``gc``, ``import_path``) are one-call shortcuts over it for scripts, and
``ensure_pulled`` is the one-liner tests and ``make run`` use. No torch at import time.
"""

from __future__ import annotations

from pathlib import Path

from llmos.config import Settings
from llmos.registry.importing.publish import CapabilityProbe
from llmos.registry.manifest import Manifest, ParentLink
from llmos.registry.registry import ModelVersion, Registry
from llmos.registry.sources.catalog import CatalogEntry, find_entry, load_catalog
from llmos.registry.upkeep.garbage import GcReport
from llmos.registry.upkeep.integrity import VerifyReport
from llmos.registry.verbs import cp, gc, history, import_path, list, rm, show, tag, verify
from llmos.registry.versions.events import History, ModelEvent


def ensure_pulled(
    home: Path, name: str, progress: bool = False, probe: CapabilityProbe | None = None
) -> ModelVersion:
    """The latest version of catalog model ``name`` in ``home``, pulling it first if missing (and
    recording ``probe``'s capability report, e.g. ``llmos.runtime.capability.check``)."""
    registry = Registry(Settings(home=Path(home)), probe=probe)
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
    "Manifest",
    "ModelEvent",
    "ModelVersion",
    "ParentLink",
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
