"""Content digests: sha256 of files (streamed) and of a whole model version.

A version's digest is the sha256 over its sorted ``(filename, blob digest)`` list, so two
imports of the same bytes under the same file names get the same digest.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path

CHUNK_SIZE = 1 << 20
HEX_RE = re.compile(r"^[0-9a-f]{64}$")


def sha256_file(path: Path) -> str:
    """The hex sha256 of the file at ``path``, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def version_digest(files: Iterable[tuple[str, str]]) -> str:
    """``sha256:<hex>`` over the sorted ``(filename, blob hex digest)`` pairs."""
    digest = hashlib.sha256()
    for filename, blob in sorted(files):
        digest.update(f"{filename}\0{blob}\n".encode())
    return f"sha256:{digest.hexdigest()}"


def is_hex_digest(value: str) -> bool:
    """Whether ``value`` is exactly 64 lowercase hex characters."""
    return bool(HEX_RE.fullmatch(value))
