"""Embedding models: a sentence-transformers model from the registry, run on its own thread.

``load_embedding_runtime`` is what the server's model pool and ``llmos.load_model`` call for a
version whose manifest says ``kind: embedding``. All torch work happens on one dedicated thread
(torch's OpenMP pools are per thread, as for the generation engine).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmos.errors import ContextOverflow, InvalidRequest

if TYPE_CHECKING:
    from llmos.registry.manifest import Manifest

logger = logging.getLogger(__name__)

MAX_INPUTS = 2048  # OpenAI's limit per request
BATCH_SIZE = 32


@dataclass(slots=True)
class Embeddings:
    vectors: list[list[float]]
    num_tokens: int


@dataclass
class EmbeddingRuntime:
    """A loaded embedding model; ``embed`` may be called from any thread."""

    name: str
    path: Path
    manifest: Manifest | None  # None for a folder loaded by path
    model: Any  # sentence_transformers.SentenceTransformer
    executor: ThreadPoolExecutor
    load_seconds: float
    kind: str = field(default="embedding", init=False)

    @property
    def dimensions(self) -> int:
        model = self.model
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get())

    @property
    def max_model_len(self) -> int:
        return int(self.model.max_seq_length)

    @property
    def is_healthy(self) -> bool:
        return not self.executor._shutdown

    @property
    def memory_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters())

    def embed(self, texts: list[str], *, normalize: bool = True, truncate: bool = True) -> Embeddings:
        """Unit-length (when ``normalize``) vectors for ``texts``, in order, and the tokens used.

        Raises InvalidRequest for an empty or oversized batch, ContextOverflow for a text longer
        than the model's window when ``truncate`` is False.
        """
        if not texts or len(texts) > MAX_INPUTS:
            raise InvalidRequest(f"input must hold 1 to {MAX_INPUTS} texts.", param="input")
        return self.executor.submit(self._embed, texts, normalize, truncate).result()

    def _embed(self, texts: list[str], normalize: bool, truncate: bool) -> Embeddings:
        lengths = [len(ids) for ids in self.model.tokenizer(texts, add_special_tokens=True)["input_ids"]]
        limit = self.max_model_len
        too_long = [i for i, n in enumerate(lengths) if n > limit]
        if too_long and not truncate:
            i = too_long[0]
            raise ContextOverflow(
                f"input[{i}] has {lengths[i]} tokens; this model embeds at most {limit}. "
                "Shorten it or send truncate=true.",
                param="input",
            )
        vectors = self.model.encode(
            texts, batch_size=BATCH_SIZE, normalize_embeddings=normalize, convert_to_numpy=True
        )
        return Embeddings([v.tolist() for v in vectors], sum(min(n, limit) for n in lengths))

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


def load_embedding_runtime(
    name: str, path: Path, manifest: Manifest | None, device: str = "cpu"
) -> EmbeddingRuntime:
    """Load a sentence-transformers folder; never runs remote code or downloads anything."""
    start = time.perf_counter()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmos-embed")

    def build() -> Any:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_grad_enabled(False)
        return SentenceTransformer(str(path), device=device, local_files_only=True, trust_remote_code=False)

    try:
        model = executor.submit(build).result()
    except Exception:
        executor.shutdown(wait=False)
        raise
    seconds = time.perf_counter() - start
    logger.info("loaded embedding model %s in %.1fs", name, seconds)
    return EmbeddingRuntime(name, path, manifest, model, executor, seconds)
