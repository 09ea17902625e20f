"""A loaded model: its files resolved through the registry, its tokenizer, and a running engine.

``load_runtime`` is shared by the SDK (``llmos.load_model``), the CLI and the server, so all three
load a model the same way: resolve → verify digests → build the engine → start the loop thread.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmos.config import Settings
from llmos.engine.async_engine import AsyncEngine
from llmos.engine.config import EngineConfig, resolve_device, resolve_dtype
from llmos.engine.engine import Engine
from llmos.engine.structured_output import StructuredOutputBackend
from llmos.errors import InvalidModelFile, UnsupportedArchitecture
from llmos.tokenizer import TextTokenizer

if TYPE_CHECKING:
    from llmos.embeddings import EmbeddingRuntime

logger = logging.getLogger(__name__)


@dataclass
class ModelRuntime:
    name: str  # what users call it ("smollm2-135m-instruct:1" or a folder name)
    path: Path
    manifest: dict[str, Any]
    tokenizer: TextTokenizer
    engine: AsyncEngine
    max_model_len: int
    load_seconds: float

    @property
    def is_healthy(self) -> bool:
        return self.engine.is_healthy

    def close(self) -> None:
        self.engine.shutdown()


def _context_length(config: dict[str, Any]) -> int:
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        if isinstance(config.get(key), int):
            return int(config[key])
    return 2048


def resolve_model_dir(
    ref: str | Path, settings: Settings, verify: bool = True, allow_path: bool = True
) -> tuple[str, Path, dict[str, Any]]:
    """(display name, folder, manifest) for a registry reference or, when ``allow_path``, a local
    folder path (the server never allows one: a client must not make it load arbitrary folders)."""
    if allow_path:
        try:
            path = Path(ref).expanduser()
        except RuntimeError:  # "~user" naming no user: not a folder, so a registry name
            path = Path(ref)
        if path.is_dir():
            return path.name, path, {}
    from llmos.registry import Registry

    registry = Registry(settings)
    version = registry.resolve(str(ref))
    if verify:
        registry.verify(version)
    return f"{version.name}:{version.version}", Path(version.path), dict(version.manifest)


def load_runtime(
    ref: str | Path, settings: Settings, *, verify: bool = True, allow_path: bool = True
) -> ModelRuntime:
    """Load a model for inference. Raises ModelNotFound, CorruptArtifact, InvalidModelFile."""
    start = time.perf_counter()
    name, path, manifest = resolve_model_dir(ref, settings, verify, allow_path)
    config_file = path / "config.json"
    if not config_file.exists():
        raise InvalidModelFile(f"{name} has no config.json; it is not a Hugging Face model folder.")
    if manifest.get("kind") == "embedding":
        raise UnsupportedArchitecture(
            f"{name} is an embedding model; it cannot generate text. "
            "Use a chat or base model such as smollm2."
        )
    hf_config = json.loads(config_file.read_text())
    context = _context_length(hf_config)
    device = resolve_device(settings.device)
    engine_config = EngineConfig(
        max_model_len=min(settings.max_model_len, context) if settings.max_model_len else context,
        max_num_seqs=settings.max_num_seqs,
        max_num_batched_tokens=settings.max_num_batched_tokens,
        kv_cache_bytes=(settings.kv_cache_memory_mb << 20) if settings.kv_cache_memory_mb else 2 << 30,
        dtype=resolve_dtype(settings.dtype, device),
        device=device,
    )

    tokenizer = TextTokenizer.from_dir(path)
    structured_output = _structured_output_backend(tokenizer)

    def build_engine() -> Engine:
        try:
            return Engine.from_model_dir(path, engine_config, structured_output)
        except UnsupportedArchitecture as exc:
            from llmos.models.hf_fallback import load_fallback_model

            logger.warning("%s; using the transformers fallback (slower)", exc)
            model = load_fallback_model(
                path, engine_config.dtype, engine_config.device, settings.trust_remote_code
            )
            return Engine(model, engine_config, getattr(model, "vocab_size", None), structured_output)

    engine = AsyncEngine(build_engine, tokenizer, tokenizer.eos_token_ids)
    seconds = time.perf_counter() - start
    logger.info("loaded %s in %.1fs (%s, %s)", name, seconds, engine_config.dtype, engine_config.device)
    return ModelRuntime(
        name=name,
        path=path,
        manifest=manifest,
        tokenizer=tokenizer,
        engine=engine,
        max_model_len=engine_config.max_model_len,
        load_seconds=seconds,
    )


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
    if manifest.get("kind") != "embedding":
        return load_runtime(ref, settings, verify=False, allow_path=allow_path)  # verified just now
    from llmos.embeddings import load_embedding_runtime

    return load_embedding_runtime(name, path, manifest, device=str(resolve_device(settings.device)))
