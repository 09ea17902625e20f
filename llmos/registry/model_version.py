"""``ModelVersion``: what the registry hands out — one immutable, registered model version.

The engine loads ``path`` (a plain Hugging Face folder); ``manifest`` says what is in it and where
it came from (``parents``); ``aliases`` are the movable names pointing at it when it was read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

# how a version relates to each entry of its manifest's ``parents``
RELATIONS = ("converted_from", "copied_from", "adapter_base", "merged_from", "base")


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One registered model version; ``path`` is its Hugging Face-layout snapshot folder."""

    name: str
    version: int
    digest: str
    path: Path
    manifest: dict[str, Any]
    created_at: datetime
    aliases: tuple[str, ...] = field(default=(), compare=False)  # mutable facts: not identity

    @property
    def ref(self) -> str:
        """The exact reference, ``name:version``."""
        return f"{self.name}:{self.version}"

    @property
    def parents(self) -> list[dict[str, Any]]:
        """The manifest's parent links (``ref``, ``digest``, ``relation``); empty for older versions."""
        return list(self.manifest.get("parents") or [])

    def as_parent(self, relation: str) -> dict[str, Any]:
        """This version as a manifest ``parents`` entry of a version derived from it."""
        assert relation in RELATIONS, relation
        return {"ref": self.ref, "digest": self.digest, "relation": relation}
