"""Correctness anchor: in fp32, the engine's greedy output is token-identical to transformers
`generate` on the same weights, for the real SmolLM2, Gemma 3 and Qwen2.5-Coder (qwen2: q/k/v
biases) checkpoints, with prompts of different lengths run together in one batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from llmos.engine.config import EngineConfig
from llmos.engine.engine import Engine
from llmos.engine.sampling_params import SamplingParams
from llmos.registry import ensure_pulled
from llmos.runtime.tokenizer import TextTokenizer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROMPTS = [
    "The capital of France is",
    "Here is a short recipe for pancakes. First, take two eggs and",
    "In the history of computing, the development of the transistor in 1947 at Bell Labs marked a turning "
    "point. Before it, computers relied on vacuum tubes, which were large, hot and unreliable. The "
    "transistor made machines smaller, faster and cheaper, and within two decades integrated circuits",
]
# Qwen also reads Chinese and writes code; its prompts go through the chat template, as users send
# them (two prompts, not three: a 0.5B fp32 model on 2 cores costs ~1 s a token in transformers)
QWEN_MESSAGES = [
    "请用中文回答：中国的首都是哪里？",
    "Write a Python function that returns the n-th Fibonacci number.",
]


def _assert_greedy_parity(name: str, model_dir: Path, prompts: list[list[int]], max_tokens: int) -> None:
    """The engine (fp32, all prompts in one batch, small chunks so prefill spans several steps) and
    transformers ``generate`` (one prompt at a time) pick the same tokens."""
    tokenizer = TextTokenizer.from_dir(model_dir)
    assert len({len(p) for p in prompts}) == len(prompts)
    config = EngineConfig(max_model_len=1024, max_num_batched_tokens=64, block_size=16, dtype=torch.float32)
    engine = Engine.from_model_dir(model_dir, config)
    params = SamplingParams(max_tokens=max_tokens, temperature=0)
    ours = engine.generate(prompts, params, eos_token_ids=tokenizer.eos_token_ids)
    del engine

    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    for prompt, got in zip(prompts, ours):
        ids = torch.tensor([prompt])
        with torch.inference_mode():
            out = hf.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_tokens,
                do_sample=False,
                eos_token_id=sorted(tokenizer.eos_token_ids),
            )
        expected = out[0, len(prompt) :].tolist()
        assert got == expected, f"{name}: {tokenizer.decode(got)!r} != {tokenizer.decode(expected)!r}"


@pytest.mark.parametrize("name", ["smollm2-135m-instruct", "gemma3-270m"])
def test_greedy_batch_is_token_identical_to_transformers(name: str, real_home: Path) -> None:
    model_dir = Path(ensure_pulled(real_home, name).path)
    tokenizer = TextTokenizer.from_dir(model_dir)
    # Gemma 3's 262k-token vocabulary makes each of its steps several times SmolLM2's: 16 tokens
    max_tokens = 16 if name.startswith("gemma") else 32
    _assert_greedy_parity(name, model_dir, [tokenizer.encode(p) for p in PROMPTS], max_tokens=max_tokens)


def test_qwen2_chat_greedy_batch_is_token_identical_to_transformers(qwen_home: Path) -> None:
    name = "qwen2.5-coder-0.5b-instruct"
    model_dir = Path(ensure_pulled(qwen_home, name).path)
    tokenizer = TextTokenizer.from_dir(model_dir)
    prompts = [tokenizer.encode_chat([{"role": "user", "content": m}]) for m in QWEN_MESSAGES]
    _assert_greedy_parity(name, model_dir, prompts, max_tokens=16)


# a prompt whose answer repeats itself (names, structure), so prompt-lookup drafts are accepted
CODE_REQUEST = "Write a Python function that checks whether a number is prime, with a docstring."


def _one_at_a_time(model_dir: Path, prompt: list[int], dtype: torch.dtype, k: int) -> tuple[list[int], int]:
    config = EngineConfig(max_model_len=1024, dtype=dtype, num_speculative_tokens=k)
    engine = Engine.from_model_dir(model_dir, config)
    tokens = engine.generate([prompt], SamplingParams(max_tokens=96, temperature=0, ignore_eos=True))[0]
    return tokens, engine.scheduler.num_accepted_tokens


def test_speculative_greedy_decoding_keeps_the_tokens_in_fp32_and_bf16(real_home: Path) -> None:
    """Prompt-lookup drafts verified in the decode path: fp32 still matches transformers, and bf16
    (whose products may round differently at more rows) gives the tokens it gives without drafts."""
    model_dir = Path(ensure_pulled(real_home, "smollm2-135m-instruct").path)
    tokenizer = TextTokenizer.from_dir(model_dir)
    prompt = tokenizer.encode_chat([{"role": "user", "content": CODE_REQUEST}])
    fp32, accepted = _one_at_a_time(model_dir, prompt, torch.float32, k=4)
    assert accepted > 20  # the drafts were used, not just proposed
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=96, do_sample=False)
    assert fp32 == out[0, len(prompt) :].tolist()[: len(fp32)] and len(fp32) == 96
    bf16, accepted = _one_at_a_time(model_dir, prompt, torch.bfloat16, k=4)
    assert accepted > 20
    assert bf16 == _one_at_a_time(model_dir, prompt, torch.bfloat16, k=0)[0]
