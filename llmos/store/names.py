"""Model names and references (``name``, ``name:N``, ``name@alias``), validated strictly.

Names and aliases become folder names and database keys, so the allowlist is the path-traversal
defence: lowercase letters, digits and ``.-_``, at most 64 characters, no ``..``. ``name`` alone
means ``name@latest``; ``name:latest`` is accepted as the same thing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llmos.errors import InvalidModelName

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MAX_NAME_LEN = 64
LATEST = "latest"
HUB_PREFIX = "hf:"


def _is_valid(name: object) -> bool:
    return isinstance(name, str) and bool(NAME_RE.fullmatch(name)) and ".." not in name


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid model name; raise ``InvalidModelName`` otherwise."""
    if not _is_valid(name):
        shown = repr(name)[:80]
        raise InvalidModelName(
            f"invalid model name {shown}: use lowercase letters, digits, '.', '-' or '_' "
            f"(at most {MAX_NAME_LEN} characters, starting with a letter or digit, no '..')",
            param="name",
        )
    return name


def validate_alias(alias: str) -> str:
    """Return ``alias`` if it is a valid alias (same rules as model names); raise ``InvalidModelName``."""
    if not _is_valid(alias):
        raise InvalidModelName(
            f"invalid alias {repr(alias)[:80]}: use lowercase letters, digits, '.', '-' or '_' "
            f"(at most {MAX_NAME_LEN} characters, starting with a letter or digit), e.g. prod",
            param="alias",
        )
    return alias


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A parsed reference: a name and at most one of a version number or an alias.

    Neither means the ``latest`` alias (or, in a store without alias rows, the highest version).
    """

    name: str
    version: int | None = None
    alias: str | None = None

    @property
    def is_whole_name(self) -> bool:
        """Whether the reference is a bare name (which ``rm`` and ``versions`` read as every version)."""
        return self.version is None and self.alias is None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        return f"{self.name}@{self.alias}" if self.alias else self.name


def parse_ref(ref: str) -> ModelRef:
    """Parse ``name``, ``name:N``, ``name:latest`` or ``name@alias``; raise ``InvalidModelName`` otherwise."""
    if not isinstance(ref, str):
        raise InvalidModelName(f"invalid model reference {ref!r}", param="name")
    if ref.startswith(HUB_PREFIX) and "/" in ref:
        raise InvalidModelName(
            f"{ref[:200]!r} is a Hugging Face hub id: run `llmos pull {ref[:200]}` first and use the name "
            "it is registered under",
            param="name",
        )
    name, at, alias = ref.partition("@")
    if at:
        return ModelRef(validate_name(name), alias=validate_alias(alias))
    name, sep, tag = ref.partition(":")
    validate_name(name)
    if not sep:
        return ModelRef(name)
    if tag == LATEST:
        return ModelRef(name, alias=LATEST)
    if not tag.isdigit() or not tag.isascii() or int(tag) < 1 or len(tag) > 9:
        raise InvalidModelName(
            f"invalid version {tag[:80]!r} in {ref[:160]!r}: use name, name:N (N a positive number) "
            "or name@alias",
            param="name",
        )
    return ModelRef(name, int(tag))
