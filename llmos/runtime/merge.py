"""``llmos merge``: bake a LoRA adapter into its base and register the result as a full version.

The merged folder is the base's files (config, tokenizer, chat template...) with each safetensors
shard rewritten as ``W + scaling * B @ A`` in the shard's own dtype, staged in the store's temp
area and imported like any folder; the manifest's ``parents`` name the base and the adapter.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmos.errors import InvalidModelFile
from llmos.models.lora import LoraAdapter, merge_weights
from llmos.registry.adapters import resolve_adapter
from llmos.registry.model_version import ModelVersion
from llmos.store.safetensors_header import TORCH_DTYPE_NAMES, read_safetensors_header

if TYPE_CHECKING:
    import torch

    from llmos.registry.registry import Registry

log = logging.getLogger(__name__)


def merge_adapter(registry: Registry, base_ref: str | None, adapter_ref: str, name: str) -> ModelVersion:
    """Register ``base + adapter`` as the next version of ``name`` and return it.

    ``base_ref`` None means the adapter's own base. Raises ``ModelNotFound``, ``InvalidRequest``
    (not an adapter, or another base), ``CorruptArtifact`` or ``InvalidModelFile``.
    """
    base, adapter = resolve_adapter(registry, adapter_ref, base_ref)
    registry.verify(base)
    registry.verify(adapter)
    lora = LoraAdapter.from_dir(adapter.path)
    lora.check_base(base.path)
    with registry.blobs.work_dir() as work:
        folder = work / "merged"
        write_merged(base.path, lora, folder)
        parents = [base.as_parent("merged_from"), adapter.as_parent("merged_from")]
        return registry.import_path(
            folder,
            name,
            parents=parents,
            extra=_merge_fields(base, adapter),
        )


def _merge_fields(base: ModelVersion, adapter: ModelVersion) -> dict[str, Any]:
    """The merged version's manifest fields: its source, and the base's sampling defaults (a
    catalog model's live in its manifest, not in a generation_config.json the merge could copy)."""
    fields: dict[str, Any] = {"source": {"type": "merge", "base": base.ref, "adapter": adapter.ref}}
    if base.manifest.defaults is not None:
        fields["defaults"] = base.manifest.defaults.to_dict()
    return fields


def write_merged(base_dir: Path, adapter: LoraAdapter, out_dir: Path) -> None:
    """Write ``base_dir`` with ``adapter`` merged into ``out_dir``: shards keep their names and
    dtypes (so a sharded checkpoint's index stays valid), one shard in memory at a time; other
    files are copied."""
    import torch
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True)
    for path in sorted(base_dir.rglob("*")):
        rel = path.relative_to(base_dir)
        if path.is_file() and path.suffix != ".safetensors":
            (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, out_dir / rel)
    headers = {shard: read_safetensors_header(shard) for shard in sorted(base_dir.glob("*.safetensors"))}
    if not headers:
        raise InvalidModelFile(f"{base_dir} has no *.safetensors weights to merge into")
    shard_of = {name: shard for shard, header in headers.items() for name in header}
    pending: dict[Path, dict[str, torch.Tensor]] = {shard: {} for shard in headers}
    for name, tensor in merge_weights(_read(list(headers)), [adapter]):
        shard = shard_of[name]
        dtype = getattr(torch, TORCH_DTYPE_NAMES.get(headers[shard][name]["dtype"], ""), tensor.dtype)
        pending[shard][name] = tensor.to(dtype).contiguous()
        if len(pending[shard]) == len(headers[shard]):
            save_file(pending.pop(shard), str(out_dir / shard.name), metadata={"format": "pt"})
            log.info("merged %s", shard.name)
    assert not pending, f"shards not written: {sorted(pending)}"


def _read(shards: list[Path]) -> Iterator[tuple[str, torch.Tensor]]:
    from safetensors import SafetensorError, safe_open

    for shard in shards:
        try:
            with safe_open(shard, framework="pt", device="cpu") as f:
                for name in f.keys():
                    yield name, f.get_tensor(name)
        except (OSError, SafetensorError) as exc:
            raise InvalidModelFile(f"cannot read weights from {shard}: {exc}") from None
