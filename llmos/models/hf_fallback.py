"""Any transformers causal LM behind the engine's model interface, for architectures without
native code. Correct but slow: it keeps no KV cache and recomputes each sequence's whole context
every step (the paged cache is not used), so it suits small models and tests, not serving load.

The engine only hands models flat tokens and cache slots, so this wrapper remembers which token
sits in which slot and rebuilds every sequence's token ids from the slots in the metadata.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from llmos.errors import InvalidModelFile, UnsupportedArchitecture
from llmos.layers.attention import AttentionMetadata


class TransformersCausalLM(nn.Module):
    num_layers = 0  # no paged KV cache
    num_kv_heads = 1
    head_dim = 1

    def __init__(self, hf_model: Any):  # a transformers PreTrainedModel
        super().__init__()
        self.hf = hf_model.eval()
        self.base = hf_model.base_model
        self.lm_head = hf_model.get_output_embeddings()
        self.vocab_size = hf_model.config.vocab_size
        self.slot_tokens: dict[int, int] = {}

    def _context(self, slots: list[int]) -> Tensor:
        return torch.tensor([self.slot_tokens[s] for s in slots], device=self.lm_head.weight.device)

    def _hidden(self, token_ids: Tensor) -> Tensor:
        return self.base(input_ids=token_ids[None]).last_hidden_state[0]

    def forward(self, input_ids: Tensor, positions: Tensor, meta: AttentionMetadata) -> Tensor:
        self.slot_tokens.update(zip(meta.slot_mapping.tolist(), input_ids.tolist()))
        out = []
        for chunk in meta.prefills:
            if chunk.slots is None:
                context = input_ids[chunk.start : chunk.end]
            else:
                context = self._context(chunk.slots.tolist())
            out.append(self._hidden(context)[-(chunk.end - chunk.start) :])
        for group in meta.decodes:
            for slots, length in zip(group.slots().tolist(), group.context_lens.tolist()):
                out.append(self._hidden(self._context(slots[:length]))[-1:])
        return torch.cat(out)

    def compute_logits(self, hidden: Tensor) -> Tensor:
        return self.lm_head(hidden).float()


def _architecture(model_dir: Path) -> str:
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return "unknown architecture"
    return (config.get("architectures") or [config.get("model_type", "unknown architecture")])[0]


def load_fallback_model(
    model_dir: Path, dtype: torch.dtype, device: torch.device, trust_remote_code: bool = False
) -> TransformersCausalLM:
    """Load ``model_dir`` with transformers (safetensors only unless the folder has nothing else)."""
    from transformers import AutoModelForCausalLM

    try:
        loaded: Any = AutoModelForCausalLM.from_pretrained(
            str(model_dir),
            dtype=dtype,
            local_files_only=True,
            trust_remote_code=trust_remote_code,
            use_safetensors=True,
            output_loading_info=True,
        )
        hf, info = loaded
    except ValueError as exc:
        if "Unrecognized configuration class" in str(exc):
            raise UnsupportedArchitecture(
                f"{model_dir.name} is not a causal language model transformers can generate with "
                f"({_architecture(model_dir)}); it cannot be used for text generation."
            ) from exc
        raise InvalidModelFile(f"transformers cannot load {model_dir.name}: {exc}") from exc
    except (OSError, KeyError) as exc:
        raise InvalidModelFile(f"transformers cannot load {model_dir.name}: {exc}") from exc
    missing = info.get("missing_keys") or []
    if missing:  # e.g. a bare encoder mapped onto an LM class with a freshly initialised head
        raise UnsupportedArchitecture(
            f"{model_dir.name} ({_architecture(model_dir)}) has no weights for {len(missing)} tensors "
            f"a causal language model needs (such as {sorted(missing)[0]!r}); "
            "it cannot be used for text generation."
        )
    return TransformersCausalLM(hf.to(device))
