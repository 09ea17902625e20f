"""The model a run trains: the base's Hugging Face folder loaded with transformers (fp32 on CPU),
wrapped with a PEFT LoRA adapter or left whole for full fine-tuning. Local files only."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from llmos.train.config import TrainConfig


def load_trainable(path: Path, config: TrainConfig, device: str = "cpu") -> nn.Module:
    """The base model ready to train; LoRA weights are initialized from ``config.seed``."""
    from transformers import AutoModelForCausalLM

    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    model: nn.Module = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=dtype, local_files_only=True, trust_remote_code=False
    )
    model = model.to(device)
    torch.manual_seed(config.seed)
    if config.method == "full":
        return model
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in config.lora_targets if t in present]
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)
