"""``TrainConfig``: every setting of a fine-tuning run, from CLI flags or a YAML file.

Pydantic validates the file (config files are one of the two places pydantic is used); the
trainer receives the validated object. ``llmos train --config train.yaml`` takes the same fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmos.errors import InvalidRequest


class TrainConfig(BaseModel):
    """A fine-tuning run. Steps count optimizer updates; a global batch is
    ``batch_size * grad_accum * world_size`` examples."""

    model_config = ConfigDict(extra="forbid")

    base: str = Field(description="Base model reference: name, name:N or name@alias.")
    data: str = Field(description="Dataset reference (name or name:N) or a .jsonl file.")
    eval_data: str | None = Field(
        None, description="Held-out records (.jsonl); else a test split or eval_fraction."
    )
    data_schema: Literal["chat", "instruction", "pairs", "classification", "text"] = Field(
        "chat", description="How records map to conversations (datasets carry their own schema)."
    )
    method: Literal["lora", "full"] = Field("lora", description="LoRA adapter (PEFT) or all weights.")
    name: str | None = Field(None, description="Registry name of the result (default: <base>-<method>).")
    epochs: float = Field(1.0, gt=0, description="Passes over the training split.")
    max_steps: int | None = Field(
        None, ge=1, description="Train this many optimizer steps (wins over epochs)."
    )
    lr: float = Field(2e-4, gt=0, description="Peak learning rate (AdamW), linear warmup and decay.")
    warmup_steps: int = Field(0, ge=0, description="Steps of linear warmup from 0 to lr.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    batch_size: int = Field(8, ge=1, description="Examples per micro-batch per process.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    max_length: int = Field(512, ge=8, description="Tokens per example (longer ones are cut).")
    lora_r: int = Field(8, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(16, ge=1, description="LoRA scale numerator (the update is scaled by alpha / r).")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA input.")
    lora_targets: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="Module names that get adapters (those the base lacks are skipped).",
    )
    seed: int = Field(0, description="Seeds the adapter's initialization and the data order.")
    checkpoint_every: int = Field(50, ge=1, description="Write a resumable checkpoint every N steps.")
    eval_fraction: float = Field(0.1, ge=0, lt=1, description="Held out when the data has no test split.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    launcher: Literal["local", "ray"] = Field(
        "local", description="local: this machine (torchrun when nproc > 1); ray: Ray Train workers."
    )
    ray_address: str | None = Field(None, description="Ray cluster address (default: start a local Ray).")
    register_result: bool = Field(True, description="Register the result as a new model version.")

    @classmethod
    def from_file(cls, path: Path, **overrides: object) -> TrainConfig:
        """Read a YAML file; CLI overrides win. Raises InvalidRequest naming the bad field."""
        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise InvalidRequest(f"Cannot read {path}: {exc}") from exc
        if not isinstance(values, dict):
            raise InvalidRequest(f"{path} must hold a mapping of settings.")
        return cls.build(**{**values, **{k: v for k, v in overrides.items() if v is not None}})

    @classmethod
    def build(cls, **values: object) -> TrainConfig:
        try:
            return cls(**values)  # type: ignore[arg-type]
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InvalidRequest(f"training config: {where}: {first['msg']}", param=where) from None

    @property
    def result_name(self) -> str:
        return self.name or f"{self.base.split(':')[0].split('@')[0]}-{self.method}"
