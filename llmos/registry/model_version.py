"""``ModelVersion``: what the registry hands out — one immutable, registered model version.

The engine loads ``path`` (a plain Hugging Face folder); ``manifest`` (a ``Manifest``) says what is
in it and where it came from (``parents``); ``aliases`` are the movable names pointing at it when it
was read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from llmos.registry.manifest import RELATIONS, Manifest, ParentLink

__all__ = ["RELATIONS", "ModelVersion"]


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One registered model version; ``path`` is its Hugging Face-layout snapshot folder."""

    name: str
    version: int
    digest: str
    path: Path
    manifest: Manifest
    created_at: datetime
    aliases: tuple[str, ...] = field(default=(), compare=False)  # mutable facts: not identity

    @property
    def ref(self) -> str:
        """The exact reference, ``name:version``."""
        return f"{self.name}:{self.version}"

    @property
    def parents(self) -> list[ParentLink]:
        """The manifest's parent links (``ref``, ``digest``, ``relation``); empty for older versions."""
        return list(self.manifest.parents)

    def as_parent(self, relation: str) -> ParentLink:
        """This version as a manifest ``parents`` entry of a version derived from it."""
        assert relation in RELATIONS, relation
        return ParentLink(self.ref, self.digest, relation)
