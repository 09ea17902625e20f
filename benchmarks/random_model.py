"""A random-weight copy of a Hugging Face model folder: same config, tokenizer and chat template,
seeded random weights in bf16.

For speed runs where the real weights cannot travel (a lent GPU machine has no network and takes
64 MiB of files): a step costs the same whatever the weights hold, and the throughput benchmark asks
for fixed output lengths (``ignore_eos``), so tokens/s, TTFT and TPOT measured on the copy are the
real model's. What the copy says is noise, so no quality figure comes from it.

    python benchmarks/random_model.py ~/.cache/llmos-test/models/snapshots/smollm2-135m-instruct/1 /tmp/smol
    python benchmarks/random_model.py --config-only SRC DST   # just config + tokenizer (a few MB)

``--config-only`` copies the small files alone; running the script again on that folder (as SRC,
on the machine that measures) adds the weights.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

SMALL_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
)


def copy_small_files(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in SMALL_FILES:
        if (src / name).is_file() and src.resolve() != dst.resolve():
            shutil.copyfile(src / name, dst / name)


def write_random_weights(src: Path, dst: Path, seed: int = 0) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(src)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(dst)  # config.json again, then the weights as safetensors
    copy_small_files(src, dst)  # the source's own config.json and tokenizer win


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path, help="a Hugging Face model folder (weights not needed)")
    parser.add_argument("dst", type=Path)
    parser.add_argument("--config-only", action="store_true", help="copy config and tokenizer only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    copy_small_files(args.src, args.dst)
    if not args.config_only:
        write_random_weights(args.src, args.dst, args.seed)
    print(args.dst)


if __name__ == "__main__":
    main()
