"""Fine-tuning benchmark: LoRA-tune SmolLM2 on the shipped Lumo X7 chat sample (240 examples) and
check what it learned, all in one run.

Reports (JSON on stdout and in benchmarks/results/): wall time, held-out loss before/after (the
held-out questions are phrasings the training never showed), and each held-out question answered
greedily by the base and by the tuned model, with whether the answer holds the fact.
Targets from the issue: held-out loss falls by >= 30 %, tuned answers right where the base does
not, in < 10 minutes on 2 CPU cores.

    LLMOS_HOME=~/.cache/llmos-test .venv/bin/python benchmarks/finetune.py [--epochs 2] [--no-register]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from llmos.config import Settings
from llmos.runtime.tokenizer import TextTokenizer
from llmos.train.config import TrainConfig
from llmos.train.run import run_training
from llmos.train.samples import lumo

KEYS = {"battery": "41", "price": "89", "maker": "Brightwell", "colors": "teal", "warranty": "3",
        "charging": "USB-C", "app": "Glowbook", "brightness": "900"}  # fmt: skip


def answer(model: Any, tokenizer: TextTokenizer, messages: list[dict[str, str]]) -> str:
    ids = tokenizer.encode_chat(messages, add_generation_prompt=True)
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=24, do_sample=False)
    return tokenizer.decode(out[0, len(ids) :].tolist())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="smollm2-135m-instruct")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--no-register", action="store_true")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    work = Path(tempfile.mkdtemp(prefix="llmos-finetune-"))
    train_file, test_file = lumo.write(work)
    config = TrainConfig.build(
        base=args.base, data=str(train_file), eval_data=str(test_file), method="lora", epochs=args.epochs,
        lr=args.lr, batch_size=8, grad_accum=1, max_length=128, lora_r=16, lora_alpha=32,
        warmup_steps=3, checkpoint_every=20, name="smollm2-lumo",
    )  # fmt: skip

    def on_step(log: Any, total: int) -> None:
        print(f"step {log.step}/{total} loss {log.loss:.3f} ({log.seconds:.1f}s)", file=sys.stderr)

    start = time.perf_counter()
    summary = run_training(config, settings, work / "run", on_step=on_step, register=not args.no_register)
    seconds = time.perf_counter() - start
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from llmos.runtime.model_runtime import resolve_model_dir

    _, base_path, _ = resolve_model_dir(args.base, settings)
    tokenizer = TextTokenizer.from_dir(base_path)
    base = AutoModelForCausalLM.from_pretrained(str(base_path), dtype=torch.float32)
    tuned = PeftModel.from_pretrained(base, summary["folder"])
    rows = []
    _, test = lumo.build()
    for key, record in zip(KEYS, test):
        question = record["messages"][:2]
        with tuned.disable_adapter():
            before = answer(tuned, tokenizer, question)
        after = answer(tuned, tokenizer, question)
        rows.append({"question": question[1]["content"], "fact": KEYS[key], "base": before, "tuned": after,
                     "base_right": KEYS[key] in before, "tuned_right": KEYS[key] in after})  # fmt: skip
    metrics = summary["metrics"]
    tuned_right, base_right = sum(r["tuned_right"] for r in rows), sum(r["base_right"] for r in rows)
    drop = 1 - metrics["eval_loss_after"] / metrics["eval_loss_before"]
    result = {
        "seconds": round(seconds, 1),
        "steps": metrics["steps"],
        "eval_loss_before": metrics["eval_loss_before"],
        "eval_loss_after": metrics["eval_loss_after"],
        "eval_loss_drop": round(drop, 3),
        "tuned_right": tuned_right,
        "base_right": base_right,
        "questions": rows,
        "version": summary.get("version"),
        "targets": {"eval_loss_drop>=0.30": drop >= 0.30, "under_10_min": seconds < 600,
                    "tuned_beats_base": tuned_right > base_right},
        "threads": torch.get_num_threads(),
    }  # fmt: skip
    out = Path(__file__).resolve().parent / "results" / f"finetune-{datetime.now():%Y-%m-%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
