"""``ModelVersion``: what the registry hands out — one immutable, registered model version.

The engine loads ``path`` (a plain Hugging Face folder); ``manifest`` (a ``Manifest``) says what is
in it and where it came from (``parents``); ``aliases`` are the movable names pointing at it when it
was read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from llmos.registry.manifest import RELATIONS, Manifest, ParentLink

__all__ = ["RELATIONS", "ModelVersion"]

# config.json keys of a transformer's shape, by the names llmos reports them under
SHAPE_KEYS = {
    "layers": "num_hidden_layers",
    "heads": "num_attention_heads",
    "kv_heads": "num_key_value_heads",
    "hidden_size": "hidden_size",
    "vocab_size": "vocab_size",
}


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

    def shape(self) -> dict[str, int]:
        """Layers, attention heads, KV heads, hidden size and vocabulary from the folder's
        config.json (a multimodal config's ``text_config``); keys it lacks are left out, and a
        folder without a readable config gives ``{}``."""
        try:
            config: Any = json.loads((self.path / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(config, dict):
            return {}
        text = config.get("text_config")
        if isinstance(text, dict):
            config = {**config, **text}
        return {name: config[key] for name, key in SHAPE_KEYS.items() if isinstance(config.get(key), int)}
