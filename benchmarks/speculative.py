"""Prompt-lookup speculative decoding on real text, one request at a time: tokens/s with drafts off
and on (``--tokens`` per step) in one run, the share of drafts the model accepted, and whether
every greedy output is the one plain decoding gives.

The throughput benchmark's workload is random token ids, after which SmolLM2's greedy output falls
into loops that drafts predict almost perfectly; this one asks what people ask: chat requests
through the model's chat template (code, an explanation, a list) and continuations of the shipped
sample text, each with its own stop at ``--max-tokens``.

    LLMOS_HOME=~/.cache/llmos-test python benchmarks/speculative.py --out benchmarks/results/speculative.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

CHAT = [
    "Write a Python function that checks whether a number is prime, with a docstring.",
    "Explain what a hash table is and when to use one.",
    "List five tips for writing clear emails.",
    "Write a SQL query that returns the ten customers with the most orders, and explain it.",
]
SAMPLE = Path(__file__).resolve().parents[1] / "llmos" / "evaluate" / "data" / "sample.txt"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--quantization", default="none")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tokens", type=int, default=4, help="drafts verified per step when on")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)

    import torch

    from llmos.bench.throughput import _cpu_flags, _cpu_model
    from llmos.config import Settings
    from llmos.engine.engine import Engine
    from llmos.engine.sampling_params import SamplingParams
    from llmos.registry import Registry
    from llmos.runtime.model_runtime import build_engine_config
    from llmos.runtime.tokenizer import TextTokenizer

    torch.set_num_threads(args.threads)
    settings = Settings.from_env(dtype=args.dtype, quantization=args.quantization)
    registry = Registry(settings)
    path = Path(registry.resolve(args.model).path)
    registry.close()
    tokenizer = TextTokenizer.from_dir(path)
    text = SAMPLE.read_text()
    prompts = [tokenizer.encode_chat([{"role": "user", "content": m}]) for m in CHAT]
    prompts += [tokenizer.encode(text[i * 1500 : i * 1500 + 1200]) for i in range(4)]
    params = SamplingParams(max_tokens=args.max_tokens, temperature=0.0)

    runs: dict[str, Any] = {}
    outputs: dict[int, list[list[int]]] = {}
    for k in (0, args.tokens):
        settings.speculative_tokens = k
        config = build_engine_config(path, settings)
        engine = Engine.from_model_dir(path, config)
        engine.generate([prompts[0][:16]], SamplingParams(max_tokens=4, temperature=0.0))  # warm-up
        per_prompt, outs = [], []
        for prompt in prompts:
            start = time.perf_counter()
            tokens = engine.generate([prompt], params, eos_token_ids=tokenizer.eos_token_ids)[0]
            seconds = time.perf_counter() - start
            outs.append(tokens)
            per_prompt.append(
                {"prompt_tokens": len(prompt), "output_tokens": len(tokens), "seconds": seconds}
            )
        outputs[k] = outs
        total_tokens = sum(r["output_tokens"] for r in per_prompt)
        total_seconds = sum(r["seconds"] for r in per_prompt)
        stats = engine.stats()
        runs[f"k={k}"] = {
            "num_speculative_tokens": k,
            "tokens_per_s": round(total_tokens / total_seconds, 2),
            "output_tokens": total_tokens,
            "draft_tokens": stats.num_draft_tokens,
            "accepted_tokens": stats.num_accepted_tokens,
            "acceptance": round(stats.num_accepted_tokens / stats.num_draft_tokens, 3)
            if stats.num_draft_tokens
            else None,
            "per_prompt_tokens_per_s": [round(r["output_tokens"] / r["seconds"], 1) for r in per_prompt],
            "dtype": str(config.dtype).removeprefix("torch."),
            "quantization": config.quantization,
        }
        del engine
    report = {
        "model": args.model,
        "threads": args.threads,
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "runs": runs,
        "speedup": round(runs[f"k={args.tokens}"]["tokens_per_s"] / runs["k=0"]["tokens_per_s"], 2),
        "identical_outputs": outputs[0] == outputs[args.tokens],
    }
    out = json.dumps(report, indent=2)
    print(out)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(out + "\n")
    return report


if __name__ == "__main__":
    sys.exit(0 if main()["identical_outputs"] else 1)
