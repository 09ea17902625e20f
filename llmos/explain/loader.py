"""Load a transformers copy of a stored model for explanations.

Explanations need gradients, attention weights and hidden states, which the llmos engine does not
expose; so the snapshot folder is loaded again with transformers, in float32 with eager attention
(SDPA returns no attention weights), from local files only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmos.config import Settings
from llmos.errors import InvalidModelFile


@dataclass(slots=True)
class ExplainModel:
    """A transformers causal LM and its tokenizer, ready for captum."""

    name: str
    model: Any
    tokenizer: Any


def load_explain_model(path: Path, name: str | None = None) -> ExplainModel:
    """Load the snapshot folder ``path``; raises ``InvalidModelFile`` when transformers cannot."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            path, attn_implementation="eager", dtype=torch.float32, local_files_only=True
        )
    except (OSError, ValueError) as exc:
        raise InvalidModelFile(f"cannot load {path} with transformers for explain: {exc}") from exc
    model.eval()
    return ExplainModel(name or path.name, model, tokenizer)


def load_explain_ref(ref: str | Path, settings: Settings) -> ExplainModel:
    """Resolve a registry reference (name, name:N, name@alias, folder) and load it."""
    from llmos.runtime.model_runtime import resolve_model_dir

    name, path, _ = resolve_model_dir(ref, settings)
    return load_explain_model(path, name)
