"""The registry's verbs as plain functions for scripts and notebooks: ``llmos.registry.tag(...)``.

Each opens a ``Registry`` on ``Settings.from_env()`` (``LLMOS_HOME``…), does one thing and closes
it. ``Registry`` itself is the real API: use it to do many things on one connection.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llmos.config import Settings
from llmos.registry.importing.publish import CapabilityProbe
from llmos.registry.model_version import ModelVersion
from llmos.registry.registry import Registry
from llmos.registry.upkeep.garbage import GcReport
from llmos.registry.upkeep.integrity import VerifyReport
from llmos.registry.versions.events import History


@contextmanager
def _registry(*, recover: bool = True, **overrides: object) -> Iterator[Registry]:
    registry = Registry(Settings.from_env(**overrides), recover=recover)
    try:
        yield registry
    finally:
        registry.close()


def list() -> builtins.list[ModelVersion]:  # named after the CLI verb, like the others
    """Every version, by name then version (``aliases`` filled)."""
    with _registry() as registry:
        return registry.list()


def show(ref: str) -> ModelVersion:
    """The version ``ref`` names (``name``, ``name:N``, ``name@alias``); raises ``ModelNotFound``."""
    with _registry() as registry:
        return registry.resolve(ref)


def tag(ref: str, alias: str) -> ModelVersion:
    """Point ``name@alias`` at the version ``ref`` names (logged); returns that version."""
    with _registry() as registry:
        return registry.tag(ref, alias)


def cp(src: str, dst: str) -> ModelVersion:
    """Register ``src`` as the next version of ``dst``, sharing its files; returns the new version."""
    with _registry() as registry:
        return registry.copy(src, dst)


def rm(ref: str, force: bool = False) -> builtins.list[ModelVersion]:
    """Remove ``name:N`` (or every version of ``name``); raises ``AlreadyExists`` while an alias
    other than ``latest`` points at one, unless ``force``. Returns the removed versions."""
    with _registry() as registry:
        return registry.remove(ref, force=force)


def history(name: str) -> History:
    """The versions of ``name`` with their parents and aliases, and every logged change, oldest first."""
    with _registry() as registry:
        return registry.history(name)


def verify(name: str | None = None) -> VerifyReport:
    """Re-hash every version's files (or those of ``name``); ``report.is_ok`` when nothing is wrong."""
    with _registry() as registry:
        return registry.verify_all(name)


def gc(dry_run: bool = False) -> GcReport:
    """Remove unreferenced blobs, unregistered snapshots and stale temp files (or only list them)."""
    with _registry(recover=False) as registry:
        return registry.gc(dry_run=dry_run)


def import_path(
    path: str | Path,
    name: str,
    *,
    allow_pickle: bool = False,
    probe: CapabilityProbe | None = None,
    **options: Any,
) -> ModelVersion:
    """Register a folder, ``.gguf`` file or adapter folder as the next version of ``name``;
    ``probe`` is the capability check to record (``llmos.runtime.capability.check``; none: unchecked);
    ``options`` are ``Registry.import_path``'s (``kind``, ``parents``, ``extra``, ``base``, ``check``)."""
    settings = Settings.from_env(**({"allow_pickle": True} if allow_pickle else {}))
    registry = Registry(settings, probe=probe)
    try:
        return registry.import_path(path, name, **options)
    finally:
        registry.close()
