"""LoRA adapters in the registry: which registered model an adapter folder belongs on, the manifest
facts it inherits from that base, and which base a loaded adapter needs (reading and merging the
weights is ``models/lora.py``'s job).

An adapter version records its base's exact ``name:N`` (``base``) and digest (``base_digest``), so
the pair stays reproducible when the base name's ``latest`` moves on.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmos.errors import InvalidModelFile, InvalidModelName, InvalidRequest, ModelNotFound
from llmos.registry.importing.folders import ADAPTER_CONFIG, read_config
from llmos.registry.importing.manifest import Origin
from llmos.registry.manifest import AdapterFacts
from llmos.registry.model_version import ModelVersion

if TYPE_CHECKING:
    from llmos.registry.registry import Registry


def _candidates(hub_id: str) -> list[str]:
    """Registry names an adapter's ``base_model_name_or_path`` may mean: as is, or its repo name."""
    tail = hub_id.rstrip("/").rsplit("/", 1)[-1].lower()
    return [hub_id] if tail == hub_id else [hub_id, tail]


def find_base(registry: Registry, folder: Path, base_ref: str | None) -> ModelVersion:
    """The registered version an adapter goes on: ``base_ref`` if given, else the version the
    adapter's ``base_model_name_or_path`` names (as a registry name or by its repo name).

    Raises ``ModelNotFound`` naming the base and how to import it, ``InvalidModelFile`` when the
    base is an adapter itself.
    """
    declared = read_config(folder, ADAPTER_CONFIG).get("base_model_name_or_path")
    wanted = (
        [base_ref] if base_ref else _candidates(declared) if isinstance(declared, str) and declared else []
    )
    if not wanted:
        raise ModelNotFound(
            f"{folder} is a LoRA adapter without a base model: import the base (`llmos import "
            "./base-folder --name NAME` or `llmos pull NAME`) and pass --base NAME",
            param="base",
        )
    for ref in wanted:
        try:
            base = registry.resolve(ref)
        except (InvalidModelName, ModelNotFound):
            continue  # not this spelling: try the next, then explain below
        if base.manifest.is_adapter:
            raise InvalidModelFile(f"{base.ref} is an adapter itself; an adapter's base must be a full model")
        return base
    raise ModelNotFound(
        f"the adapter's base model {wanted[0]!r} is not in the registry: import it first (`llmos import "
        f"./base-folder --name NAME` or `llmos pull NAME`), then import the adapter with --base NAME",
        param="base",
    )


def adapter_origin(folder: Path, base: ModelVersion, extra: dict[str, Any]) -> Origin:
    """How an adapter version is described: kind ``adapter``, its ``base``, LoRA settings, and the
    base's architecture and context length (what the adapter runs as)."""
    m = base.manifest
    fields = {
        "source": {"type": "path", "path": str(folder)},
        "architecture": m.architecture,
        "model_type": m.model_type,
        "context_length": m.context_length,
        "has_chat_template": m.has_chat_template,
        "base": base.ref,  # exact name:N, so the pair stays fixed when the base's latest moves
        "base_digest": base.digest,
        "adapter": AdapterFacts.from_dict(read_config(folder, ADAPTER_CONFIG)).to_dict(),
        **extra,
    }
    return Origin("imported", fields, [base.as_parent("adapter_base")], kind="adapter")


def resolve_adapter(
    registry: Registry, adapter_ref: str, base_ref: str | None = None
) -> tuple[ModelVersion, ModelVersion]:
    """``(base, adapter)`` versions for ``base_ref+adapter_ref``; without ``base_ref``, the base the
    adapter's manifest names. Raises ``ModelNotFound``, or ``InvalidRequest`` when ``adapter_ref`` is
    not an adapter or ``base_ref`` is not (byte for byte) the base it was made for."""
    adapter = registry.resolve(adapter_ref)
    if not adapter.manifest.is_adapter:
        raise InvalidRequest(
            f"{adapter.ref} is not a LoRA adapter (it is a {adapter.manifest.kind} model); "
            "name an adapter version there (`llmos list` shows kinds)",
            param="model",
        )
    declared = adapter.manifest.base
    wanted = base_ref or declared
    if not isinstance(wanted, str):
        raise InvalidModelFile(
            f"{adapter.ref} does not record its base model; load it as BASE+{adapter.name}"
        )
    base = registry.resolve(wanted)
    expected = adapter.manifest.base_digest
    if (expected and base.digest != expected) or (not expected and declared and base.ref != declared):
        raise InvalidRequest(
            f"{adapter.ref} was made for {declared}, not {base.ref} (different weights); "
            f"load it as {declared}+{adapter.ref}",
            param="model",
        )
    return base, adapter
