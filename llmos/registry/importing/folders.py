"""Reading a model folder safely: which files to import, and what to refuse.

Refuses pickled weights (unless allowed), ``auto_map`` remote code (unless trusted) and symlinks
that leave the folder; skips hidden files and Python sources. Returns the files to store. A PEFT
LoRA adapter folder (``adapter_config.json``, no ``config.json``) is read the same way.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from llmos.errors import InvalidModelFile

log = logging.getLogger(__name__)
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}
SKIPPED_SUFFIXES = {".py", ".pyc"}
WEIGHT_SUFFIXES = {".safetensors"} | PICKLE_SUFFIXES
MAX_FILES = 10_000
ADAPTER_CONFIG = "adapter_config.json"


def _allowed_root(folder: Path) -> Path:
    """Where symlinks may point: the folder, or the repo root of a Hugging Face cache snapshot."""
    if folder.parent.name == "snapshots" and (folder.parent.parent / "blobs").is_dir():
        return folder.parent.parent  # hub cache: snapshots/<rev>/file -> ../../blobs/<hash>
    return folder


def _walk(folder: Path) -> list[Path]:
    root = _allowed_root(folder).resolve()
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        here = Path(dirpath)
        for d in list(dirnames):
            if d.startswith(".") or d == "__pycache__":
                dirnames.remove(d)
            elif (here / d).is_symlink():
                raise InvalidModelFile(f"refusing symlinked folder {here / d}: copy it into the model folder")
        for name in filenames:
            path = here / name
            if name.startswith(".") or path.suffix in SKIPPED_SUFFIXES:
                continue
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                raise InvalidModelFile(
                    f"refusing {path}: it is a symlink to {os.readlink(path)}, outside the model folder"
                )
            if not path.resolve().is_file():
                raise InvalidModelFile(f"refusing {path}: not a regular file")
            found.append(path)
            if len(found) > MAX_FILES:
                raise InvalidModelFile(f"{folder} has more than {MAX_FILES} files; is it a model folder?")
    return sorted(found)


def is_adapter_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a PEFT adapter (``adapter_config.json`` and no ``config.json``)."""
    return (folder / ADAPTER_CONFIG).is_file() and not (folder / "config.json").exists()


def read_config(folder: Path, filename: str = "config.json") -> dict:
    """The folder's ``config.json`` (or ``filename``) as a dict; ``InvalidModelFile`` if missing/not JSON."""
    path = folder / filename
    if not path.is_file():
        kind = "PEFT adapter" if filename == ADAPTER_CONFIG else "Hugging Face model"
        raise InvalidModelFile(f"{folder} has no {filename}: not a {kind} folder")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidModelFile(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise InvalidModelFile(f"{path} must hold a JSON object")
    return config


def scan_folder(folder: Path, *, allow_pickle: bool, trust_remote_code: bool) -> dict[str, Path]:
    """The files to import, keyed by path relative to ``folder`` (POSIX separators).

    Raises ``InvalidModelFile`` for a folder that is not a safe Hugging Face model folder.
    """
    if not folder.is_dir():
        raise InvalidModelFile(f"{folder} is not a folder")
    config_name = ADAPTER_CONFIG if is_adapter_folder(folder) else "config.json"
    config = read_config(folder, config_name)
    if "auto_map" in config and not trust_remote_code:
        raise InvalidModelFile(
            f"{folder / config_name} has 'auto_map' (custom model code); llmos does not run code from "
            "model files unless trust_remote_code is enabled (LLMOS_TRUST_REMOTE_CODE=1)"
        )
    files = {p.relative_to(folder).as_posix(): p for p in _walk(folder)}
    pickles = sorted(f for f in files if Path(f).suffix in PICKLE_SUFFIXES)
    safetensors = [f for f in files if f.endswith(".safetensors")]
    if not safetensors and not pickles:
        raise InvalidModelFile(f"{folder} has no weights (*.safetensors)")
    if pickles and not allow_pickle:
        if not safetensors:
            raise InvalidModelFile(
                f"{folder} has only pickled weights ({', '.join(pickles[:3])}); pickle formats are "
                "disabled because loading them can run code: convert to safetensors or pass --allow-pickle"
            )
        log.warning("skipping pickled files %s (safetensors weights are present)", pickles)
        files = {f: p for f, p in files.items() if f not in pickles}
    return files
