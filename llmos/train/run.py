"""One fine-tuning run end to end: resolve the base and the data, build examples, train, save the
result as a Hugging Face folder (PEFT adapter or full model) and register it as a new version.

``run_training`` is what ``llmos train`` calls; it works in-process, under torchrun (rank 0 saves
and registers) and, later, inside a job process.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from llmos.config import Settings
from llmos.errors import InvalidRequest
from llmos.runtime.model_runtime import resolve_model_dir
from llmos.runtime.tokenizer import TextTokenizer
from llmos.train.config import TrainConfig
from llmos.train.model import load_trainable
from llmos.train.sft import build_examples
from llmos.train.trainer import StepLog, Trainer, TrainResult

logger = logging.getLogger(__name__)
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)


def read_records(
    config: TrainConfig, settings: Settings
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str, str | None]:
    """(train records, held-out records, schema, dataset ref) from a .jsonl file or a dataset version."""
    path = Path(config.data).expanduser()
    if path.suffix == ".jsonl" and path.is_file():
        records = _read_jsonl(path)
        if config.eval_data:
            return records, _read_jsonl(Path(config.eval_data).expanduser()), config.data_schema, None
        return *_hold_out(records, config), config.data_schema, None
    from llmos import data

    version = data.show(config.data, settings)
    train = [dict(r) for r in data.load(version.ref, "train", settings)]
    if "test" in version.splits:
        held = [dict(r) for r in data.load(version.ref, "test", settings)]
        return train, held, version.schema, version.ref
    return *_hold_out(train, config), version.schema, version.ref


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"Cannot read {path}: {exc}", param="data") from exc


def _hold_out(
    records: list[dict[str, Any]], config: TrainConfig
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    order = list(range(len(records)))
    random.Random(config.seed).shuffle(order)
    num_eval = int(len(records) * config.eval_fraction)
    held = set(order[:num_eval])
    return [r for i, r in enumerate(records) if i not in held], [records[i] for i in sorted(held)]


def run_training(
    config: TrainConfig,
    settings: Settings,
    out_dir: Path,
    *,
    resume: bool = False,
    on_step: Callable[[StepLog, int], None] | None = None,
    register: bool | None = None,
) -> dict[str, Any]:
    """Train and (on rank 0) register the result; returns a summary with the new version's ref."""
    base_name, base_path, base_manifest = resolve_model_dir(config.base, settings)
    tokenizer = TextTokenizer.from_dir(base_path)
    train_records, eval_records, schema, dataset_ref = read_records(config, settings)
    train = build_examples(tokenizer, train_records, schema, config.max_length)
    held = build_examples(tokenizer, eval_records, schema, config.max_length)
    if not train:
        raise InvalidRequest(f"{config.data} has no usable training examples.", param="data")
    model = load_trainable(base_path, config, "cuda" if torch.cuda.is_available() else "cpu")
    pad = (
        tokenizer.hf.pad_token_id
        if tokenizer.hf.pad_token_id is not None
        else min(tokenizer.eos_token_ids or {0})
    )
    trainer = Trainer(config, model, train, held, out_dir, pad, on_step)
    result = trainer.fit(resume=resume)
    summary: dict[str, Any] = {
        "base": base_name,
        "base_digest": base_manifest.digest if base_manifest else None,
        "data": dataset_ref or config.data,
        "config": config.model_dump(),
        "metrics": {k: v for k, v in asdict(result).items() if k != "history"},
        "num_train_examples": len(train),
        "num_eval_examples": len(held),
    }
    if dist.is_initialized() and dist.get_rank() != 0:
        return summary
    folder = save_result(trainer, result, tokenizer_dir=base_path, out_dir=out_dir, method=config.method)
    summary["folder"] = str(folder)
    if config.register_result if register is None else register:
        summary["version"] = _register(folder, config, settings, base_name, summary)
    return summary


def save_result(
    trainer: Trainer, result: TrainResult, tokenizer_dir: Path, out_dir: Path, method: str
) -> Path:
    """The trained weights as a Hugging Face folder: a PEFT adapter, or a full model + tokenizer."""
    folder = out_dir / "result"
    shutil.rmtree(folder, ignore_errors=True)
    model: Any = trainer.model
    model.save_pretrained(str(folder), safe_serialization=True)
    if method == "full":
        for name in TOKENIZER_FILES:
            if (tokenizer_dir / name).exists():
                shutil.copy2(tokenizer_dir / name, folder / name)
    (folder / "training_history.json").write_text(json.dumps([asdict(h) for h in result.history]))
    return folder


def _register(
    folder: Path, config: TrainConfig, settings: Settings, base: str, summary: dict[str, Any]
) -> str:
    from llmos.registry import Registry
    from llmos.runtime import capability

    registry = Registry(settings, probe=capability.check)
    try:
        extra: dict[str, Any] = {
            "training_run": {k: summary[k] for k in ("data", "config", "metrics")},
            "datasets": [summary["data"]],
        }
        if config.method == "lora":
            version = registry.register_adapter(folder, config.result_name, base, extra=extra)
        else:
            parents = [{"ref": base, "digest": summary["base_digest"], "relation": "base"}]
            version = registry.import_path(folder, config.result_name, parents=parents, extra=extra)
        return version.ref
    finally:
        registry.close()
