"""A loaded model: its files resolved through the registry, its tokenizer, and a running engine.

``load_runtime`` is shared by the SDK (``llmos.load_model``), the CLI and the server, so all three
load a model the same way: resolve → verify digests → build the engine → start the loop thread.
``base+adapter`` references (or an adapter version alone) load the base with the LoRA merged in.
``sampling_defaults`` are what the model's authors recommend, for requests that leave them unset.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from llmos.config import Settings
from llmos.engine.async_engine import AsyncEngine
from llmos.engine.config import QUANTIZATIONS as ENGINE_QUANTIZATIONS
from llmos.engine.config import EngineConfig, resolve_device, resolve_dtype
from llmos.engine.engine import Engine
from llmos.engine.structured_output import StructuredOutputBackend
from llmos.errors import InvalidModelFile, InvalidRequest, UnsupportedArchitecture
from llmos.runtime.tokenizer import TextTokenizer

if TYPE_CHECKING:
    from llmos.models.lora import LoraAdapter
    from llmos.registry.manifest import Manifest, SamplingDefaults
    from llmos.runtime.embeddings import EmbeddingRuntime

logger = logging.getLogger(__name__)


def _no_defaults() -> SamplingDefaults:
    from llmos.registry.manifest import SamplingDefaults  # the registry (sqlalchemy) only when loading

    return SamplingDefaults()


@dataclass
class ModelRuntime:
    name: str  # what users call it ("smollm2-135m-instruct:1" or a folder name)
    path: Path
    manifest: Manifest | None  # the registered base's; None for a folder loaded by path
    tokenizer: TextTokenizer
    engine: AsyncEngine  # or, served on Ray, a client with its interface (``EngineClient``)
    max_model_len: int
    load_seconds: float
    adapters: list[str] = field(default_factory=list)  # refs of the LoRA adapters merged in
    dtype: str = ""  # the engine's ("bfloat16", "float32"…)
    quantization: str | None = None  # EngineConfig.quantization: None or "int8"
    # the base's (an adapter brings none of its own); a folder loaded by path: its generation config
    sampling_defaults: SamplingDefaults = field(default_factory=_no_defaults)

    @property
    def is_healthy(self) -> bool:
        return self.engine.is_healthy

    @property
    def digest(self) -> str | None:
        """The loaded base version's digest (None for a folder loaded by path)."""
        return self.manifest.digest if self.manifest else None

    def close(self) -> None:
        self.engine.shutdown()


# what ``Settings.quantization`` accepts: "none" for the engine's None, then the engine's own modes
QUANTIZATIONS = ("none", *(q for q in ENGINE_QUANTIZATIONS if q is not None))


def resolve_quantization(name: str | None, device: torch.device) -> str | None:
    """``Settings.quantization`` as ``EngineConfig.quantization``: None for unset or ``none``.
    Raises InvalidRequest for another value, or for int8 on a device other than the CPU."""
    value = (name or "none").strip().lower()
    if value not in QUANTIZATIONS:
        raise InvalidRequest(
            f"quantization={name!r} is not one of {', '.join(QUANTIZATIONS)} "
            "(LLMOS_QUANTIZATION, or load_model(..., quantization=...)).",
            param="quantization",
        )
    if value == "int8" and device.type != "cpu":  # torch's int8 weight kernel is CPU-only
        raise InvalidRequest(
            f"quantization='int8' runs on the CPU only, not on {device}: set device='cpu' or "
            "quantization='none'.",
            param="quantization",
        )
    return None if value == "none" else value


def _context_length(config: dict[str, Any]) -> int:
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        if isinstance(config.get(key), int):
            return int(config[key])
    return 2048


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """What a reference names: the base folder to load and the adapter folders to merge into it."""

    name: str  # "smollm2-135m-instruct:1", or "smollm2-135m-instruct+my-adapter:2" with an adapter
    path: Path
    manifest: Manifest | None  # the base's; None for a folder given by path
    adapter_refs: tuple[str, ...] = ()
    adapter_dirs: tuple[Path, ...] = ()


def resolve_model(
    ref: str | Path, settings: Settings, verify: bool = True, allow_path: bool = True
) -> ResolvedModel:
    """Resolve a registry reference (``name``, ``name:N``, ``base+adapter``, an adapter version)
    or, when ``allow_path``, a local folder path (the server never allows one: a client must not make
    it load arbitrary folders). Raises ModelNotFound, InvalidRequest, CorruptArtifact."""
    if allow_path:
        try:
            path = Path(ref).expanduser()
        except RuntimeError:  # "~user" naming no user: not a folder, so a registry name
            path = Path(ref)
        if path.is_dir():
            return ResolvedModel(path.name, path, None)
    from llmos.registry import Registry
    from llmos.registry.adapters import resolve_adapter

    registry = Registry(settings, recover=False)  # reading: cleanup belongs to writers and `llmos gc`
    try:
        # "+" is in no valid model name, so splitting on it is unambiguous
        base_ref, plus, adapter_ref = str(ref).partition("+")
        if plus:
            base, adapter = resolve_adapter(registry, adapter_ref, base_ref)
        else:
            version = registry.resolve(base_ref)
            if not version.manifest.is_adapter:
                if verify:
                    registry.verify(version)
                return ResolvedModel(version.ref, Path(version.path), version.manifest)
            base, adapter = resolve_adapter(registry, version.ref)  # an adapter alone: on its base
        if verify:
            registry.verify(base)
            registry.verify(adapter)
    finally:
        registry.close()
    # the base's name without its version, so the pool's bare alias is "base+adapter"
    name = f"{base.name}+{adapter.ref}"
    return ResolvedModel(name, Path(base.path), base.manifest, (adapter.ref,), (Path(adapter.path),))


def resolve_model_dir(
    ref: str | Path, settings: Settings, verify: bool = True, allow_path: bool = True
) -> tuple[str, Path, Manifest | None]:
    """(display name, base folder, manifest or None for a path) of ``resolve_model``."""
    resolved = resolve_model(ref, settings, verify, allow_path)
    return resolved.name, resolved.path, resolved.manifest


def build_engine_config(path: Path, settings: Settings) -> EngineConfig:
    """The engine configuration ``settings`` give for the model folder ``path`` (context length
    from its config.json)."""
    hf_config = json.loads((path / "config.json").read_text())
    context = _context_length(hf_config)
    device = resolve_device(settings.device)
    quantization = resolve_quantization(settings.quantization, device)
    return EngineConfig(
        max_model_len=min(settings.max_model_len, context) if settings.max_model_len else context,
        max_num_seqs=settings.max_num_seqs,
        max_num_batched_tokens=settings.max_num_batched_tokens,
        kv_cache_bytes=(settings.kv_cache_memory_mb << 20) if settings.kv_cache_memory_mb else 2 << 30,
        dtype=resolve_dtype(settings.dtype, device),
        device=device,
        quantization=quantization,
        warm_shapes=settings.warm_shapes,
        num_speculative_tokens=settings.speculative_tokens,
        cuda_graphs=settings.cuda_graphs,
    )


def load_runtime(
    ref: str | Path,
    settings: Settings,
    *,
    verify: bool = True,
    allow_path: bool = True,
    remote_engine: Callable[[int], Any] | None = None,
) -> ModelRuntime:
    """Load a model for inference. Raises ModelNotFound, CorruptArtifact, InvalidModelFile.

    ``remote_engine``: the engine runs elsewhere (Ray Serve replicas); called with the context
    length, it returns the ``EngineClient`` to use, and no weights load here.
    """
    start = time.perf_counter()
    resolved = resolve_model(ref, settings, verify, allow_path)
    name, path, manifest = resolved.name, resolved.path, resolved.manifest
    config_file = path / "config.json"
    if not config_file.exists():
        raise InvalidModelFile(f"{name} has no config.json; it is not a Hugging Face model folder.")
    if manifest is not None and manifest.kind == "embedding":
        raise UnsupportedArchitecture(
            f"{name} is an embedding model; it cannot generate text. "
            "Use a chat or base model such as smollm2."
        )
    engine_config = build_engine_config(path, settings)
    device, quantization = engine_config.device, engine_config.quantization

    tokenizer = TextTokenizer.from_dir(path)
    structured_output = _structured_output_backend(tokenizer)
    adapters = _read_adapters(resolved)

    def build_engine() -> Engine:
        from llmos.models.loader import load_model

        try:
            model = load_model(path, engine_config.dtype, engine_config.device, adapters, quantization)
        except UnsupportedArchitecture as exc:
            if quantization is not None:  # the transformers fallback has no int8 linears
                raise UnsupportedArchitecture(f"{exc}; quantization={quantization!r} needs it") from exc
            from llmos.models.hf_fallback import load_fallback_model

            logger.warning("%s; using the transformers fallback (slower)", exc)
            model = load_fallback_model(
                path, engine_config.dtype, engine_config.device, settings.trust_remote_code
            )
            if adapters:
                from llmos.models.lora import merge_into

                for adapter in adapters:
                    merge_into(model.hf, adapter)
        return Engine(model, engine_config, getattr(model, "vocab_size", None), structured_output)

    if remote_engine is not None:
        engine = remote_engine(engine_config.max_model_len)
    else:
        engine = AsyncEngine(build_engine, tokenizer, tokenizer.eos_token_ids)
    seconds = time.perf_counter() - start
    dtype = str(engine_config.dtype).removeprefix("torch.")
    logger.info("loaded %s in %.1fs (%s, %s, quantization=%s)", name, seconds, dtype, device, quantization)
    return ModelRuntime(
        name=name,
        path=path,
        manifest=manifest,
        tokenizer=tokenizer,
        engine=engine,
        max_model_len=engine_config.max_model_len,
        load_seconds=seconds,
        adapters=list(resolved.adapter_refs),
        dtype=dtype,
        quantization=quantization,
        sampling_defaults=_sampling_defaults(path, manifest),
    )


def _sampling_defaults(path: Path, manifest: Manifest | None) -> SamplingDefaults:
    """The manifest's defaults (the registry fills in the catalog's for older manifests), or those
    of the folder's ``generation_config.json`` for a folder loaded by path."""
    if manifest is not None:
        return manifest.defaults if manifest.defaults is not None else _no_defaults()
    from llmos.registry.importing.manifest import generation_defaults

    config = path / "generation_config.json"
    return generation_defaults({config.name: config} if config.is_file() else {})


def _read_adapters(resolved: ResolvedModel) -> list[LoraAdapter]:
    """The resolved LoRA adapters, each checked against the base before any weight is loaded."""
    if not resolved.adapter_dirs:
        return []
    from llmos.models.lora import LoraAdapter

    adapters = [LoraAdapter.from_dir(folder) for folder in resolved.adapter_dirs]
    for adapter in adapters:
        adapter.check_base(resolved.path)
    return adapters


def _structured_output_backend(tokenizer: TextTokenizer) -> StructuredOutputBackend | None:
    """The grammar backend for structured output; None (such requests are rejected) when the
    tokenizer is not a Hugging Face fast tokenizer, the only kind llguidance reads."""
    if not getattr(tokenizer.hf, "is_fast", False):
        logger.warning("the tokenizer is not a fast tokenizer: structured output is unavailable")
        return None
    return StructuredOutputBackend.from_hf_tokenizer(tokenizer.hf, tokenizer.eos_token_ids)


def load_any_runtime(
    ref: str | Path, settings: Settings, allow_path: bool = True
) -> ModelRuntime | EmbeddingRuntime:
    """A generation runtime, or an embedding runtime when the manifest says ``kind: embedding``."""
    name, path, manifest = resolve_model_dir(ref, settings, allow_path=allow_path)
    if manifest is None or manifest.kind != "embedding":
        return load_runtime(ref, settings, verify=False, allow_path=allow_path)  # verified just now
    from llmos.runtime.embeddings import load_embedding_runtime

    return load_embedding_runtime(name, path, manifest, device=str(resolve_device(settings.device)))
