"""A tiny base model with a tokenizer, and real PEFT LoRA adapters for it, for the adapter tests.

``build_tiny_base`` saves a seeded 2-layer llama with a byte-level BPE tokenizer and a chat
template; ``build_tiny_lora`` wraps it with ``peft`` and saves an adapter whose B matrices are
random (PEFT initialises them to zero, which would make the adapter a no-op).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import save_file
from tiny_models import build_byte_bpe_tokenizer, build_tiny_llama

ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
CHAT_TEMPLATE = "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"


def build_tiny_base(path: Path, **overrides: Any) -> Path:
    """A SmolLM2-shaped random llama (vocab 320) plus tokenizer files, as a Hugging Face folder;
    ``overrides`` go to the config (``initializer_range=0.05`` gives other weights, same shapes)."""
    build_tiny_llama(path, **{"vocab_size": 320, **overrides})
    tokenizer = build_byte_bpe_tokenizer(vocab_size=320)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(path)
    return path


def build_tiny_lora(base_dir: Path, path: Path, *, seed: int = 0, **config: Any) -> Path:
    """A PEFT LoRA adapter for ``base_dir`` (r=4, alpha=8, every projection unless overridden)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    options: dict[str, Any] = {"r": 4, "lora_alpha": 8, "target_modules": ALL_PROJECTIONS, **config}
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(lora_dropout=0.0, **options))
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(0.2 * torch.randn_like(param))
    model.save_pretrained(path)
    return path


def build_ones_adapter(path: Path, base_model: str | None = None, **config: Any) -> Path:
    """A PEFT-layout LoRA adapter folder on q_proj of layer 0 (rank 2, all-ones matrices) for the
    tiny chat model (hidden size 64): enough for the registry, which reads but never runs it."""
    path.mkdir(parents=True)
    config = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"], **config}
    if base_model is not None:
        config["base_model_name_or_path"] = base_model
    (path / "adapter_config.json").write_text(json.dumps(config))
    tensors = {
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": np.ones((2, 64), np.float32),
        "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": np.ones((64, 2), np.float32),
    }
    save_file(tensors, str(path / "adapter_model.safetensors"))
    return path
