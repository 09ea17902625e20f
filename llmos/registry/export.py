"""``llmos export``: write a version out as a plain Hugging Face folder, or a PEFT adapter folder.

Files are copied (never hard links: the store's blobs are read-only and shared), hashed on the way
and checked against the manifest, into a temp sibling of the destination that is then renamed into
place, so a failed export leaves nothing half-written and a corrupt blob is never exported.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from llmos.errors import AlreadyExists, CorruptArtifact
from llmos.registry.importing.folders import ADAPTER_CONFIG
from llmos.registry.model_version import ModelVersion
from llmos.store.blobs import copy_hashed, fsync_dir

if TYPE_CHECKING:
    from llmos.registry.registry import Registry

log = logging.getLogger(__name__)


def export(
    registry: Registry, ref: str, dest: str | Path, *, force: bool = False, base_name: str | None = None
) -> Path:
    """Write version ``ref`` into folder ``dest`` and return its absolute path.

    A model becomes a folder ``transformers.AutoModelForCausalLM.from_pretrained`` loads; an adapter
    becomes a PEFT folder whose ``base_model_name_or_path`` is ``base_name`` (default: the base's
    registry ref). Raises ``ModelNotFound``, ``AlreadyExists`` (``dest`` is a file, or a non-empty
    folder without ``force``) or ``CorruptArtifact`` (a stored file no longer matches its digest).
    """
    mv = registry.resolve(ref)
    dest = Path(dest).expanduser().absolute()
    if dest.exists() and not dest.is_dir():
        raise AlreadyExists(f"{dest} is a file; export into a folder")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise AlreadyExists(f"{dest} is not empty; choose a new folder or pass --force to replace it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.export-{uuid.uuid4().hex[:12]}"
    try:
        _copy_version(mv, tmp)
        if mv.manifest.is_adapter:
            _set_base(tmp / ADAPTER_CONFIG, base_name or mv.manifest.base)
        _replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("exported %s to %s", mv.ref, dest)
    return dest


def _copy_version(mv: ModelVersion, out: Path) -> None:
    out.mkdir()
    for filename, info in sorted(mv.manifest.files.items()):
        target = (out / filename).resolve()
        assert target.is_relative_to(out.resolve()), f"file name {filename!r} escapes the folder"
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = _copy_hashed(mv.path / filename, target)
        if f"sha256:{digest}" != info.digest:
            raise CorruptArtifact(
                f"{mv.ref}: {filename} does not match its recorded digest (the stored file was changed "
                f"or damaged); nothing was exported. Run `llmos verify {mv.name}`"
            )
    fsync_dir(out)


def _copy_hashed(src: Path, dest: Path) -> str:
    try:
        return copy_hashed(src, dest)
    except FileNotFoundError:
        raise CorruptArtifact(f"{src.name} is missing from the store ({src.parent})") from None


def _set_base(config_path: Path, base: str | None) -> None:
    """Point the exported adapter at its base (PEFT reads ``base_model_name_or_path``)."""
    if not base:
        return
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _replace(tmp: Path, dest: Path) -> None:
    """Move ``tmp`` to ``dest``, replacing an existing folder only after the new one is complete."""
    old = None
    if dest.is_dir():
        old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:12]}"
        os.replace(dest, old)
    os.replace(tmp, dest)
    fsync_dir(dest.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
