"""Model names and references (``name``, ``name:N``, ``name:latest``), validated strictly.

Names become folder names under the store, so the allowlist is the path-traversal defence:
lowercase letters, digits and ``.-_``, at most 64 characters, no ``..``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llmos.errors import InvalidModelName

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MAX_NAME_LEN = 64


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid model name; raise ``InvalidModelName`` otherwise."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name:
        shown = repr(name)[:80]
        raise InvalidModelName(
            f"invalid model name {shown}: use lowercase letters, digits, '.', '-' or '_' "
            f"(at most {MAX_NAME_LEN} characters, starting with a letter or digit, no '..')",
            param="name",
        )
    return name


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A parsed reference: a name and a version number (None means the latest)."""

    name: str
    version: int | None = None

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}:{self.version}"


def parse_ref(ref: str) -> ModelRef:
    """Parse ``name``, ``name:N`` or ``name:latest``; raise ``InvalidModelName`` on anything else."""
    name, sep, tag = ref.partition(":") if isinstance(ref, str) else ("", "", "")
    validate_name(name)
    if not sep or tag == "latest":
        return ModelRef(name)
    if not tag.isdigit() or not tag.isascii() or int(tag) < 1 or len(tag) > 9:
        raise InvalidModelName(
            f"invalid version {tag!r} in {ref!r}: use name, name:latest or name:N (N a positive number)",
            param="name",
        )
    return ModelRef(name, int(tag))
