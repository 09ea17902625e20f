"""LoRA adapters in PEFT's folder layout: read, check against a base model, merge into its weights.

Which registered version an adapter is and which base it goes on is the registry's business
(``registry/adapters.py``); this module only reads the folder it is handed and does the arithmetic.

An adapter folder holds ``adapter_config.json`` and ``adapter_model.safetensors`` (never pickles).
Merging computes ``W += scaling * B @ A`` (``scaling = alpha / r``, or ``alpha / sqrt(r)`` with
rsLoRA) in float32 on the Hugging Face weight names, before a native model fuses q/k/v or gate/up.
Reading and checking need no torch; merging imports it lazily.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmos.errors import InvalidModelFile
from llmos.store.safetensors_header import read_safetensors_header

if TYPE_CHECKING:
    from torch import Tensor, nn

ADAPTER_CONFIG = "adapter_config.json"  # PEFT's file names
ADAPTER_WEIGHTS = "adapter_model.safetensors"
KEY_RE = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<half>[AB])\.weight$")


@dataclass(frozen=True, slots=True)
class LoraModule:
    """One adapted linear layer: ``weight`` is the base tensor it changes (HF name)."""

    weight: str
    a_key: str
    b_key: str
    rank: int
    in_features: int
    out_features: int
    scaling: float


@dataclass(frozen=True, slots=True)
class LoraAdapter:
    """A PEFT LoRA adapter folder, validated; ``modules`` maps base weight names to their update."""

    path: Path
    config: dict[str, Any]
    modules: dict[str, LoraModule]

    @classmethod
    def from_dir(cls, folder: Path) -> LoraAdapter:
        """Read and validate ``folder``; raises ``InvalidModelFile`` naming what is wrong."""
        folder = Path(folder)
        config = read_adapter_config(folder)
        weights = folder / ADAPTER_WEIGHTS
        if not weights.is_file():
            pickled = [p.name for p in folder.glob("adapter_model.*")]
            hint = f" ({', '.join(pickled)} is a pickle: convert it to safetensors)" if pickled else ""
            raise InvalidModelFile(f"{folder} has no {ADAPTER_WEIGHTS}{hint}")
        header = read_safetensors_header(weights)
        return cls(folder, config, _modules(config, header, weights.name))

    def check_base(self, base_dir: Path) -> None:
        """Raise ``InvalidModelFile`` unless every adapted weight exists in the base (safetensors
        headers of ``base_dir``) with the shape the adapter expects and every target module exists."""
        shapes = {
            name: info["shape"]
            for path in sorted(Path(base_dir).glob("*.safetensors"))
            for name, info in read_safetensors_header(path).items()
        }
        fan_in_fan_out = bool(self.config.get("fan_in_fan_out"))
        for module in self.modules.values():
            shape = shapes.get(module.weight)
            if shape is None:
                raise InvalidModelFile(
                    f"{self.path.name}: adapts {module.weight!r}, which the base model does not have "
                    "(was the adapter trained on a different base?)"
                )
            expected = [module.out_features, module.in_features]
            if fan_in_fan_out:
                expected.reverse()
            if list(shape) != expected:
                raise InvalidModelFile(
                    f"{self.path.name}: {module.weight!r} is {tuple(shape)} in the base, but the adapter's "
                    f"matrices make {tuple(expected)} (was it trained on a different base?)"
                )
        targets = self.config.get("target_modules")
        if isinstance(targets, list):
            modules = {name.removesuffix(".weight") for name in shapes}
            for target in targets:
                if not any(m == target or m.endswith(f".{target}") for m in modules):
                    raise InvalidModelFile(
                        f"{self.path.name}: target module {target!r} does not exist in the base model"
                    )

    def factors(self) -> dict[str, tuple[Tensor, Tensor, float]]:
        """``(A, B, scaling)`` per base weight name, as float32 CPU tensors (small: rank r)."""
        from safetensors import SafetensorError, safe_open

        out = {}
        try:
            with safe_open(self.path / ADAPTER_WEIGHTS, framework="pt", device="cpu") as f:
                for name, m in self.modules.items():
                    out[name] = (f.get_tensor(m.a_key).float(), f.get_tensor(m.b_key).float(), m.scaling)
        except (OSError, SafetensorError) as exc:
            raise InvalidModelFile(f"cannot read {self.path / ADAPTER_WEIGHTS}: {exc}") from None
        return out


def read_adapter_config(folder: Path) -> dict[str, Any]:
    """The adapter config, checked to be a plain LoRA (no DoRA, biases or saved modules)."""
    path = Path(folder) / ADAPTER_CONFIG
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidModelFile(f"cannot read {path}: {exc}") from None
    if not isinstance(config, dict):
        raise InvalidModelFile(f"{path} must hold a JSON object")
    if config.get("peft_type", "LORA") != "LORA":
        raise InvalidModelFile(f"{path}: peft_type {config['peft_type']!r} is not supported (only LORA)")
    unsupported = [
        key for key in ("use_dora", "modules_to_save", "trainable_token_indices") if config.get(key)
    ] + (["bias"] if config.get("bias", "none") != "none" else [])
    if unsupported:
        raise InvalidModelFile(f"{path}: {', '.join(unsupported)} is not supported; use a plain LoRA adapter")
    r, alpha = config.get("r"), config.get("lora_alpha")
    if not isinstance(r, int) or r < 1 or not isinstance(alpha, int | float):
        raise InvalidModelFile(f"{path}: r must be a positive integer and lora_alpha a number")
    return config


def _scaling(config: dict[str, Any], module: str, rank: int) -> float:
    alpha = float(config["lora_alpha"])
    for pattern, value in (config.get("alpha_pattern") or {}).items():
        if re.match(rf"(.*\.)?({pattern})$", module):  # PEFT's get_pattern_key
            alpha = float(value)
            break
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def _modules(
    config: dict[str, Any], header: dict[str, dict[str, Any]], filename: str
) -> dict[str, LoraModule]:
    pairs: dict[str, dict[str, tuple[str, list[int]]]] = {}
    for key, info in header.items():
        match = KEY_RE.match(key)
        if match is None:
            raise InvalidModelFile(
                f"{filename}: unsupported tensor {key!r}; only LoRA A/B matrices of linear layers "
                "(base_model.model.<module>.lora_A.weight / lora_B.weight) can be loaded"
            )
        if len(info["shape"]) != 2:
            raise InvalidModelFile(f"{filename}: {key!r} has shape {info['shape']}; LoRA matrices are 2-D")
        pairs.setdefault(match["module"], {})[match["half"]] = (key, info["shape"])
    if not pairs:
        raise InvalidModelFile(f"{filename} holds no LoRA matrices")
    modules = {}
    for module, halves in sorted(pairs.items()):
        if set(halves) != {"A", "B"}:
            raise InvalidModelFile(f"{filename}: {module} has lora_{''.join(halves)} but not both A and B")
        (a_key, (rank, in_features)), (b_key, (out_features, b_rank)) = halves["A"], halves["B"]
        if rank != b_rank:
            raise InvalidModelFile(f"{filename}: {module} has rank {rank} in lora_A but {b_rank} in lora_B")
        weight = f"{module}.weight"
        scaling = _scaling(config, module, rank)
        modules[weight] = LoraModule(weight, a_key, b_key, rank, in_features, out_features, scaling)
    return modules


def merge_weights(
    weights: Iterable[tuple[str, Tensor]], adapters: Sequence[LoraAdapter]
) -> Iterator[tuple[str, Tensor]]:
    """``weights`` (HF name, tensor) with every adapter's ``scaling * B @ A`` added, in float32 for
    the adapted ones (the loader casts to its dtype); each update is built only when its weight
    passes, so memory stays at one weight. Transposed for ``fan_in_fan_out`` (GPT-2 Conv1D), as
    PEFT does. Raises ``InvalidModelFile`` for an adapted weight that is missing or mis-shaped."""
    pending: dict[str, list[tuple[Tensor, Tensor, float, bool]]] = {}
    for adapter in adapters:
        transpose = bool(adapter.config.get("fan_in_fan_out"))
        for name, (a, b, scaling) in adapter.factors().items():
            pending.setdefault(name, []).append((a, b, scaling, transpose))
    for name, tensor in weights:
        for a, b, scaling, transpose in pending.pop(name, []):
            delta = (b.to(tensor.device) @ a.to(tensor.device)) * scaling
            delta = delta.T if transpose else delta
            if delta.shape != tensor.shape:
                raise InvalidModelFile(
                    f"the adapter changes {name!r} with shape {tuple(delta.shape)}, "
                    f"but the base weight is {tuple(tensor.shape)}"
                )
            tensor = tensor.float() + delta
        yield name, tensor
    if pending:
        raise InvalidModelFile(
            f"the adapter changes {sorted(pending)[0]!r}, which the base model does not have"
        )


def merge_into(target: dict[str, Tensor] | nn.Module, adapter: LoraAdapter) -> None:
    """Add ``adapter`` to a state dict (in place, keeping each tensor's dtype) or a transformers
    model's parameters. Raises ``InvalidModelFile`` when a weight is missing or mis-shaped."""
    import torch

    if isinstance(target, dict):
        tensors = target
    else:
        tensors = {name: p.data for name, p in target.named_parameters()}
    merged = dict(merge_weights(((n, tensors[n]) for n in adapter.modules if n in tensors), [adapter]))
    with torch.no_grad():
        for name, value in merged.items():
            if isinstance(target, dict):
                target[name] = value.to(tensors[name].dtype)
            else:
                tensors[name].copy_(value)
