"""Native model code per family, picked from an HF config.

``native_model_class`` returns the class for a config (``None`` when there is none: the caller then
falls back to transformers); ``loader.load_model`` builds one and fills it from safetensors.
"""

from __future__ import annotations

from typing import Any

from llmos.models.gemma3 import Gemma3ForCausalLM
from llmos.models.llama import LlamaForCausalLM

# HF architecture name -> native class (Qwen2 and Mistral are llama with biases / a sliding window).
# Every family reuses the llama wrapper (lm_head, logits, weight loading) around its own decoder.
MODEL_CLASSES: dict[str, type[LlamaForCausalLM]] = {
    "LlamaForCausalLM": LlamaForCausalLM,
    "Qwen2ForCausalLM": LlamaForCausalLM,
    "MistralForCausalLM": LlamaForCausalLM,
    "Gemma3ForCausalLM": Gemma3ForCausalLM,
}

# HF model_type -> native class; the config layout each class reads is the model_type's
MODEL_TYPES: dict[str, type[LlamaForCausalLM]] = {
    "llama": LlamaForCausalLM,
    "qwen2": LlamaForCausalLM,
    "mistral": LlamaForCausalLM,
    "gemma3_text": Gemma3ForCausalLM,
}


def native_model_class(config: Any) -> type[LlamaForCausalLM] | None:
    """The native class for an HF config, or None when its model type or architecture has none.

    The model type decides (it fixes the config layout); a listed architecture must also be a
    supported causal LM, so e.g. a llama-typed ``LlamaForSequenceClassification`` gets None.
    """
    cls = MODEL_TYPES.get(getattr(config, "model_type", None) or "")
    architectures = getattr(config, "architectures", None)
    if cls is None or (architectures and architectures[0] not in MODEL_CLASSES):
        return None
    return cls
