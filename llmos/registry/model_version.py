"""``ModelVersion``: what the registry hands out — one immutable, registered model version.

The engine loads ``path`` (a plain Hugging Face folder); ``manifest`` says what is in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One registered model version; ``path`` is its Hugging Face-layout snapshot folder."""

    name: str
    version: int
    digest: str
    path: Path
    manifest: dict[str, Any]
    created_at: datetime

    @property
    def ref(self) -> str:
        """The exact reference, ``name:version``."""
        return f"{self.name}:{self.version}"
