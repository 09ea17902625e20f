"""Build a native model from an HF model directory (``config.json`` + ``*.safetensors``).

The model is created on the meta device, materialised on the target device in the target dtype,
then every parameter is filled from safetensors (never pickle) through the model's ``load_weights``.
LoRA adapters are merged into the Hugging Face-named tensors as they stream past, before fusing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor, nn
from transformers import AutoConfig, PretrainedConfig

from llmos.errors import InvalidModelFile, UnsupportedArchitecture
from llmos.layers.linear import can_pack
from llmos.models import MODEL_CLASSES, MODEL_TYPES, native_model_class

if TYPE_CHECKING:
    from llmos.models.lora import LoraAdapter


def load_model(
    model_dir: Path,
    dtype: torch.dtype,
    device: torch.device,
    adapters: Sequence[LoraAdapter] = (),
    quantization: str | None = None,
) -> nn.Module:
    """The native model for ``model_dir`` on ``device`` in ``dtype``, in eval mode, with
    ``adapters`` (LoRA, checked against the base) merged into its weights and its projections
    quantized when ``quantization`` is ``"int8"`` (see ``EngineConfig.quantization``).

    Raises UnsupportedArchitecture when no native class fits (callers fall back to transformers)
    and InvalidModelFile when the config or weights are missing, unreadable or do not match.
    """
    model_dir = Path(model_dir)
    config = read_config(model_dir)
    cls = native_model_class(config)
    if cls is None:
        raise _unsupported(config.architectures, config.model_type)
    with torch.device("meta"):
        model = cls(config)
    # cast while still on meta (free), then allocate: the weights never exist in float32 first
    model = model.to(dtype).to_empty(device=device)
    weights: Iterable[tuple[str, Tensor]] = _read_safetensors(model_dir, device)
    if adapters:
        from llmos.models.lora import merge_weights

        weights = merge_weights(weights, adapters)
    model.load_weights(weights)
    if quantization == "int8":
        model.quantize_int8()
    elif can_pack(dtype, device):
        model.pack_for_cpu()
    return model.eval()


def read_config(model_dir: Path) -> PretrainedConfig:
    """The HF config of ``model_dir``, read without remote code; raises UnsupportedArchitecture for
    a model type with no native class (before transformers is asked to parse it)."""
    path = model_dir / "config.json"
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InvalidModelFile(f"cannot read {path}: {e}") from e
    if raw.get("model_type") not in MODEL_TYPES:
        raise _unsupported(raw.get("architectures"), raw.get("model_type"))
    try:
        return AutoConfig.from_pretrained(model_dir, trust_remote_code=False, local_files_only=True)
    except (OSError, ValueError, TypeError) as e:
        raise InvalidModelFile(f"invalid {path}: {e}") from e


def _unsupported(architectures: Any, model_type: Any) -> UnsupportedArchitecture:
    name = architectures[0] if architectures else f"model type {model_type!r}"
    supported = ", ".join(sorted(MODEL_CLASSES))
    return UnsupportedArchitecture(f"{name} has no native implementation; supported: {supported}")


def _safetensors_files(model_dir: Path) -> list[Path]:
    """The checkpoint's shards: those the index names, else ``model.safetensors``, else all
    ``*.safetensors`` (some repos also hold other formats' files, e.g. Mistral's consolidated.*)."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return [model_dir / name for name in sorted(set(weight_map.values()))]
    if (model_dir / "model.safetensors").is_file():
        return [model_dir / "model.safetensors"]
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise InvalidModelFile(f"no *.safetensors weights in {model_dir}")
    return files


def _read_safetensors(model_dir: Path, device: torch.device) -> Iterator[tuple[str, Tensor]]:
    for path in _safetensors_files(model_dir):
        try:
            with safe_open(path, framework="pt", device=str(device)) as f:
                for name in f.keys():
                    yield name, f.get_tensor(name)
        except (OSError, SafetensorError) as e:
            raise InvalidModelFile(f"cannot read weights from {path}: {e}") from e
