"""The capability check run at import: what a model can actually do, recorded in its manifest.

A generation model is loaded on the CPU in float32 with llmos's own loader (transformers for an
architecture without native code), its chat template rendered with one user message and one token
generated greedily; an embedding model encodes one sentence. A failure is reported, never raised.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from llmos.registry.importing.folders import read_config

log = logging.getLogger(__name__)

PROBE_MESSAGE = "Hello! What can you do?"
PROBE_TEXT = "Hello"


def check(folder: Path, kind: str) -> dict[str, Any]:
    """A report for the model in ``folder`` of ``kind`` (``chat``/``base``/... , ``embedding``,
    ``adapter``): always ``ok`` and ``seconds``, plus what the kind can show. Never raises."""
    start = time.perf_counter()
    if kind == "adapter":
        return {"ok": True, "skipped": "adapter", "seconds": 0.0}
    check_kind = _check_embedding if kind == "embedding" else _check_generation
    try:
        report = check_kind(Path(folder))
    except Exception as exc:  # any failure is the finding: the manifest records it
        log.warning("capability check of %s failed: %s: %s", folder, type(exc).__name__, exc)
        report = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    report["seconds"] = round(time.perf_counter() - start, 3)
    return report


def _context_length(folder: Path) -> int | None:
    config = read_config(folder)
    text_config = config.get("text_config")
    for source in (config, text_config if isinstance(text_config, dict) else {}):
        for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
            if isinstance(source.get(key), int):
                return int(source[key])
    return None


def _check_generation(folder: Path) -> dict[str, Any]:
    import torch

    from llmos.runtime.tokenizer import TextTokenizer

    report: dict[str, Any] = {
        "ok": False,
        "chat_template": "absent",
        "generates": False,
        "context_length": _context_length(folder),
        "error": None,
    }
    tokenizer = TextTokenizer.from_dir(folder)
    prompt_ids = tokenizer.encode(PROBE_TEXT)
    if tokenizer.chat_template:
        try:
            prompt_ids = tokenizer.encode_chat([{"role": "user", "content": PROBE_MESSAGE}])
            report["chat_template"] = "renders"
        except Exception as exc:  # a broken template is a finding, not a crash
            report["chat_template"] = f"fails: {type(exc).__name__}: {exc}"
    with torch.inference_mode():
        token_ids = _generate_one(folder, prompt_ids)
    report["generates"] = len(token_ids) == 1
    report["ok"] = report["generates"] and not report["chat_template"].startswith("fails")
    if not report["generates"]:
        report["error"] = "the model produced no token"
    return report


def _generate_one(folder: Path, prompt_ids: list[int]) -> list[int]:
    """One greedy token from the engine, on the CPU in float32, with a cache just big enough."""
    import torch

    from llmos.engine.config import EngineConfig
    from llmos.engine.engine import Engine
    from llmos.engine.sampling_params import SamplingParams
    from llmos.errors import UnsupportedArchitecture
    from llmos.models.loader import load_model

    device, dtype = torch.device("cpu"), torch.float32
    try:
        model = load_model(folder, dtype, device)
    except UnsupportedArchitecture:
        from llmos.models.hf_fallback import load_fallback_model

        model = load_fallback_model(folder, dtype, device, trust_remote_code=False)
    num_tokens = len(prompt_ids) + 1
    config = EngineConfig(
        max_model_len=max(num_tokens, 16),
        max_num_seqs=1,
        max_num_batched_tokens=max(num_tokens, 16),
        dtype=dtype,
        device=device,
    )
    engine = Engine(model, config, getattr(model, "vocab_size", None))
    return engine.generate([prompt_ids], SamplingParams(max_tokens=1, temperature=0))[0]


def _check_embedding(folder: Path) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True, trust_remote_code=False)
    vector = model.encode([PROBE_MESSAGE])[0]
    return {"ok": len(vector) > 0, "dimensions": int(len(vector)), "error": None}
